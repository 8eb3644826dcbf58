"""The route graph as a list of shapes, laid out and styled as the web app draws it.

This mirrors the front end's graph drawing for a view of EXPORT_VIEW pixels, so that
`routelens trace --out g.svg` and the web app's SVG export look alike: frontend/src/graph/
layout.ts (node positions), style.ts (colours, `edgeStyle`, node looks), labels.ts (the token and
layer label rule) and svgexport.ts (`exportSvg`: the title wrapped on its own lines, the legend on
lines that fit under it, the drawing, token labels under every column, layer labels left of it).
Nothing may overlap at any size. The text rules (labels.ts, svgexport.ts's title wrapping) are in
labels.py, which estimates text widths from above, with no browser to measure them. svg.py writes
the shapes as SVG, png.py rasterises the same shapes; neither knows about graphs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from .labels import (
    ASCENT, AXIS_H, DESCENT, LAYER_SIZE, LEGEND_LINE, LEGEND_SIZE, MIN_W, PAD, POS_SIZE, SMALL_SIZE, TITLE_LINE, TITLE_SIZE,
    TOK_SIZE, plan_layer_labels, plan_token_labels, text_width, wrap,
)

EXPORT_VIEW = (1400, 760)  # the web app's graph area at a 1400 x 900 window
MARGIN = {"left": 52, "right": 24, "top": 24, "bottom": 46}
NARROW = 16  # a column the route never touches: room for a rotated token label (layout.ts)
COLORS = {"attn": "#0072B2", "ffn": "#CC79A7", "resid": "#6F7A86", "block": "#2F3A48", "embed": "#7B8490", "target": "#E69F00"}
NODE_LOOK = {  # radius in units of the layout's node radius
    "block": {"round": True, "r": 1.0, "rx": 0.0, "fill": COLORS["block"], "stroke": "#FFFFFF", "sw": 1.0},
    "target": {"round": True, "r": 1.35, "rx": 0.0, "fill": COLORS["block"], "stroke": COLORS["target"], "sw": 2.5},
    "attn": {"round": True, "r": 0.85, "rx": 0.0, "fill": "#FFFFFF", "stroke": COLORS["attn"], "sw": 1.6},
    "ffn": {"round": False, "r": 0.85, "rx": 1.5, "fill": COLORS["ffn"], "stroke": "#FFFFFF", "sw": 1.0},
    "embed": {"round": False, "r": 1.0, "rx": 2.0, "fill": COLORS["embed"], "stroke": "#FFFFFF", "sw": 1.0},
}


def clamp(v: float, lo: float, hi: float) -> float:
    return max(lo, min(hi, v))


# ---- shapes ------------------------------------------------------------------------------------
@dataclass
class Rect:
    x: float
    y: float
    w: float
    h: float
    fill: str
    rx: float = 0.0
    stroke: str | None = None
    sw: float = 0.0
    opacity: float = 1.0
    dash: bool = False
    kind: str | None = None  # the node kind when the rectangle is a node


@dataclass
class Circle:
    x: float
    y: float
    r: float
    fill: str
    stroke: str | None = None
    sw: float = 0.0
    dash: bool = False
    kind: str | None = None


@dataclass
class Stroke:
    """A line (2 points) or a cubic Bezier curve (4 points: start, control, control, end)."""

    points: list[tuple[float, float]]
    color: str
    width: float
    opacity: float = 1.0
    kind: str | None = None  # the edge kind when the stroke is an edge


@dataclass
class Polygon:
    points: list[tuple[float, float]]
    fill: str


@dataclass
class Text:
    x: float
    y: float
    text: str
    size: float = 11
    fill: str = "#1F2933"
    anchor: str = "start"  # start | middle | end
    bold: bool = False
    mono: bool = False
    tip: str | None = None  # shown on hover (an SVG <title>): a token's full label and its bytes
    rotate: bool = False  # rotated -90 degrees about (x, y), centred across (dominant-baseline central)


@dataclass
class Scene:
    width: int
    height: int
    title: str
    shapes: list[Any] = field(default_factory=list)


def text_box(t: Text) -> tuple[float, float, float, float]:
    """The estimated box (x0, y0, x1, y1) of a text shape, its rotation applied."""
    w = text_width(t.text, t.size, t.mono, t.bold)
    if t.rotate:  # rotate(-90) about (x, y), anchored at its end, centred across: it reads upward
        half = (ASCENT + DESCENT) * t.size / 2
        return t.x - half, t.y, t.x + half, t.y + w
    x0 = t.x - {"start": 0, "middle": w / 2, "end": w}[t.anchor]
    return x0, t.y - ASCENT * t.size, x0 + w, t.y + DESCENT * t.size


# ---- layout (layout.ts) ---------------------------------------------------------------------------
@dataclass
class Layout:
    col_x: list[float]
    col_w: list[float]
    used: list[bool]
    row_h: float
    n_levels: int
    width: float
    height: float
    ffn_dx: float
    node_r: float
    parallel: bool
    n_layers: int


def is_parallel(graph: dict[str, Any]) -> bool:
    """Parallel blocks have no node after attention; the FFN reads the block's input (prune.ts)."""
    return not any(n["kind"] == "attn" for n in graph["nodes"]) and any(
        e["kind"] == "ffn" and e["source"].startswith("x:") for e in graph["edges"]
    )


