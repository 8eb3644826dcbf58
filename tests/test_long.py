"""Long prompts (issue 11): a capture linear in T, layers replayed exactly, routes layer by layer,
estimates before a trace runs (library, CLI --dry-run, server).

The numbers are checked against the model's own forward pass (the residual stream it computed)
and against transformers' eager attention; memory and time targets are benchmarks
(benchmarks/bench_long.py), never timed here.
"""

from __future__ import annotations

import json

import pytest
import torch
from fastapi.testclient import TestClient

import routelens as rl
from routelens.trace import estimate as est
from routelens.trace.attention import block_rows

from servers import LOCAL
from tiny_models import FAMILIES, MAX_POS, PROMPT, TinyTokenizer

NAMES = sorted(FAMILIES)
LONG = [(7 * i + 3) % 97 for i in range(MAX_POS)]  # as long as the tiny models read


def wrap(name: str) -> rl.Model:
    return rl.wrap(FAMILIES[name](), TinyTokenizer(), name=f"tiny-{name}")


def tensors_of(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in tensors_of(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in tensors_of(v)]
    return []


@pytest.mark.parametrize("name", NAMES)
def test_capture_keeps_nothing_quadratic_per_layer(name):
    """A capture holds x[0..L] ([T, d] each) and the calls' masks: one T x T tensor per attention
    kind (shared by the layers of that kind), never one per layer or per head."""
    model = wrap(name)
    trace = model.trace(LONG, store=False)
    cap, t, a = trace.capture, len(LONG), model.adapter
    assert [tuple(cap.resid(i).shape) for i in range(a.n_layers + 1)] == [(t, a.d_model)] * (a.n_layers + 1)
    quadratic = {id(x): x for call in cap.calls for x in tensors_of((call.args, call.kwargs))
                 if x.dim() >= 2 and tuple(x.shape[-2:]) == (t, t)}
    assert len(quadratic) <= est.n_mask_kinds(a)
    assert all(x.shape[:-2].numel() == 1 for x in quadratic.values())  # no heads, no batch
    # the estimate counts that (its rotary tables are head_dim wide: partial rotary is narrower)
    assert 0.85 * est.kept_bytes(a, t) <= cap.kept_bytes() <= 1.15 * est.kept_bytes(a, t)


@pytest.mark.parametrize("name", NAMES)
def test_a_replayed_layer_is_the_forward_pass_bit_for_bit(name):
    """Replaying block l on the stored x[l] gives the very x[l+1] the forward pass computed."""
    trace = wrap(name).trace(PROMPT, store=False)
    for layer in range(trace.n_layers):
        assert torch.equal(trace.capture.layers[layer].resid_out, trace.resid(layer + 1)), layer


@pytest.mark.parametrize("name", ["llama", "gemma2", "gpt2", "gpt_neox", "mistral"])
def test_pattern_rows_of_any_positions_are_the_rows_of_the_whole_pattern(name, monkeypatch):
    """Rows asked for alone, in any order and in blocks smaller than the prompt, are the very rows of
    the whole pattern; each row is a distribution over the keys it may see."""
    import routelens.trace.attention as attention

    trace = wrap(name).trace(LONG, store=False)
    call = trace.capture.layers[trace.n_layers - 1].attention
    whole = call.pattern()
    assert torch.allclose(whole.float().sum(-1), torch.ones(whole.shape[:2]), atol=1e-5)
    assert float(torch.triu(whole.float(), diagonal=1).abs().max()) == 0.0
    monkeypatch.setattr(attention, "ROW_BLOCK_ELEMENTS", 3 * whole.shape[0] * whole.shape[-1])
    picked = [40, 3, 63, 0, 17]
    assert block_rows(whole.shape[0], whole.shape[-1]) == 3
    assert torch.allclose(call.pattern_rows(picked), whole[:, picked], atol=1e-7, rtol=0)


def test_a_route_replays_each_layer_once_and_the_store_keeps_the_residual_stream_only(tmp_path):
    model = wrap("llama")
    trace = model.trace(PROMPT, store=False)
    trace.graph(target=-1, threshold=0.04)
    assert trace.capture.layers.replayed == trace.n_layers  # top-down, one replay per layer
    from safetensors import safe_open

    store = rl.TraceStore(tmp_path / "store")
    model.trace(PROMPT, store=store)
    (blob,) = list((tmp_path / "store").rglob("*.safetensors"))
    with safe_open(str(blob), framework="pt") as f:
        names = set(f.keys())
    assert names == {"last_logits"} | {f"resid.{i}" for i in range(trace.n_layers + 1)}


def test_a_stored_trace_replays_to_the_same_route_and_check(tmp_path):
    """Read back, a trace has no recorded calls: they are rebuilt without running any block, and
    its route and exactness check equal a fresh trace's."""
    model = wrap("gemma3_text")
    store = rl.TraceStore(tmp_path / "store")
    fresh = model.trace(PROMPT, store=store)
    again = model.trace(PROMPT, store=store)
    assert again.capture.extra.get("stored") and again.capture.calls is None
    assert again.check().ok
    assert json.dumps(again.graph(threshold=0.0).to_dict()) == json.dumps(fresh.graph(threshold=0.0).to_dict())


def test_estimates_grow_with_the_prompt_and_name_its_parts():
    model = wrap("llama")
    small, large = est.estimate(model.adapter, 16), est.estimate(model.adapter, 64)
    assert 0 < small.kept_bytes < large.kept_bytes and small.peak_bytes < large.peak_bytes
    assert 0 < small.forward_seconds < large.forward_seconds < large.route_seconds
    with pytest.raises(ValueError):
        est.estimate(model.adapter, 0)


def test_cli_dry_run_prints_the_estimate_and_traces_nothing(tmp_path, monkeypatch, capsys):
    from routelens import cli
    from routelens.trace import capture

    from tiny_models import save_tiny_model

    save_tiny_model(tmp_path / "m", seed=3)
    monkeypatch.setattr(capture, "run_with_capture", lambda *a, **k: pytest.fail("a dry run traced"))
    assert cli.main(["trace", str(tmp_path / "m"), "the capital of france is", "--dry-run", "--no-store"]) == 0
    out = capsys.readouterr().out
    assert "tokens (estimate, nothing traced)" in out and "MiB" in out and " s for the forward pass" in out


def test_server_estimate_and_budget(tmp_path):
    from routelens.server.app import create_app
    from routelens.server.config import load_config

    from tiny_models import save_tiny_model

    save_tiny_model(tmp_path / "ckpt", seed=3)
    (tmp_path / "c.json").write_text(json.dumps({"models": {"tiny": "ckpt"}, "default_model": "tiny", "debug": True}))
    config = load_config(tmp_path / "c.json")
    with TestClient(create_app(config, preload=False), base_url=LOCAL) as c:
        body = {"model": "tiny", "prompt": "the capital of france is"}
        r = c.post("/api/estimate", json=body)
        assert r.status_code == 200, r.text
        e = r.json()
        assert e["fits"] is True and e["why"] is None
        assert e["estimate"]["peak_bytes"] > e["estimate"]["kept_bytes"] > 0
        traced = c.post("/api/trace", json=body).json()
        assert traced["estimate"] == e["estimate"]  # the same estimate before and with the trace
        assert len(traced["tokens"]) == e["n_tokens"]
        assert traced["measured"]["kept_bytes"] > 0 and traced["measured"]["forward_seconds"] > 0
    config.max_trace_memory_mb = e["estimate"]["peak_bytes"] / 2**20 / 2  # half of what it needs
    with TestClient(create_app(config, preload=False), base_url=LOCAL) as c:
        e = c.post("/api/estimate", json=body).json()
        assert e["fits"] is False and "max_trace_memory_mb" in e["why"]
        r = c.post("/api/trace", json=body)
        assert r.status_code == 413 and "max_trace_memory_mb" in r.json()["error"]["message"]


def test_the_time_estimate_learns_from_the_forward_passes_that_ran(monkeypatch):
    """After a trace, the forward-time estimate for its length is the time that pass took (the
    median ratio of the passes seen: one here); passes shorter than LEARN_FROM_TOKENS teach nothing
    (their time is mostly overhead, which does not grow with T)."""
    model = wrap("llama")
    before = model.estimate(PROMPT).forward_seconds
    model.trace(PROMPT, store=False)
    assert model.estimate(PROMPT).forward_seconds == before  # 10 tokens: too short to learn from
    monkeypatch.setattr(est, "LEARN_FROM_TOKENS", 1)
    trace = model.trace(PROMPT[:-1], store=False)
    after = model.estimate(PROMPT[:-1]).forward_seconds
    assert after == pytest.approx(trace.capture.forward_seconds, rel=1e-9)
    assert before > 0 and model.estimate(LONG).forward_seconds > after


def test_a_model_switched_to_sdpa_by_its_user_still_traces_exactly(tmp_path):
    """routelens switches the model back to its own attention before it traces, replays or reads a
    stored trace back (sdpa would record nothing, and would build a boolean mask)."""
    model = wrap("llama")
    store = rl.TraceStore(tmp_path / "store")
    fresh = model.trace(PROMPT, store=store)
    for reads in (lambda: model.trace(PROMPT, store=False), lambda: model.trace(PROMPT, store=store)):
        model.hf_model.set_attn_implementation("sdpa")
        trace = reads()
        assert trace.check().ok
        assert json.dumps(trace.graph(threshold=0.0).to_dict()) == json.dumps(fresh.graph(threshold=0.0).to_dict())


LAYER_FIELDS = ("resid_in", "attn_in", "attn_out", "attn_write", "ffn_in", "ffn_act", "ffn_out", "ffn_write", "resid_out")


@pytest.mark.parametrize("name", NAMES)
def test_layers_kept_from_the_forward_pass_are_what_a_replay_rebuilds(name):
    """`keep_layers_bytes` keeps layers as the forward pass computed them: bit for bit what a
    replay rebuilds; a route then replays none of them and draws the very same graph."""
    from routelens.trace.capture import replay_layer

    model = wrap(name)
    warm = model.trace(LONG, store=False, keep_layers_bytes=2**30)
    cold = model.trace(LONG, store=False)
    assert warm.capture.layers.seeded() == list(range(warm.n_layers))
    for layer in range(warm.n_layers):
        kept, again = warm.capture.layers.cache.seeded[layer], replay_layer(warm.capture, layer)
        for field in LAYER_FIELDS:
            x, y = getattr(kept, field), getattr(again, field)
            assert (x is None) == (y is None) and (x is None or torch.equal(x, y)), (layer, field)
        assert torch.equal(kept.pattern, again.pattern)
    assert json.dumps(warm.graph(threshold=0.04).to_dict()) == json.dumps(cold.graph(threshold=0.04).to_dict())
    assert warm.capture.layers.replayed == 0 and cold.capture.layers.replayed == cold.n_layers


def test_a_smaller_budget_keeps_the_top_layers_only_and_the_rest_is_replayed():
    model = wrap("mistral")  # 3 layers
    full = model.trace(LONG, store=False, keep_layers_bytes=2**30)
    one = full.capture.layers.cache.seeded[full.n_layers - 1].nbytes()
    trace = model.trace(LONG, store=False, keep_layers_bytes=one + one // 2)
    assert trace.capture.layers.seeded() == [trace.n_layers - 1]
    trace.graph(threshold=0.04)
    assert trace.capture.layers.replayed == trace.n_layers - 1
    trace.capture.layers.drop_seeds()
    assert trace.capture.layers.seeded() == []
    with pytest.raises(rl.InvalidArgumentError):
        model.trace(LONG, store=False, keep_layers_bytes=-1)


def test_a_trace_is_freed_as_soon_as_it_is_dropped_without_the_cycle_collector():
    """No reference cycle holds a trace's tensors: a server drops traces all day, and Python's full
    garbage collection (which frees cycles) runs rarely; the soak test saw 2 MB more per trace."""
    import gc
    import weakref

    model = wrap("llama")
    gc.disable()
    try:
        trace = model.trace(LONG, store=False, keep_layers_bytes=2**30)
        trace.graph(threshold=0.04)
        trace.capture.layers[0]
        trace.why_attends(1, 0, query=-1, key=0)
        gone = weakref.ref(trace.capture.resid(0))
        del trace
        assert gone() is None
    finally:
        gc.enable()


@pytest.mark.parametrize("name", ["llama", "gemma2", "gpt_neox"])
def test_a_heads_write_into_one_position_equals_its_parts_summed(name):
    """decompose.head_writes_at (values mixed first, no [H, T, d] tensor) equals the sum over
    sources of A[h, pos, j] * s_pos * U[h, j] from the full decomposition."""
    from routelens.trace.decompose import attention_parts, head_writes_at

    trace = wrap(name).trace(LONG, store=False)
    for layer in range(trace.n_layers):
        cap = trace.capture.layers[layer]
        parts = attention_parts(trace.adapter, cap, layer)
        for pos in (0, 17, len(LONG) - 1):
            full = torch.einsum("hj,hjd->hd", parts.rows([pos])[:, 0], parts.head_writes)
            if parts.scale is not None:
                full = full * parts.scale[pos]
            mine = head_writes_at(trace.adapter, cap, layer, pos)
            assert float((mine - full).abs().max() / full.abs().max()) <= 1e-5
