"""Two prompts on one model, compared: "what changed between these two routes" (issue 14 item 3).

The two token sequences are aligned into columns (identity when they have equal length, else
difflib's matching of the token labels); the two route graphs are mapped onto the columns and
merged into one graph whose edges carry both weights and their change; the attention heads and
FFN neurons whose importance changed most are listed. Nothing here recomputes a route: the
numbers are the two traces' own (Trace.graph, and the per-neuron importances Trace.neurons uses).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import TYPE_CHECKING, Any

from ..errors import InvalidArgumentError
from ..models.tokens import rebuild_text
from .graph import RouteGraph

if TYPE_CHECKING:
    from ..trace.trace import Trace

DEFINITION = (
    "Two routes of one model, on two prompts, over one axis of aligned token columns. Each edge "
    "of either route (at the threshold) appears once: weight = max(weight_a, weight_b) (what the "
    "width shows), weight_a / weight_b the edge's importance in each route (0 where that route "
    "lacks the edge), delta = weight_b - weight_a. The two targets always share one column.")
MISSING = "∅"  # the side of a one-sided column that has no token


def align_tokens(tokens_a: list[str], tokens_b: list[str]) -> list[dict[str, Any]]:
    """Columns pairing positions of A with positions of B, in order: [{"a", "b", "token_a",
    "token_b", "same"}], "a"/"b" a position or None (a token only one prompt has).

    Equal lengths: position i with position i. Otherwise difflib.SequenceMatcher over the labels
    (autojunk off: a repeated token is not junk): "equal" blocks pair up; a "replace" block pairs
    its first min(n_a, n_b) positions as substitutions, then its rest one-sided (A's, then B's);
    "delete" and "insert" blocks are one-sided."""
    pairs: list[tuple[int | None, int | None]] = []
    if len(tokens_a) == len(tokens_b):
        pairs = [(i, i) for i in range(len(tokens_a))]
    else:
        matcher = SequenceMatcher(None, tokens_a, tokens_b, autojunk=False)
        for _tag, i1, i2, j1, j2 in matcher.get_opcodes():
            n = min(i2 - i1, j2 - j1)
            pairs += [(i1 + k, j1 + k) for k in range(n)]
            pairs += [(i, None) for i in range(i1 + n, i2)] + [(None, j) for j in range(j1 + n, j2)]
    return [_column(a, b, tokens_a, tokens_b) for a, b in pairs]


def _column(a: int | None, b: int | None, tokens_a: list[str], tokens_b: list[str]) -> dict[str, Any]:
    ta = tokens_a[a] if a is not None else None
    tb = tokens_b[b] if b is not None else None
    return {"a": a, "b": b, "token_a": ta, "token_b": tb, "same": ta is not None and ta == tb}


def align_with_targets(tokens_a: list[str], tokens_b: list[str], target_a: int, target_b: int) -> list[dict[str, Any]]:
    """`align_tokens`, with the two targets (non-negative positions) in one column: when the plain
    alignment puts them apart, the prefixes before the targets and the suffixes after them are
    aligned separately around a column (target_a, target_b). The targets are what is compared,
    so they are paired even when their tokens differ."""
    columns = align_tokens(tokens_a, tokens_b)
    if any(c["a"] == target_a and c["b"] == target_b for c in columns):
        return columns
    before = align_tokens(tokens_a[:target_a], tokens_b[:target_b])
    after = align_tokens(tokens_a[target_a + 1:], tokens_b[target_b + 1:])
    shift = [_column(None if c["a"] is None else c["a"] + target_a + 1, None if c["b"] is None else c["b"] + target_b + 1,
                     tokens_a, tokens_b) for c in after]
    return before + [_column(target_a, target_b, tokens_a, tokens_b)] + shift


def column_label(column: dict[str, Any]) -> str:
    """"tok" when both sides hold the same token, else "a→b" ("∅" for a missing side)."""
    if column["same"]:
        return column["token_a"]
    a = MISSING if column["token_a"] is None else column["token_a"]
    b = MISSING if column["token_b"] is None else column["token_b"]
    return f"{a}→{b}"


@dataclass(repr=False)
class DiffGraph(RouteGraph):
    """A RouteGraph over aligned columns, with the comparison's facts under "compare" in its JSON
    (docs/graph-format.md, "Comparison graphs"). It validates, saves and draws as any route graph."""

    compare: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "compare": self.compare}


def _move(node_id: str, column_of: dict[int, int]) -> str:
    """A node id of one route ("x:3:7") with its position replaced by its column ("x:3:<col>")."""
    kind, index, pos = node_id.split(":")
    return f"{kind}:{index}:{column_of[int(pos)]}"


def merge_routes(graph_a: RouteGraph, graph_b: RouteGraph, columns: list[dict[str, Any]]) -> tuple[
        dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """The nodes and edges of the diff graph: both routes' nodes and edges moved onto `columns`
    and joined (an edge is named by its two ends and its kind). Nodes carry bias_a / bias_b (None
    where that route lacks the node) and bias = the larger; edges weight_a, weight_b, delta,
    weight = the larger weight, and for attention edges heads_a / heads_b (the shares per head
    in each route) with heads = the shares of the side whose weight is shown."""
    nodes: dict[str, dict[str, Any]] = {}
    edges: dict[tuple[str, str, str], dict[str, Any]] = {}
    for side, graph in (("a", graph_a), ("b", graph_b)):
        column_of = {c[side]: i for i, c in enumerate(columns) if c[side] is not None}
        for node_id, node in graph.nodes.items():
            new_id = _move(node_id, column_of)
            merged = nodes.setdefault(new_id, {"id": new_id, "layer": node["layer"], "pos": column_of[node["pos"]],
                                               "kind": node["kind"]})
            if node.get("degenerate"):
                merged["degenerate"] = True
            if "bias" in node:
                merged[f"bias_{side}"] = node["bias"]
        for edge in graph.edges:
            key = (_move(edge["source"], column_of), _move(edge["target"], column_of), edge["kind"])
            merged = edges.setdefault(key, {"source": key[0], "target": key[1], "kind": key[2],
                                            "weight_a": 0.0, "weight_b": 0.0})
            merged[f"weight_{side}"] = edge["weight"]
            if "heads" in edge:
                merged[f"heads_{side}"] = edge["heads"]
    for node in nodes.values():
        if node["kind"] in ("attn", "block"):
            node.setdefault("bias_a", None)
            node.setdefault("bias_b", None)
            node["bias"] = max(b for b in (node["bias_a"], node["bias_b"]) if b is not None)
    out = []
    for edge in edges.values():
        wa, wb = edge["weight_a"], edge["weight_b"]
        edge["weight"] = max(wa, wb)
        edge["delta"] = wb - wa
        if edge["kind"] == "attn":
            edge.setdefault("heads_a", {})
            edge.setdefault("heads_b", {})
            edge["heads"] = edge["heads_b"] if wb > wa else edge["heads_a"]
        out.append(edge)
    return nodes, out


def head_importances(graph: RouteGraph) -> dict[tuple[int, int], float]:
    """(layer, head) -> the head's importance in the route: the sum, over the route's attention
    edges into nodes of that layer, of the head's share of the edge's target node (`heads[h]`)."""
    out: dict[tuple[int, int], float] = {}
    for edge in graph.edges:
        if edge["kind"] != "attn":
            continue
        layer = graph.nodes[edge["target"]]["layer"]
        for head, share in edge.get("heads", {}).items():
            out[(layer, int(head))] = out.get((layer, int(head)), 0.0) + share
    return out


def neuron_values(trace: Trace, layer: int, pos: int) -> dict[str, tuple[float, float]]:
    """label -> (importance, signed activation) of every FFN neuron in the block-output node
    `x[layer+1, pos]`, computed as Trace.neurons does (routes-math.md section 3, neurons). For a
    mixture of experts, only the routed experts' neurons are there (the others wrote nothing)."""
    labels, c, coef = trace.neuron_shares(layer, pos)
    return {label: (imp, act) for label, imp, act in zip(labels, c.tolist(), coef.tolist())}