def level_of(kind: str, layer: int, parallel: bool) -> float:
    if kind == "embed":
        return 0
    if parallel:
        return layer + 0.5 if kind == "ffn" else layer + 1
    return {"attn": 2 * layer + 1, "ffn": 2 * layer + 1.5}.get(kind, 2 * layer + 2)


def make_layout(graph: dict[str, Any], view: tuple[int, int] = EXPORT_VIEW) -> Layout:
    n_tokens = len(graph["tokens"])
    n_layers = int(graph["model"]["n_layers"])
    used = [False] * n_tokens
    for n in graph["nodes"]:
        if 0 <= n["pos"] < n_tokens:
            used[n["pos"]] = True
    n_used = max(1, sum(used))
    narrow = NARROW
    view_w, view_h = view
    avail_w = max(300, view_w - MARGIN["left"] - MARGIN["right"]) - (n_tokens - n_used) * narrow
    wide = clamp(avail_w / n_used, 46, 150)
    col_w, col_x, x = [], [], float(MARGIN["left"])
    for i in range(n_tokens):
        col_w.append(wide if used[i] else narrow)
        col_x.append(x + col_w[i] / 2)
        x += col_w[i]
    parallel = is_parallel(graph)
    n_levels = n_layers + 1 if parallel else 2 * n_layers + 1
    avail_h = max(200, view_h - MARGIN["top"] - MARGIN["bottom"])
    kx = max(300, view_w - MARGIN["left"] - MARGIN["right"]) / max(1, x - MARGIN["left"])
    stretch = 1 / kx if 0.5 <= kx < 1 else 1
    row_h = clamp(avail_h / max(1, n_levels - 1) * stretch, 9, 34 * stretch)
    return Layout(
        col_x=col_x, col_w=col_w, used=used, row_h=row_h, n_levels=n_levels, width=x + MARGIN["right"],
        height=MARGIN["top"] + (n_levels - 1) * row_h + MARGIN["bottom"], ffn_dx=min(wide * 0.3, 16),
        node_r=clamp(row_h * 0.36, 3, 5), parallel=parallel, n_layers=n_layers,
    )


def level_y(lay: Layout, level: float) -> float:
    return MARGIN["top"] + (lay.n_levels - 1 - level) * lay.row_h


def node_xy(lay: Layout, node: dict[str, Any]) -> tuple[float, float]:
    x = lay.col_x[node["pos"]] + (lay.ffn_dx if node["kind"] == "ffn" else 0)
    return x, level_y(lay, level_of(node["kind"], node["layer"], lay.parallel))


def edge_style(kind: str, weight: float) -> tuple[float, float]:
    """(width, opacity) of an edge by its weight (style.ts edgeStyle): residual edges thinner and
    lighter than attention and FFN edges of the same weight."""
    c = clamp(weight, 0, 1)
    s = math.sqrt(c)
    if kind == "resid":
        return 0.5 + 2.2 * s, 0.12 + 0.6 * c
    return 0.5 + 3 * s, 0.15 + 0.85 * c


def edge_points(lay: Layout, src: dict[str, Any], dst: dict[str, Any], kind: str) -> list[tuple[float, float]]:
    (x1, y1), (x2, y2) = node_xy(lay, src), node_xy(lay, dst)
    if kind != "attn":
        return [(x1, y1), (x2, y2)]
    if abs(x1 - x2) < 0.5:  # self edge through attention: bowed left so it never hides the residual edge
        k = min(12, lay.col_w[src["pos"]] * 0.25)
        return [(x1, y1), (x1 - k, y1 - (y1 - y2) * 0.2), (x2 - k, y2 + (y1 - y2) * 0.2), (x2, y2)]
    ym = (y1 + y2) / 2
    return [(x1, y1), (x1, ym), (x2, ym), (x2, y2)]


def token_tip(graph: dict[str, Any], i: int) -> str:
    """Position, label and bytes of a token (the bytes when the graph has them: "token_bytes")."""
    tip = f"position {i}: {json.dumps(graph['tokens'][i], ensure_ascii=False)}"
    raw = graph.get("token_bytes")
    if isinstance(raw, list) and i < len(raw) and isinstance(raw[i], str):
        tip += " · bytes " + (" ".join(raw[i][k : k + 2] for k in range(0, len(raw[i]), 2)).upper() or "none")
    return tip


