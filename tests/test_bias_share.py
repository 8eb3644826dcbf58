"""Issue 10: the bias share of every node is shown (finding 7), and prompt text is read one way by
every path (finding 3).

Bias share: on models with an attention output bias (GPT-2, OPT, Phi), an attn node's (and a
parallel block node's) incoming edge weights sum to 1 minus the share of `b_O`, which no edge
carries. The graph JSON (routelens.graph/2), GraphML and the API carry it, so the weights add up;
docs/graph-format.md defines it per node kind. Checked here against the naive loop reference
(tests/reference.py), not against routelens's own rows.
"""

from __future__ import annotations

import json
import xml.dom.minidom

import jsonschema
import pytest

import routelens as rl
from routelens.errors import GraphFileError
from routelens.export.graphml import to_graphml
from routelens.prompts import prompt_lines
from routelens.export.schema import SCHEMA, SCHEMA_FILE, SCHEMA_V1, validate_graph_dict
from routelens.routes.graph import RouteGraph

from reference import Reference, importances
from tiny_models import FAMILIES, PROMPT, TinyTokenizer, save_tiny_gpt2

SUM_TOL = 1e-5
SCHEMA_DOC = json.loads(SCHEMA_FILE.read_text())


def traced(name: str):
    hf = FAMILIES[name]()
    model = rl.wrap(hf, TinyTokenizer(), name=f"tiny-{name}")
    return model.trace(PROMPT, store=False), Reference(hf, PROMPT)


@pytest.fixture(scope="module")
def gpt2():
    return traced("gpt2")


def expected_bias(ref: Reference, tr, node: dict) -> float:
    """The bias share by the reference: the `bias` part's importance among all the node's parts."""
    layer, pos, kind = node["layer"], node["pos"], node["kind"]
    if kind == "attn" or (kind == "block" and tr.is_parallel(layer)):
        y, parts = ref.attention_node(layer, pos)
    else:  # a sequential block's output: parts m and f, no bias part
        y, parts = ref.ffn_node(layer, pos)
    return importances(y, parts, 1).get("bias", 0.0)


def check_sums(tr, ref: Reference, graph: RouteGraph) -> list[float]:
    """Every attn and block node: incoming edges + bias share = 1, the share is the reference's;
    embed and FFN nodes carry none. Returns the attn nodes' shares."""
    data = graph.to_dict()
    assert data["schema"] == SCHEMA == "routelens.graph/2"
    jsonschema.validate(data, SCHEMA_DOC)
    incoming: dict[str, float] = {}
    for e in data["edges"]:
        incoming[e["target"]] = incoming.get(e["target"], 0.0) + e["weight"]
    shares = []
    for node in data["nodes"]:
        if node["kind"] in ("embed", "ffn"):
            assert "bias" not in node, node
            continue
        want = expected_bias(ref, tr, node)
        assert node["bias"] == pytest.approx(want, abs=1e-6), node
        total = incoming.get(node["id"], 0.0) + node["bias"]
        assert abs(total - 1.0) <= SUM_TOL, (node, total)
        if node["kind"] == "attn" or tr.is_parallel(node["layer"]):
            shares.append(node["bias"])
    return shares


def test_gpt2_incoming_edges_plus_bias_share_sum_to_one(gpt2):
    tr, ref = gpt2
    graph = tr.graph(target=-1, threshold=0.0)
    kinds = {n["kind"] for n in graph.nodes.values()}
    assert kinds == {"embed", "attn", "ffn", "block"}
    shares = check_sums(tr, ref, graph)
    # a threshold-0 route: the target's attn node at the top layer, every position's below it
    assert tr.n_layers == 2 and len(shares) == 1 + tr.n_positions
    assert max(shares) > 0.01  # the tiny GPT-2's b_O matters: without its share the sums fall short
    # the block nodes of a sequential model have no bias part
    assert all(n["bias"] == 0.0 for n in graph.nodes.values() if n["kind"] == "block")


def test_gpt2_full_mode_sums_to_one_too(gpt2):
    tr, ref = gpt2
    check_sums(tr, ref, tr.graph(target="all", threshold=0.0))


