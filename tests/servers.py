"""Start `routelens serve` in a subprocess on a free localhost port, for browser tests and benchmarks."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

# in-process test clients talk to the app as a browser on this machine would: Host 127.0.0.1
# (the app refuses Host names it does not know, such as TestClient's default "testserver")
LOCAL = "http://127.0.0.1"

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, timeout: float = 10, token: str | None = None) -> dict:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as r:
        return json.loads(r.read())


@contextlib.contextmanager
def running_server(*args: str, ready_model: str | None = "smollm2-135m-instruct", timeout: float = 600) -> Iterator[str]:
    """Yield the base URL of a fresh server; wait (bounded) until it answers and the model is loaded."""
    port = free_port()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"routelens-serve-{port}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "routelens", "serve", "--host", "127.0.0.1", "--port", str(port), *args],
            stdout=out, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    token = args[args.index("--token") + 1] if "--token" in args else None
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"routelens serve exited early:\n{log.read_text()[-3000:]}")
            try:
                get_json(base + "/api/health", timeout=2)
                if ready_model is None or get_json(f"{base}/api/models/status?model={ready_model}", token=token)["state"] == "ready":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"routelens serve did not get ready in {timeout}s")
            time.sleep(0.25)
        yield base
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    """End a server process: politely, then for good."""
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@contextlib.contextmanager
def served_in_thread(app: Any, **options: Any) -> Iterator[int]:
    """Serve `app` in this process with `routelens serve`'s own uvicorn settings on a free port;
    yields the port once it listens (the server's own `started` signal, bounded)."""
    import threading

    import uvicorn

    from routelens.server.http import uvicorn_config

    class Signalling(uvicorn.Server):
        """Sets `listening` once uvicorn's startup is done (its sockets bound), or it failed."""

        def __init__(self, config: Any) -> None:
            super().__init__(config)
            self.listening = threading.Event()

        async def startup(self, sockets: Any = None) -> None:
            try:
                await super().startup(sockets=sockets)
            finally:
                self.listening.set()

    port = free_port()
    server = Signalling(uvicorn_config(app, "127.0.0.1", port, **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        # the server's own signal; the bound only ends a hang (as the browser tests' WAIT_MS)
        assert server.listening.wait(timeout=600) and server.started, "the in-process server did not start"
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise RuntimeError("Debian's chromium is needed for browser tests: apt-get install -y chromium")
    return path


@contextlib.contextmanager
def tiny_app(folder: Path, seed: int, **config: Any) -> Iterator[tuple[Any, str, dict]]:
    """An in-process app (TestClient) serving a tiny local model saved in `folder`, with one
    prompt traced: yields (client, trace id, its graph at threshold 0.01)."""
    from fastapi.testclient import TestClient

    from routelens.server.app import create_app
    from routelens.server.config import ServerConfig
    from tiny_models import save_tiny_model

    save_tiny_model(folder, seed=seed)
    cfg = ServerConfig(models={"tiny": str(folder)}, default_model="tiny", **config)
    with TestClient(create_app(cfg, preload=False), base_url=LOCAL) as client:
        tid = client.post("/api/trace", json={"model": "tiny", "prompt": "the capital of france is"}).json()["trace_id"]
        yield client, tid, client.get(f"/api/trace/{tid}/graph", params={"threshold": 0.01}).json()


def hold_model_loads(monkeypatch: Any) -> Any:
    """Make the server's model loads wait until the returned event is set (a slow download)."""
    import threading

    import routelens.server.state as state

    release = threading.Event()
    real = state.load

    def held(*args: Any, **kwargs: Any) -> Any:
        assert release.wait(60), "the test never released the held model load"
        return real(*args, **kwargs)

    monkeypatch.setattr(state, "load", held)
    return release


def page_api(page: Any, path: str, body: dict | None = None) -> Any:
    """The API as a page of the web app calls it (same origin, same cookies): a GET, or a POST of
    `body` as JSON; the answer's JSON, or an AssertionError with the status and the message."""
    out = page.evaluate("""async ([path, body]) => {
        const r = await fetch(path, body === null ? {} : {method: 'POST', headers: {'Content-Type': 'application/json'},
                                                          body: JSON.stringify(body)});
        return {status: r.status, text: await r.text()};
    }""", [path, body])
    assert out["status"] == 200, f"{path}: HTTP {out['status']}: {out['text'][:500]}"
    return json.loads(out["text"])


def drawn_edges(page: Any) -> set[tuple[str, str, str]]:
    """The (source, target, kind) of every edge hook the page has drawn."""
    edges = page.locator("[data-testid=graph-edge]").evaluate_all(
        "els => els.map(e => [e.dataset.source, e.dataset.target, e.dataset.kind])")
    return {tuple(e) for e in edges}


def edges_of(graph: dict) -> set[tuple[str, str, str]]:
    """The (source, target, kind) of every edge of an API graph."""
    return {(e["source"], e["target"], e["kind"]) for e in graph["edges"]}