# ---- the scene (svgexport.ts exportSvg) ------------------------------------------------------------
LEGEND = ("attention", "residual", "FFN", "block output", "after attention", "FFN node", "embedding", "target")
# a comparison graph (routes/compare.py, docs/graph-format.md) colours edges by the sign of `delta`
DIFF_COLORS = {"stronger in A": "#0072B2", "stronger in B": "#D55E00", "unchanged": "#9AA5B1"}
UNCHANGED = 0.005  # |delta| below this (importance units, 0..1) draws as unchanged


def edge_color(edge: dict[str, Any]) -> str:
    """The kind's colour; for an edge of a comparison (it has `delta` = weight_b - weight_a), which
    route weighs it more, so the drawing shows what changed, the width still the larger weight."""
    delta = edge.get("delta")
    if not isinstance(delta, (int, float)):
        return COLORS[edge["kind"]]
    if abs(delta) < UNCHANGED:
        return DIFF_COLORS["unchanged"]
    return DIFF_COLORS["stronger in B" if delta > 0 else "stronger in A"]


def _legend_mark(label: str, x: float, yc: float) -> Any:
    if label in DIFF_COLORS:
        return Stroke([(x, yc), (x + 16, yc)], DIFF_COLORS[label], 3)
    if label in ("attention", "residual", "FFN"):
        kind = {"attention": "attn", "residual": "resid", "FFN": "ffn"}[label]
        return Stroke([(x, yc), (x + 16, yc)], COLORS[kind], 1.5 if kind == "resid" else 3)
    if label == "block output":
        return Circle(x + 8, yc, 4.5, COLORS["block"])
    if label == "after attention":
        return Circle(x + 8, yc, 4, "#FFFFFF", COLORS["attn"], 1.6)
    if label == "target":
        return Polygon([(x + 3, yc - 4), (x + 13, yc - 4), (x + 8, yc + 3)], COLORS["target"])
    return Rect(x + 4, yc - 4, 8, 8, COLORS["ffn" if label == "FFN node" else "embed"], 1.5 if label == "FFN node" else 2)


def target_columns(graph: dict[str, Any]) -> list[int]:
    """The target position, or for a route to every position ("pos": null) each of "positions"
    (each root's column: the last layer's block outputs when the file lists none)."""
    target, n = graph.get("target") or {}, len(graph["tokens"])
    if target.get("pos") is not None:
        cols = {target["pos"]}
    else:
        n_layers = int(graph["model"]["n_layers"])
        cols = set(target.get("positions") or (v["pos"] for v in graph["nodes"] if v["kind"] == "block" and v["layer"] == n_layers - 1))
    return sorted(i for i in cols if isinstance(i, int) and 0 <= i < n)