@pytest.mark.parametrize("name", ["phi", "opt"])
def test_parallel_and_other_biased_models_sum_to_one(name):
    tr, ref = traced(name)
    graph = tr.graph(target=-1, threshold=0.0)
    shares = check_sums(tr, ref, graph)
    assert max(shares) > 0.0
    if name == "phi":  # parallel: the block node holds the attention parts, the FFN part and b_O
        assert not any(n["kind"] == "attn" for n in graph.nodes.values())
        assert any(n["kind"] == "block" and n["bias"] > 0 for n in graph.nodes.values())


def test_a_model_without_attention_bias_has_zero_shares():
    tr, ref = traced("mistral")  # no b_O (the tiny Llama has one: attention_bias=True)
    graph = tr.graph(target=-1, threshold=0.0)
    check_sums(tr, ref, graph)
    assert all(n.get("bias", 0.0) == 0.0 for n in graph.nodes.values())


def test_pruned_graph_keeps_the_shares_and_below_one(gpt2):
    tr, _ = gpt2
    full = tr.graph(target=-1, threshold=0.0)
    pruned = tr.graph(target=-1, threshold=0.05)
    incoming: dict[str, float] = {}
    for e in pruned.edges:
        incoming[e["target"]] = incoming.get(e["target"], 0.0) + e["weight"]
    for nid, node in pruned.nodes.items():
        if "bias" in node:
            assert node["bias"] == full.nodes[nid]["bias"]
            assert incoming.get(nid, 0.0) + node["bias"] <= 1.0 + SUM_TOL
    jsonschema.validate(pruned.to_dict(), SCHEMA_DOC)


def test_schema_2_requires_the_share_on_attn_and_block_nodes_only(gpt2):
    tr, _ = gpt2
    data = tr.graph(target=-1, threshold=0.1).to_dict()
    attn = next(i for i, n in enumerate(data["nodes"]) if n["kind"] == "attn")
    embed = next(i for i, n in enumerate(data["nodes"]) if n["kind"] == "embed")
    missing = json.loads(json.dumps(data))
    del missing["nodes"][attn]["bias"]
    extra = json.loads(json.dumps(data))
    extra["nodes"][embed]["bias"] = 0.1
    out_of_range = json.loads(json.dumps(data))
    out_of_range["nodes"][attn]["bias"] = 1.5
    for bad, words in ((missing, "without its \"bias\""), (extra, "with a bias share"), (out_of_range, "bias share 1.5")):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, SCHEMA_DOC)
        with pytest.raises(GraphFileError, match=words):
            validate_graph_dict(bad)


def as_v1(data: dict) -> dict:
    """What routelens wrote before the bias share: schema /1, no "bias" on any node."""
    return {**data, "schema": SCHEMA_V1, "nodes": [{k: v for k, v in n.items() if k != "bias"} for n in data["nodes"]]}


def test_load_graph_reads_v1_and_v2_files(gpt2, tmp_path):
    tr, _ = gpt2
    graph = tr.graph(target=-1, threshold=0.04)
    new = tmp_path / "new.json"
    graph.save(new)
    back = rl.load_graph(new)
    assert back.to_dict() == graph.to_dict()
    old = tmp_path / "old.json"
    old.write_text(json.dumps(as_v1(graph.to_dict())))
    read = rl.load_graph(old)
    assert read.schema == SCHEMA_V1 and read.edges == graph.edges
    assert all("bias" not in n for n in read.nodes.values())
    again = tmp_path / "again.json"
    read.save(again)  # a /1 graph is written back as /1: it has no shares to write
    assert json.loads(again.read_text()) == as_v1(graph.to_dict())
    future = tmp_path / "future.json"
    future.write_text(json.dumps({**graph.to_dict(), "schema": "routelens.graph/3"}))
    with pytest.raises(GraphFileError, match=r"'routelens.graph/3'.*reads 'routelens.graph/2'.*'routelens.graph/1'"):
        rl.load_graph(future)


