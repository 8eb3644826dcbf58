"""Checking a route by knockout (routes-math.md section 10): trace/knockout.py and routes/verify.py.

(a) The knocked-out forward pass equals a naive reference that edits the attention weights itself:
    an attention implementation registered here calls the family's own eager function for the
    model's weights, multiplies them by a dense 0/1 mask built by loops from the edge list, and
    forms the output with Python loops over heads, queries and keys in float64. Plain and
    renormalised rows; an empty knockout is the model's own logits.
(b) The route at threshold 0 keeps the full prediction exactly where it keeps every edge;
    knocking out everything changes it.
(c) The weights a report states are those of the model's own pattern (read here from transformers'
    output_attentions); random knockouts remove the route's weight to within one edge, reproducibly.
(d) Bad input is refused with the error that says what to do.
"""

from __future__ import annotations

import functools
import random
import sys

import pytest
import torch
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask

import routelens as rl
from routelens.errors import InvalidArgumentError, TooLargeError, UnsupportedArchitectureError
from routelens.routes import verify
from routelens.routes.verify import route_pairs, verify_curve, verify_route
from routelens.trace.knockout import Knockout, knockout_logits

from tiny_models import FAMILIES, PROMPT, TinyTokenizer

NAMES = ["llama", "gpt2", "gpt_neox", "gemma2"]  # GQA, GPT-2, parallel blocks, soft-cap + sliding window
T = len(PROMPT)
TOL = 1e-5
NAIVE = "naive_knockout"


@functools.lru_cache(maxsize=None)
def wrapped(name: str):
    hf = FAMILIES[name]()
    model = rl.wrap(hf, TinyTokenizer(), name=f"tiny-{name}")
    return hf, model, model.trace(PROMPT)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


# ---- the naive reference -------------------------------------------------------------------
class Naive:
    """What the reference attention removes: kept or removed (i, j) pairs per layer."""

    pairs: dict[int, set[tuple[int, int]]] = {}
    keep = False
    renormalise = False


