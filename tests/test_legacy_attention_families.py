"""GPT-Neo, Bloom and Falcon: families whose transformers attention is computed inline (no
AttentionInterface), routed through routelens by their adapters (routelens/models/adapters/inline.py).

For every tiny configuration each family declares (its `tiny` overrides on the conformance kit's
base config): the routed model's logits and attention weights are bit for bit those of an untouched
copy run by transformers in eager (in the "routelens" mode and back in eager, generate included);
the trace's check passes (writes and residuals rebuilt to 1e-5, logit lens to 1e-4); the recorded
pattern equals transformers' own `output_attentions` to 1e-6; the parts rebuild the writes that
independent hooks read from the untouched copy; a layer replayed from freshly recorded block calls
(a trace served from the store) is the same.
"""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

import routelens as rl
from routelens.errors import UnsupportedArchitectureError
from routelens.models.adapters import adapter_for, register_family, unregister_family
from routelens.models.adapters import inline
from routelens.models.adapters.bloom import BLOOM
from routelens.models.adapters.falcon import FALCON
from routelens.models.adapters.gpt_neo import GPT_NEO
from routelens.trace import attention as rl_attention
from routelens.trace.capture import record_block_calls
from routelens.trace.decompose import attention_parts, check_capture, ffn_write

from tiny_models import PROMPT, TinyTokenizer, _perturb

FAMILIES = {"gpt_neo": GPT_NEO, "bloom": BLOOM, "falcon": FALCON}
CASES = [(name, i) for name, family in FAMILIES.items() for i in range(len(family.tiny))]
IDS = [f"{name}-{i}" for name, i in CASES]
# the conformance kit's base config (a tiny dict may override any of it)
BASE = dict(vocab_size=97, hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64)
WRITE_TOL, LENS_TOL, PATTERN_TOL = 1e-5, 1e-4, 1e-6


@pytest.fixture(autouse=True, scope="module")
def registered():
    for family in FAMILIES.values():
        register_family(family)
    yield
    for family in FAMILIES.values():
        unregister_family(family)


def build(name: str, index: int, dtype: torch.dtype = torch.float32, attn: str = "eager", seed: int = 0):
    config = AutoConfig.for_model(name, **{**BASE, "initializer_range": 0.08, **FAMILIES[name].tiny[index]})
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attn).float().eval()
    _perturb(model, seed)
    return model.to(dtype)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def run(model, **kwargs):
    with torch.no_grad():
        return model(torch.tensor([PROMPT]), **kwargs)


def test_routed_modes():
    """routelens's and tests' recording functions wrap the eager one; transformers' kernels do not."""
    for impl, expected in (("eager", True), (rl_attention.NAME, True), ("reference_recording", True),
                           ("sdpa", False), ("flash_attention_2", False), ("flex_attention", False),
                           ("kernels-community/flash-attn", False)):
        config = AutoConfig.for_model("bloom")
        config._attn_implementation_internal = impl
        assert inline.routed(config) is expected, impl


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("name,index", CASES, ids=IDS)
def test_routed_model_is_bit_identical_to_transformers_eager(name, index, dtype):
    model = build(name, index, dtype)
    untouched = copy.deepcopy(model)
    want = run(untouched, output_attentions=True)
    rl.wrap(model, TinyTokenizer())
    assert model.config._attn_implementation == rl_attention.NAME
    for mode in ("routelens", "eager"):
        model.config._attn_implementation_internal = mode
        got = run(model, output_attentions=True)
        assert torch.equal(got.logits, want.logits), mode
        assert all(torch.equal(a, b) for a, b in zip(got.attentions, want.attentions)), mode
    ids = torch.tensor([PROMPT])
    new = model.generate(ids, max_new_tokens=4, do_sample=False)
    assert torch.equal(new, untouched.generate(ids, max_new_tokens=4, do_sample=False))


@pytest.mark.parametrize("name,index", CASES, ids=IDS)
def test_trace_is_exact(name, index):
    model = build(name, index)
    untouched = copy.deepcopy(model)
    want = run(untouched, output_attentions=True)
    wrapped = rl.wrap(model, TinyTokenizer())
    tr = wrapped.trace(PROMPT)
    report = tr.check()
    assert len(report.rows) == tr.n_layers
    for row in report.rows:
        assert max(row["attention"], row["ffn"], row["residual"]) <= WRITE_TOL, str(report)
    assert report.logit_lens_error <= LENS_TOL and report.ok, str(report)
    # the logit lens of the last residual is the model's own logits, at every position
    lens = wrapped.adapter.unembed(tr.resid(tr.n_layers))
    assert rel(lens, want.logits[0]) <= LENS_TOL
    for layer in range(tr.n_layers):
        cap = tr.capture.layers[layer]
        assert rel(cap.pattern, want.attentions[layer][0]) <= PATTERN_TOL
        assert rel(attention_parts(wrapped.adapter, cap, layer).write(), cap.attn_write) <= WRITE_TOL
        assert rel(ffn_write(wrapped.adapter, cap, layer), cap.ffn_write) <= WRITE_TOL