def test_graphml_carries_the_share(gpt2):
    tr, _ = gpt2
    data = tr.graph(target=-1, threshold=0.04).to_dict()
    doc = xml.dom.minidom.parseString(to_graphml(data))
    keys = {k.getAttribute("id"): k.getAttribute("attr.name") for k in doc.getElementsByTagName("key")}
    shares = {}
    for node in doc.getElementsByTagName("node"):
        for d in node.getElementsByTagName("data"):
            if keys[d.getAttribute("key")] == "bias":
                shares[node.getAttribute("id")] = float(d.firstChild.data)
    assert shares == {n["id"]: pytest.approx(n["bias"]) for n in data["nodes"] if "bias" in n}
    assert shares and any(v > 0 for v in shares.values())


# ---- the API: graph and node endpoints, on a tiny GPT-2 served from a local folder --------------
BOM_CRLF = "\ufeffThe capital of France is\r\n\r\n Paris and\tLondon  \r\n   \r\nOne, two,\rthree\n"
# the rule (routelens/prompts.py, frontend/src/prompts.ts): mark dropped, CRLF / CR / LF end lines,
# each line kept as written (leading, inner and trailing spaces and tabs), blank lines skipped
BOM_CRLF_PROMPTS = ["The capital of France is", " Paris and\tLondon  ", "One, two,", "three"]


@pytest.fixture(scope="module")
def gpt2_app(tmp_path_factory):
    from fastapi.testclient import TestClient

    from routelens.server.app import create_app
    from routelens.server.config import ServerConfig
    from servers import LOCAL

    root = tmp_path_factory.mktemp("gpt2")
    save_tiny_gpt2(root / "m")
    data = root / "data"
    data.mkdir()
    (data / "bom-crlf.txt").write_bytes(BOM_CRLF.encode("utf-8"))
    cfg = ServerConfig(models={"tiny-gpt2": str(root / "m")}, default_model="tiny-gpt2", dataset_dir=str(data))
    with TestClient(create_app(cfg, preload=False), base_url=LOCAL) as client:
        yield client


def test_api_graph_and_node_carry_the_share(gpt2_app):
    client = gpt2_app
    r = client.post("/api/trace", json={"model": "tiny-gpt2", "prompt": "the capital of france is"})
    assert r.status_code == 200, r.text
    tid = r.json()["trace_id"]
    graph = client.get(f"/api/trace/{tid}/graph", params={"threshold": 0.0}).json()
    jsonschema.validate(graph, SCHEMA_DOC)
    incoming: dict[str, float] = {}
    for e in graph["edges"]:
        incoming[e["target"]] = incoming.get(e["target"], 0.0) + e["weight"]
    attn = [n for n in graph["nodes"] if n["kind"] == "attn"]
    assert attn and max(n["bias"] for n in attn) > 0
    for n in graph["nodes"]:
        if "bias" in n:
            assert abs(incoming[n["id"]] + n["bias"] - 1) <= SUM_TOL, n
            info = client.get(f"/api/trace/{tid}/node", params={"kind": n["kind"], "layer": n["layer"], "pos": n["pos"]}).json()
            assert info["bias"] == pytest.approx(n["bias"], abs=1e-7), n
    embed = client.get(f"/api/trace/{tid}/node", params={"kind": "embed", "pos": 0}).json()
    assert embed["bias"] is None


# ---- prompt text: one reading for every path -------------------------------------------------------
def test_prompt_lines_rule():
    assert prompt_lines(BOM_CRLF) == BOM_CRLF_PROMPTS
    assert prompt_lines("a\u2028b\x85c\x0cd\n") == ["a\u2028b\x85c\x0cd"]  # only CR and LF end a line
    assert prompt_lines("\t \x0b\x0c\n\ufeff\n") == ["\ufeff"]  # a mark inside the text is text
    assert prompt_lines("") == [] and prompt_lines("\ufeff") == []


def test_api_prompts_reads_a_bom_crlf_file_by_the_rule(gpt2_app):
    r = gpt2_app.get("/api/prompts", params={"file": "bom-crlf.txt"})
    assert r.status_code == 200 and r.json()["prompts"] == BOM_CRLF_PROMPTS


def test_preloaded_prompts_are_read_the_same_way(tmp_path):
    from routelens.server.config import load_config

    (tmp_path / "prompts.txt").write_bytes(BOM_CRLF.encode("utf-8"))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"preloaded_dataset_filename": "prompts.txt"}))
    assert load_config(config).prompts() == BOM_CRLF_PROMPTS

