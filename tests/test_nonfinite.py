"""Non-finite numbers are never a result (routes-math.md section 7): a forward pass that overflows
stops with NonFiniteError naming the first layer, position and part; a check whose error is NaN
is a FAIL; the CLI exits non-zero with one line; the server answers 422 non_finite."""

from __future__ import annotations

import functools
import math

import pytest
import torch

import routelens as rl
from routelens.errors import NonFiniteError, RoutelensError
from routelens.trace.trace import CheckReport, FfnRow, worst_error

# The tiny Llama of tests/tiny_models.py (seed 11) on this prompt: in fp32 the FFN write of layer 1
# is largest at position 1 ("the"), 1.21 times the next position's. Its FFN is scaled so that this
# largest write lands 10% above float16's maximum and the next one 9% below it: in fp16 exactly
# one number overflows, the FFN write of layer 1 at position 1.
PROMPT = "of the capital france is paris"
LAYER, POS = 1, 1
FP16_MAX = 65504.0
MESSAGE = ("the FFN write of layer 1 at position 1 is infinite, so nothing was traced: the model overflowed "
           "float16 (largest value 65504); load it in bf16 or fp32 (dtype=\"bf16\" / \"fp32\", CLI --dtype bf16 / fp32)")


@pytest.fixture(scope="module")
def overflow_folder(tmp_path_factory):
    """A tiny Llama folder whose layer-1 FFN write at position 1 exceeds 65504 (only there)."""
    from tiny_models import save_tiny_model

    folder = tmp_path_factory.mktemp("overflow") / "m"
    save_tiny_model(folder, seed=11)
    model = rl.load(str(folder))
    per_pos = model.trace(PROMPT, store=False).capture.layers[LAYER].ffn_write.abs().amax(-1)
    top2 = per_pos.topk(2)
    assert top2.indices.tolist()[0] == POS and float(top2.values[0] / top2.values[1]) > 1.2
    # Scale the write by `factor` (the geometric mean of the two largest, put on 65504 * 1.1 / 1.09).
    factor = FP16_MAX / math.sqrt(float(top2.values[0] * top2.values[1]))
    # Both projections share it: the down projection alone would need weights above 65504 too.
    mlp = model.hf_model.model.layers[LAYER].mlp
    with torch.no_grad():
        mlp.up_proj.weight.mul_(math.sqrt(factor))
        mlp.down_proj.weight.mul_(math.sqrt(factor))
    assert max(float(mlp.up_proj.weight.detach().abs().max()), float(mlp.down_proj.weight.detach().abs().max())) < 1000
    model.hf_model.save_pretrained(folder)
    return folder


def test_fp16_overflow_stops_the_trace_naming_layer_position_and_part(overflow_folder, tmp_path):
    model = rl.load(str(overflow_folder), dtype="fp16")
    with pytest.raises(NonFiniteError) as caught:
        model.trace(PROMPT, store=False)
    err = caught.value
    assert (err.layer, err.pos, err.part) == (LAYER, POS, "FFN write")
    assert str(err) == MESSAGE
    assert isinstance(err, RoutelensError) and isinstance(err, FloatingPointError)

    # through the trace store: nothing is stored, and the next call raises again (no NaN read back)
    store = rl.TraceStore(tmp_path / "store")
    for _ in range(2):
        with pytest.raises(NonFiniteError, match="layer 1 at position 1"):
            model.trace(PROMPT, store=store)
    assert store.entries() == []


def test_same_model_in_fp32_traces_and_passes_its_check(overflow_folder):
    trace = rl.load(str(overflow_folder)).trace(PROMPT, store=False)
    writes = trace.capture.layers[LAYER].ffn_write.abs().amax(-1)
    assert float(writes[POS]) > FP16_MAX * 1.05  # the number that overflows fp16 is really there
    assert float(writes[torch.arange(len(writes)) != POS].max()) < FP16_MAX * 0.95  # and only there
    report = trace.check()
    assert report.ok and report.non_finite() == [], str(report)
    assert str(report).splitlines()[-1].startswith("PASS")
    assert trace.importance_sums_error() <= 1e-5
    preds = trace.predictions(k=3)
    assert all(math.isfinite(p["prob"]) for row in preds for p in row)
    assert len(trace.graph(threshold=0.04).nodes) > 1


def test_error_survives_pickling():
    import pickle

    err = pickle.loads(pickle.dumps(NonFiniteError("x", layer=7, pos=0, part="block output (residual stream)")))
    assert (str(err), err.layer, err.pos, err.part) == ("x", 7, 0, "block output (residual stream)")


# ---- check reports ---------------------------------------------------------------------------------
def _report(rows, lens=1e-7) -> CheckReport:
    return CheckReport(rows=rows, logit_lens_error=lens, tolerance=5e-3, dtype="torch.float16")


def _row(layer, attention=1e-4, ffn=2e-4, residual=3e-4):
    return {"layer": layer, "attention": attention, "ffn": ffn, "residual": residual}


@pytest.mark.parametrize("nan_first", [True, False])  # Python's max() keeps or drops a NaN by position
def test_check_report_with_a_nan_row_fails(nan_first):
    rows = [_row(0), _row(1, ffn=math.nan, residual=math.nan), _row(2, residual=6.6e-4)]
    if nan_first:
        rows = [rows[1], rows[0], rows[2]]
    report = _report(rows)
    assert report.ok is False
    assert math.isnan(report.max_error)
    assert report.non_finite() == ["layer 1 ffn", "layer 1 residual"]
    text = str(report)
    verdict = text.splitlines()[-1]
    assert verdict == "FAIL: non-finite error (NaN or infinity) at layer 1 ffn, layer 1 residual (tolerance 5e-03, torch.float16)"
    assert "PASS" not in text