@pytest.mark.parametrize("name,index", CASES, ids=IDS)
def test_writes_are_what_independent_hooks_read(name, index):
    """The attention write is the output projection's output and the FFN write the FFN output
    projection's, read by hooks on the untouched copy (Bloom's modules add the residual themselves)."""
    model = build(name, index)
    untouched = copy.deepcopy(model)
    family = FAMILIES[name]
    seen: dict[str, list[torch.Tensor]] = {"attn": [], "ffn": [], "x": []}
    blocks = untouched.get_submodule(family.layers)
    handles = []
    for block in blocks:
        handles.append(block.get_submodule(family.out_proj).register_forward_hook(
            lambda _m, _a, out: seen["attn"].append(out[0].clone())))
        handles.append(block.get_submodule(family.ffn_out).register_forward_hook(
            lambda _m, _a, out: seen["ffn"].append(out[0].clone())))
        handles.append(block.register_forward_pre_hook(
            lambda _m, args, kwargs: seen["x"].append((args[0] if args else kwargs["hidden_states"])[0].clone()),
            with_kwargs=True))
    run(untouched)
    for handle in handles:
        handle.remove()
    tr = rl.wrap(model, TinyTokenizer()).trace(PROMPT)
    for layer, cap in enumerate(tr.capture.layers):
        assert rel(cap.resid_in, seen["x"][layer]) <= 1e-6
        assert rel(cap.attn_write, seen["attn"][layer]) <= 1e-6
        assert rel(cap.ffn_write, seen["ffn"][layer]) <= 1e-6


@pytest.mark.parametrize("name,index", CASES, ids=IDS)
def test_replay_from_recorded_block_calls(name, index):
    """A trace read back from the store replays layers with block calls recorded by running the
    model with identity blocks (these families' model loops index the blocks' tuple outputs)."""
    wrapped = rl.wrap(build(name, index), TinyTokenizer())
    tr = wrapped.trace(PROMPT)
    before = [tr.capture.layers[i].attn_write.clone() for i in range(tr.n_layers)]
    tr.capture.calls = record_block_calls(wrapped.adapter, tr.capture.token_ids)
    tr.capture.layers.clear()
    for row in check_capture(wrapped.adapter, tr.capture):
        assert max(row["attention"], row["ffn"], row["residual"]) <= WRITE_TOL
    for i in range(tr.n_layers):
        assert torch.equal(tr.capture.layers[i].attn_write, before[i])


def test_gpt_neo_local_window_cuts_sources():
    model = build("gpt_neo", 0)  # layer 0 local, window 4
    assert model.config.attention_layers[0] == "local" and model.config.window_size < len(PROMPT)
    tr = rl.wrap(model, TinyTokenizer()).trace(PROMPT)
    pattern = tr.capture.layers[0].pattern
    last = len(PROMPT) - 1
    assert float(pattern[:, last, : last - 3].abs().max()) == 0.0
    assert bool((pattern[:, last, last - 3 :] > 0).all())


def test_falcon_kv_heads_and_layouts():
    for index, kv in ((0, 2), (2, 1), (3, 4)):
        adapter = adapter_for(build("falcon", index))
        assert adapter.n_kv_heads == kv
        call_key = rl.wrap(adapter.model, TinyTokenizer()).trace(PROMPT).capture.layers[0].attention.key
        assert call_key.shape[1] == kv  # the recorded keys are one per kv head


def test_falcon_loaded_with_sdpa_is_switched_and_exact():
    model = build("falcon", 0, attn="sdpa")  # Falcon's default in from_pretrained
    untouched = build("falcon", 0)  # the same weights, eager (transformers cannot switch an untouched Falcon)
    wrapped = rl.wrap(model, TinyTokenizer())
    assert torch.equal(run(model).logits, run(untouched).logits)
    model.set_attn_implementation("sdpa")  # the user's choice: the original forward, transformers' sdpa
    assert rel(run(model).logits, run(untouched).logits) <= 1e-5
    assert wrapped.trace(PROMPT).check().ok  # switched back for the trace


@pytest.mark.parametrize("override,match", [
    ({"apply_residual_connection_post_layernorm": True}, "apply_residual_connection_post_layernorm"),
    ({"pretraining_tp": 2, "slow_but_exact": True}, "slow_but_exact"),
])
def test_bloom_refusals(override, match):
    config = AutoConfig.for_model("bloom", **{**BASE, **override})
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    with pytest.raises(UnsupportedArchitectureError, match=match):
        rl.wrap(model, TinyTokenizer())


@pytest.mark.parametrize("name,index", CASES, ids=IDS)
def test_why_attends_splits_the_query_key_score(name, index):
    """routes/qk.py probes each attention module on rows at one position (no mask; ALiBi one
    constant per head there) and rebuilds the recorded queries and keys; the pairs sum to the score
    `scale * q . k`. With ALiBi the softmax also reads a position bias that is not split: refused."""
    model = build(name, index)
    tr = rl.wrap(model, TinyTokenizer()).trace(PROMPT)
    last = len(PROMPT) - 1
    if name == "bloom" or getattr(model.config, "alibi", False):
        with pytest.raises(rl.UnsupportedArchitectureError, match="ALiBi"):
            tr.why_attends(tr.n_layers - 1, 1, last, last - 1)
        return
    attribution = tr.why_attends(tr.n_layers - 1, 1, last, last - 1)
    assert float(attribution.contributions.sum()) == pytest.approx(attribution.score, rel=1e-5, abs=1e-6)
