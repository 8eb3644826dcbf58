"""Why a head attends (routes-math.md section 9, routelens/routes/qk.py), on a tiny model of every family.

Covered: rotary (Llama, Mistral, Qwen, Gemma, NeoX, Phi, GPT-J), none (GPT-2, OPT), GQA (4 heads,
2 kv heads), soft-capping (Gemma 2), sliding windows (Mistral, Gemma 2/3), q/k norms (Qwen3, Gemma 3,
Phi's qk_layernorm), parallel blocks (NeoX, Phi, GPT-J), LayerNorm (GPT-2, OPT, NeoX, Phi, GPT-J).

(a) the pairs sum to the score, and the score is `scale * q . k` of the model's own recorded query
    and key (to 1e-5 of `scale |q| |k|`, the largest the score could be: a score near 0 is the sum
    of terms that cancel, and fp32 rounds each term, not the sum);
(b) each side's parts sum to the model's own query / key at that position;
(c) a softmax over the decomposed scores of every visible key (soft-cap applied) is the pattern
    transformers' own eager attention returns with output_attentions=True;
(d) bad arguments are refused clearly; the HTTP endpoint answers the same numbers.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch

import routelens as rl
from routelens.errors import InvalidArgumentError
from routelens.routes import qk

from servers import tiny_app
from tiny_models import FAMILIES, HEADS, PROMPT, SLIDING, TinyTokenizer

NAMES = sorted(FAMILIES)
T = len(PROMPT)
EDGES = [(T - 1, T - 1), (T - 1, T - 3), (5, 2), (1, 0), (T - 1, 0)]  # (query, key); the last is outside windows
TOL = 1e-5


@functools.lru_cache(maxsize=None)
def traced(name: str):
    hf = FAMILIES[name]()
    model = rl.wrap(hf, TinyTokenizer(), name=f"tiny-{name}")
    return hf, model.trace(PROMPT)


@functools.lru_cache(maxsize=None)
def eager_pattern(name: str) -> list[torch.Tensor]:
    """A[l] [H, T, T] from transformers' own eager attention (not routelens')."""
    hf, _ = traced(name)
    before = hf.config._attn_implementation
    try:
        hf.set_attn_implementation("eager")
        with torch.no_grad():
            out = hf(input_ids=torch.tensor([PROMPT]), output_attentions=True, use_cache=False)
    finally:
        hf.set_attn_implementation(before)
    return [a[0].double() for a in out.attentions]


def own_qk(tr, layer: int, head: int, query: int, key: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The model's own query and key vectors of an edge, as its attention recorded them, and the scale."""
    call = tr.capture.layers[layer].attention
    kv = tr.adapter.kv_head_of(head)
    return call.query[0, head, query].double(), call.key[0, kv, key].double(), call.scores_scale()


def visible(tr, layer: int, query: int, key: int) -> bool:
    return key <= query and not qk.masked(tr.capture.layers[layer].attention, query, key)


@pytest.mark.parametrize("name", NAMES)
def test_pairs_sum_to_the_model_score(name):
    _, tr = traced(name)
    heads = sorted({0, HEADS - 1})  # with GQA: both key-value heads
    checked = 0
    for layer in range(tr.n_layers):
        for query, key in EDGES:
            if not visible(tr, layer, query, key):
                continue
            for head in heads:
                r = tr.why_attends(layer, head, query, key)
                q, k, scale = own_qk(tr, layer, head, query, key)
                bound = scale * float(q.norm() * k.norm())
                assert r.scale == scale
                assert r.score == pytest.approx(scale * float(q @ k), rel=1e-12, abs=1e-12)
                assert abs(float(r.contributions.sum()) - r.score) <= TOL * bound, (layer, head, query, key)
                n_bias = int(tr.adapter.out_proj(0)[1] is not None)
                assert r.contributions.shape == (1 + layer * (HEADS + 1 + n_bias) + 1,) * 2
                assert [p["name"] for p in r.query_parts][:: len(r.query_parts) - 1] == ["embed", "bias"]
                assert r.attention == pytest.approx(float(eager_pattern(name)[layer][head, query, key]), abs=1e-6)
                checked += 1
    assert checked >= 2 * tr.n_layers


@pytest.mark.parametrize("name", NAMES)
def test_each_side_sums_to_the_model_query_and_key(name):
    _, tr = traced(name)
    for layer in range(tr.n_layers):
        call = tr.capture.layers[layer].attention
        for pos in (0, 4, T - 1):
            names, q_parts, k_parts = qk.position_parts(tr, layer, pos)
            assert len(names) == q_parts.shape[0] == k_parts.shape[0]
            for parts, own in ((q_parts, call.query[0, :, pos]), (k_parts, call.key[0, :, pos])):
                own = own.double()
                err = float((parts.double().sum(0) - own).abs().max() / own.abs().max())
                assert err <= TOL, (layer, pos, err)


