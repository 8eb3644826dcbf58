"""The HTTP API: every endpoint on the real default model, and bad input answered with a clear 4xx."""

from __future__ import annotations

import json
import time

import jsonschema
import pytest
from fastapi.testclient import TestClient

from routelens.export.schema import SCHEMA_FILE
from routelens.server.app import create_app
from routelens.server.config import ServerConfig, load_config
from servers import LOCAL

MODEL = "smollm2-135m-instruct"
PROMPT = "The capital of France is"


def wait_ready(client: TestClient, model: str, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get("/api/models/status", params={"model": model}).json()
        if status["state"] != "loading":
            return status
        time.sleep(0.2)
    raise AssertionError(f"{model} did not load in {timeout}s")


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code
    assert len(body["error"]["message"]) > 10
    return body["error"]


@pytest.fixture(scope="module")
def client(smollm2):  # the fixture makes sure the catalog copy exists
    with TestClient(create_app(load_config(None), preload=False), base_url=LOCAL) as c:
        yield c


@pytest.fixture(scope="module")
def traced(client):
    r = client.post("/api/trace", json={"model": MODEL, "prompt": PROMPT})
    assert r.status_code == 200, r.text
    return r.json()


pytestmark = pytest.mark.slow


def test_config(client):
    cfg = client.get("/api/config").json()
    assert cfg["default_model"] == MODEL and MODEL in cfg["models"]
    assert cfg["prompts"] and cfg["demo_mode"] is False


def test_load_and_status(client):
    r = client.post("/api/models/load", json={"model": MODEL})
    assert r.status_code in (200, 202)
    status = wait_ready(client, MODEL)
    assert status["state"] == "ready"
    facts = status["facts"]
    assert facts["n_layers"] == 30 and facts["n_heads"] == 9 and facts["d_model"] == 576 and facts["vocab"] == 49152
    assert facts["parameters"] > 100_000_000 and facts["dtype"] == "float32"
    assert client.get("/api/models/status", params={"model": "gemma-3-270m"}).json()["state"] in ("absent", "ready", "loading")


def test_trace_predictions(traced):
    assert traced["tokens"] == ["The", " capital", " of", " France", " is"]
    assert len(traced["predictions"]) == 5
    assert traced["predictions"][-1][0]["token"] == " Paris"
    assert traced["n_layers"] == 30 and traced["parallel"] is False


def test_same_request_same_trace(client, traced):
    again = client.post("/api/trace", json={"model": MODEL, "prompt": PROMPT}).json()
    assert again["trace_id"] == traced["trace_id"]


def test_graph_matches_schema_and_prunes_monotonically(client, traced):
    tid = traced["trace_id"]
    low = client.get(f"/api/trace/{tid}/graph", params={"threshold": 0.01}).json()
    high = client.get(f"/api/trace/{tid}/graph", params={"threshold": 0.04, "target": -1}).json()
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.validate(low, schema)
    jsonschema.validate(high, schema)
    assert high["target"] == {"pos": 4, "token": " Paris"}
    low_edges = {(e["source"], e["target"], e["kind"]) for e in low["edges"]}
    high_edges = {(e["source"], e["target"], e["kind"]) for e in high["edges"]}
    assert high_edges < low_edges  # a higher threshold keeps a strict subset


def test_every_position_route_is_the_union_of_the_single_routes(client, traced):
    """target=all draws every position's route at once: exactly the union of the single routes."""
    tid = traced["trace_id"]
    every = client.get(f"/api/trace/{tid}/graph", params={"threshold": 0.04, "target": "all"})
    assert every.status_code == 200, every.text
    every = every.json()
    jsonschema.validate(every, json.loads(SCHEMA_FILE.read_text()))
    assert every["target"]["pos"] is None and every["target"]["positions"] == [0, 1, 2, 3, 4]
    nodes: set[str] = set()
    edges: dict[tuple[str, str, str], float] = {}
    for pos in range(5):
        one = client.get(f"/api/trace/{tid}/graph", params={"threshold": 0.04, "target": pos}).json()
        nodes |= {n["id"] for n in one["nodes"]}
        for e in one["edges"]:
            edges[(e["source"], e["target"], e["kind"])] = e["weight"]
    assert {n["id"] for n in every["nodes"]} == nodes
    assert {(e["source"], e["target"], e["kind"]): e["weight"] for e in every["edges"]} == edges
    exported = client.get(f"/api/trace/{tid}/export", params={"threshold": 0.04, "target": "all", "format": "json"})
    assert exported.status_code == 200 and "-all-" in exported.headers["content-disposition"]
    for bad in ("last", "1.5", ""):
        assert_error(client.get(f"/api/trace/{tid}/graph", params={"target": bad}), 422, "invalid_argument")


def test_node_panel(client, traced):
    tid = traced["trace_id"]
    r = client.get(f"/api/trace/{tid}/node", params={"kind": "block", "layer": 29, "pos": 4}).json()
    assert r["top_tokens"][0]["token"] == " Paris"
    assert r["promoted"] and r["suppressed"]
    assert r["promoted"][0]["effect"] >= r["promoted"][-1]["effect"]
    embed = client.get(f"/api/trace/{tid}/node", params={"kind": "embed", "pos": 0}).json()
    assert embed["top_tokens"] and embed["promoted"] == []


def test_edge_heads_sum_to_edge_weight(client, traced):
    tid = traced["trace_id"]
    graph = client.get(f"/api/trace/{tid}/graph", params={"threshold": 0.04}).json()
    nodes = {n["id"]: n for n in graph["nodes"]}
    edge = next(e for e in graph["edges"] if e["kind"] == "attn" and nodes[e["source"]]["pos"] == 3)
    layer, src, dst = nodes[edge["target"]]["layer"], nodes[edge["source"]]["pos"], nodes[edge["target"]]["pos"]
    r = client.get(f"/api/trace/{tid}/edge", params={"layer": layer, "source": src, "target": dst}).json()
    assert r["weight"] == pytest.approx(edge["weight"], abs=1e-6)
    assert len(r["heads"]) == 9
    assert sum(h["weight"] for h in r["heads"]) == pytest.approx(edge["weight"], abs=1e-6)


def test_head_heatmaps(client, traced):
    tid = traced["trace_id"]
    one = client.get(f"/api/trace/{tid}/head", params={"layer": 23, "head": 4, "pos": 4}).json()
    assert len(one["pattern"]) == 5 and all(len(row) == 5 for row in one["pattern"])
    for i, row in enumerate(one["pattern"]):
        assert sum(row) == pytest.approx(1.0, abs=1e-3)
        assert all(v == 0 for v in row[i + 1 :])
    assert one["contributions"][4][3] > 0.1  # head 4 carries ' France' into the last position
    everything = client.get(f"/api/trace/{tid}/head", params={"layer": 23, "head": -1, "pos": 4}).json()
    assert everything["contributions"][4][3] == pytest.approx(
        client.get(f"/api/trace/{tid}/edge", params={"layer": 23, "source": 3, "target": 4}).json()["weight"], abs=1e-4)


def test_ffn_and_neuron(client, traced):
    tid = traced["trace_id"]
    r = client.get(f"/api/trace/{tid}/ffn", params={"layer": 29, "pos": 4, "k": 8}).json()
    neurons = r["neurons"]
    assert len(neurons) == 8
    assert [n["importance"] for n in neurons] == sorted((n["importance"] for n in neurons), reverse=True)
    assert any(n["activation"] < 0 for n in neurons) or any(n["activation"] > 0 for n in neurons)
    assert r["all"]["promoted"]
    one = client.get(f"/api/trace/{tid}/neuron", params={"layer": 29, "pos": 4, "neuron": neurons[0]["index"], "k": 3}).json()
    assert [t["id"] for t in one["promoted"]] == [t["id"] for t in neurons[0]["promoted"]]


@pytest.mark.parametrize(
    "method,path,body,status,code",
    [
        ("post", "/api/trace", {"model": MODEL, "prompt": ""}, 422, "empty_prompt"),
        ("post", "/api/trace", {"model": MODEL, "prompt": "   "}, 422, "empty_prompt"),
        ("post", "/api/trace", {"model": MODEL, "prompt": "x" * 40_001}, 413, "prompt_too_long"),
        # a name that is not configured is refused before anything is looked up: custom models are
        # off by default (issue 9), and the refusal is the same whether the name exists or not
        ("post", "/api/trace", {"model": "smollm2-135m", "prompt": "hi"}, 403, "forbidden"),
        ("post", "/api/trace", {"model": "./no/such/folder", "prompt": "hi"}, 403, "forbidden"),
        ("post", "/api/trace", {"model": MODEL, "prompt": "hi", "norm": "l3"}, 422, "invalid_argument"),
        ("post", "/api/trace", {"model": MODEL, "prompt": "hi", "surprise": 1}, 422, "invalid_argument"),
        ("post", "/api/trace", {"model": MODEL}, 422, "invalid_argument"),
        ("post", "/api/models/load", {"model": "gemma-3-27"}, 403, "forbidden"),
        ("get", "/api/trace/ffffffffffffffff/graph", None, 404, "unknown_trace"),
        ("get", "/api/models/status", None, 422, "invalid_argument"),
        ("get", "/api/nowhere", None, 404, "not_found"),
    ],
)
def test_bad_requests(client, method, path, body, status, code):
    response = client.request(method.upper(), path, json=body)
    assert_error(response, status, code)
    if body and body.get("model") in ("smollm2-135m", "gemma-3-27"):  # a near miss of a configured name
        assert "did you mean" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "endpoint,params",
    [
        ("graph", {"threshold": 1.5}),
        ("graph", {"threshold": -0.1}),
        ("graph", {"target": 5}),
        ("graph", {"target": -6}),
        ("graph", {"target": "last"}),
        ("node", {"kind": "block", "layer": 30, "pos": 0}),
        ("node", {"kind": "mlp", "layer": 0, "pos": 0}),
        ("node", {"kind": "block", "layer": 0, "pos": 9}),
        ("edge", {"layer": 0, "source": 4, "target": 2}),
        ("edge", {"layer": -1, "source": 0, "target": 2}),
        ("head", {"layer": 0, "head": 9, "pos": 0}),
        ("head", {"layer": 0, "head": -2, "pos": 0}),
        ("ffn", {"layer": 0, "pos": 7}),
        ("neuron", {"layer": 0, "pos": 0, "neuron": 1536}),
    ],
)
def test_out_of_range_arguments(client, traced, endpoint, params):
    response = client.get(f"/api/trace/{traced['trace_id']}/{endpoint}", params=params)
    assert_error(response, 422, "invalid_argument")


