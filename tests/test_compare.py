"""Two prompts compared (routes/compare.py): the alignment is difflib's (or identity), every diff
edge carries the weights of the same edge in the two single routes (computed here independently,
from fresh traces), head and neuron changes equal naive recomputations, and the diff graph is a
valid route graph that saves in every format."""

from __future__ import annotations

import functools
import json
from difflib import SequenceMatcher

import jsonschema
import pytest

import routelens as rl
import tiny_models
from routelens.errors import InvalidArgumentError
from routelens.export.drawing import COLORS, DIFF_COLORS, UNCHANGED, Stroke, scene_of
from routelens.export.schema import SCHEMA_FILE, validate_graph_dict
from routelens.routes.compare import align_tokens, align_with_targets
from tiny_models import PROMPT, TinyTokenizer

THRESHOLD = 0.02
SWAPPED = [3, 17, 42, 8, 64, 91, 5, 60, 12, 17]  # PROMPT with positions 4 and 8 changed (equal length)
INSERTED = PROMPT[:3] + [50, 51] + PROMPT[3:]  # two tokens inserted before position 3


@functools.lru_cache(maxsize=None)
def model(name: str):
    return rl.wrap(getattr(tiny_models, name)(), TinyTokenizer(), name=f"tiny-{name}")


def trace(name: str, ids: list[int], norm: int = 1):
    """A fresh trace each call: the reference numbers never share a cache with the comparison."""
    return model(name).trace(ids, store=False, norm=norm)


def weights(graph) -> dict[tuple[str, str, str], float]:
    keys = [(e["source"], e["target"], e["kind"]) for e in graph.edges]
    assert len(keys) == len(set(keys))  # an edge is named by its ends and kind
    return {(e["source"], e["target"], e["kind"]): e["weight"] for e in graph.edges}


def moved(node_id: str, column_of: dict[int, int]) -> str:
    kind, index, pos = node_id.split(":")
    return f"{kind}:{index}:{column_of[int(pos)]}"


def check_edges(comparison, graph_a, graph_b, column_of_a, column_of_b) -> None:
    """Each diff edge's weight_a / weight_b is the same edge's weight in each route (0 where absent)."""
    wa = {(moved(s, column_of_a), moved(t, column_of_a), k): w for (s, t, k), w in weights(graph_a).items()}
    wb = {(moved(s, column_of_b), moved(t, column_of_b), k): w for (s, t, k), w in weights(graph_b).items()}
    diff = {(e["source"], e["target"], e["kind"]): e for e in comparison.graph.edges}
    assert set(diff) == set(wa) | set(wb) and len(diff) == len(comparison.graph.edges)
    for key, edge in diff.items():
        assert edge["weight_a"] == pytest.approx(wa.get(key, 0.0), abs=1e-7)
        assert edge["weight_b"] == pytest.approx(wb.get(key, 0.0), abs=1e-7)
        assert edge["delta"] == pytest.approx(edge["weight_b"] - edge["weight_a"], abs=1e-12)
        assert edge["weight"] == max(edge["weight_a"], edge["weight_b"])
        if edge["kind"] == "attn":
            assert "heads_a" in edge and "heads_b" in edge
            assert sum(edge["heads"].values()) == pytest.approx(edge["weight"], abs=1e-5)


@pytest.mark.parametrize("name", ["llama", "gpt_neox"])  # sequential and parallel blocks
def test_a_trace_compared_with_itself_changes_nothing(name):
    t = trace(name, PROMPT)
    c = rl.compare(t, t, threshold=THRESHOLD)
    assert [(col["a"], col["b"], col["same"]) for col in c.alignment] == [(i, i, True) for i in range(len(PROMPT))]
    assert c.graph.tokens == t.tokens
    single = weights(trace(name, PROMPT).graph(-1, THRESHOLD))
    assert {(e["source"], e["target"], e["kind"]): e["weight"] for e in c.graph.edges} == pytest.approx(single, abs=1e-7)
    assert all(e["delta"] == 0 and e["weight_a"] == e["weight_b"] == e["weight"] for e in c.graph.edges)
    assert c.heads and all(h["delta"] == 0 and h["a"] == h["b"] for h in c.heads)
    assert c.neurons and all(n["delta"] == 0 for n in c.neurons)