@pytest.mark.parametrize("name", NAMES)
def test_softmax_of_decomposed_scores_is_the_eager_pattern(name):
    _, tr = traced(name)
    pattern = eager_pattern(name)
    capped = masked_seen = 0
    for layer in range(tr.n_layers):
        for query in (4, T - 1):
            for head in sorted({0, HEADS - 1}):
                scores = torch.full((T,), -math.inf, dtype=torch.float64)
                for key in range(query + 1):
                    if not visible(tr, layer, query, key):
                        assert float(pattern[layer][head, query, key]) == 0.0
                        masked_seen += 1
                        continue
                    r = tr.why_attends(layer, head, query, key)
                    s = float(r.contributions.sum())
                    if r.capped is not None:
                        cap = tr.capture.layers[layer].attention.softcap
                        s = cap * math.tanh(s / cap)
                        capped += abs(r.capped - r.score) > 1e-3
                    scores[key] = s
                rebuilt = scores.softmax(0)
                err = float((rebuilt - pattern[layer][head, query]).abs().max())
                assert err <= TOL, (layer, head, query, err)
    if name == "gemma2":
        assert capped, "the soft-cap never bent a score: the test does not exercise it"
    if name in ("mistral", "gemma2", "gemma3_text"):
        assert masked_seen, "no key fell outside a sliding window"


def test_bad_arguments_are_refused_clearly():
    _, tr = traced("mistral")
    with pytest.raises(InvalidArgumentError, match="comes after query"):
        tr.why_attends(0, 0, 3, 5)
    for head in (HEADS, -1):
        with pytest.raises(InvalidArgumentError, match="head .* out of range"):
            tr.why_attends(0, head, 3, 2)
    with pytest.raises(InvalidArgumentError, match="layer"):
        tr.why_attends(tr.n_layers, 0, 3, 2)
    with pytest.raises(InvalidArgumentError, match="out of range"):
        tr.why_attends(0, 0, T, 2)
    with pytest.raises(InvalidArgumentError, match=f"sliding window of {SLIDING}"):
        tr.why_attends(0, 0, T - 1, 0)


def test_to_dict_matrix_and_pairs():
    _, tr = traced("gpt2")  # b_O: attention bias parts present
    r = tr.why_attends(1, 2, T - 1, 3)
    d = r.to_dict(k=7)
    assert d["parts_sum"] == pytest.approx(float(r.contributions.sum()), abs=1e-12)
    assert len(d["pairs"]) == 7
    values = [abs(p["value"]) for p in d["pairs"]]
    assert values == sorted(values, reverse=True) and values[0] == pytest.approx(float(r.contributions.abs().max()))
    m = d["matrix"]
    assert m["rows"][-1] == m["cols"][-1] == "other" and len(m["rows"]) == len(m["cols"]) == 7
    assert sum(map(sum, m["values"])) == pytest.approx(d["parts_sum"], abs=1e-9)
    assert {p["kind"] for p in d["query_parts"]} == {"embed", "head", "attn_bias", "ffn", "bias"}
    assert "L0 attn bias" in [p["name"] for p in d["key_parts"]]
    assert sum(p["total"] for p in d["query_parts"]) == pytest.approx(d["parts_sum"], abs=1e-9)
    assert sum(p["total"] for p in d["key_parts"]) == pytest.approx(d["parts_sum"], abs=1e-9)


def test_api_endpoint(tmp_path):
    with tiny_app(tmp_path / "m", seed=31, store=False) as (client, tid, _graph):
        r = client.get(f"/api/trace/{tid}/qk", params={"layer": 1, "head": 3, "query": -1, "key": 2, "k": 5})
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["layer"], body["head"], body["key"]) == (1, 3, 2) and body["query"] >= 2
        assert len(body["pairs"]) == 5 and body["capped"] is None
        assert abs(body["parts_sum"] - body["score"]) <= TOL * max(1.0, abs(body["score"]))
        assert sum(map(sum, body["matrix"]["values"])) == pytest.approx(body["parts_sum"], abs=1e-9)
        assert 0.0 <= body["attention"] <= 1.0
        for params, words in (({"query": 1, "key": 2}, "comes after query"), ({"head": 99}, "out of range")):
            bad = {"layer": 1, "head": 0, "query": 3, "key": 1, **params}
            r = client.get(f"/api/trace/{tid}/qk", params=bad)
            assert r.status_code == 422, r.text
            assert r.json()["error"]["code"] == "invalid_argument" and words in r.json()["error"]["message"]
