"""Routes over a dataset (routelens/analysis): the statistics of a dataset equal the sum of the
per-prompt route graphs computed one by one, shards merge exactly, and a killed run resumes
without counting anything twice."""

from __future__ import annotations

import json

import pytest
import torch

import routelens as rl
from routelens.analysis.collect import add_prompt
from routelens.analysis.dataset import SAMPLE, Dataset
from routelens.analysis.run import Spec, analyze, read_stats
from routelens.analysis.stats import Stats
from routelens.errors import InvalidArgumentError

PROMPTS = [("the cat sat on the mat", "prose"), ("def f(x): return x", "code"), ("le chat est noir", "french"),
           ("a b c d e f", "prose"), ("x = [1, 2, 3]", "code")]


@pytest.fixture(scope="module")
def model(tiny_folder):
    return rl.load(str(tiny_folder))


@pytest.fixture()
def data(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in PROMPTS))
    return path


def naive(model, positions: str, threshold: float) -> dict:
    """Per label, the components of every route, counted from each prompt's graphs one by one."""
    out: dict = {}
    for text, label in PROMPTS:
        trace = model.trace(text, store=False)
        L, H = trace.n_layers, trace.adapter.n_heads
        s = out.setdefault(label, {"heads": torch.zeros(L, H, dtype=torch.float64), "head_count": torch.zeros(L, H),
                                   "ffn": torch.zeros(L, dtype=torch.float64), "routes": 0, "neurons": {}})
        targets = [trace.n_positions - 1] if positions == "last" else range(trace.n_positions)
        for t in targets:
            g = trace.graph(t, threshold)
            s["routes"] += 1
            on = torch.zeros(L, H, dtype=torch.bool)
            for e in g.edges:
                if e["kind"] == "attn":
                    layer = int(e["source"].split(":")[1])
                    for h, w in e["heads"].items():
                        s["heads"][layer, int(h)] += w
                        on[layer, int(h)] |= w > threshold
                if e["kind"] == "ffn" and e["source"].startswith("f:"):  # the FFN node's edge out
                    layer, pos = (int(v) for v in e["source"].split(":")[1:])
                    s["ffn"][layer] += e["weight"]
                    for n in trace.neurons(layer, pos, k=10_000):
                        key = (layer, n["index"])
                        s["neurons"][key] = s["neurons"].get(key, 0.0) + n["importance"]
            s["head_count"] += on
    return out


@pytest.mark.parametrize("positions", ["last", "all"])
def test_statistics_equal_the_per_prompt_graphs(model, data, tmp_path, positions):
    stats = analyze(Spec(model=model.name, dataset=str(data), positions=positions, shard_size=2), tmp_path / "out",
                    model=model, progress=False)
    want = naive(model, positions, 0.04)
    assert sorted(stats.labels) == sorted(want)
    for label, w in want.items():
        got = stats.labels[label]
        assert got.routes == w["routes"] and got.prompts == sum(1 for _, lab in PROMPTS if lab == label)
        assert torch.allclose(got.head_sum, w["heads"], atol=1e-9)
        assert torch.equal(got.head_count, w["head_count"].double())
        assert torch.allclose(got.ffn_sum, w["ffn"], atol=1e-9)
        for (layer, n), value in w["neurons"].items():
            assert float(got.neuron_sum[layer, n]) == pytest.approx(value, abs=1e-6)
    # previous-token scores: A[h, i, i-1] summed, from the model's own patterns
    trace = model.trace(PROMPTS[0][0], store=False)
    one = Stats(trace.n_layers, trace.adapter.n_heads, 0)
    add_prompt(one, trace, 0, "x", "last", 0.04)
    pattern = trace.capture.layers[1].pattern.double()
    expect = sum(pattern[:, i, i - 1] for i in range(1, trace.n_positions))
    assert torch.allclose(one.labels["x"].prev_sum[1], expect, atol=1e-9)


def test_shards_merge_to_one_pass_and_a_killed_run_resumes(model, data, tmp_path, monkeypatch):
    one = analyze(Spec(model=model.name, dataset=str(data), shard_size=100), tmp_path / "one", model=model,
                  progress=False)
    # a run killed after its first shard (of three)
    import routelens.analysis.run as run

    calls = []
    real = run.shard_stats

    def dies_after_one(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(args[3])
        return real(*args, **kwargs)

    monkeypatch.setattr(run, "shard_stats", dies_after_one)
    spec = Spec(model=model.name, dataset=str(data), shard_size=2)
    with pytest.raises(KeyboardInterrupt):
        analyze(spec, tmp_path / "two", model=model, progress=False)
    assert len(list((tmp_path / "two" / "shards").glob("*.safetensors"))) == 1
    monkeypatch.setattr(run, "shard_stats", real)
    traced = []
    monkeypatch.setattr(model, "trace", lambda *a, **k: traced.append(a[0]) or type(model).trace(model, *a, **k))
    resumed = analyze(spec, tmp_path / "two", model=model, progress=False)
    assert len(traced) == len(PROMPTS) - 2  # the first shard's prompts were not traced again
    for label in one.labels:
        a, b = one.labels[label], resumed.labels[label]
        assert a.routes == b.routes and a.prompts == b.prompts
        for name in ("head_sum", "head_count", "ffn_sum", "neuron_sum", "prev_sum", "sub_sum"):
            assert torch.allclose(getattr(a, name), getattr(b, name), atol=1e-9), name
    assert one.top == resumed.top
    assert read_stats(tmp_path / "two" / "analysis.safetensors").top == one.top
    # other settings in the same folder are refused
    with pytest.raises(InvalidArgumentError, match="other settings"):
        analyze(Spec(model=model.name, dataset=str(data), shard_size=2, threshold=0.1), tmp_path / "two",
                model=model, progress=False)


def test_datasets_in_every_format(tmp_path):
    text = tmp_path / "p.txt"
    text.write_text("first prompt\n\nsecond prompt\n")
    assert [p.text for p in Dataset(text).prompts(0, 10)] == ["first prompt", "second prompt"]
    sample = Dataset(SAMPLE)
    labels = {p.label for p in sample.prompts(0, len(sample))}
    assert labels == {"prose", "code", "french"} and len(sample) >= 30
    from datasets import Dataset as HF

    HF.from_dict({"text": ["a b", "c d"], "label": ["x", "y"]}).save_to_disk(str(tmp_path / "hf"))
    assert [(p.text, p.label) for p in Dataset(tmp_path / "hf").prompts(0, 5)] == [("a b", "x"), ("c d", "y")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(InvalidArgumentError, match="line 2 of bad.jsonl is not JSON"):
        list(Dataset(bad).prompts(0, 2))
    with pytest.raises(InvalidArgumentError, match="no dataset at"):
        Dataset(tmp_path / "missing.txt")


def test_the_sample_ships_in_the_package():
    """pyproject's package data names the sample, so `pip install routelens` (not only an
    editable install) has it for `routelens analyze sample`."""
    import fnmatch
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["routelens"]
    rel = SAMPLE.relative_to(root / "routelens").as_posix()
    assert any(fnmatch.fnmatch(rel, p) for p in patterns), (rel, patterns)
