"""The route graph file format: its version names, its JSON Schema and the check of a document.

Below the route math (routes/graph.py builds graphs and imports this): a graph file is read,
checked and written without knowing how a route is computed.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from ..errors import GraphFileError

SCHEMA = "routelens.graph/2"  # what this version writes (docs/graph-format.md: what changed from /1)
SCHEMA_V1 = "routelens.graph/1"  # still read: the same graph without the nodes' bias shares
SCHEMAS = (SCHEMA_V1, SCHEMA)
SCHEMA_FILE = Path(__file__).with_name("graph.schema.json")  # JSON Schema of the format
NODE_KINDS = ("embed", "attn", "ffn", "block")
BIAS_KINDS = ("attn", "block")  # the nodes whose parts are weighed (they carry "bias" in /2)
EDGE_KINDS = ("attn", "resid", "ffn")
MAX_WEIGHT = 1.000001  # importances are in [0, 1]; the slack is float rounding (as the schema)
HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")  # a token's bytes in "token_bytes"
MAX_LAYERS = 4096  # far beyond any model: a bound on what drawing a loaded graph may cost
FIX = ("export the graph again with routelens, or correct it by hand "
       "(the format is described in routelens/export/graph.schema.json)")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """A finite JSON number (NaN and Infinity, which Python's json reads, are not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _show(value: Any, n: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


def validate_graph_dict(data: Any, where: str = "the graph") -> dict[str, Any]:
    """Check that `data` is a routelens.graph/2 document (graph.schema.json, checked in code since
    jsonschema is not a dependency) or a routelens.graph/1 one (the same without bias shares): the
    fields and their types, node kinds and edge kinds, nodes inside the token and layer ranges,
    unique node ids, edge ends that name existing nodes, finite weights in [0, 1], and in /2 a
    bias share in [0, 1] on every attn and block node (and on no other). Returns `data`; raises
    GraphFileError naming the first problem."""
    if not isinstance(data, dict):
        raise GraphFileError(f"{where} holds JSON but not a route graph (expected an object with \"schema\": \"{SCHEMA}\")")
    schema = data.get("schema")
    if schema not in SCHEMAS:
        got = f"schema {_show(schema)}" if schema is not None else "no \"schema\" field"
        raise GraphFileError(
            f"{where} has {got}; this version of routelens reads {SCHEMA!r} graphs (and the older {SCHEMA_V1!r}). "
            "Export the graph again with this version, or open it with the routelens version that wrote it."
        )
    missing = [k for k in ("model", "tokens", "target", "threshold", "nodes", "edges") if k not in data]
    if missing:
        raise GraphFileError(f"{where} says {schema!r} but lacks {', '.join(missing)}: it is damaged or cut short")

    def damaged(problem: str) -> GraphFileError:
        return GraphFileError(f"{where} is damaged: {problem}; {FIX}")

    model = data["model"]
    if not isinstance(model, dict):
        raise damaged(f"\"model\" is {_show(model)}, not an object")
    if not isinstance(model.get("name", ""), str):
        raise damaged(f"the model's name {_show(model.get('name'))} is not a string")
    for key in ("n_layers", "n_heads", "d_model", "vocab"):
        if key in model and not (_is_int(model[key]) and model[key] >= 1):
            raise damaged(f"the model's {key} {_show(model[key])} is not a positive integer")
    if not (_is_int(model.get("n_layers")) and model["n_layers"] <= MAX_LAYERS):
        raise damaged(f"the model's n_layers {_show(model.get('n_layers'))} is not an integer from 1 to {MAX_LAYERS}")
    n_layers = model["n_layers"]
    tokens = data["tokens"]
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
        raise damaged("\"tokens\" is not a non-empty list of strings")
    n_tokens = len(tokens)
    token_bytes = data.get("token_bytes")  # optional: each token's bytes as hex
    if token_bytes is not None and not (
            isinstance(token_bytes, list) and len(token_bytes) == n_tokens
            and all(isinstance(b, str) and HEX.fullmatch(b) for b in token_bytes)):
        raise damaged(f"\"token_bytes\" is not a list of {n_tokens} hex strings (one per token)")
    target = data["target"]
    if not isinstance(target, dict):
        raise damaged(f"\"target\" is {_show(target)}, not an object")
    pos = target.get("pos")
    if pos is not None and not (_is_int(pos) and 0 <= pos < n_tokens):
        raise damaged(f"the target position {_show(pos)} is not a position of its {n_tokens} tokens")
    if not isinstance(target.get("token"), (str, type(None))):
        raise damaged(f"the target token {_show(target.get('token'))} is not a string")
    positions = target.get("positions", [])
    if not isinstance(positions, list) or not all(_is_int(p) and 0 <= p < n_tokens for p in positions):
        raise damaged(f"the target positions {_show(positions)} are not positions of its {n_tokens} tokens")
    threshold = data["threshold"]
    if not (_is_number(threshold) and 0 <= threshold <= 1):
        raise damaged(f"the threshold {_show(threshold)} is not a number from 0 to 1")
    if data.get("norm", "l1") not in ("l1", "l2"):
        raise damaged(f"the norm {_show(data.get('norm'))} is neither 'l1' nor 'l2'")

    nodes, edges = data["nodes"], data["edges"]
    if not isinstance(nodes, list):
        raise damaged("\"nodes\" is not a list")
    if not isinstance(edges, list):
        raise damaged("\"edges\" is not a list")
    ids: set[str] = set()
    for i, node in enumerate(nodes):
        if not isinstance(node, dict):
            raise damaged(f"node #{i} is {_show(node)}, not an object")
        nid = node.get("id")
        name = f"node #{i} ({_show(nid)})"
        if not isinstance(nid, str) or not nid:
            raise damaged(f"node #{i} has no string \"id\"")
        if nid in ids:
            raise damaged(f"{name} repeats the id of an earlier node")
        ids.add(nid)
        kind = node.get("kind")
        if kind not in NODE_KINDS:
            raise damaged(f"{name} has unknown kind {_show(kind)} (the kinds are {', '.join(NODE_KINDS)})")
        layer, npos = node.get("layer"), node.get("pos")
        if not (_is_int(npos) and 0 <= npos < n_tokens):
            raise damaged(f"{name} has position {_show(npos)}, not one of its {n_tokens} tokens (0..{n_tokens - 1})")
        if not (_is_int(layer) and -1 <= layer < n_layers):
            raise damaged(f"{name} has layer {_show(layer)}, not -1 (the embeddings) or one of the model's {n_layers} "
                          f"layers (0..{n_layers - 1})")
        if not isinstance(node.get("degenerate", False), bool):
            raise damaged(f"{name} has a \"degenerate\" flag that is not true or false")
        if "bias" in node:
            bias = node["bias"]
            if not (_is_number(bias) and 0 <= bias <= MAX_WEIGHT):
                raise damaged(f"{name} has bias share {_show(bias)}, not a finite number from 0 to 1")
            if schema == SCHEMA and kind not in BIAS_KINDS:
                raise damaged(f"{name} is an {kind} node with a bias share; only attn and block nodes have one")
        elif schema == SCHEMA and kind in BIAS_KINDS:
            raise damaged(f"{name} is a {kind} node without its \"bias\" share (every attn and block node of a "
                          f"{SCHEMA!r} graph has one)")
    for i, edge in enumerate(edges):
        if not isinstance(edge, dict):
            raise damaged(f"edge #{i} is {_show(edge)}, not an object")
        src, dst = edge.get("source"), edge.get("target")
        name = f"edge #{i} ({_show(src, 40)} -> {_show(dst, 40)})"
        for end, value in (("source", src), ("target", dst)):
            if not isinstance(value, str) or value not in ids:
                raise damaged(f"{name} has a {end} that is not among its nodes: an edge's ends must be node ids")
        kind = edge.get("kind")
        if kind not in EDGE_KINDS:
            raise damaged(f"{name} has unknown kind {_show(kind)} (the kinds are {', '.join(EDGE_KINDS)})")
        weight = edge.get("weight")
        if not (_is_number(weight) and 0 <= weight <= MAX_WEIGHT):
            raise damaged(f"{name} has weight {_show(weight)}, not a finite number from 0 to 1")
        heads = edge.get("heads")
        if heads is not None and not (isinstance(heads, dict) and all(_is_number(w) and w >= 0 for w in heads.values())):
            raise damaged(f"{name} has \"heads\" that are not an object of finite non-negative numbers")
    return data
