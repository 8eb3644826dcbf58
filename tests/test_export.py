"""Exports: every format is valid and faithful, JSON round-trips through rl.load_graph, bad files
are refused clearly; the CLI and the API write them."""

from __future__ import annotations

import io
import json
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
from routelens.export.drawing import scene_of
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
    colors = {"attn": "#0072B2", "resid": "#8E959E", "ffn": "#CC79A7"}
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
