"""Contrastive routes and direct logit attribution (routes-math.md section 8) against a naive
float64 reference: the parts of each node come from tests/reference.py (loops over heads and
sources, the model's own hooks), the contrast direction from the final norm's formula written out
here, and the logit difference from the model's own forward pass."""

from __future__ import annotations

import functools
import math

import pytest
import torch

import routelens as rl
from routelens.errors import InvalidArgumentError

from reference import Reference, final_norm, norm_eps, rms_gain
from tiny_models import FAMILIES, PROMPT, TinyTokenizer

# Families whose logits are neither soft-capped nor scaled: there the pre-cap logit difference the
# attribution sums to is the model's own.
NAMES = sorted(n for n in FAMILIES if n not in ("gemma2", "gemma3_text"))
T = len(PROMPT)
TOL = 1e-5


@functools.lru_cache(maxsize=None)
def bundle(name: str):
    hf = FAMILIES[name]()
    model = rl.wrap(hf, TinyTokenizer(), name=f"tiny-{name}")
    return hf, model, model.trace(PROMPT, store=False), Reference(hf, PROMPT)


def own_logits(hf, pos: int) -> torch.Tensor:
    with torch.no_grad():
        return hf(torch.tensor([PROMPT])).logits[0, pos].double()


def naive_direction(hf, y: torch.Tensor, token: int, foil: int) -> torch.Tensor:
    """w with w . z = (W_U[token] - W_U[foil]) . norm_frozen_at_y(z), by the norm's formula."""
    norm = final_norm(hf)
    y = y.double()
    u = (hf.get_output_embeddings().weight[token] - hf.get_output_embeddings().weight[foil]).double().detach()
    if isinstance(norm, torch.nn.LayerNorm):
        std = math.sqrt(float(((y - y.mean()) ** 2).mean()) + norm_eps(norm))
        g = norm.weight.double().detach()
        v = g * u / std
        return v - v.mean()  # (g / std) * (z - mean z): the centring moves onto w
    rms = math.sqrt(float((y * y).mean()) + norm_eps(norm))
    return rms_gain(hf, norm).double() * u / rms


def contrast_importances(w: torch.Tensor, y: torch.Tensor, parts: dict) -> dict:
    """c_k = max(|D| - |D - w.z_k|, 0) / sum, D = w.y (loops over parts, float64)."""
    total = float(w @ y.double())
    prox = {k: max(abs(total) - abs(total - float(w @ z.double())), 0.0) for k, z in parts.items()}
    s = sum(prox.values())
    if s <= 0:  # degenerate (section 6 on the contrast): shares of |w . z_k|
        prox = {k: abs(float(w @ z.double())) for k, z in parts.items()}
        s = sum(prox.values())
    return {k: v / s for k, v in prox.items()}