def scene_of(graph: dict[str, Any], title: str | None = None) -> Scene:
    lay = make_layout(graph)
    target = graph.get("target") or {}
    target_pos = target.get("pos")
    if title is None:
        what = f"→ {target.get('token')!r} at position {target_pos}" if target_pos is not None else "all positions"
        if target.get("foil") is not None:  # a contrastive route (docs/contrastive.md)
            what = (f"→ {target.get('token')!r} rather than {target['foil']!r} at position {target_pos} "
                    f"(logit difference {target.get('logit_diff', 0.0):.2f})")
        kind = "two prompts' routes compared" if "compare" in graph else "route"
        title = f"{graph['model'].get('name', 'model')}: {kind} {what}, threshold {graph['threshold']:g}"
    width = max(MIN_W, math.ceil(lay.width))
    body: list[Any] = []
    y = PAD  # the title on its own line(s), the legend on lines that fit under it
    for line in wrap(title, width - 2 * PAD):
        y += TITLE_LINE
        body.append(Text(PAD, y - 5, line, size=TITLE_SIZE, bold=True))
    x, y = PAD, y + LEGEND_LINE
    legend = LEGEND if "compare" not in graph else tuple(DIFF_COLORS) + LEGEND[3:]
    for label in legend:
        w = 20 + text_width(label, LEGEND_SIZE) + 14
        if x > PAD and x + w - 14 > width - PAD:
            x, y = PAD, y + LEGEND_LINE
        body += [_legend_mark(label, x, y - 4), Text(x + 20, y, label, size=LEGEND_SIZE, fill="#3E4C59")]
        x += w
    dy = y + 8  # the drawing below the head
    by = level_y(lay, 0) + lay.row_h / 2 + 4  # the token labels' top
    height = math.ceil(dy + by + AXIS_H)
    scene = Scene(width=width, height=height, title=title)
    add = scene.shapes.append
    add(Rect(0, 0, width, height, "#FFFFFF"))
    scene.shapes += body

    def band(lo: float, hi: float, i: int) -> None:
        y1 = level_y(lay, hi) - lay.row_h / 2
        y2 = level_y(lay, lo) + lay.row_h / 2
        add(Rect(0, y1 + dy, lay.width, y2 - y1, "#F3F5F8" if i % 2 else "#FFFFFF"))

    band(0, 0, 1)
    for layer in range(lay.n_layers):
        band(level_of("block" if lay.parallel else "attn", layer, lay.parallel), level_of("block", layer, lay.parallel), layer)
    for i, used in enumerate(lay.used):
        if not used:
            x = lay.col_x[i] - lay.col_w[i] / 2
            add(Rect(x + 2, level_y(lay, lay.n_levels - 1) - lay.row_h / 2 + dy, lay.col_w[i] - 4,
                     (lay.n_levels - 1) * lay.row_h + lay.row_h, "#EEF0F3", opacity=0.6))

    nodes = {n["id"]: n for n in graph["nodes"]}
    for kind in ("resid", "ffn", "attn"):  # residual under FFN under attention; weakest first
        for e in sorted((e for e in graph["edges"] if e["kind"] == kind), key=lambda e: e["weight"]):
            if e["source"] not in nodes or e["target"] not in nodes:
                continue
            w, op = edge_style(kind, e["weight"])
            pts = [(x, y + dy) for x, y in edge_points(lay, nodes[e["source"]], nodes[e["target"]], kind)]
            add(Stroke(pts, edge_color(e), w, op, kind))
    targets = target_columns(graph)
    is_target = [False] * len(lay.col_x)
    for i in targets:
        is_target[i] = True
    n_layers = lay.n_layers
    for n in graph["nodes"]:
        x, y = node_xy(lay, n)
        y += dy
        top = n["kind"] == "block" and n["layer"] == n_layers - 1 and 0 <= n["pos"] < len(is_target) and is_target[n["pos"]]
        look = NODE_LOOK["target" if top else n["kind"]]
        r = look["r"] * lay.node_r
        dash = bool(n.get("degenerate"))
        if look["round"]:
            add(Circle(x, y, r, look["fill"], look["stroke"], look["sw"], dash, n["kind"]))
        else:
            add(Rect(x - r, y - r, 2 * r, 2 * r, look["fill"], look["rx"], look["stroke"], look["sw"], dash=dash, kind=n["kind"]))
    y = level_y(lay, lay.n_levels - 1) - 9 + dy
    for i in targets:  # a mark above each target column
        x, r = lay.col_x[i], min(5, lay.col_w[i] / 2 - 1)
        add(Polygon([(x - r, y - 7), (x + r, y - 7), (x, y)], COLORS["target"]))
    rows = [(level_y(lay, 0), "emb")]
    rows += [(level_y(lay, level_of("block", layer, lay.parallel)), f"L{layer}") for layer in range(n_layers - 1, -1, -1)]
    for y, text in plan_layer_labels(rows, 12):
        add(Text(MARGIN["left"] - 12, y + 3.5 + dy, text, size=LAYER_SIZE, fill="#616E7C", anchor="end"))
    for lab in plan_token_labels(lay.col_x, lay.col_w, graph["tokens"], targets, lay.used, AXIS_H - 6):
        ink = "#B26B00" if is_target[lab.pos] else "#1F2933"
        tip = token_tip(graph, lab.pos)
        if lab.compact:
            add(Text(lab.x, by + 2 + dy, lab.text, size=SMALL_SIZE, fill=ink, anchor="end", bold=is_target[lab.pos], mono=True,
                     tip=tip, rotate=True))
        else:
            add(Text(lab.x, by + 10 + dy, str(lab.pos), size=POS_SIZE, fill="#B26B00" if is_target[lab.pos] else "#9AA5B1", anchor="middle"))
            add(Text(lab.x, by + 25 + dy, lab.text, size=TOK_SIZE, fill=ink, anchor="middle", bold=is_target[lab.pos], mono=True, tip=tip))
    return scene


def bezier(points: list[tuple[float, float]], steps: int = 16) -> list[tuple[float, float]]:
    """A stroke as a polyline: lines as they are, cubic curves sampled at `steps` segments."""
    if len(points) != 4:
        return points
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = points
    out = []
    for j in range(steps + 1):
        t = j / steps
        u = 1 - t
        a, b, c, d = u * u * u, 3 * u * u * t, 3 * u * t * t, t * t * t
        out.append((a * x0 + b * x1 + c * x2 + d * x3, a * y0 + b * y1 + c * y2 + d * y3))
    return out
