"""Reports of a dataset analysis (routelens/analysis/report.py, `routelens analyze`): every number
is recomputed here from the statistics or from the model's own attention patterns."""

from __future__ import annotations

import json
import os

import pytest
import torch

import routelens as rl
from routelens import cli
from routelens.analysis.dataset import SAMPLE, Dataset
from routelens.analysis.run import Spec, analyze
from routelens.errors import InvalidArgumentError

PROMPTS = [("the cat sat on the mat", "prose"), ("def f(x): return x", "code"), ("le chat est noir", "french"),
           ("x = [1, 2, 3]", "code")]


@pytest.fixture(scope="module")
def done(tiny_folder, tmp_path_factory):
    folder = tmp_path_factory.mktemp("analysis")
    data = folder / "p.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in PROMPTS))
    model = rl.load(str(tiny_folder))
    analyze(Spec(model=str(tiny_folder), dataset=str(data), shard_size=3), folder / "out", model=model, progress=False)
    return model, folder / "out", data


def test_measures_are_the_statistics_per_route(done):
    model, out, _data = done
    a = rl.load_analysis(out)
    s = a.stats.labels["code"]
    assert torch.allclose(a.heads("code"), s.head_sum / s.routes)
    assert torch.allclose(a.heads("code", "frequency"), s.head_count / s.routes)
    total = a.stats.total()
    assert total.routes == len(PROMPTS) and a.labels == ["code", "french", "prose"]
    rest = a.stats.labels["french"].head_sum + a.stats.labels["prose"].head_sum
    diffs = [r for r in a.label_differences(50) if r["label"] == "code" and r["kind"] == "head"]
    for r in diffs[:5]:
        want = float(s.head_sum[r["layer"], r["index"]] / s.routes - rest[r["layer"], r["index"]] / 2)
        assert r["difference"] == pytest.approx(want, abs=1e-9)
    with pytest.raises(InvalidArgumentError, match="no label 'poetry'"):
        a.heads("poetry")


def test_previous_token_scores_are_the_models_attention(done):
    model, out, _data = done
    a = rl.load_analysis(out)
    want = torch.zeros_like(a.previous_token_scores())
    n = 0
    for text, _label in PROMPTS:  # the mean of A[h, i, i-1] over every position i >= 1 of every prompt
        trace = model.trace(text, store=False)
        for layer in range(trace.n_layers):
            p = trace.capture.layers[layer].pattern.double()
            want[layer] += sum(p[:, i, i - 1] for i in range(1, trace.n_positions))
        n += trace.n_positions - 1
    assert torch.allclose(a.previous_token_scores(), want / n, atol=1e-9)
    named = a.previous_token_heads(min_score=0.0)
    assert len(named) == want.numel() and named[0]["score"] == pytest.approx(float((want / n).max()))


def test_top_prompts_are_the_largest_route_shares(done):
    model, out, data = done
    a = rl.load_analysis(out)
    (layer, head), rows = max(a.stats.top.items(), key=lambda kv: kv[1][0][0])
    top = a.top_prompts(layer, head)
    assert top[0]["text"] == PROMPTS[top[0]["prompt"]][0] and top[0]["label"] == PROMPTS[top[0]["prompt"]][1]
    trace = model.trace(top[0]["text"], store=False)
    graph = trace.graph(top[0]["pos"], 0.04)
    share = sum(e["heads"].get(str(head), 0.0) for e in graph.edges
                if e["kind"] == "attn" and int(e["source"].split(":")[1]) == layer)
    assert top[0]["importance"] == pytest.approx(share, abs=1e-9)


def test_report_files_and_refusals(done, tmp_path):
    _model, out, _data = done
    from routelens.analysis.report import write_report

    files = write_report(rl.load_analysis(out), tmp_path / "r")
    names = {f.name for f in files}
    assert {"heads.svg", "heads.png", "previous-token.svg", "previous-token.png", "report.json"} <= names
    assert (tmp_path / "r" / "heads.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "r" / "heads.svg").read_text().count("<rect") > 10
    with pytest.raises(InvalidArgumentError, match="holds no analysis"):
        rl.load_analysis(tmp_path / "nothing")
    meta = json.loads((out / "analysis.json").read_text())
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "analysis.json").write_text(json.dumps({**meta, "complete": False}))
    with pytest.raises(InvalidArgumentError, match="not finished"):
        rl.load_analysis(tmp_path / "half")


def test_the_command_writes_the_report_and_resumes(tiny_folder, tmp_path, capsys):
    data = tmp_path / "p.txt"
    data.write_text("one two three\nfour five six\n")
    args = ["analyze", str(data), "--model", str(tiny_folder), "--out", str(tmp_path / "o"), "--shard-size", "1"]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "2 prompts, 2 routes" in out and "previous-token heads:" in out
    assert (tmp_path / "o" / "heads.png").exists() and (tmp_path / "o" / "report.json").exists()
    assert cli.main(args) == 0  # again: every shard is there, nothing recomputed, the same numbers
    assert "2 prompts, 2 routes" in capsys.readouterr().out
    assert cli.main([*args[:-2], "--threshold", "0.5"]) == 2
    assert "other settings" in capsys.readouterr().err


@pytest.mark.slow
def test_the_shipped_sample_on_smollm2_names_previous_token_heads_and_a_code_prose_difference(smollm2, tmp_path):
    """README.md's "Routes over a dataset" block, run as written from a fresh folder, then checked."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text[text.index("\n## Routes over a dataset\n"):], re.S).group(1)
    lines = [line for line in block.splitlines() if line.strip()]
    assert lines[0] == ". .venv/bin/activate" and len(lines) == 2
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    command = lines[1].split("#", 1)[0].strip()
    # OpenMP threads that spin at barriers collapse torch on a shared, busy CI machine (benchmarks/README.md,
    # bench_analyze): the environment says sleep instead; the command is the README's, as written
    env = {**os.environ, "OMP_WAIT_POLICY": "passive"}
    r = subprocess.run(["bash", "-c", f". .venv/bin/activate && {command}"], capture_output=True, text=True,
                       cwd=tmp_path, timeout=1500, env=env)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-2000:])
    assert "previous-token heads: L" in r.stdout and "36 prompts, 36 routes" in r.stdout
    model = rl.load("smollm2-135m-instruct")
    a = rl.load_analysis(tmp_path / "sample-analysis")
    assert (tmp_path / "sample-analysis" / "heads.png").exists()
    heads = a.previous_token_heads()
    assert heads, "no previous-token head found"
    # the strongest one, checked against the model's own attention on the whole sample
    best = heads[0]
    total, n = 0.0, 0
    dataset = Dataset(SAMPLE)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: no spinning OpenMP barrier on a busy machine (see above)
    for prompt in dataset.prompts(0, len(dataset)):
        trace = model.trace(prompt.text, store=False)
        p = trace.capture.layers[best["layer"]].pattern_rows(list(range(1, trace.n_positions)))[best["head"]].double()
        total += float(sum(p[i - 1, i - 1] for i in range(1, trace.n_positions)))
        n += trace.n_positions - 1
    torch.set_num_threads(threads)
    assert best["score"] == pytest.approx(total / n, abs=1e-6) and best["score"] >= 0.4
    # a component whose importance differs between code and prose
    code, prose = a.stats.labels["code"], a.stats.labels["prose"]
    diff = (code.head_sum / code.routes - prose.head_sum / prose.routes).abs()
    assert float(diff.max()) > 0.2
    assert any(r["label"] in ("code", "prose") for r in a.label_differences(5))