def test_malformed_json(client):
    response = client.post("/api/trace", content=b"{not json", headers={"content-type": "application/json"})
    assert_error(response, 400, "bad_request")
    assert client.get("/api/config").status_code == 200  # still serving


def test_llm_tt_config_with_local_model_path(tmp_path):
    """The original tool's configuration format; a model's path value is what gets loaded."""
    from test_loading import save_tiny_model

    save_tiny_model(tmp_path / "ckpt", seed=11)
    (tmp_path / "prompts.txt").write_text("the capital of france is\nparis is\n")
    (tmp_path / "config.json").write_text(json.dumps({
        "allow_loading_dataset_files": True, "preloaded_dataset_filename": "prompts.txt", "debug": True,
        "models": {"my-finetune": "ckpt"}, "default_model": "my-finetune", "demo_mode": True,
        "max_user_string_length": 40,
    }))
    config = load_config(tmp_path / "config.json")
    with TestClient(create_app(config, preload=False), base_url=LOCAL) as c:
        cfg = c.get("/api/config").json()
        assert cfg["models"] == ["my-finetune"] and cfg["prompts"] == ["the capital of france is", "paris is"]
        assert cfg["allow_custom_models"] is False and cfg["debug"] is True
        r = c.post("/api/trace", json={"model": "my-finetune", "prompt": "the capital of france is"})
        assert r.status_code == 200, r.text
        assert r.json()["facts"]["n_layers"] == 2 and r.json()["tokens"][1] == "capital"
        assert_error(c.post("/api/trace", json={"model": "gpt2", "prompt": "hi"}), 403, "forbidden")
        assert_error(c.post("/api/trace", json={"model": "my-finetune", "prompt": "x " * 30}), 413, "prompt_too_long")


def test_bad_config_file(tmp_path):
    from routelens.errors import RoutelensError

    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(RoutelensError, match="not a valid configuration"):
        load_config(tmp_path / "bad.json")
    assert ServerConfig().default_model == MODEL


def test_debug_endpoint_only_in_debug_mode(client, tmp_path):
    assert_error(client.get("/api/debug"), 403, "forbidden")
    (tmp_path / "c.json").write_text(json.dumps({"debug": True, "models": {MODEL: None}, "default_model": MODEL}))
    with TestClient(create_app(load_config(tmp_path / "c.json"), preload=False), base_url=LOCAL) as c:
        figures = c.get("/api/debug").json()
        assert figures["resident_mb"] > 10 and figures["traces_cached"] == 0
