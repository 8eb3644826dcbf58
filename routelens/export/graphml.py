"""A route graph as GraphML (through networkx): nested values (heads, tokens, model facts) are
JSON strings, since GraphML attributes are scalars. Attn and block nodes carry their bias share
(`bias`, a double), as in the JSON."""

from __future__ import annotations

import json
from io import BytesIO
from typing import Any

import networkx as nx


def to_networkx_flat(graph: dict[str, Any]) -> nx.MultiDiGraph:
    g = nx.MultiDiGraph()
    for key in ("schema", "threshold", "norm"):
        if key in graph:
            g.graph[key] = graph[key]
    for key in ("model", "tokens", "target"):
        g.graph[key] = json.dumps(graph[key], ensure_ascii=False)
    if "token_bytes" in graph:  # each token's bytes as hex, beside its label
        g.graph["token_bytes"] = json.dumps(graph["token_bytes"])
    for n in graph["nodes"]:
        attrs = {"layer": n["layer"], "pos": n["pos"], "kind": n["kind"], "degenerate": bool(n.get("degenerate", False))}
        if "bias" in n:  # attn and block nodes: the share no edge carries (docs/graph-format.md)
            attrs["bias"] = float(n["bias"])
        g.add_node(n["id"], **attrs)
    for e in graph["edges"]:
        attrs: dict[str, Any] = {"kind": e["kind"], "weight": e["weight"]}
        if "heads" in e:
            attrs["heads"] = json.dumps(e["heads"])
        # the self edge through attention and the residual edge join the same nodes: the key keeps them apart
        g.add_edge(e["source"], e["target"], key=e["kind"], **attrs)
    return g


def to_graphml(graph: dict[str, Any]) -> bytes:
    buf = BytesIO()
    nx.write_graphml(to_networkx_flat(graph), buf, encoding="utf-8")
    return buf.getvalue()
