"""The why-options of the command line print the library's own numbers: `trace --foil` the logit
difference and direct logit attributions of `trace.logit_attribution`, `--generate` the tokens of
`model.generate`, `--verify` the shares of `trace.verify`, `diff` the head changes of
`routelens.compare`; and option mistakes are one line saying what to do, before a model loads."""

from __future__ import annotations

import json
import re

import pytest

import routelens as rl
from routelens import cli

PROMPT = "the capital of france is"
MISSING_MODEL = "/nonexistent-routelens-model-folder"  # loading it fails: an option error must come first


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main([*argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str, *needles: str) -> str:
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("routelens: error:"), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def table_rows(out: str) -> list[list[str]]:
    """The body rows of the rich tables in `out`, as lists of cell texts."""
    return [[c.strip() for c in line.split("│")[1:-1]] for line in out.splitlines() if line.startswith("│")]


@pytest.fixture(scope="module")
def model(tiny_folder):
    return rl.load(str(tiny_folder))


@pytest.fixture(scope="module")
def trace(model):
    return model.trace(PROMPT, store=False)


# ---- --foil: the contrast and its direct logit attribution ----------------------------------------
def test_foil_prints_the_logit_difference_and_the_largest_attributions(capsys, tiny_folder, trace, tmp_path):
    second = trace.predictions(k=2)[-1][1]
    expected = trace.logit_attribution(-1, None, second["id"])
    out_path = tmp_path / "why.json"
    code, out, err = run_main(capsys, "trace", str(tiny_folder), PROMPT, "--foil-id", str(second["id"]),
                              "--out", str(out_path))
    assert code == 0, err
    assert f"why {expected['token']!r} rather than {second['token']!r} at position 4: " \
           f"logit difference {expected['logit_diff']:.4f}" in out
    assert (f"sum of attributions + constant = logit difference: {expected['total']:.4f} = "
            f"{expected['logit_diff']:.4f}") in out
    printed = re.findall(r"^  (embed|L\d+ H\d+|L\d+ FFN|L\d+ bias) +([+-]\d+\.\d{4})$", out, flags=re.M)
    parts = {"embed": expected["embed"]}
    for layer in expected["layers"]:
        parts.update({f"L{layer['layer']} H{h}": v for h, v in enumerate(layer["heads"])})
        parts[f"L{layer['layer']} FFN"] = layer["ffn"]
    largest = sorted(parts, key=lambda k: -abs(parts[k]))[:10]
    assert [label for label, _ in printed] == largest
    assert all(value == f"{parts[label]:+.4f}" for label, value in printed)
    graph = json.loads(out_path.read_text())  # the contrastive route, as trace.graph(foil=...) builds it
    assert graph["target"]["foil_id"] == second["id"] and graph["target"]["token"] == expected["token"]
    assert graph["target"]["logit_diff"] == pytest.approx(expected["logit_diff"], abs=1e-6)


def test_foil_and_token_by_text(capsys, tiny_folder, trace):
    expected = trace.logit_attribution(-1, "france", "paris")
    code, out, err = run_main(capsys, "trace", str(tiny_folder), PROMPT, "--token", "france", "--foil", "paris")
    assert code == 0, err
    assert f"why 'france' rather than 'paris' at position 4: logit difference {expected['logit_diff']:.4f}" in out
    assert "(contrastive: why 'france' rather than 'paris')" in out


def test_token_alone_attributes_its_logit(capsys, tiny_folder, trace):
    expected = trace.logit_attribution(-1, "paris")
    code, out, err = run_main(capsys, "trace", str(tiny_folder), PROMPT, "--token", "paris")
    assert code == 0, err
    assert f"why 'paris' at position 4: logit {expected['logit_diff']:.4f}" in out
    assert f"sum of attributions + constant = logit: {expected['total']:.4f} = {expected['logit_diff']:.4f}" in out


def test_foil_equal_to_the_target_is_the_library_s_error(capsys, tiny_folder, trace):
    top = trace.top_predictions(-1, k=1)[0][0]
    code, out, err = run_main(capsys, "trace", str(tiny_folder), PROMPT, "--foil", top)
    one_line_error(code, err, "the foil is the target token itself", "pick another foil")
    assert out == ""  # refused before anything is printed
    code, out, err = run_main(capsys, "trace", str(tiny_folder), PROMPT, "--foil", "paris capital")
    one_line_error(code, err, "is 2 tokens", "give its id")


# ---- --generate: the continuation, a route per step -----------------------------------------------
def test_generate_prints_the_tokens_model_generate_gives(capsys, tiny_folder, model, tmp_path):
    expected = model.generate(PROMPT, 3, store=False)
    code, out, err = run_main(capsys, "trace", str(tiny_folder), PROMPT, "--generate", "3",
                              "--out", str(tmp_path / "route-{step}.json"))
    assert code == 0, err
    text = "".join(s["token"] for s in expected.steps)
    assert f"continuation (3 tokens, greedy): {text!r}" in out
    rows = [r for r in table_rows(out) if len(r) == 5]
    assert rows == [[str(s["step"]), str(s["pos"]), repr(s["token"]), f"{s['prob']:.4f}", str(s["rank"] + 1)]
                    for s in expected.steps]
    for s in expected.steps:  # {step}: every step's route, each from the position that predicted its token
        graph = json.loads((tmp_path / f"route-{s['step']}.json").read_text())
        assert graph["target"]["pos"] == s["pos"] and graph["target"]["token"] == s["token"]
    assert f"route from step 2 ({expected.steps[2]['token']!r}, position {expected.steps[2]['pos']})" in out


def test_generate_writes_one_step_without_the_placeholder(capsys, tiny_folder, model, tmp_path):
    expected = model.generate(PROMPT, 2, sample=True, seed=5, temperature=0.7, store=False)
    code, out, err = run_main(capsys, "trace", str(tiny_folder), PROMPT, "--generate", "2", "--sample", "--seed", "5",
                              "--temperature", "0.7", "--step", "0", "--out", str(tmp_path / "route.json"))
    assert code == 0, err
    assert f"sampled at temperature 0.7, seed 5): {''.join(s['token'] for s in expected.steps)!r}" in out
    graph = json.loads((tmp_path / "route.json").read_text())
    assert graph["target"]["pos"] == expected.steps[0]["pos"] and graph["target"]["token"] == expected.steps[0]["token"]
    assert [p.name for p in tmp_path.iterdir()] == ["route.json"]


# ---- --verify and --curve: the knockout check ------------------------------------------------------
def test_verify_prints_the_share_trace_verify_returns(capsys, tiny_folder, trace):
    report = trace.verify(-1, 0.04, trials=3).to_dict()
    code, out, err = run_main(capsys, "trace", str(tiny_folder), PROMPT, "--verify", "--trials", "3")
    assert code == 0, err
    assert f"full run:    p = {report['full']['prob']:.4f}" in out
    assert (f"route only:  p = {report['route']['prob']:.4f} ({report['shares']['prob']:.1%} of the full "
            "probability)") in out
    assert f"p = {report['random_mean']['prob']:.4f} mean, {max(r['prob'] for r in report['random']):.4f} max" in out
    assert f"beats random (probability): {'yes' if report['beats_random'] else 'no'}" in out


def test_curve_prints_one_row_per_threshold(capsys, tiny_folder, trace):
    reports = trace.verify_curve(-1, renormalise=True, trials=2)
    code, out, err = run_main(capsys, "trace", str(tiny_folder), PROMPT, "--curve", "--renormalise", "--trials", "2")
    assert code == 0, err
    rows = [r for r in table_rows(out) if len(r) == 8]
    assert [(r[0], r[3], r[4], r[7]) for r in rows] == [
        (f"{x.threshold:g}", f"{x.route['prob']:.4f}", f"{x.shares['prob']:.1%}", "yes" if x.beats_random else "no")
        for x in reports]
    assert "knockout check" not in out  # --curve alone prints the curve only


# ---- diff -------------------------------------------------------------------------------------------
def test_diff_writes_the_comparison_graph_and_lists_its_head_changes(capsys, tiny_folder, model, tmp_path):
    other = "the capital of paris is"
    comparison = rl.compare(model.trace(PROMPT, store=False), model.trace(other, store=False), top=4)
    code, out, err = run_main(capsys, "diff", str(tiny_folder), PROMPT, other, "--top", "4",
                              "--out", str(tmp_path / "diff.json"))
    assert code == 0, err
    assert "alignment (A→B where they differ): 'the' 'capital' 'of' ['france'→'paris'] 'is'" in out
    graph = json.loads((tmp_path / "diff.json").read_text())
    assert graph["edges"] and all(e["delta"] == pytest.approx(e["weight_b"] - e["weight_a"], abs=1e-12)
                                  for e in graph["edges"])
    assert len(graph["edges"]) == len(comparison.graph.edges)
    rows = [r for r in table_rows(out) if len(r) == 5]
    top = comparison.heads[0]
    assert rows[0] == [str(top["layer"]), f"H{top['head']}", f"{top['a']:.4f}", f"{top['b']:.4f}", f"{top['delta']:+.4f}"]
    neurons = rows[len(comparison.heads):]
    assert [r[1] for r in neurons] == [str(n["neuron"]) for n in comparison.neurons]


# ---- mistakes: one line, saying what to do, before a model loads ----------------------------------
OPTION_MISTAKES = [
    (["--generate", "3", "--target", "2"], "pick a step's route with --step K"),
    (["--step", "1"], "--step goes with --generate N"),
    (["--generate", "2", "--step", "2"], "--generate 2 has steps 0..1"),
    (["--generate", "0"], "from 1 to 512"),
    (["--generate", "2", "--temperature", "0.5"], "add --sample"),
    (["--generate", "2", "--sample", "--temperature", "0"], "above 0"),
    (["--seed", "1"], "--seed seeds --sample and --verify"),
    (["--trials", "3"], "--trials goes with --verify"),
    (["--renormalise"], "--renormalise goes with --verify"),
    (["--verify", "--trials", "0"], "from 1 to 50"),
    (["--verify", "--trials", "51"], "from 1 to 50"),
    (["--verify", "--trials", "x"], "--trials"),
    (["--foil", ""], "--foil-id"),
    (["--foil-id", "-3"], "--foil-id"),
    (["--foil", "a", "--foil-id", "3"], "not allowed with"),
    (["--target", "all", "--foil", "a"], "needs one target position"),
    (["--target", "all", "--verify"], "needs one target position"),
    (["--out", "r-{step}.json"], "add --generate N"),
]


@pytest.mark.parametrize("extra,needle", OPTION_MISTAKES, ids=[" ".join(e) for e, _ in OPTION_MISTAKES])
def test_option_mistakes_are_one_line_before_a_model_loads(capsys, extra, needle):
    code, out, err = run_main(capsys, "trace", MISSING_MODEL, PROMPT, *extra)
    line = one_line_error(code, err, needle)
    assert "no such model" not in line and out == ""


def test_diff_mistakes_are_one_line(capsys):
    for extra, needle in ((["--target-a", "x"], "--target-a"), (["--top", "0"], "--top"), (["--out", "d.pdf"], "format")):
        code, out, err = run_main(capsys, "diff", MISSING_MODEL, PROMPT, "b", *extra)
        one_line_error(code, err, needle)
    code, out, err = run_main(capsys, "diff", MISSING_MODEL, PROMPT, "  ")
    one_line_error(code, err, "prompt is empty")


# ---- end to end on the embedded default model ------------------------------------------------------
@pytest.mark.slow
def test_paris_rather_than_london_on_smollm2(capsys, smollm2, tmp_path):
    trace = smollm2.trace("The capital of France is", store=False)
    expected = trace.logit_attribution(-1, " Paris", " London")
    report = trace.verify(-1, 0.04, trials=2)
    code, out, err = run_main(capsys, "trace", "smollm2-135m-instruct", "The capital of France is", "--foil", " London",
                              "--verify", "--trials", "2", "--out", str(tmp_path / "why.svg"))
    assert code == 0, err
    assert f"why ' Paris' rather than ' London' at position 4: logit difference {expected['logit_diff']:.4f}" in out
    assert f"{expected['total']:.4f} = {expected['logit_diff']:.4f}" in out
    assert expected["total"] == pytest.approx(expected["logit_diff"], abs=1e-3)
    assert "beats random (" in out and (tmp_path / "why.svg").read_text().lstrip().startswith("<")
    assert f"full run:    p = {report.full['prob']:.4f}" in out
    code, out, err = run_main(capsys, "trace", "smollm2-135m-instruct", "The capital of France is", "--generate", "3")
    assert code == 0, err
    steps = smollm2.generate("The capital of France is", 3, store=False).steps
    assert f"{''.join(s['token'] for s in steps)!r}" in out and steps[0]["token"] == " Paris"


@pytest.mark.slow
def test_the_readme_asking_why_block_runs_as_written(smollm2, tmp_path):
    """README.md's "Asking why" commands, line by line in bash, as tests/test_readme.py runs its
    "Command line" block: from a fresh folder beside the installed `.venv`."""
    import subprocess
    import sys
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text[text.index("\n## Asking why\n"):], re.S).group(1)
    lines = [line for line in block.splitlines() if line.strip()]
    assert lines[0] == ". .venv/bin/activate" and len(lines) == 5
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    outputs = []
    for line in lines[1:]:
        command = line.split("#", 1)[0].strip()
        r = subprocess.run(["bash", "-c", f". .venv/bin/activate && {command}"], capture_output=True, text=True,
                           cwd=tmp_path, timeout=900)
        assert r.returncode == 0, (command, r.stdout[-2000:], r.stderr[-2000:])
        outputs.append(r.stdout)
    assert "why ' Paris' rather than ' London' at position 4: logit difference" in outputs[0]
    assert sorted(p.name for p in tmp_path.glob("step-*.json")) == ["step-0.json", "step-1.json", "step-2.json"]
    assert "beats random (" in outputs[2]
    assert "heads whose importance changed most" in outputs[3]
    assert "<html" in (tmp_path / "diff.html").read_text()[:2000].lower()