def _largest(rows: list[dict[str, Any]], top: int) -> list[dict[str, Any]]:
    """The `top` rows of largest |delta| (ties: the larger importance on either side first)."""
    return sorted(rows, key=lambda r: (-abs(r["delta"]), -max(r["a"], r["b"])))[:top]


def head_changes(graph_a: RouteGraph, graph_b: RouteGraph, top: int) -> list[dict[str, Any]]:
    """[{"layer", "head", "a", "b", "delta"}]: heads in either route, largest |b - a| first."""
    imp_a, imp_b = head_importances(graph_a), head_importances(graph_b)
    rows = [{"layer": layer, "head": head, "a": imp_a.get((layer, head), 0.0), "b": imp_b.get((layer, head), 0.0)}
            for layer, head in sorted(set(imp_a) | set(imp_b))]
    return _largest([{**r, "delta": r["b"] - r["a"]} for r in rows], top)


def neuron_changes(trace_a: Trace, trace_b: Trace, pos_a: int, pos_b: int, top: int) -> list[dict[str, Any]]:
    """[{"layer", "neuron", "a", "b", "delta", "activation_a", "activation_b"}]: every neuron of
    every layer at the targets' block-output nodes, largest |b - a| first. A neuron is named by
    its label ("123", or "e3:123" for an expert's); one absent on a side (an expert not routed
    there) has importance 0 and activation None on that side."""
    rows = []
    for layer in range(trace_a.n_layers):
        va, vb = neuron_values(trace_a, layer, pos_a), neuron_values(trace_b, layer, pos_b)
        for label in list(va) + [n for n in vb if n not in va]:
            a, act_a = va.get(label, (0.0, None))
            b, act_b = vb.get(label, (0.0, None))
            rows.append({"layer": layer, "neuron": label, "a": a, "b": b, "delta": b - a,
                         "activation_a": act_a, "activation_b": act_b})
    return _largest(rows, top)


