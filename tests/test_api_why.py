"""The endpoints that ask why (server/why.py, docs/api.md "Asking why") on the real default model:
each answer equals the library's own numbers for the same trace, and bad input is a clear 4xx."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

import routelens as rl
from routelens.server.app import create_app
from routelens.server.config import ServerConfig, load_config
from servers import LOCAL
from test_api import assert_error

MODEL = "smollm2-135m-instruct"
IOI = "When Mary and John went to the store, John gave a drink to"
IOI_B = "When Mary and John went to the park, Mary gave a ball to"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(smollm2):
    config = load_config(None).model_copy(update={"max_generate_tokens": 8, "max_verify_trials": 3})
    with TestClient(create_app(config, preload=False), base_url=LOCAL) as c:
        yield c


@pytest.fixture(scope="module")
def library():
    return rl.load(MODEL)


def trace_id(client, prompt: str, **extra) -> dict:
    r = client.post("/api/trace", json={"model": MODEL, "prompt": prompt, **extra})
    assert r.status_code == 200, r.text
    return r.json()


def test_contrastive_graph_and_attribution_equal_the_library(client, library):
    t = trace_id(client, IOI)
    john = next(p["id"] for p in library.trace(IOI, store=False).predictions(k=50)[-1] if p["token"] == " John")
    r = client.get(f"/api/trace/{t['trace_id']}/graph", params={"foil": " John", "threshold": 0.04})
    assert r.status_code == 200, r.text
    g = r.json()
    assert g["target"]["token"] == " Mary" and g["target"]["foil"] == " John" and g["target"]["foil_id"] == john
    mine = library.trace(IOI, store=False).graph(-1, 0.04, foil=" John")
    assert {(e["source"], e["target"], e["kind"]) for e in g["edges"]} == {
        (e["source"], e["target"], e["kind"]) for e in mine.edges}
    by_id = client.get(f"/api/trace/{t['trace_id']}/graph", params={"foil_id": john}).json()
    assert by_id["edges"] == g["edges"]
    a = client.get(f"/api/trace/{t['trace_id']}/attribution", params={"foil_id": john}).json()
    assert a["total"] == pytest.approx(a["logit_diff"], abs=1e-3)
    assert a["logit_diff"] == pytest.approx(g["target"]["logit_diff"], abs=1e-5)
    ffn = client.get(f"/api/trace/{t['trace_id']}/ffn", params={"layer": 20, "pos": -1, "foil_id": john, "k": 5}).json()
    assert [n["dla"] for n in ffn["attribution"]] == pytest.approx(
        [n["dla"] for n in library.trace(IOI, store=False).neuron_attribution(20, -1, None, john, k=5)], abs=1e-5)
    # refusals that say what to do
    assert "foil is the target token itself" in assert_error(
        client.get(f"/api/trace/{t['trace_id']}/graph", params={"foil": " Mary"}), 422, "invalid_argument")["message"]
    assert "not both" in assert_error(client.get(f"/api/trace/{t['trace_id']}/graph",
                                                 params={"foil": " John", "foil_id": john}), 422, "invalid_argument")["message"]


def test_generation_traces_the_continuation(client, library):
    t = trace_id(client, "The capital of France is", generate=4)
    gen = t["generation"]
    mine = library.generate("The capital of France is", 4, store=False)
    assert [s["token_id"] for s in gen["steps"]] == [s["token_id"] for s in mine.steps]
    assert t["token_ids"] == mine.trace.token_ids and gen["prompt_length"] == mine.prompt_length
    step = gen["steps"][1]
    g = client.get(f"/api/trace/{t['trace_id']}/graph", params={"target": step["pos"], "token_id": step["token_id"]}).json()
    assert g["target"]["pos"] == step["pos"] and g["target"]["token_id"] == step["token_id"]
    plain = trace_id(client, "The capital of France is")
    assert plain["trace_id"] != t["trace_id"] and plain["generation"] is None
    assert "at most 8 tokens" in assert_error(
        client.post("/api/trace", json={"model": MODEL, "prompt": "Hi", "generate": 9}), 403, "forbidden")["message"]


def test_verify_equals_the_library_and_is_bounded(client, library):
    t = trace_id(client, "The capital of France is")
    r = client.get(f"/api/trace/{t['trace_id']}/verify", params={"trials": 2})
    assert r.status_code == 200, r.text
    report = r.json()
    mine = library.trace("The capital of France is", store=False).verify(-1, 0.04, trials=2)
    assert report["route"]["prob"] == pytest.approx(mine.route["prob"], rel=1e-4)
    assert report["beats_random"] is True
    curve = client.get(f"/api/trace/{t['trace_id']}/verify", params={"curve": True, "thresholds": "0.02,0.08",
                                                                     "trials": 1}).json()
    assert [c["threshold"] for c in curve["reports"]] == [0.02, 0.08]
    assert "max_verify_trials" in assert_error(
        client.get(f"/api/trace/{t['trace_id']}/verify", params={"trials": 4}), 403, "forbidden")["message"]
    assert "comma-separated" in assert_error(client.get(
        f"/api/trace/{t['trace_id']}/verify", params={"curve": True, "thresholds": "a,b"}), 422, "invalid_argument")["message"]


def test_compare_equals_the_library(client, library):
    a, b = trace_id(client, IOI), trace_id(client, IOI_B)
    r = client.post("/api/compare", json={"trace_a": a["trace_id"], "trace_b": b["trace_id"], "top": 5})
    assert r.status_code == 200, r.text
    got = r.json()
    mine = rl.compare(library.trace(IOI, store=False), library.trace(IOI_B, store=False), top=5)
    assert [(h["layer"], h["head"]) for h in got["heads"]] == [(h["layer"], h["head"]) for h in mine.heads]
    for edge in got["graph"]["edges"]:
        assert edge["delta"] == pytest.approx(edge["weight_b"] - edge["weight_a"], abs=1e-9)
    assert got["graph"]["compare"]["alignment"][7]["token_a"] == " store"
    assert_error(client.post("/api/compare", json={"trace_a": a["trace_id"], "trace_b": "nope"}), 404, "unknown_trace")
