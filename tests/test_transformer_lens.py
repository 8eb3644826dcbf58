"""The TransformerLens backend (routelens/models/adapters/transformer_lens.py, docs/transformer-lens.md).

(a) parity: the same weights through the native adapter and through a TransformerBridge (raw, and
    with fold_ln) give the same route graph to 1e-5 (every edge, both norms) and the same neurons;
(b) compatibility mode (fold_ln, center_writing_weights, center_unembed, fold_value_biases): the
    parts are exact: check() passes, they rebuild the bridge's own resid_post hooks, and the logit
    lens of the last residual is the bridge's logits; folded value biases sit in the bias part;
(c) rl.load of a model type with no native adapter boots it through TransformerLens and says so;
(d) refusals: why_attends, post-norm models, HookedTransformer, no TransformerLens installed.
"""

from __future__ import annotations

import copy
import functools
import logging

import pytest
import torch
import transformer_lens  # noqa: F401  the README's test command installs the extra: never skipped

import routelens as rl
from routelens.errors import UnsupportedArchitectureError
from routelens.models import loading
from routelens.trace.decompose import attention_parts, ffn_write

from tiny_models import FAMILIES, PROMPT, VOCAB, TinyTokenizer, _build

TOL = 1e-5
LENS_TOL = 1e-4
PARITY = ["llama", "gpt2", "gpt_neox"]  # GQA + biases; LayerNorm + value biases; parallel blocks + rotary
FOLD_LN = dict(fold_ln=True, center_writing_weights=False, center_unembed=False, fold_value_biases=False)
ALL_PROCESSING = dict(fold_ln=True, center_writing_weights=True, center_unembed=True, fold_value_biases=True)