def test_a_check_past_its_bound_is_refused_before_anything_is_traced(capsys, tiny_folder, monkeypatch):
    """The knockout check's size is known from the token count: refused before the trace runs."""
    from routelens.routes import verify

    traced = []
    monkeypatch.setattr(verify, "MAX_POSITIONS", 3)
    monkeypatch.setattr(rl.Model, "trace", lambda *a, **k: traced.append(a) or pytest.fail("traced"))
    code, out, err = run_main(capsys, "trace", str(tiny_folder), PROMPT, "--verify", "--no-store")
    assert code != 0 and "pick an earlier target position or a shorter prompt" in err
    assert traced == []  # refused before the model ran


def test_dry_run_counts_the_generated_tokens_and_the_checks_passes(capsys, tiny_folder, model):
    from routelens.trace.estimate import estimate

    n = len(model.tokenize(PROMPT)) + 3
    want = estimate(model.adapter, n)
    code, out, _ = run_main(capsys, "trace", str(tiny_folder), PROMPT, "--generate", "3", "--dry-run", "--no-store")
    assert code == 0 and f"{n} tokens (3 of them generated" in out
    assert f"about {want.forward_seconds:,.1f} s for the forward pass" in out
    code, out, _ = run_main(capsys, "trace", str(tiny_folder), PROMPT, "--verify", "--trials", "2", "--dry-run",
                            "--no-store")
    assert code == 0 and "check:  4 more forward passes" in out  # the full run, the route alone, 2 trials