def two_tokens(tr, pos: int) -> tuple[int, int]:
    preds = tr.predictions(k=2)[pos]
    return preds[0]["id"], preds[1]["id"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("pos", [4, T - 1])
def test_contrastive_importances_equal_naive_reference(name, pos):
    hf, _model, tr, ref = bundle(name)
    token, foil = two_tokens(tr, pos)
    d = tr.contrast(pos, token, foil)
    w = naive_direction(hf, ref.layers[-1].x_out[pos], token, foil)
    assert float((d.w.double() - w).abs().max() / w.abs().max()) <= TOL
    for layer in range(tr.n_layers):
        arow, frow, _ = tr.contrast_rows(d, layer)
        y, parts = ref.attention_node(layer, pos)
        c = contrast_importances(w, y, parts)
        assert abs(arow.resid - c["resid"]) <= TOL
        assert abs(arow.bias - c.get("bias", 0.0)) <= TOL
        if "ffn" in c:
            assert abs(arow.ffn - c["ffn"]) <= TOL
        for (h, j), value in ((k, v) for k, v in c.items() if isinstance(k, tuple)):
            assert abs(float(arow.heads[h, j]) - value) <= TOL, (layer, h, j)
        if frow is not None:
            y, parts = ref.ffn_node(layer, pos)
            c = contrast_importances(w, y, parts)
            assert abs(frow.resid - c["resid"]) <= TOL and abs(frow.ffn - c["ffn"]) <= TOL


@pytest.mark.parametrize("name", NAMES)
def test_attributions_sum_to_the_logit_difference(name):
    """Over the top node's parts, and over every head, bias, FFN and the embedding, the signed
    attributions plus the constant bias terms give the model's own logit difference (1e-4)."""
    hf, _model, tr, _ref = bundle(name)
    pos = T - 1
    token, foil = two_tokens(tr, pos)
    logits = own_logits(hf, pos)
    diff = float(logits[token] - logits[foil])
    d = tr.contrast(pos, token, foil)
    top = tr.contrast_rows(d, tr.n_layers - 1)[2]
    if top["ffn"] is not None:  # sequential: the top node's parts are m and f
        parts = float(top["ffn"]["resid"] + top["ffn"]["ffn"])
    else:  # parallel: x[L-1], every head and source, the bias and the FFN write
        a = top["attn"]
        parts = float(a["resid"] + a["heads"].sum() + (a["bias"] if a["bias"] is not None else 0) + a["ffn"])
    assert abs(parts + d.constant - diff) <= 1e-4 * max(1.0, abs(diff))
    report = tr.logit_attribution(pos, token, foil)
    assert abs(report["total"] - diff) <= 1e-4 * max(1.0, abs(diff))
    assert abs(report["logit_diff"] - diff) <= 1e-4 * max(1.0, abs(diff))
    if name in ("llama", "mistral", "qwen2", "qwen3", "gemma", "mixtral"):  # RMSNorm, no unembedding bias
        assert report["constant"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_neuron_attributions_are_each_neurons_direct_effect(name):
    hf, _model, tr, ref = bundle(name)
    pos, layer = T - 1, 1
    token, foil = two_tokens(tr, pos)
    w = naive_direction(hf, ref.layers[-1].x_out[pos], token, foil)
    labels, _coef, writes, _bias = ref.neuron_parts(layer, pos)
    expected = {lab: float(w @ writes[k]) for k, lab in enumerate(labels)}
    got = tr.neuron_attribution(layer, pos, token, foil, k=len(labels))
    assert len(got) == len(labels)
    for entry in got:
        assert entry["dla"] == pytest.approx(expected[entry["neuron"]], abs=1e-5)
    assert abs(got[0]["dla"]) == pytest.approx(max(abs(v) for v in expected.values()), abs=1e-5)
    # the FFN write's attribution is the sum of its neurons' (plus the output bias's)
    ffn = tr.logit_attribution(pos, token, foil)["layers"][layer]["ffn"]
    bias = float(w @ _bias.double()) if _bias is not None else 0.0
    assert ffn == pytest.approx(sum(expected.values()) + bias, abs=1e-4)


@pytest.mark.parametrize("name", ["llama", "gpt_neox"])
def test_contrastive_route_uses_the_contrast_on_the_chain_only(name):
    _hf, _model, tr, _ref = bundle(name)
    pos = T - 1
    token, foil = two_tokens(tr, pos)
    g = tr.graph(pos, 0.0, foil=foil)
    plain = {(e["source"], e["target"], e["kind"]): e["weight"] for e in tr.graph(pos, 0.0).edges}
    assert g.target["token_id"] == token and g.target["foil_id"] == foil
    assert g.target["definition"].startswith("contrastive proximity")
    changed = 0
    for e in g.edges:
        at = int(e["target"].split(":")[2])
        if e["kind"] == "ffn":  # the FFN node's two edges carry one weight: checked by the x node's row
            continue
        if at == pos:  # on the chain: the contrastive row's weight
            changed += abs(e["weight"] - plain[(e["source"], e["target"], e["kind"])]) > 1e-6
        else:  # off the chain: vector proximity, the plain route's weight
            assert e["weight"] == pytest.approx(plain[(e["source"], e["target"], e["kind"])], abs=1e-7)
    assert changed > 0
    assert g.to_dict()["target"]["foil"] == tr.model.token_strings([foil])[0]


def test_bad_foils_are_refused_with_what_to_do():
    _hf, _model, tr, _ref = bundle("llama")
    token, _ = two_tokens(tr, T - 1)
    with pytest.raises(InvalidArgumentError, match="foil is the target token itself"):
        tr.graph(-1, foil=token)
    with pytest.raises(InvalidArgumentError, match="out of range"):
        tr.graph(-1, foil=10_000)
    with pytest.raises(InvalidArgumentError, match="one target position"):
        tr.graph("all", foil=3)
    with pytest.raises(InvalidArgumentError, match="not one; pick a single token"):
        tr.graph(-1, foil="ab")  # two bytes: two tokens of the tiny tokenizer


@pytest.mark.slow
def test_ioi_contrastive_route_reaches_the_indirect_object_through_upper_attention():
    """"When Mary and John went to the store, John gave a drink to": " Mary" rather than " John".
    The contrastive route reaches the first " Mary" through attention in the upper half of the
    layers (the name movers of the IOI circuit write it into the last position)."""
    model = rl.load("smollm2-135m-instruct")
    tr = model.trace("When Mary and John went to the store, John gave a drink to", store=False)
    g = tr.graph(-1, 0.04, token=" Mary", foil=" John")
    assert g.target["token"] == " Mary" and g.target["foil"] == " John" and g.target["logit_diff"] > 0
    mary = tr.tokens.index(" Mary")
    upper = [e for e in g.edges if e["kind"] == "attn" and e["source"].endswith(f":{mary}")
             and int(e["source"].split(":")[1]) >= tr.n_layers // 2]
    assert upper, "no attention edge from the first ' Mary' in the upper half of the layers"
    report = tr.logit_attribution(-1, " Mary", " John")
    assert report["total"] == pytest.approx(report["logit_diff"], abs=1e-3)


def test_a_contrastive_graph_file_names_both_tokens(tmp_path):
    _hf, model, tr, _ref = bundle("llama")
    token, foil = two_tokens(tr, T - 1)
    g = tr.graph(-1, 0.04, foil=foil)
    g.save(tmp_path / "route.svg")
    names = model.token_strings([token, foil])
    svg = (tmp_path / "route.svg").read_text()
    assert f"{names[0]!r} rather than {names[1]!r}" in svg.replace("&#x27;", "'").replace("&apos;", "'")
    back = rl.load_graph(g.save(tmp_path / "route.json"))
    assert back.target["foil_id"] == foil and back.target["definition"] == g.target["definition"]


def test_counts_and_ids_of_other_integer_types():
    """k must be a whole number of entries everywhere a list is asked for; a NumPy or torch
    integer is a token id like a Python int."""
    import numpy as np

    _hf, _model, tr, _ref = bundle("llama")
    token, foil = two_tokens(tr, T - 1)
    for k in (-1, 0, 1.5, True):
        for call in (lambda: tr.neuron_attribution(1, -1, foil=foil, k=k), lambda: tr.neurons(1, -1, k=k),
                     lambda: tr.top_tokens("block", 1, -1, k=k), lambda: tr.predictions(k=k),
                     lambda: tr.block_write_tokens(1, -1, "ffn", k=k)):
            with pytest.raises(InvalidArgumentError, match="k must be a whole number"):
                call()
    assert tr.contrast(-1, None, np.int64(foil)).foil_id == foil == tr.contrast(-1, None, torch.tensor(foil)).foil_id
    assert "rather than" in repr(tr.graph(-1, 0.04, foil=foil))