def word_tokenizer():
    """A real transformers tokenizer over the tiny vocabulary (a bridge wants one; no hub access)."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({f"w{i}": i for i in range(VOCAB)}, unk_token="w0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="w0")


def make_bridge(hf, processing: dict | None = None):
    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_transformers("tiny", hf_model=hf, tokenizer=word_tokenizer())
    if processing is not None:
        bridge.enable_compatibility_mode(disable_warnings=True, **processing)
    return bridge


@functools.lru_cache(maxsize=None)
def native(name: str):
    return rl.wrap(FAMILIES[name](), TinyTokenizer(), name=f"native-{name}")


@functools.lru_cache(maxsize=None)
def through_tl(name: str, mode: str):
    processing = {"raw": None, "fold_ln": FOLD_LN, "all": ALL_PROCESSING}[mode]
    hf = copy.deepcopy(native(name).hf_model)  # the very weights the native model has
    return rl.wrap(make_bridge(hf, processing))


def edges(graph) -> dict[tuple[str, str, str], dict]:
    return {(e["source"], e["target"], e["kind"]): e for e in graph.edges}


@pytest.mark.parametrize("mode", ["raw", "fold_ln"])
@pytest.mark.parametrize("name", PARITY)
def test_parity_with_native_adapter(name: str, mode: str) -> None:
    tl_model = through_tl(name, mode)
    assert tl_model.facts()["backend"] == "transformer-lens"
    assert native(name).facts()["backend"] == "transformers"
    for norm in (1, 2):
        a = native(name).trace(PROMPT, norm=norm, store=False)
        b = tl_model.trace(PROMPT, norm=norm, store=False)
        assert b.check().ok
        ga, gb = a.graph(target="all", threshold=0.0), b.graph(target="all", threshold=0.0)
        ea, eb = edges(ga), edges(gb)
        assert ea.keys() == eb.keys() and len(ea) > 0
        for key, edge in ea.items():
            assert abs(edge["weight"] - eb[key]["weight"]) <= TOL, (key, edge["weight"], eb[key]["weight"])
            for head, w in edge.get("heads", {}).items():
                assert abs(w - eb[key]["heads"].get(head, 0.0)) <= TOL, (key, head)
        for node_id, node in ga.nodes.items():
            assert abs(node.get("bias", 0.0) - gb.nodes[node_id].get("bias", 0.0)) <= TOL, node_id
        for pos in (1, len(PROMPT) - 1):
            na, nb = a.neurons(1, pos, k=10), b.neurons(1, pos, k=10)
            assert [n["index"] for n in na[:3]] == [n["index"] for n in nb[:3]]
            for x, y in zip(na, nb):
                assert abs(x["importance"] - y["importance"]) <= TOL and abs(x["activation"] - y["activation"]) <= TOL


@pytest.mark.parametrize("name", PARITY)
def test_compatibility_mode_parts_are_exact(name: str) -> None:
    """HookedTransformer's numerics (all processing on): centring changes the residual stream itself,
    so importances may differ from native; the decomposition must still be exact."""
    model = through_tl(name, "all")
    bridge = model.hf_model
    assert model.facts()["processing"] == {"compatibility_mode": True, "weights_processed": True}
    trace = model.trace(PROMPT, store=False)
    report = trace.check()
    assert report.ok, str(report)
    ids = torch.tensor([PROMPT])
    with torch.no_grad():
        logits, cache = bridge.run_with_cache(ids)
    for layer in range(trace.n_layers):
        cap = trace.capture.layers[layer]
        rebuilt = cap.resid_in.float() + attention_parts(model.adapter, cap, layer).write() + ffn_write(
            model.adapter, cap, layer)
        own = cache[f"blocks.{layer}.hook_resid_post"][0].float()
        assert (rebuilt - own).abs().max() / own.abs().max() <= TOL
        assert torch.equal(trace.resid(layer + 1), cache[f"blocks.{layer}.hook_resid_post"][0])
    lens = model.adapter.unembed(trace.resid(trace.n_layers)).float()
    assert (lens - logits[0]).abs().max() / logits[0].abs().max() <= LENS_TOL
    assert abs(trace.importance_sums_error()) <= 1e-5


def test_folded_value_biases_move_to_the_bias_part() -> None:
    """fold_value_biases: b_O becomes b_O + sum_h W_O[h] b_V[h] (each pattern row sums to 1), the
    per-(head, source) parts lose b_V; the attention write is the same as native."""
    hf = copy.deepcopy(native("gpt2").hf_model)
    b_v = {l: blk.attn.c_attn.bias.detach()[2 * 48:].view(4, 12).clone() for l, blk in enumerate(hf.transformer.h)}
    w_o = {l: blk.attn.c_proj.weight.detach().view(4, 12, 48).clone() for l, blk in enumerate(hf.transformer.h)}
    b_o = {l: blk.attn.c_proj.bias.detach().clone() for l, blk in enumerate(hf.transformer.h)}
    model = rl.wrap(make_bridge(hf, dict(fold_ln=False, center_writing_weights=False, center_unembed=False,
                                         fold_value_biases=True)))
    trace = model.trace(PROMPT, store=False)
    assert trace.check().ok
    reference = native("gpt2").trace(PROMPT, store=False)
    for layer in range(trace.n_layers):
        _, bias = model.adapter.out_proj(layer)
        expected = b_o[layer] + torch.einsum("hk,hkd->d", b_v[layer], w_o[layer])
        assert torch.allclose(bias, expected, atol=1e-6)
        ours = attention_parts(model.adapter, trace.capture.layers[layer], layer).write()
        theirs = attention_parts(native("gpt2").adapter, reference.capture.layers[layer], layer).write()
        assert (ours - theirs).abs().max() / theirs.abs().max() <= TOL


def test_wrap_uses_the_bridges_tokenizer_and_refuses_why_attends() -> None:
    model = through_tl("gpt2", "raw")
    assert model.tokenizer is model.hf_model.tokenizer
    trace = model.trace("w3 w17 w42", store=False)
    assert trace.token_ids == [3, 17, 42]
    with pytest.raises(UnsupportedArchitectureError, match="why a head attends"):
        trace.why_attends(1, 0, 2, 1)


def test_post_norm_bridge_is_refused() -> None:
    import transformers

    cfg = transformers.OpenAIGPTConfig(vocab_size=VOCAB, n_embd=48, n_layer=2, n_head=4, n_positions=64)
    with pytest.raises(UnsupportedArchitectureError, match="post-norm"):
        rl.wrap(make_bridge(_build(transformers.OpenAIGPTLMHeadModel, cfg, 23)))


def test_hooked_transformer_is_refused_with_what_to_use() -> None:
    HookedTransformer = type("HookedTransformer", (torch.nn.Module,), {"__module__": "transformer_lens.HookedTransformer"})
    with pytest.raises(UnsupportedArchitectureError, match="enable_compatibility_mode"):
        rl.wrap(HookedTransformer(), TinyTokenizer())


def save_tiny_mpt(folder) -> None:
    """A tiny MPT (ALiBi, no native routelens adapter, a TransformerLens bridge) as a model folder."""
    import transformers

    cfg = transformers.MptConfig(vocab_size=VOCAB, d_model=48, expansion_ratio=2, n_layers=2, n_heads=4,
                                 max_seq_len=64, no_bias=False)
    _build(transformers.MptForCausalLM, cfg, 22).save_pretrained(folder)
    word_tokenizer().save_pretrained(folder)


def test_load_boots_an_unsupported_model_type_through_transformer_lens(tmp_path, caplog) -> None:
    from routelens.models.adapters import supported_model_types

    assert "mpt" not in supported_model_types()
    save_tiny_mpt(tmp_path / "mpt")
    with caplog.at_level(logging.WARNING, logger="routelens"):
        model = rl.load(str(tmp_path / "mpt"), device="cpu")
    assert "TransformerLens" in caplog.text and "'mpt'" in caplog.text
    facts = model.facts()
    assert facts["backend"] == "transformer-lens" and facts["model_type"] == "mpt"
    trace = model.trace("w3 w17 w42 w8 w17", store=False)
    assert trace.check().ok
    assert trace.graph(target=-1, threshold=0.04).edge_count() > 0


def test_refusal_names_the_extra_when_transformer_lens_is_missing(monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "transformer_lens" else real(n, *a))
    reason = loading.transformer_lens_support(object())
    assert 'pip install "routelens[transformer-lens]"' in reason


def test_kept_layers_and_a_stored_trace_replay_through_the_bridge(tmp_path) -> None:
    """Layers kept from the forward pass, and a trace read back from the store (its block calls
    recorded again with each block swapped for the identity), give the same graph and stay exact."""
    model = through_tl("llama", "all")
    kept = model.trace(PROMPT, store=False, keep_layers_bytes=10**8)
    assert kept.capture.layers.seeded() == [0, 1]
    first = edges(kept.graph(target=-1, threshold=0.01))
    assert kept.capture.layers.replayed == 0
    store = rl.TraceStore(tmp_path / "store")
    model.trace(PROMPT, store=store).graph(target=-1, threshold=0.01)
    again = model.trace(PROMPT, store=store)
    assert again.capture.calls is None  # read back: no block calls until a replay asks
    assert again.check().ok
    second = edges(again.graph(target=-1, threshold=0.01))
    assert first.keys() == second.keys()
    assert all(abs(first[k]["weight"] - second[k]["weight"]) <= TOL for k in first)
    for block in model.hf_model.blocks:
        assert "forward" not in vars(block) and "forward" not in vars(block.original_component)


@pytest.mark.parametrize("is_decoder, match", [(False, "not causal"), (True, "do not rebuild")])
def test_probe_refuses_what_it_cannot_prove_exact(is_decoder: bool, match: str) -> None:
    """A bridge routelens has never seen must pass a short probe: causal attention, exact parts
    (BERT: bidirectional; as a decoder, post-norm blocks whose parts do not sum to the residual)."""
    import transformers

    cfg = transformers.BertConfig(vocab_size=VOCAB, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=96, is_decoder=is_decoder, architectures=["BertLMHeadModel"])
    with pytest.raises(UnsupportedArchitectureError, match=match):
        rl.wrap(make_bridge(_build(transformers.BertLMHeadModel, cfg, 3)))
