"""Route graphs: top-down pruning from target nodes (routes-math.md section 4) and their JSON form.

Only nodes the route reaches get their importances computed, one batched call per layer and node
type, so one target costs about (nodes kept per layer) x L x H x T x d.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx

from .. import interrupt
from ..errors import InvalidArgumentError, TooLargeError
from ..export.schema import SCHEMA, validate_graph_dict
from .contrast import DEFINITION

if TYPE_CHECKING:
    from ..trace.trace import Trace
    from .contrast import Direction

def resid_id(index: int, pos: int) -> str:
    """`x[index, pos]`: index 0 is the embedding, index l+1 is the output of block l."""
    return f"x:{index}:{pos}"


def attn_id(layer: int, pos: int) -> str:
    return f"a:{layer}:{pos}"


def ffn_id(layer: int, pos: int) -> str:
    return f"f:{layer}:{pos}"


@dataclass
class RouteGraph:
    model: dict[str, Any]
    tokens: list[str]
    target: dict[str, Any]
    threshold: float
    norm: str
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    edges: list[dict[str, Any]] = field(default_factory=list)
    schema: str = SCHEMA  # a /1 graph read back stays /1 (its nodes have no bias shares to write)
    token_bytes: list[str] | None = None  # each token's bytes as hex, beside its label (models/tokens.py)

    def add_node(self, node_id: str, layer: int, pos: int, kind: str) -> None:
        if node_id not in self.nodes:
            self.nodes[node_id] = {"id": node_id, "layer": layer, "pos": pos, "kind": kind}

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "model": self.model,
            "tokens": self.tokens,
            **({"token_bytes": self.token_bytes} if self.token_bytes is not None else {}),
            "target": self.target,
            "threshold": self.threshold,
            "norm": self.norm,
            "nodes": list(self.nodes.values()),
            "edges": self.edges,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, validate: bool = True) -> RouteGraph:
        """The inverse of to_dict. The dictionary is checked first (`validate_graph_dict`): a
        malformed one raises GraphFileError naming the offending node or edge."""
        if validate:
            validate_graph_dict(data)
        return cls(
            model=data["model"], tokens=data["tokens"], target=data["target"], threshold=data["threshold"],
            norm=data.get("norm", "l1"), nodes={n["id"]: n for n in data["nodes"]}, edges=list(data["edges"]),
            schema=data.get("schema", SCHEMA), token_bytes=data.get("token_bytes"),
        )

    def save(self, path: str | Path) -> Path:
        """Write the graph; the extension picks the format: .json .graphml .svg .png .html.

        The graph is checked first (a node or edge edited into something the formats cannot hold
        raises GraphFileError); a file that cannot be written raises OutputFileError and leaves
        nothing behind."""
        from ..export import write_graph

        validate_graph_dict(self.to_dict(), "this route graph")
        return write_graph(self, path)

    def __repr__(self) -> str:
        """One line for a Python prompt (the dataclass's own repr would print every node and edge)."""
        pos = self.target.get("pos")
        where = "every position" if pos is None else f"position {pos} ({self.target.get('token')!r})"
        if self.target.get("foil") is not None:
            where += f" rather than {self.target['foil']!r}"
        counts = ", ".join(f"{self.edge_count(k)} {name}" for k, name in (("attn", "attention"), ("resid", "residual"),
                                                                         ("ffn", "FFN")))
        return (f"<routelens.RouteGraph {self.model.get('name', '?')!r}, route from {where} at threshold "
                f"{self.threshold:g}: {len(self.nodes)} nodes, {len(self.edges)} edges ({counts})>")

    def _repr_html_(self) -> str:
        """Jupyter: the interactive graph inline (hover, zoom, threshold), no server needed."""
        from ..export.html import notebook_html

        return notebook_html(self.to_dict())

    def show(self, height: int = 640) -> Any:
        """Display the interactive graph in a notebook (returns an IPython HTML object)."""
        try:
            from IPython.display import HTML
        except ImportError:
            raise RuntimeError("show() displays the graph in a Jupyter notebook (IPython is not installed here); "
                               "use graph.save('route.html') and open the file instead") from None

        from ..export.html import notebook_html

        return HTML(notebook_html(self.to_dict(), height=height))

    def to_json(self, path: str | Path | None = None, **kwargs: Any) -> str:
        text = json.dumps(self.to_dict(), **kwargs)
        if path is not None:
            from ..export.files import write_bytes_atomically

            write_bytes_atomically(path, text.encode())
        return text

    def to_networkx(self) -> nx.MultiDiGraph:
        """A MultiDiGraph: a self edge through attention and the residual edge are two edges."""
        g = nx.MultiDiGraph(schema=self.schema, threshold=self.threshold, tokens=self.tokens)
        if self.token_bytes is not None:
            g.graph["token_bytes"] = self.token_bytes
        for node in self.nodes.values():
            g.add_node(node["id"], **{k: v for k, v in node.items() if k != "id"})
        for edge in self.edges:
            attrs = {k: v for k, v in edge.items() if k not in ("source", "target")}
            g.add_edge(edge["source"], edge["target"], key=edge["kind"], **attrs)
        return g

    def edge_count(self, kind: str | None = None) -> int:
        return sum(1 for e in self.edges if kind is None or e["kind"] == kind)


def _resid_node(graph: RouteGraph, index: int, pos: int) -> str:
    node_id = resid_id(index, pos)
    if index == 0:
        graph.add_node(node_id, -1, pos, "embed")
    else:
        graph.add_node(node_id, index - 1, pos, "block")
    return node_id


def build_route(trace: Trace, targets: list[int], threshold: float, *, full: bool = False,
                max_edges: int | None = None, contrast: Direction | None = None) -> RouteGraph:
    """Keep every edge whose importance is above `threshold`, walking down from `x[L, t]`.

    `max_edges` bounds the graph while it is built: past it, TooLargeError is raised (nothing
    larger is ever held), so a server can refuse a threshold-0 route before it costs memory.
    `contrast` (one target only): the target position's chain uses contrastive importances
    (routes-math.md section 8, routes/contrast.py); every other node keeps vector proximity."""
    if not targets:
        raise InvalidArgumentError("a route needs at least one target position")
    if contrast is not None and targets != [contrast.pos]:
        raise InvalidArgumentError("a contrastive route has one target position, the contrast's own")
    n_layers = trace.n_layers
    model_facts = trace.model.graph_facts()
    if full:
        target = {"pos": None, "token": None, "positions": targets}
    else:
        top = trace.top_predictions(targets[0], k=1)[0][0] if len(targets) == 1 else None
        target = {"pos": targets[0], "token": top} if len(targets) == 1 else {"pos": None, "positions": targets}
        if contrast is not None:
            target.update(_contrast_facts(trace, contrast))
    graph = RouteGraph(
        model=model_facts, tokens=trace.tokens, target=target, threshold=threshold, norm=f"l{trace.norm}",
        token_bytes=trace.token_bytes,
    )
    frontier = set(targets)
    for t in targets:
        _resid_node(graph, n_layers, t)
    for layer in reversed(range(n_layers)):
        interrupt.check()  # a safe point per layer (a server request may be cancelled or overdue)
        below: set[int] = set()
        out_positions = sorted(frontier)
        if not out_positions:
            break
        if trace.is_parallel(layer):
            rows = _rows(trace.attention_rows, out_positions, trace, contrast, layer, 0)
            for pos, row in rows.items():
                _attention_edges(graph, layer, pos, row, resid_id(layer + 1, pos), threshold, below)
                _check_size(graph, max_edges, threshold, layer)
                if row.ffn is not None and row.ffn > threshold:
                    _ffn_edges(graph, layer, pos, resid_id(layer, pos), row.ffn)
                    _resid_node(graph, layer, pos)
                    below.add(pos)
        else:
            mids: set[int] = set()
            for pos, frow in _rows(trace.ffn_rows, out_positions, trace, contrast, layer, 1).items():
                out_id = resid_id(layer + 1, pos)
                if frow.degenerate:
                    graph.nodes[out_id]["degenerate"] = True
                graph.nodes[out_id]["bias"] = 0.0  # parts m and f only: b_out is inside the FFN write
                if frow.resid > threshold:
                    graph.add_node(attn_id(layer, pos), layer, pos, "attn")
                    graph.edges.append({"source": attn_id(layer, pos), "target": out_id, "kind": "resid", "weight": frow.resid})
                    mids.add(pos)
                if frow.ffn > threshold:
                    graph.add_node(attn_id(layer, pos), layer, pos, "attn")
                    _ffn_edges(graph, layer, pos, attn_id(layer, pos), frow.ffn)
                    mids.add(pos)
            for pos, row in _rows(trace.attention_rows, sorted(mids), trace, contrast, layer, 0).items():
                _attention_edges(graph, layer, pos, row, attn_id(layer, pos), threshold, below)
                _check_size(graph, max_edges, threshold, layer)
        _check_size(graph, max_edges, threshold, layer)
        frontier = below
    return graph


def _rows(rows_of: Any, positions: list[int], trace: Trace, contrast: Direction | None, layer: int,
          which: int) -> dict:
    """`rows_of(layer, positions)`, the contrast's chain position read from its contrastive row
    instead (which: 0 the node after attention, 1 the FFN-output node; its vector row is never computed)."""
    if contrast is None or contrast.pos not in positions:
        return rows_of(layer, positions)
    rows = rows_of(layer, [p for p in positions if p != contrast.pos])
    return {**rows, contrast.pos: trace.contrast_rows(contrast, layer)[which]}


def _contrast_facts(trace: Trace, d: Direction) -> dict[str, Any]:
    """What the graph JSON records of a contrast: both tokens, their ids, the logit difference
    and the definition (docs/contrastive.md)."""
    names = trace.model.token_strings([d.token_id] + ([d.foil_id] if d.foil_id is not None else []))
    return {"token": names[0], "token_id": d.token_id, "foil": names[1] if d.foil_id is not None else None,
            "foil_id": d.foil_id, "logit_diff": d.logit_diff, "definition": DEFINITION}


def _check_size(graph: RouteGraph, max_edges: int | None, threshold: float, layer: int) -> None:
    if max_edges is not None and len(graph.edges) > max_edges:
        raise TooLargeError(
            f"the route at threshold {threshold:g} has more than {max_edges} edges (reached at layer {layer}); "
            "raise the threshold, or pick a single target position")


def _ffn_edges(graph: RouteGraph, layer: int, pos: int, source: str, weight: float) -> None:
    node = ffn_id(layer, pos)
    graph.add_node(node, layer, pos, "ffn")
    graph.edges.append({"source": source, "target": node, "kind": "ffn", "weight": weight})
    graph.edges.append({"source": node, "target": resid_id(layer + 1, pos), "kind": "ffn", "weight": weight})


def _attention_edges(graph, layer: int, pos: int, row, node_id: str, threshold: float, below: set[int]) -> None:
    """The residual edge and every attention edge (self edge included, separately) above threshold."""
    if row.degenerate:
        graph.nodes[node_id]["degenerate"] = True
    graph.nodes[node_id]["bias"] = row.bias  # b_O's share: no edge carries it (docs/graph-format.md)
    if row.resid > threshold:
        graph.edges.append({"source": _resid_node(graph, layer, pos), "target": node_id, "kind": "resid", "weight": row.resid})
        below.add(pos)
    weights = row.edge_weights()
    for src in (weights > threshold).nonzero().flatten().tolist():
        per_head = row.heads[:, src]
        heads = {str(h): float(w) for h, w in enumerate(per_head.tolist()) if w > 0}
        graph.edges.append(
            {
                "source": _resid_node(graph, layer, src),
                "target": node_id,
                "kind": "attn",
                "weight": float(weights[src]),
                "heads": heads,
            }
        )
        below.add(src)


def load_graph(path: str | Path) -> RouteGraph:
    """Read a route graph JSON written by routelens (`--out x.json`, the web app's JSON export).

    The content is checked (node and edge kinds, edge ends, positions and layers, finite
    weights): a malformed file raises GraphFileError naming the offending node or edge."""
    from ..export.files import read_graph_dict

    return RouteGraph.from_dict(read_graph_dict(path), validate=False)