def naive_attention(module, query, key, value, attention_mask, **kwargs):
    """The family's eager attention, its weights multiplied by a loop-built 0/1 mask, the output
    formed by loops in float64."""
    eager = sys.modules[type(module).__module__].eager_attention_forward
    _, weights = eager(module, query, key, value, attention_mask, **kwargs)  # [1, H, T, T]
    layer = module.layer_idx
    n_heads, n_q, n_k = weights.shape[1], weights.shape[2], weights.shape[3]
    group = n_heads // value.shape[1]
    pairs = Naive.pairs.get(layer, set())
    out = torch.zeros(1, n_q, n_heads, value.shape[-1], dtype=torch.float64)
    for h in range(n_heads):
        for i in range(n_q):
            row = []
            for j in range(n_k):
                inside = (i, j) in pairs
                keep = inside if Naive.keep else not inside
                row.append(float(weights[0, h, i, j]) * (1.0 if keep else 0.0))
            if Naive.renormalise:
                total = sum(row)
                row = [w / total if total > 0 else 0.0 for w in row]
            for j in range(n_k):
                out[0, i, h] += row[j] * value[0, h // group, j].double()
    return out.to(value.dtype), None


def naive_logits(hf, pos: int, pairs, *, keep: bool, renormalise: bool) -> torch.Tensor:
    """The model's logits at `pos` [V], the whole prompt run with the naive attention."""
    AttentionInterface.register(NAIVE, naive_attention)
    AttentionMaskInterface.register(NAIVE, eager_mask)
    Naive.pairs = {layer: {tuple(p) for p in ps} for layer, ps in pairs.items()}
    Naive.keep, Naive.renormalise = keep, renormalise
    hf.set_attn_implementation(NAIVE)
    try:
        with torch.no_grad():
            return hf(input_ids=torch.tensor([PROMPT]), use_cache=False).logits[0, pos]
    finally:
        hf.set_attn_implementation("eager")


def own_pattern(hf, layer: int) -> torch.Tensor:
    """A[h, i, j] of one layer as transformers returns it (eager, output_attentions): [H, T, T]."""
    hf.set_attn_implementation("eager")
    with torch.no_grad():
        out = hf(input_ids=torch.tensor([PROMPT]), use_cache=False, output_attentions=True)
    return out.attentions[layer][0].double()


def random_pairs(n_layers: int, pos: int, seed: int) -> dict[int, list[tuple[int, int]]]:
    rng = random.Random(seed)
    edges = [(l, i, j) for l in range(n_layers) for i in range(pos + 1) for j in range(i + 1)]
    out: dict[int, list[tuple[int, int]]] = {}
    for l, i, j in rng.sample(edges, len(edges) // 3):
        out.setdefault(l, []).append((i, j))
    return out


# ---- (a) the knockout against the naive reference ---------------------------------------------
@pytest.mark.parametrize("renormalise", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_knockout_equals_naive_reference(name, renormalise):
    hf, model, trace = wrapped(name)
    ids = trace.capture.token_ids
    cases = [
        (T - 1, route_pairs(trace.graph(target=-1, threshold=0.04)), True),
        (6, route_pairs(trace.graph(target=6, threshold=0.1)), True),
        (T - 1, random_pairs(trace.n_layers, T - 1, seed=1), False),
        (4, random_pairs(trace.n_layers, 4, seed=2), False),
    ]
    for pos, pairs, keep in cases:
        assert sum(len(p) for p in pairs.values()) > 0
        build = Knockout.keeping if keep else Knockout.removing
        got = knockout_logits(model.adapter, ids, build(pairs, renormalise=renormalise), pos)
        want = naive_logits(hf, pos, pairs, keep=keep, renormalise=renormalise)
        assert rel(got, want) <= TOL, (name, pos, keep)
        full = naive_logits(hf, pos, {}, keep=False, renormalise=False)
        assert rel(got, full) > 1e-4  # the knockout changed something: the comparison is not vacuous


@pytest.mark.parametrize("name", NAMES)
def test_empty_knockout_is_the_models_own_logits(name):
    hf, model, trace = wrapped(name)
    hf.set_attn_implementation("eager")
    with torch.no_grad():
        own = hf(input_ids=torch.tensor([PROMPT]), use_cache=False).logits[0]
    for pos in (0, 5, T - 1):
        got = knockout_logits(model.adapter, trace.capture.token_ids, Knockout.removing({}), pos)
        assert rel(got, own[pos]) <= TOL
    assert rel(trace.capture.last_logits, own[-1]) <= TOL


# ---- (b) threshold 0 and everything removed ---------------------------------------------------
# (family, target) whose threshold-0 route keeps every edge that can reach the target: no edge of
# it has importance exactly 0 (see test_threshold_zero_drops_only_zero_importance_edges).
EVERY_EDGE = [("llama", T - 1), ("llama", 5), ("gpt2", 6), ("gemma2", 4), ("gpt_neox", 2)]


@pytest.mark.parametrize("name,pos", EVERY_EDGE)
def test_route_at_threshold_zero_keeps_the_full_prediction(name, pos):
    hf, model, trace = wrapped(name)
    report = trace.verify(target=pos, threshold=0.0, trials=1)
    assert report.route["prob"] == pytest.approx(report.full["prob"], rel=1e-6)
    assert report.route["logit"] == pytest.approx(report.full["logit"], rel=1e-6)
    assert report.shares["prob"] == pytest.approx(1.0, rel=1e-6)
    hf.set_attn_implementation("eager")
    with torch.no_grad():
        own = hf(input_ids=torch.tensor([PROMPT]), use_cache=False).logits[0, pos].double()
    assert report.token_id == int(own.argmax())
    assert report.full["prob"] == pytest.approx(float(own.softmax(-1)[report.token_id]), rel=1e-5)
    assert report.full["logit"] == pytest.approx(float(own[report.token_id]), rel=1e-5)


def test_threshold_zero_drops_only_zero_importance_edges():
    """Proximity is clamped at 0 (routes-math.md section 3), so a threshold-0 route can leave out
    an edge whose importance is exactly 0, and that edge can still move the logits a little."""
    hf, _, trace = wrapped("gemma2")
    graph = trace.graph(target=-1, threshold=0.0)
    patterns = [own_pattern(hf, layer) for layer in range(trace.n_layers)]
    report = verify_route(trace, graph, trials=1)
    assert report.shares["prob"] != pytest.approx(1.0, rel=1e-6)
    kept = route_pairs(graph)
    dropped = 0
    for node in graph.nodes.values():
        if node["kind"] not in ("attn", "block") or node["layer"] < 0:
            continue
        if node["kind"] == "block" and not trace.is_parallel(node["layer"]):
            continue
        layer, i = node["layer"], node["pos"]
        weights = trace.attention_rows(layer, [i])[i].edge_weights()
        for j in range(i + 1):
            if (i, j) not in kept.get(layer, []):
                assert float(weights[j]) == 0.0
                dropped += float(patterns[layer][:, i, j].sum()) > 0  # attended to, not masked
    assert dropped > 0


@pytest.mark.parametrize("name", NAMES)
def test_knocking_out_everything_changes_the_prediction(name):
    _, model, trace = wrapped(name)
    ids = trace.capture.token_ids
    full = knockout_logits(model.adapter, ids, Knockout.removing({}), T - 1)
    none = knockout_logits(model.adapter, ids, Knockout.keeping({}), T - 1)
    assert rel(none, full) > 1e-3
    report = trace.verify(threshold=1.0, trials=2)  # no edge is above 1: the route keeps none
    assert report.route["kept_edges"] == 0
    assert report.route["removed_weight"] == pytest.approx(report.total_weight, rel=1e-12)
    for r in report.random:  # removing the same weight at random removes every edge too
        assert r["removed_edges"] == report.total_edges
        assert r["prob"] == pytest.approx(report.route["prob"], rel=1e-6)
    assert report.route["prob"] == pytest.approx(float(none.double().softmax(-1)[report.token_id]), rel=1e-6)


# ---- (c) the weights a report states ----------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_reported_weights_are_the_models_pattern(name):
    hf, _, trace = wrapped(name)
    pos = T - 1
    graph = trace.graph(target=pos, threshold=0.04)
    report = verify_route(trace, graph, trials=4, seed=3)
    kept = route_pairs(graph)
    total, kept_weight, n_edges, largest = 0.0, 0.0, 0, 0.0
    for layer in range(trace.n_layers):
        pattern = own_pattern(hf, layer)  # [H, T, T]
        for i in range(pos + 1):
            for j in range(i + 1):
                w = float(pattern[:, i, j].sum())
                if w > 0:  # unmasked (a masked key's weight is exactly 0)
                    n_edges += 1
                    total += w
                    largest = max(largest, w)
                    if (i, j) in kept.get(layer, []):
                        kept_weight += w
    assert report.total_edges == n_edges
    assert report.total_weight == pytest.approx(total, rel=1e-6)
    assert report.route["removed_weight"] == pytest.approx(total - kept_weight, rel=1e-6, abs=1e-6)
    assert report.route["kept_edges"] == sum(len(p) for p in kept.values()) == graph.edge_count("attn")
    assert report.route["removed_edges"] == n_edges - report.route["kept_edges"]
    target = report.route["removed_weight"]
    for r in report.random:  # whole edges until the route's weight is reached: over by < one edge
        assert target - 1e-6 <= r["removed_weight"] < target + largest
    assert report.random_mean["prob"] == pytest.approx(sum(r["prob"] for r in report.random) / 4)
    assert report.beats_random == (report.route["prob"] > max(r["prob"] for r in report.random))
    assert report.shares["prob"] == pytest.approx(report.route["prob"] / report.full["prob"])


def test_random_knockouts_are_reproducible_with_the_seed():
    _, _, trace = wrapped("llama")
    a = trace.verify(trials=3, seed=7).to_dict()
    b = trace.verify(trials=3, seed=7).to_dict()
    c = trace.verify(trials=3, seed=8).to_dict()
    assert a == b
    assert a["random"] != c["random"]
    assert a["route"] == c["route"]
    assert set(a) == {"target", "threshold", "renormalise", "seed", "full", "route", "random", "random_mean",
                      "shares", "measure", "beats_random", "total_weight", "total_edges"}
    assert set(a["route"]) == {"prob", "logit", "removed_weight", "removed_edges", "kept_edges"}


def test_curve_equals_single_reports():
    _, _, trace = wrapped("gpt_neox")
    thresholds = (0.02, 0.1)
    curve = trace.verify_curve(-1, thresholds, renormalise=True, trials=2, seed=5)
    assert [r.threshold for r in curve] == list(thresholds)
    for t, r in zip(thresholds, curve):
        assert r.to_dict() == trace.verify(-1, t, renormalise=True, trials=2, seed=5).to_dict()
    assert curve[0].route["kept_edges"] >= curve[1].route["kept_edges"]


# ---- (d) bad input ------------------------------------------------------------------------------
def test_bad_input_is_refused_clearly(monkeypatch):
    _, model, trace = wrapped("llama")
    graph = trace.graph(target=-1, threshold=0.04)
    with pytest.raises(TooLargeError, match="at most 50"):
        verify_route(trace, graph, trials=51)
    for trials in (0, -1, True, 2.5):
        with pytest.raises(InvalidArgumentError, match="trials"):
            verify_route(trace, graph, trials=trials)
    for renormalise in ("yes", 1, None):
        with pytest.raises(InvalidArgumentError, match="renormalise"):
            verify_route(trace, graph, renormalise=renormalise)
    for threshold in (1.5, -0.1, "0.04"):
        with pytest.raises(InvalidArgumentError, match="threshold"):
            trace.verify(threshold=threshold)
        with pytest.raises(InvalidArgumentError, match="threshold"):
            verify_curve(trace, -1, [0.04, threshold])
    with pytest.raises(InvalidArgumentError, match="1 to 16 thresholds"):
        verify_curve(trace, -1, [])
    with pytest.raises(InvalidArgumentError, match="token"):
        verify_route(trace, graph, token=10_000)
    with pytest.raises(InvalidArgumentError, match="not one"):
        verify_route(trace, graph, token="two tokens")
    with pytest.raises(InvalidArgumentError, match="one target"):
        verify_route(trace, trace.graph(target="all", threshold=0.2))
    with pytest.raises(InvalidArgumentError, match="position"):
        trace.verify(target=T)
    with pytest.raises(InvalidArgumentError, match="not this trace"):
        verify_route(wrapped("gpt2")[2], graph)
    monkeypatch.setattr(verify, "MAX_POSITIONS", 5)
    with pytest.raises(TooLargeError, match="earlier target position"):
        trace.verify(target=T - 1)
    assert trace.verify(target=4, trials=1).pos == 4  # within the bound
    monkeypatch.setattr(model.adapter, "uses_routelens_attention", False)
    with pytest.raises(UnsupportedArchitectureError, match="TransformerLens"):
        trace.verify(target=2)
    with pytest.raises(UnsupportedArchitectureError, match="rl.wrap"):
        knockout_logits(model.adapter, trace.capture.token_ids, Knockout.removing({}), 2)


# ---- the real model -----------------------------------------------------------------------------
# Measured on smollm2-135m-instruct, fp32 CPU (benchmarks/README.md "Checking a route by knockout"):
# ' Paris' has p = 0.7725; the route at 0.04 keeps p = 0.0095 (a share of 1.23%), every random
# knockout of the same weight keeps p < 1e-4. The floor below is half the measured share.
SMOLLM2_SHARE_FLOOR = 0.006


@pytest.mark.slow
def test_smollm2_route_beats_random_knockouts(smollm2):
    trace = smollm2.trace("The capital of France is")
    report = trace.verify(target=-1, threshold=0.04, trials=5, seed=0)
    assert report.token == " Paris"
    assert report.beats_random, str(report)
    assert report.shares["prob"] > SMOLLM2_SHARE_FLOOR, str(report)
    assert report.random_mean["prob"] < report.route["prob"]


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_contrastive_route_check_measures_the_logit_difference(name):
    """A contrastive route's check reports logit[token] - logit[foil] in every run, computed here
    from the naive reference's logits with the same kept edges."""
    hf, _model, tr = wrapped(name)
    pos = len(PROMPT) - 1
    preds = tr.predictions(k=2)[pos]
    token, foil = preds[0]["id"], preds[1]["id"]
    report = tr.verify(pos, 0.04, foil=foil, trials=2)
    assert report.foil_id == foil and report.to_dict()["target"]["foil_id"] == foil
    graph = tr.graph(pos, 0.04, foil=foil)
    naive = naive_logits(hf, pos, route_pairs(graph), keep=True, renormalise=False).double()
    assert report.route["diff"] == pytest.approx(float(naive[token] - naive[foil]), abs=1e-4)
    full = naive_logits(hf, pos, {}, keep=False, renormalise=False).double()
    assert report.full["diff"] == pytest.approx(float(full[token] - full[foil]), abs=1e-4)
    assert report.shares["diff"] == pytest.approx(report.route["diff"] / report.full["diff"])
    assert all("diff" in r for r in report.random) and "diff" in report.random_mean


def test_a_contrastive_check_beats_random_by_the_logit_difference():
    """The verdict compares what the route claims to carry: p for a plain route, the logit
    difference for a contrastive one (recomputed here from the report's own runs)."""
    _hf, _model, tr = wrapped("llama")
    pos = len(PROMPT) - 1
    foil = tr.predictions(k=2)[pos][1]["id"]
    plain, contrast = tr.verify(pos, 0.04, trials=3), tr.verify(pos, 0.04, foil=foil, trials=3)
    assert plain.measure == "prob" and contrast.measure == "diff"
    assert plain.beats_random == (plain.route["prob"] > max(r["prob"] for r in plain.random))
    assert contrast.beats_random == (contrast.route["diff"] > max(r["diff"] for r in contrast.random))


def test_a_negative_contrast_is_kept_by_staying_negative():
    """When the model prefers the foil (full diff < 0), a route that flips the sign does not keep the
    contrast: the verdict counts the difference in the full run's direction."""
    from routelens.routes.verify import VerifyReport

    def report(route_diff: float, random_diffs: list[float]) -> VerifyReport:
        run = lambda d: {"prob": 0.1, "logit": 1.0, "diff": d}  # noqa: E731
        return VerifyReport(pos=0, token="a", token_id=1, threshold=0.04, renormalise=False, seed=0, full=run(-2.0),
                            route=run(route_diff), random=[run(d) for d in random_diffs], foil="b", foil_id=2)

    assert not report(6.3, [-1.0, 0.5]).beats_random  # flipped to the token: the contrast is lost
    assert report(-1.5, [-1.0, 0.5]).beats_random  # stays the most negative: kept
    assert not report(-0.5, [-1.0, 0.5]).beats_random