@dataclass(repr=False)
class Comparison:
    """Two routes compared: the diff graph, the token alignment, the heads and neurons whose
    importance changed most (each list largest |delta| first; delta = B - A)."""

    graph: DiffGraph
    alignment: list[dict[str, Any]]
    heads: list[dict[str, Any]]
    neurons: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """{"graph": the diff graph's JSON (with "compare"), "heads": [...], "neurons": [...]}."""
        return {"graph": self.graph.to_dict(), "heads": self.heads, "neurons": self.neurons}

    def __repr__(self) -> str:
        edges = self.graph.edges
        only_a = sum(1 for e in edges if e["weight_b"] == 0)
        only_b = sum(1 for e in edges if e["weight_a"] == 0)
        differ = sum(1 for c in self.alignment if not c["same"])
        head = ""
        if self.heads:
            h = self.heads[0]
            head = f"; largest head change L{h['layer']} H{h['head']} {h['delta']:+.3f}"
        return (f"<routelens.Comparison {self.graph.model.get('name', '?')!r}: {len(self.alignment)} columns "
                f"({differ} differ), {len(edges)} edges ({only_a} only in A, {only_b} only in B){head}>")


def _check_same_model(trace_a: Trace, trace_b: Trace) -> None:
    facts_a, facts_b = trace_a.model.graph_facts(), trace_b.model.graph_facts()
    if (trace_a.model.name, trace_a.n_layers, facts_a.get("n_heads")) != (
            trace_b.model.name, trace_b.n_layers, facts_b.get("n_heads")):
        raise InvalidArgumentError(
            f"the two traces come from different models ({trace_a.model.name!r}, {trace_a.n_layers} layers, and "
            f"{trace_b.model.name!r}, {trace_b.n_layers} layers); routes are compared on one model: trace both "
            "prompts with the same model")
    if trace_a.norm != trace_b.norm:
        raise InvalidArgumentError(
            f"the two traces weigh parts differently (L{trace_a.norm} and L{trace_b.norm} proximity); "
            "trace both prompts with the same norm")


def compare_routes(trace_a: Trace, trace_b: Trace, *, target_a: int = -1, target_b: int = -1,
                   threshold: float = 0.04, top: int = 20) -> Comparison:
    """Compare the route to `target_a` in `trace_a` with the route to `target_b` in `trace_b`
    (both traced on one model, same norm), each pruned at `threshold`. `top` bounds the head and
    neuron lists. Raises InvalidArgumentError for traces of different models, a position out of
    range, a threshold outside [0, 1] or a `top` that is not a positive integer."""
    _check_same_model(trace_a, trace_b)
    if not isinstance(top, int) or isinstance(top, bool) or top < 1:
        raise InvalidArgumentError(f"top must be a positive integer (how many heads and neurons to list), not {top!r}")
    pos_a, pos_b = trace_a.position(target_a), trace_b.position(target_b)
    graph_a = trace_a.graph(pos_a, threshold)
    graph_b = trace_b.graph(pos_b, threshold)
    columns = align_with_targets(trace_a.tokens, trace_b.tokens, pos_a, pos_b)
    column = next(i for i, c in enumerate(columns) if c["a"] == pos_a)
    nodes, edges = merge_routes(graph_a, graph_b, columns)
    tok_a, tok_b = graph_a.target.get("token"), graph_b.target.get("token")
    target = {"pos": column, "token": tok_a if tok_a == tok_b else f"{tok_a}→{tok_b}", "pos_a": pos_a,
              "pos_b": pos_b, "token_a": tok_a, "token_b": tok_b}
    targets = [{"pos": pos_a, "input": trace_a.tokens[pos_a], "prediction": tok_a},
               {"pos": pos_b, "input": trace_b.tokens[pos_b], "prediction": tok_b}]
    graph = DiffGraph(
        model=graph_a.model, tokens=[column_label(c) for c in columns], target=target, threshold=graph_a.threshold,
        norm=graph_a.norm, nodes=nodes, edges=edges,
        compare={"prompts": [rebuild_text(trace_a.tokens), rebuild_text(trace_b.tokens)], "alignment": columns,
                 "targets": targets, "definition": DEFINITION},
    )
    return Comparison(graph=graph, alignment=columns, heads=head_changes(graph_a, graph_b, top),
                      neurons=neuron_changes(trace_a, trace_b, pos_a, pos_b, top))
