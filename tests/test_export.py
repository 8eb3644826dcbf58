"""Exports: every format is valid and faithful, JSON round-trips through rl.load_graph, bad files
are refused clearly; the CLI and the API write them."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import jsonschema
import networkx as nx
import pytest
from PIL import Image

import routelens as rl
import tiny_models
from routelens.export import GraphFileError, render, write_graph
from routelens.export.drawing import COLORS, NARROW, Circle, Polygon, Stroke, Text, edge_style, make_layout, scene_of, text_box
from routelens.export.png import to_png
from routelens.export.svg import to_svg
from routelens.export.schema import SCHEMA_FILE
from servers import tiny_app
from tiny_models import PROMPT, TinyTokenizer, save_tiny_model

SVG_NS = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module", params=["llama", "gpt_neox"])  # sequential and parallel blocks
def graph(request) -> rl.routes.graph.RouteGraph:
    model = rl.wrap(getattr(tiny_models, request.param)(), TinyTokenizer(), name=f"tiny-{request.param}")
    g = model.trace(PROMPT, store=False).graph(threshold=0.02)
    assert len(g.edges) > 20
    return g


def test_json_is_valid_and_round_trips_unchanged(graph, tmp_path):
    path = write_graph(graph, tmp_path / "g.json")
    data = json.loads(path.read_text())
    jsonschema.validate(data, json.loads(SCHEMA_FILE.read_text()))
    back = rl.load_graph(path)
    assert back.to_dict() == graph.to_dict() == data
    write_graph(back, tmp_path / "again.json")
    assert (tmp_path / "again.json").read_bytes() == path.read_bytes()


def test_graphml_reads_back_with_the_same_nodes_and_edges(graph, tmp_path):
    path = write_graph(graph, tmp_path / "g.graphml")
    g = nx.read_graphml(path, force_multigraph=True)
    assert isinstance(g, nx.MultiDiGraph)
    assert set(g.nodes) == set(graph.nodes)
    for node_id, node in graph.nodes.items():
        assert g.nodes[node_id]["kind"] == node["kind"] and g.nodes[node_id]["layer"] == node["layer"]
    want = sorted((e["source"], e["target"], e["kind"], e["weight"]) for e in graph.edges)
    got = sorted((u, v, d["kind"], d["weight"]) for u, v, d in g.edges(data=True))
    assert got == want
    attn = next(e for e in graph.edges if e["kind"] == "attn")
    stored = next(d for u, v, k, d in g.edges(keys=True, data=True) if (u, v, k) == (attn["source"], attn["target"], "attn"))
    assert json.loads(stored["heads"]) == attn["heads"]
    assert json.loads(g.graph["tokens"]) == graph.tokens and g.graph["schema"] == "routelens.graph/2"


def test_svg_is_xml_with_one_shape_per_edge_and_node(graph, tmp_path):
    path = write_graph(graph, tmp_path / "g.svg")
    root = ET.parse(path).getroot()
    assert root.tag == f"{SVG_NS}svg"
    scene = scene_of(graph.to_dict())
    assert (int(root.get("width")), int(root.get("height"))) == (scene.width, scene.height)
    strokes = [p for p in root.iter(f"{SVG_NS}path") if p.get("data-kind")]
    assert len(strokes) == len(graph.edges)
    colors = {"attn": "#0072B2", "resid": "#6F7A86", "ffn": "#CC79A7"}  # residual: #8E959E before style.ts's rework
    for kind, color in colors.items():
        assert sum(p.get("stroke") == color and p.get("data-kind") == kind for p in strokes) == graph.edge_count(kind)
    node_shapes = [c for c in root.iter() if c.tag in (f"{SVG_NS}circle", f"{SVG_NS}rect") and c.get("data-kind")]
    assert sorted(c.get("data-kind") for c in node_shapes) == sorted(n["kind"] for n in graph.nodes.values())
    texts = [t.text for t in root.iter(f"{SVG_NS}text")]
    assert "L0" in texts and "emb" in texts


def test_png_decodes_at_the_drawing_size(graph, tmp_path):
    path = write_graph(graph, tmp_path / "g.png")
    image = Image.open(path)
    image.load()
    scene = scene_of(graph.to_dict())
    assert image.format == "PNG"
    assert image.size == (round(scene.width * 2), round(scene.height * 2))
    colors = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert len(colors) > 50  # drawn, not blank


def test_unknown_extension_is_refused(graph, tmp_path):
    with pytest.raises(rl.InvalidArgumentError, match=".graphml"):
        write_graph(graph, tmp_path / "g.pdf")


# ---- the drawing: the web app's look, nothing overlapping at any size ------------------------------
@pytest.fixture(scope="module")
def llama_trace():
    model = rl.wrap(tiny_models.llama(), TinyTokenizer(), name="tiny-llama")
    return model.trace(PROMPT, store=False)


ODD_TOKENS = [" the", "\n", "東京都", "🙂🙂", "supercalifragilistic", "<E6 97>", "", "MMMWWW", " @%", "\t x"]


def long_graph(g: dict, n: int = 330) -> dict:
    """`g` spread over `n` tokens (position p at p * step): a long prompt with a few route
    columns; tokens of every kind (wide characters, whitespace, byte groups, long words)."""
    step = n // len(g["tokens"])
    move = {**{i: i * step for i in range(len(g["tokens"]))}}
    out = json.loads(json.dumps(g))
    out["tokens"] = [ODD_TOKENS[i % len(ODD_TOKENS)] for i in range(n)]
    for node in out["nodes"]:
        node["pos"] = move[node["pos"]]
    out["target"] = {**out["target"], "pos": move[out["target"]["pos"]]}
    return out


def texts_of(scene) -> list[Text]:
    return [s for s in scene.shapes if isinstance(s, Text)]


def assert_texts_fit(scene, what: str) -> None:
    """No two estimated text boxes overlap; all lie inside the scene."""
    boxes = sorted((text_box(t), t.text) for t in texts_of(scene))
    assert len(boxes) > 10
    for b, t in boxes:
        assert b[0] >= 0 and b[1] >= 0 and b[2] <= scene.width and b[3] <= scene.height, f"{what}: {t!r} {b} outside"
    for i, (a, ta) in enumerate(boxes):
        for b, tb in boxes[i + 1:]:
            if b[0] >= a[2]:
                break
            assert not (a[1] < b[3] and b[1] < a[3]), f"{what}: {ta!r} {a} overlaps {tb!r} {b}"


def token_labels(scene) -> dict[int, list[Text]]:
    """The token labels (each carries its column's tip) by position."""
    out: dict[int, list[Text]] = {}
    for t in texts_of(scene):
        if t.tip:
            out.setdefault(int(t.tip.split(":")[0].removeprefix("position ")), []).append(t)
    return out


def drawing_cases(trace) -> dict[str, dict]:
    short = rl.wrap(tiny_models.llama(), TinyTokenizer(), name="tiny-llama").trace(PROMPT[:5], store=False)
    compact = trace.graph(threshold=0.3).to_dict()
    parallel = rl.wrap(tiny_models.gpt_neox(), TinyTokenizer(), name="tiny-neox").trace(PROMPT, store=False)
    many_layers = parallel.graph(threshold=0.3).to_dict()
    many_layers["model"]["n_layers"] = 80  # parallel blocks, block rows 9 units apart: layer labels thinned
    cases = {"5 tokens": short.graph(threshold=0.02).to_dict(), "compact": compact, "80 layers": many_layers,
             "330 tokens": long_graph(trace.graph(threshold=0.1).to_dict()), "all positions": trace.graph(target="all", threshold=0.2).to_dict()}
    assert sum(make_layout(compact).used) <= 3 and len(compact["tokens"]) == 10  # most columns without route nodes
    return cases


def test_drawing_texts_never_overlap_and_every_column_has_one_label(llama_trace):
    long_title = "a title far too long for a narrow graph: " + " ".join(["route"] * 60) + " " + "x" * 200
    cases = drawing_cases(llama_trace)
    for what, g in cases.items():
        for title in (None, long_title):
            scene = scene_of(g, title=title)
            assert_texts_fit(scene, f"{what}, {'long' if title else 'default'} title")
            lay = make_layout(g)
            labels = token_labels(scene)
            assert sorted(labels) == list(range(len(g["tokens"]))), f"{what}: not one label per column"
            for pos, (label, *more) in labels.items():
                assert not more and label.rotate == (lay.col_w[pos] < 28), (what, pos)
            if what == "330 tokens":
                assert sum(t.rotate for t, in labels.values()) > 300
        title_lines = [t.text for t in texts_of(scene) if t.size == 13]
        assert 1 <= len(title_lines) <= 3 and (" ".join(title_lines) == long_title or title_lines[-1].endswith("…"))
        assert len(title_lines) == 3 or scene.width > 2000, what  # at most 3 lines, the rest cut
        assert f"<title>{long_title}</title>" in to_svg(scene)  # the full title kept
    layers = [t.text for t in texts_of(scene_of(cases["80 layers"])) if t.text[:1] == "L" and t.size == 10]
    assert "L79" in layers and 10 < len(layers) < 80


def test_rotated_labels_are_drawn_in_the_png_and_the_svg(llama_trace):
    g = llama_trace.graph(threshold=0.3).to_dict()
    scene = scene_of(g)
    rotated = [t for t in texts_of(scene) if t.rotate]
    assert len(rotated) >= 7
    image = Image.open(io.BytesIO(to_png(scene, scale=2))).convert("L")
    for t in rotated[:3]:
        x0, y0, x1, y1 = text_box(t)
        ink = image.crop((round(x0 * 2), round(y0 * 2), round(x1 * 2), round(y1 * 2))).getextrema()[0]
        assert ink < 100, f"no ink where {t.text!r} is"
        assert image.crop((round(x1 * 2) + 2, round(y0 * 2), round(x1 * 2) + 8, round(y1 * 2))).getextrema()[0] > 200
    root = ET.fromstring(render(rl.routes.graph.RouteGraph.from_dict(g), "svg"))
    turned = [t for t in root.iter(f"{SVG_NS}text") if t.get("transform")]
    assert len(turned) == len(rotated)
    for t in turned:
        assert t.get("transform") == f"rotate(-90 {t.get('x')} {t.get('y')})" and t.get("text-anchor") == "end"


def test_edge_strokes_follow_the_web_apps_mapping(graph):
    for w in (0.0, 0.04, 0.25, 0.5, 1.0):
        assert edge_style("attn", w) == pytest.approx((0.5 + 3 * math.sqrt(w), 0.15 + 0.85 * w))
        assert edge_style("ffn", w) == pytest.approx((0.5 + 3 * math.sqrt(w), 0.15 + 0.85 * w))
        assert edge_style("resid", w) == pytest.approx((0.5 + 2.2 * math.sqrt(w), 0.12 + 0.6 * w))
    g = graph.to_dict()
    want = sorted((e["kind"], round(0.5 + (2.2 if e["kind"] == "resid" else 3) * math.sqrt(e["weight"]), 6),
                   round((0.12 + 0.6 * e["weight"]) if e["kind"] == "resid" else (0.15 + 0.85 * e["weight"]), 6)) for e in g["edges"])
    got = sorted((s.kind, round(s.width, 6), round(s.opacity, 6)) for s in scene_of(g).shapes if isinstance(s, Stroke) and s.kind)
    assert got == want
    assert COLORS["resid"] == "#6F7A86"


def test_a_route_to_every_position_marks_every_target(llama_trace):
    g = llama_trace.graph(target="all", threshold=0.2).to_dict()
    positions = g["target"]["positions"]
    assert g["target"]["pos"] is None and len(positions) == len(PROMPT)
    scene, lay = scene_of(g), make_layout(g)
    top = min(s.points[2][1] for s in scene.shapes if isinstance(s, Polygon) and s.points[2][1] > 60)  # not the legend's
    marks = sorted(s.points[2][0] for s in scene.shapes if isinstance(s, Polygon) and s.points[2][1] == top)
    assert marks == pytest.approx([lay.col_x[i] for i in positions])
    ringed = sorted(s.x for s in scene.shapes if isinstance(s, Circle) and s.stroke == COLORS["target"] and s.kind == "block")
    assert ringed == pytest.approx([lay.col_x[i] for i in positions])
    labels = token_labels(scene)
    assert all(labels[i][0].fill == "#B26B00" and labels[i][0].bold for i in positions)
    one = scene_of(llama_trace.graph(threshold=0.2).to_dict())  # one target: one mark, one ring
    assert sum(isinstance(s, Circle) and s.stroke == COLORS["target"] and s.kind == "block" for s in one.shapes) == 1
    assert NARROW == 16


# ---- loading back --------------------------------------------------------------------------------
def test_load_graph_refuses_other_schema_versions_and_bad_files(graph, tmp_path):
    data = graph.to_dict()
    future = tmp_path / "future.json"
    future.write_text(json.dumps({**data, "schema": "routelens.graph/3"}))
    with pytest.raises(GraphFileError, match=r"'routelens.graph/3'.*reads 'routelens.graph/2'"):
        rl.load_graph(future)
    unversioned = tmp_path / "plain.json"
    unversioned.write_text(json.dumps({k: v for k, v in data.items() if k != "schema"}))
    with pytest.raises(GraphFileError, match="no \"schema\" field"):
        rl.load_graph(unversioned)
    not_json = tmp_path / "x.json"
    not_json.write_text("<html>")
    with pytest.raises(GraphFileError, match="not JSON"):
        rl.load_graph(not_json)
    cut = tmp_path / "cut.json"
    cut.write_text(json.dumps({**data, "nodes": data["nodes"][:1]}))
    with pytest.raises(GraphFileError, match="damaged"):
        rl.load_graph(cut)
    with pytest.raises(GraphFileError, match="no such file"):
        rl.load_graph(tmp_path / "absent.json")


# ---- the CLI and the API -------------------------------------------------------------------------
def test_cli_out_picks_the_format_from_the_extension(tmp_path):
    save_tiny_model(tmp_path / "m", seed=7)
    env = {**os.environ, "ROUTELENS_STORE": str(tmp_path / "store")}  # the second run reads the first's trace
    for name in ("g.png", "g.graphml"):
        r = subprocess.run([sys.executable, "-m", "routelens", "trace", str(tmp_path / "m"), "the capital of france is",
                            "--threshold", "0.01", "--out", str(tmp_path / name)], capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr
    assert Image.open(tmp_path / "g.png").format == "PNG"
    assert nx.read_graphml(tmp_path / "g.graphml", force_multigraph=True).number_of_edges() > 0
    bad = subprocess.run([sys.executable, "-m", "routelens", "trace", str(tmp_path / "m"), "the capital",
                          "--out", str(tmp_path / "g.docx")], capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "cannot tell the format of 'g.docx'" in bad.stderr
    assert len([line for line in bad.stderr.splitlines() if line.strip()]) == 1


def test_api_export_endpoint(tmp_path):
    with tiny_app(tmp_path / "m", seed=8, store=False) as (client, tid, graph):
        for fmt, media in (("json", "application/json"), ("graphml", "application/graphml+xml"), ("svg", "image/svg+xml"),
                           ("png", "image/png")):  # html: tests/test_export_html.py
            r = client.get(f"/api/trace/{tid}/export", params={"format": fmt, "threshold": 0.01})
            assert r.status_code == 200, r.text
            assert r.headers["content-type"].startswith(media)
            assert f".{fmt}\"" in r.headers["content-disposition"]
            assert r.content == render(rl.routes.graph.RouteGraph.from_dict(graph), fmt)
        assert Image.open(io.BytesIO(client.get(f"/api/trace/{tid}/export", params={"format": "png"}).content)).size[0] > 100
        bad = client.get(f"/api/trace/{tid}/export", params={"format": "pdf"})
        assert 400 <= bad.status_code < 500 and "format" in bad.json()["error"]["message"]