@pytest.mark.parametrize("name", ["llama", "gpt_neox"])
def test_equal_lengths_edges_carry_both_routes_weights(name):
    c = rl.compare(trace(name, PROMPT), trace(name, SWAPPED), threshold=THRESHOLD)
    assert [(col["a"], col["b"]) for col in c.alignment] == [(i, i) for i in range(len(PROMPT))]
    assert [col["same"] for col in c.alignment] == [i not in (4, 8) for i in range(len(PROMPT))]
    assert c.graph.tokens[4] == f"{c.alignment[4]['token_a']}→{c.alignment[4]['token_b']}"
    identity = {i: i for i in range(len(PROMPT))}
    ga, gb = trace(name, PROMPT).graph(-1, THRESHOLD), trace(name, SWAPPED).graph(-1, THRESHOLD)
    check_edges(c, ga, gb, identity, identity)
    assert any(e["weight_a"] == 0 for e in c.graph.edges) and any(e["weight_b"] == 0 for e in c.graph.edges)
    assert any(e["delta"] != 0 for e in c.graph.edges)


def test_different_lengths_align_as_difflib_and_edges_follow_the_columns():
    ta, tb = trace("llama", PROMPT), trace("llama", INSERTED)
    c = rl.compare(ta, tb, threshold=THRESHOLD)
    by_hand = [(i, i) for i in range(3)] + [(None, 3), (None, 4)] + [(i, i + 2) for i in range(3, len(PROMPT))]
    assert [(col["a"], col["b"]) for col in c.alignment] == by_hand
    blocks = SequenceMatcher(None, ta.tokens, tb.tokens, autojunk=False).get_matching_blocks()
    from_difflib = {(m.a + k, m.b + k) for m in blocks for k in range(m.size)}
    assert {(col["a"], col["b"]) for col in c.alignment if col["same"]} == from_difflib
    assert [col["same"] for col in c.alignment] == [col["a"] is not None for col in c.alignment]
    assert c.graph.tokens[3] == f"∅→{tb.tokens[3]}" and c.graph.tokens[0] == ta.tokens[0]
    assert c.graph.target["pos"] == 11 and (c.graph.target["pos_a"], c.graph.target["pos_b"]) == (9, 11)

    ga, gb = trace("llama", PROMPT).graph(-1, THRESHOLD), trace("llama", INSERTED).graph(-1, THRESHOLD)
    check_edges(c, ga, gb, {i: i if i < 3 else i + 2 for i in range(len(PROMPT))}, {j: j for j in range(len(INSERTED))})
    diff = {(e["source"], e["target"], e["kind"]): e for e in c.graph.edges}
    # by hand: A's residual edge into the last layer's attention node at position 9 is column 11's
    assert diff[("x:1:11", "a:1:11", "resid")]["weight_a"] == weights(ga)[("x:1:9", "a:1:9", "resid")]
    assert diff[("x:1:11", "a:1:11", "resid")]["weight_b"] == weights(gb)[("x:1:11", "a:1:11", "resid")]
    # columns 3 and 4 hold only B's tokens: nothing of A's route lands there
    inserted = [e for e in c.graph.edges if {e["source"].split(":")[2], e["target"].split(":")[2]} & {"3", "4"}]
    assert inserted and all(e["weight_a"] == 0 for e in inserted)
    from_3 = [(s, t, w) for (s, t, k), w in weights(ga).items() if s.endswith(":3") and k == "attn"]
    assert from_3
    for s, t, w in from_3:  # A's attention edges from its position 3 (into position 3 or later) start at column 5
        kind, index, pos = t.split(":")
        assert diff[(s[:-2] + ":5", f"{kind}:{index}:{int(pos) + 2}", "attn")]["weight_a"] == w


