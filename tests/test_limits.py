"""The server under load and faults: one computation per device behind a bounded queue (429 with
Retry-After when full), a time limit per request, cancellation when the client leaves, limits on
bodies, prompts and memory, and out-of-memory answered clearly, the server serving on."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
import torch
from fastapi.testclient import TestClient

from routelens import interrupt
from routelens.server.app import create_app
from routelens.server.config import ServerConfig
from servers import LOCAL, served_in_thread
from tiny_models import save_tiny_model

WORDS = ["the", "capital", "of", "france", "is", "paris", "a", "b", "c"]


def prompt(n: int, length: int = 6) -> str:
    return " ".join(WORDS[(n * 7 + k * (n + 1)) % len(WORDS)] for k in range(length))


@pytest.fixture(scope="module")
def folder(tiny_folder) -> Path:
    return tiny_folder


def config_for(folder: Path, **limits) -> ServerConfig:
    return ServerConfig(models={"tiny": str(folder)}, default_model="tiny", store=False, **limits)


@contextmanager
def client_for(folder: Path, **limits) -> Iterator[TestClient]:
    with TestClient(create_app(config_for(folder, **limits), preload=False), base_url=LOCAL) as client:
        yield client


def slow_down(client: TestClient, seconds_per_layer: float) -> list[int]:
    """Make every block of the served model sleep (a long computation); returns a layer counter."""
    slot = client.app.state.registry.get("tiny", 60)
    calls = [0]

    def hook(*_args, **_kwargs):
        calls[0] += 1
        time.sleep(seconds_per_layer)

    for layer in slot.model.adapter.layers():
        layer.block.register_forward_pre_hook(hook)
    return calls


def trace(client: TestClient, text: str) -> object:
    return client.post("/api/trace", json={"model": "tiny", "prompt": text})


# ---- bad sizes ---------------------------------------------------------------------------------
def test_body_over_the_limit_is_refused(folder):
    with client_for(folder, max_body_bytes=2048) as client:
        r = client.post("/api/trace", content=json.dumps({"model": "tiny", "prompt": "a " * 3000}),
                        headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
        chunks = (b'{"model": "tiny", "prompt": "' + b"a " * 1000 + b'"}' for _ in range(1))
        r = client.post("/api/trace", content=(c for c in [next(chunks)[:1500], b"a " * 1000]),
                        headers={"content-type": "application/json"})  # no length announced: counted as it comes
        assert r.status_code == 413, r.text
        assert trace(client, "the capital of france is").status_code == 200


def test_prompt_over_the_token_limit_is_refused(folder):
    with client_for(folder, max_prompt_tokens=4) as client:
        r = trace(client, "the capital of france is paris")
        assert r.status_code == 413 and "6 tokens" in r.json()["error"]["message"] and "at most 4" in r.json()["error"]["message"]
        assert trace(client, "the capital").status_code == 200


def test_memory_budget_refuses_a_big_trace_and_serves_the_next(folder):
    with client_for(folder, max_trace_memory_mb=0.05) as client:
        big = trace(client, " ".join(["paris"] * 30))
        assert big.status_code == 413, big.text
        message = big.json()["error"]["message"]
        assert "MiB" in message and "allows 0.05 MiB per trace" in message and "shorten the prompt" in message
        assert trace(client, "the capital").status_code == 200


def test_out_of_memory_during_a_trace_is_answered_and_the_server_serves_on(folder):
    with client_for(folder) as client:
        slot = client.app.state.registry.get("tiny", 60)
        failing = [True]

        def exhaust(*_args, **_kwargs):
            if failing[0]:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

        handle = slot.model.adapter.layers()[1].block.register_forward_pre_hook(exhaust)
        r = trace(client, "the capital of france")
        assert r.status_code == 503 and r.json()["error"]["code"] == "out_of_memory"
        assert "shorter prompt" in r.json()["error"]["message"]
        handle.remove()
        ok = trace(client, "the capital of france")
        assert ok.status_code == 200 and ok.json()["predictions"]


def test_export_over_the_edge_limit_is_refused(folder):
    with client_for(folder, max_export_edges=5) as client:
        tid = trace(client, "the capital of france is").json()["trace_id"]
        r = client.get(f"/api/trace/{tid}/export", params={"format": "svg", "threshold": 0.0})
        assert r.status_code == 413 and "raise the threshold" in r.json()["error"]["message"]


# ---- scheduling ---------------------------------------------------------------------------------
def test_sixteen_clients_at_once_get_what_sequential_runs_get(folder):
    prompts = [prompt(n) for n in range(16)]
    with client_for(folder) as client:
        sequential = []
        for p in prompts:
            body = trace(client, p).json()
            sequential.append((body["predictions"], client.get(f"/api/trace/{body['trace_id']}/graph").json()))
    with client_for(folder, max_queue=16) as client:  # a fresh server: nothing cached

        def one(p: str):
            r = trace(client, p)
            assert r.status_code == 200, r.text
            body = r.json()
            return body["predictions"], client.get(f"/api/trace/{body['trace_id']}/graph").json()

        with ThreadPoolExecutor(16) as pool:
            concurrent = list(pool.map(one, prompts))
    assert concurrent == sequential


def test_a_full_queue_answers_429_with_retry_after_and_later_succeeds(folder):
    # no timing: the running trace holds the device until the test lets it go, and each request is
    # sent once the server's own queue figures show the one before it in place
    with client_for(folder, max_queue=1) as client:
        slot = client.app.state.registry.get("tiny", 60)
        queue = client.app.state.queue
        started, release = threading.Event(), threading.Event()

        def hold(*_args, **_kwargs):
            started.set()
            assert release.wait(60)

        handle = slot.model.adapter.layers()[0].block.register_forward_pre_hook(hold)
        with ThreadPoolExecutor(2) as pool:
            running = pool.submit(trace, client, prompt(0))
            assert started.wait(60)
            waiting = pool.submit(trace, client, prompt(1))
            deadline = time.monotonic() + 60
            while queue.status()["waiting"].get("cpu", 0) < 1:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            turned_away = [trace(client, prompt(n)) for n in (2, 3)]  # the one place in the queue is taken
            handle.remove()
            release.set()
            results = [running.result(), waiting.result()]
        assert [r.status_code for r in results] == [200, 200]
        assert [r.status_code for r in turned_away] == [429, 429]
        busy = turned_away[0]
        assert int(busy.headers["retry-after"]) >= 1 and "busy" in busy.json()["error"]["message"]
        assert all(trace(client, prompt(n)).status_code == 200 for n in range(4))


def test_the_time_limit_stops_work_and_the_next_request_succeeds(folder):
    with client_for(folder, request_time_limit=0.25) as client:
        calls = slow_down(client, 0.2)
        r = trace(client, prompt(1))
        assert r.status_code == 503 and r.json()["error"]["code"] == "time_limit"
        assert "limit of 0.25 s" in r.json()["error"]["message"]
        assert calls[0] <= 2
        client.app.state.queue.time_limit = None
        assert trace(client, prompt(1)).status_code == 200


def test_work_stops_when_the_client_goes_away(folder):
    app = create_app(config_for(folder), preload=False)
    with served_in_thread(app) as port:
        slot = app.state.registry.get("tiny", 60)
        calls = [0]
        started = threading.Event()

        def held(*_a, **_k):  # layer 0 waits at its safe point until the work is cancelled
            calls[0] += 1
            started.set()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                interrupt.check()  # raises once the server cancels the work
                time.sleep(0.01)

        for layer in slot.model.adapter.layers():
            layer.block.register_forward_pre_hook(held)
        body = json.dumps({"model": "tiny", "prompt": prompt(3)}).encode()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"POST /api/trace HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                         + f"content-length: {len(body)}\r\n\r\n".encode() + body)
            assert started.wait(60)  # the forward pass is in its first layer
        deadline = time.monotonic() + 60
        while app.state.queue.status()["running"].get("cpu", 0):  # the server's own figure: work stopped
            assert time.monotonic() < deadline, "the work went on after the client left"
            time.sleep(0.02)
        assert calls[0] == 1, "the work went on after the client left"


def test_switching_models_lets_running_work_finish(folder, tmp_path):
    # the default model is never evicted (no client may take it from the others), so the switch
    # is between two other models: "first" is traced while loading "second" evicts it
    for name, seed in (("first", 12), ("second", 13)):
        save_tiny_model(tmp_path / name, seed=seed)
    config = ServerConfig(models={"tiny": str(folder), "first": str(tmp_path / "first"), "second": str(tmp_path / "second")},
                          default_model="tiny", store=False, max_loaded_models=1)
    with TestClient(create_app(config, preload=False), base_url=LOCAL) as client:
        slot = client.app.state.registry.get("first", 60)
        started = threading.Event()

        def hook(*_args, **_kwargs):
            started.set()
            time.sleep(0.4)

        for layer in slot.model.adapter.layers():
            layer.block.register_forward_pre_hook(hook)
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(lambda: client.post("/api/trace", json={"model": "first", "prompt": prompt(5)}))
            assert started.wait(60)  # first's forward pass is under way
            assert client.post("/api/models/load", json={"model": "second"}).status_code in (200, 202)
            assert "first" not in client.app.state.registry.slots  # evicted at once
            r = running.result()
        assert r.status_code == 200 and r.json()["predictions"], r.text
        deadline = time.monotonic() + 60
        while client.get("/api/models/status", params={"model": "second"}).json()["state"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert client.post("/api/trace", json={"model": "second", "prompt": prompt(5)}).status_code == 200