def test_check_report_non_finite_logit_lens_and_infinity_fail():
    report = _report([_row(0)], lens=math.nan)
    assert not report.ok and report.non_finite() == ["logit lens"] and "FAIL" in str(report)
    report = _report([_row(0, attention=math.inf)])
    assert not report.ok and report.max_error == math.inf and report.non_finite() == ["layer 0 attention"]
    report = _report([_row(0), _row(1, residual=6.6e-4)])
    assert report.ok and report.max_error == pytest.approx(6.6e-4) and str(report).splitlines()[-1].startswith("PASS")


def test_worst_error_keeps_nan_and_inf():
    assert worst_error([]) == 0.0
    assert worst_error([1e-3, 2e-3]) == 2e-3
    assert math.isnan(worst_error([math.nan, 1.0])) and math.isnan(worst_error([1.0, math.nan]))
    assert math.isnan(worst_error([math.inf, math.nan])) and worst_error([1.0, math.inf, 2.0]) == math.inf


def test_importance_sums_error_is_nan_when_a_row_is(overflow_folder):
    trace = rl.load(str(overflow_folder)).trace(PROMPT, store=False)
    assert trace.importance_sums_error() <= 1e-5
    trace._ffn_rows[0][0] = FfnRow(resid=math.nan, ffn=0.5)  # first in iteration order: max() kept it...
    trace._ffn_rows[1][trace.n_positions - 1] = FfnRow(resid=math.nan, ffn=0.5)  # ... this one it dropped
    assert math.isnan(trace.importance_sums_error())


# ---- command line --------------------------------------------------------------------------------
def test_cli_check_fp16_overflow_exits_non_zero_with_one_line(overflow_folder, capsys):
    from routelens.cli import main

    code = main(["check", str(overflow_folder), "--dtype", "fp16", "--prompt", PROMPT])
    out, err = capsys.readouterr()
    assert code == 2
    assert err.splitlines() == [f"routelens: error: {MESSAGE}"]
    assert "passed" not in out


def test_cli_check_fails_on_a_nan_importance_sum(overflow_folder, capsys, monkeypatch):
    from routelens.cli import main
    from routelens.trace.trace import Trace

    assert main(["check", str(overflow_folder), "--prompt", PROMPT]) == 0
    assert "all checks passed" in capsys.readouterr().out
    monkeypatch.setattr(Trace, "importance_sums_error", lambda self: math.nan)
    assert main(["check", str(overflow_folder), "--prompt", PROMPT]) == 1
    assert "all checks passed" not in capsys.readouterr().out


# ---- server ----------------------------------------------------------------------------------------
def test_server_answers_422_non_finite(overflow_folder, monkeypatch):
    from fastapi.testclient import TestClient
    from servers import LOCAL

    import routelens.server.state as state
    from routelens.server.app import ERROR_STATUS, create_app
    from routelens.server.config import ServerConfig

    assert (NonFiniteError, 422, "non_finite") in ERROR_STATUS
    monkeypatch.setattr(state, "load", functools.partial(state.load, dtype="fp16"))  # the server has no dtype option
    cfg = ServerConfig(models={"overflow": str(overflow_folder)}, default_model="overflow")
    with TestClient(create_app(cfg, preload=False), base_url=LOCAL) as client:
        r = client.post("/api/trace", json={"model": "overflow", "prompt": PROMPT})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "non_finite"
    assert r.json()["error"]["message"] == MESSAGE


# ---- a view of a finite trace that overflows the model's dtype --------------------------------------
def test_logit_lens_overflow_raises_instead_of_nan(overflow_folder):
    """The unembedding runs in the model's dtype: a raw (un-normed) residual near 18000 through an
    fp16 lm_head scaled by 100 overflows. The trace itself is finite (the model's own logits are normed)."""
    model = rl.load(str(overflow_folder), dtype="fp16")
    with torch.no_grad():
        model.hf_model.model.layers[LAYER].mlp.down_proj.weight.div_(4)  # the write peaks near 18000: finite
        model.hf_model.lm_head.weight.mul_(100)
    trace = model.trace(PROMPT, store=False)
    assert trace.top_tokens("block", LAYER, POS, k=3)[0]["prob"] > 0  # normed: fine
    with pytest.raises(NonFiniteError) as caught:
        trace.top_tokens("block", LAYER, POS, k=3, apply_norm=False)
    assert (caught.value.layer, caught.value.pos, caught.value.part) == (LAYER, POS, "logit lens of the block node")
    assert "so it cannot be shown" in str(caught.value)


# ---- a real model -----------------------------------------------------------------------------------
@pytest.mark.slow
def test_gemma3_fp16_overflows_at_layer_7(capsys):
    """gemma-3-270m's first position (<bos>) grows by about 2x a block until layer 7's output
    passes 65504; from layer 8 on everything is NaN."""
    from routelens.cli import main

    model = rl.load("gemma-3-270m", dtype="fp16")
    with pytest.raises(NonFiniteError) as caught:
        model.trace("The capital of France is", store=False)
    assert (caught.value.layer, caught.value.pos, caught.value.part) == (7, 0, "block output (residual stream)")
    assert str(caught.value).startswith("the block output (residual stream) of layer 7 at position 0 is infinite")
    del model
    capsys.readouterr()  # the load's progress bar

    assert main(["check", "gemma-3-270m", "--dtype", "fp16", "--no-store"]) == 2  # its own prompts: same place
    out, err = capsys.readouterr()
    assert err.splitlines() == [f"routelens: error: {caught.value}"]
    assert "passed" not in out