def test_alignment_rules():
    assert align_tokens(list("abc"), list("xbz")) == [
        {"a": 0, "b": 0, "token_a": "a", "token_b": "x", "same": False},
        {"a": 1, "b": 1, "token_a": "b", "token_b": "b", "same": True},
        {"a": 2, "b": 2, "token_a": "c", "token_b": "z", "same": False}]
    # a replace block pairs its first positions, then the rest one-sided; a deletion is A-only
    assert [(c["a"], c["b"]) for c in align_tokens(list("abcd"), list("aXYZd"))] == [
        (0, 0), (1, 1), (2, 2), (None, 3), (3, 4)]
    assert [(c["a"], c["b"]) for c in align_tokens(list("abcd"), list("ad"))] == [(0, 0), (1, None), (2, None), (3, 1)]
    # targets in different columns are put into one, the rest aligned around them
    cols = align_with_targets(list("abcde"), list("abcdef"), 4, 5)
    assert [(c["a"], c["b"]) for c in cols] == [(0, 0), (1, 1), (2, 2), (3, 3), (None, 4), (4, 5)]


def test_targets_apart_still_share_a_column():
    ta, tb = trace("llama", PROMPT), trace("llama", INSERTED)
    c = rl.compare(ta, tb, target_a=4, target_b=8, threshold=THRESHOLD)
    col = c.graph.target["pos"]
    assert (c.alignment[col]["a"], c.alignment[col]["b"]) == (4, 8)
    assert [x["a"] for x in c.alignment if x["a"] is not None] == list(range(len(PROMPT)))
    assert [x["b"] for x in c.alignment if x["b"] is not None] == list(range(len(INSERTED)))
    target = f"x:2:{col}"
    assert target in c.graph.nodes
    assert c.graph.to_dict()["compare"]["targets"][1]["input"] == tb.tokens[8]


def naive_heads(graph) -> dict[tuple[int, int], float]:
    out: dict[tuple[int, int], float] = {}
    for e in graph.edges:
        if e["kind"] == "attn":
            kind, index, _ = e["target"].split(":")
            layer = int(index) if kind == "a" else int(index) - 1  # x:l+1 is block l's output
            for h, share in e["heads"].items():
                out[(layer, int(h))] = out.get((layer, int(h)), 0.0) + share
    return out


@pytest.mark.parametrize("name", ["llama", "gpt_neox", "mixtral"])  # mixtral: expert neurons
def test_head_and_neuron_changes_equal_naive_recomputations(name):
    top = 6
    c = rl.compare(trace(name, PROMPT), trace(name, INSERTED), threshold=THRESHOLD, top=top)
    ha = naive_heads(trace(name, PROMPT).graph(-1, THRESHOLD))
    hb = naive_heads(trace(name, INSERTED).graph(-1, THRESHOLD))
    deltas = {k: hb.get(k, 0.0) - ha.get(k, 0.0) for k in set(ha) | set(hb)}
    assert len(c.heads) == min(top, len(deltas))
    for h in c.heads:
        key = (h["layer"], h["head"])
        assert h["a"] == pytest.approx(ha.get(key, 0.0), abs=1e-6)
        assert h["b"] == pytest.approx(hb.get(key, 0.0), abs=1e-6)
        assert h["delta"] == pytest.approx(deltas[key], abs=1e-6)
    listed = {(h["layer"], h["head"]) for h in c.heads}
    assert min(abs(h["delta"]) for h in c.heads) >= max((abs(d) for k, d in deltas.items() if k not in listed),
                                                       default=0) - 1e-9

    ref_a, ref_b = trace(name, PROMPT), trace(name, INSERTED)
    assert len(c.neurons) == top
    for n in c.neurons:
        every_a = {x["neuron"]: x for x in ref_a.neurons(n["layer"], len(PROMPT) - 1, k=10**6)}
        every_b = {x["neuron"]: x for x in ref_b.neurons(n["layer"], len(INSERTED) - 1, k=10**6)}
        a = every_a.get(n["neuron"], {"importance": 0.0, "activation": None})
        b = every_b.get(n["neuron"], {"importance": 0.0, "activation": None})
        assert n["a"] == pytest.approx(a["importance"], abs=1e-7)
        assert n["b"] == pytest.approx(b["importance"], abs=1e-7)
        assert n["delta"] == pytest.approx(b["importance"] - a["importance"], abs=1e-7)
        assert n["activation_a"] == pytest.approx(a["activation"]) and n["activation_b"] == pytest.approx(b["activation"])
    # the listed neurons are the largest changes over every layer's neurons
    unlisted = {(n["layer"], n["neuron"]) for n in c.neurons}
    worst = 0.0
    for layer in range(ref_a.n_layers):
        every_a = {x["neuron"]: x["importance"] for x in ref_a.neurons(layer, -1, k=10**6)}
        every_b = {x["neuron"]: x["importance"] for x in ref_b.neurons(layer, -1, k=10**6)}
        for label in set(every_a) | set(every_b):
            if (layer, label) not in unlisted:
                worst = max(worst, abs(every_b.get(label, 0.0) - every_a.get(label, 0.0)))
    assert min(abs(n["delta"]) for n in c.neurons) >= worst - 1e-7


def test_different_models_are_refused_clearly():
    with pytest.raises(InvalidArgumentError, match="different models.*same model"):
        rl.compare(trace("llama", PROMPT), trace("gpt2", PROMPT))
    with pytest.raises(InvalidArgumentError, match="same norm"):
        rl.compare(trace("llama", PROMPT), trace("llama", PROMPT, norm=2))
    with pytest.raises(InvalidArgumentError, match="top"):
        rl.compare(trace("llama", PROMPT), trace("llama", PROMPT), top=0)
    with pytest.raises(InvalidArgumentError, match="out of range"):
        rl.compare(trace("llama", PROMPT), trace("llama", PROMPT), target_b=40)


def test_the_diff_graph_validates_and_saves(tmp_path):
    c = rl.compare(trace("llama", PROMPT), trace("llama", INSERTED), threshold=THRESHOLD)
    data = c.graph.to_dict()
    validate_graph_dict(data)
    jsonschema.validate(data, json.loads(SCHEMA_FILE.read_text()))
    assert data["compare"]["alignment"] == c.alignment and len(data["compare"]["prompts"]) == 2
    assert json.loads(json.dumps(c.to_dict()))["graph"] == data
    assert set(c.to_dict()) == {"graph", "heads", "neurons"}
    for ext in ("json", "svg", "html", "png", "graphml"):
        path = c.graph.save(tmp_path / f"diff.{ext}")
        assert path.stat().st_size > 100
    back = rl.load_graph(tmp_path / "diff.json")
    assert back.edges == json.loads(json.dumps(c.graph.edges)) and back.tokens == c.graph.tokens
    assert json.loads((tmp_path / "diff.json").read_text())["compare"]["definition"]
    assert "Comparison 'tiny-llama'" in repr(c) and "\n" not in repr(c)


def test_the_drawing_colours_edges_by_their_change():
    c = rl.compare(trace("llama", PROMPT), trace("llama", SWAPPED), threshold=THRESHOLD)
    data = c.graph.to_dict()
    edges = [s for s in scene_of(data).shapes if isinstance(s, Stroke) and s.kind is not None]
    assert len(edges) == len(c.graph.edges)
    want = sorted("unchanged" if abs(e["delta"]) < UNCHANGED else "stronger in B" if e["delta"] > 0 else "stronger in A"
                  for e in c.graph.edges)
    assert sorted(next(k for k, v in DIFF_COLORS.items() if v == s.color) for s in edges) == want
    assert {"stronger in A", "stronger in B"} <= set(want)
    plain = trace("llama", PROMPT).graph(-1, THRESHOLD).to_dict()  # a single route keeps the kinds' colours
    assert {s.color for s in scene_of(plain).shapes if isinstance(s, Stroke) and s.kind} <= {COLORS[k] for k in
                                                                                             ("attn", "resid", "ffn")}
