"""The persistent trace store: hits without a forward pass, misses on any change, LRU budget,
several processes at once, crashes at every step of a write, damaged entries."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import routelens as rl
from routelens.store import TraceStore
from routelens.store.store import parse_size

import tiny_models
from store_worker import prompt as worker_prompt
from tiny_models import PROMPT, TinyTokenizer, save_tiny_model
from servers import LOCAL

WORKER = Path(__file__).with_name("store_worker.py")
# What a replayed layer holds (trace/capture.py LayerCapture), compared field by field.
LAYER_FIELDS = ("resid_in", "attn_in", "attn_out", "attn_write", "ffn_in", "ffn_act", "ffn_out", "ffn_write", "resid_out")


def tiny(seed: int = 0, revision: str | None = None, family: str = "llama") -> rl.Model:
    model = rl.wrap(getattr(tiny_models, family)(), TinyTokenizer(), name="tiny")
    model.source.revision = revision
    return model


class ForwardCounter:
    """Counts the model's forward passes: whole-network calls that run the first block's attention.
    A replay of one layer (no whole-network call) and the pass that only records how blocks are
    called (trace/capture.py `record_block_calls`: no block computes) are not forward passes."""

    def __init__(self, model: rl.Model) -> None:
        self.n = 0
        self._inside = False
        model.hf_model.register_forward_pre_hook(self._enter)
        model.hf_model.register_forward_hook(self._leave)
        model.adapter.spec(0).attn.register_forward_pre_hook(self._block)

    def _enter(self, *_args) -> None:
        self._inside, self._counted = True, False

    def _leave(self, *_args) -> None:
        self._inside = False

    def _block(self, *_args) -> None:
        if self._inside and not self._counted:
            self.n += 1
            self._counted = True


def graph_json(trace, **kw) -> str:
    return json.dumps(trace.graph(**kw).to_dict())


def assert_graphs_close(a: dict, b: dict, tol: float = 1e-6) -> None:
    """Same nodes and edges, weights equal to `tol`: for importances computed in another process,
    whose L1 kernel may be the compiled one (its float sums round differently in the last bits)."""
    assert a["nodes"] == b["nodes"]
    key = lambda e: (e["source"], e["target"], e["kind"])  # noqa: E731
    wa, wb = {key(e): e["weight"] for e in a["edges"]}, {key(e): e["weight"] for e in b["edges"]}
    assert wa.keys() == wb.keys()
    assert max(abs(wa[k] - wb[k]) for k in wa) <= tol


def assert_same_capture(a, b) -> None:
    assert a.token_ids == b.token_ids
    assert torch.equal(a.capture.last_logits, b.capture.last_logits)
    for i in range(a.capture.n_layers + 1):  # what the store keeps: the residual stream, bit for bit
        assert torch.equal(a.capture.resid(i), b.capture.resid(i)), i
    for la, lb in zip(a.capture.layers, b.capture.layers):  # and what is replayed from it
        assert torch.equal(la.pattern, lb.pattern)
        for field in LAYER_FIELDS:
            x, y = getattr(la, field), getattr(lb, field)
            assert (x is None) == (y is None), field
            if x is not None:
                assert torch.equal(x, y), field


def every_entry_reads_back(store: TraceStore) -> int:
    """Open every entry and read each tensor; fail on any warning (a damaged entry)."""
    import warnings

    n = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for e in store.entries():
            capture = store.open_capture(e.key, torch.device("cpu"), recompute=lambda: pytest.fail("recomputed"))
            assert capture is not None
            for i in range(capture.n_layers + 1):
                capture.resid(i)
            assert capture.last_logits is not None
            n += 1
    return n


# ---- hits and misses -------------------------------------------------------------------------------
def test_second_identical_trace_runs_no_forward_pass(tmp_path):
    store = TraceStore(tmp_path)
    model = tiny()
    forwards = ForwardCounter(model)
    first = model.trace(PROMPT, store=store)
    g1 = graph_json(first, threshold=0.0)
    assert forwards.n == 1
    second = model.trace(PROMPT, store=store)
    assert forwards.n == 1, "the stored trace ran the model"
    assert second.capture.extra.get("stored")
    reference = model.trace(PROMPT, store=False)
    assert_same_capture(second, reference)
    assert graph_json(second, threshold=0.0) == g1 == graph_json(reference, threshold=0.0)
    assert second.check().ok
    assert second.top_tokens("block", 1, -1) == reference.top_tokens("block", 1, -1)
    assert second.neurons(0, 3) == reference.neurons(0, 3)


def test_stored_importances_are_reused(tmp_path, monkeypatch):
    store = TraceStore(tmp_path)
    model = tiny()
    first = model.trace(PROMPT, store=store)
    predictions = first.predictions(k=5)
    g1 = graph_json(first, threshold=0.01)
    from routelens.trace import trace as trace_module

    def fail(*_a, **_k):
        raise AssertionError("importances were recomputed")

    monkeypatch.setattr(trace_module, "attention_node_importances", fail)
    monkeypatch.setattr(trace_module, "ffn_node_importances", fail)
    second = model.trace(PROMPT, store=store)
    assert 5 in second._predictions  # read back, not recomputed
    assert second.predictions(k=5) == predictions == model.trace(PROMPT, store=False).predictions(k=5)
    assert graph_json(second, threshold=0.01) == g1


@pytest.mark.parametrize("change", ["prompt", "revision", "weights", "dtype", "config"])
def test_any_change_that_moves_the_numbers_misses(tmp_path, change):
    store = TraceStore(tmp_path)
    model = tiny()
    model.trace(PROMPT, store=store)
    prompt = PROMPT
    if change == "prompt":
        prompt = PROMPT[:-1] + [PROMPT[-1] + 1]
    elif change == "revision":
        model = tiny(revision="v2")
    elif change == "weights":  # an in-place edit after loading
        with torch.no_grad():
            model.hf_model.model.layers[0].mlp.down_proj.weight.mul_(1.5)
    elif change == "dtype":
        model.hf_model.to(torch.float64)
    elif change == "config":
        model = tiny()
        model.hf_model.config.rms_norm_eps = 1e-3
    forwards = ForwardCounter(model)
    trace = model.trace(prompt, store=store)
    assert forwards.n == 1 and not trace.capture.extra.get("stored")
    assert len(store.entries()) == 2


def test_norm_shares_the_capture_but_not_the_importances(tmp_path):
    store = TraceStore(tmp_path)
    model = tiny()
    graph_json(model.trace(PROMPT, store=store, norm=1), threshold=0.0)
    forwards = ForwardCounter(model)
    l2 = model.trace(PROMPT, store=store, norm=2)
    assert forwards.n == 0
    assert graph_json(l2, threshold=0.0) == graph_json(model.trace(PROMPT, store=False, norm=2), threshold=0.0)


def test_local_folder_is_keyed_by_its_file_contents(tmp_path):
    store = TraceStore(tmp_path / "store")
    save_tiny_model(tmp_path / "m", seed=1)
    a = rl.load(str(tmp_path / "m"))
    a.trace("the capital of france is", store=store)
    assert a.trace("the capital of france is", store=store).capture.extra.get("stored")
    save_tiny_model(tmp_path / "m", seed=2)  # the same folder, fine-tuned: other weights
    b = rl.load(str(tmp_path / "m"))
    assert not b.trace("the capital of france is", store=store).capture.extra.get("stored")
    assert len(store.entries()) == 2


def test_store_off_by_environment_and_flag(tmp_path, monkeypatch):
    from routelens.store import default_store

    monkeypatch.setenv("ROUTELENS_STORE", "off")
    assert default_store() is None
    model = tiny()
    assert not model.trace(PROMPT).capture.extra.get("stored")
    monkeypatch.setenv("ROUTELENS_STORE", str(tmp_path))
    model.trace(PROMPT)
    assert model.trace(PROMPT).capture.extra.get("stored")
    assert not model.trace(PROMPT, store=False).capture.extra.get("stored")


# ---- the budget ----------------------------------------------------------------------------------
def test_budget_evicts_the_least_recently_used(tmp_path):
    model = tiny()
    probe = TraceStore(tmp_path / "probe")
    model.trace(PROMPT, store=probe)
    one = probe.info()["bytes"]
    store = TraceStore(tmp_path / "s", budget=int(one * 2.5))  # room for two entries
    prompts = {name: PROMPT[:-1] + [k] for k, name in enumerate("abc")}
    model.trace(prompts["a"], store=store)
    time.sleep(0.01)
    model.trace(prompts["b"], store=store)
    time.sleep(0.01)
    assert model.trace(prompts["a"], store=store).capture.extra.get("stored")  # a is now the most recent
    time.sleep(0.01)
    model.trace(prompts["c"], store=store)
    forwards = ForwardCounter(model)
    assert model.trace(prompts["a"], store=store).capture.extra.get("stored")
    assert model.trace(prompts["c"], store=store).capture.extra.get("stored")
    assert forwards.n == 0
    assert store.info()["bytes"] <= store.budget
    assert len(list(store.blobs.iterdir())) == store.info()["entries"] + store.info()["segments"]
    keys_before = {e.key for e in store.entries()}
    assert not model.trace(prompts["b"], store=store).capture.extra.get("stored")  # b was evicted
    assert len(keys_before) == 2


def test_parse_size():
    assert parse_size("4G") == 4 << 30 and parse_size("512M") == 512 << 20 and parse_size("1.5GiB") == int(1.5 * (1 << 30))
    assert parse_size("1000") == 1000
    with pytest.raises(rl.RoutelensError, match="512M"):
        parse_size("lots")


# ---- damage ----------------------------------------------------------------------------------------
def _blob_of(store: TraceStore) -> Path:
    import sqlite3

    with sqlite3.connect(store.root / "index.sqlite") as db:
        return store.blobs / db.execute("SELECT file FROM entries").fetchone()[0]


def test_a_flipped_byte_is_detected_dropped_and_recomputed(tmp_path):
    store = TraceStore(tmp_path)
    model = tiny()
    reference = model.trace(PROMPT, store=store)
    blob = _blob_of(store)
    data = bytearray(blob.read_bytes())
    data[-40] ^= 0x10  # inside the last tensor's data
    blob.write_bytes(bytes(data))
    forwards = ForwardCounter(model)
    damaged = model.trace(PROMPT, store=store)
    with pytest.warns(RuntimeWarning, match="damaged") as caught:
        g = graph_json(damaged, threshold=0.0)
        damaged.check()
    assert len(caught) == 1
    assert forwards.n == 1  # recomputed once
    assert g == graph_json(model.trace(PROMPT, store=False), threshold=0.0)
    assert_same_capture(damaged, reference)
    assert every_entry_reads_back(store) == 1  # the fresh capture replaced the damaged entry
    assert not blob.exists()


def test_a_truncated_file_is_detected_at_open(tmp_path):
    store = TraceStore(tmp_path)
    model = tiny()
    model.trace(PROMPT, store=store)
    blob = _blob_of(store)
    blob.write_bytes(blob.read_bytes()[:5])
    with pytest.warns(RuntimeWarning, match="damaged"):
        trace = model.trace(PROMPT, store=store)
    assert not trace.capture.extra.get("stored")
    assert trace.check().ok


def test_damaged_importance_rows_are_recomputed(tmp_path):
    import sqlite3

    store = TraceStore(tmp_path)
    model = tiny()
    g = graph_json(model.trace(PROMPT, store=store), threshold=0.0)
    with sqlite3.connect(store.root / "index.sqlite") as db:
        seg = store.blobs / db.execute("SELECT file FROM segments").fetchone()[0]
    data = bytearray(seg.read_bytes())
    data[-8] ^= 0xFF
    seg.write_bytes(bytes(data))
    with pytest.warns(RuntimeWarning, match="importance rows"):
        trace = model.trace(PROMPT, store=store)
    assert graph_json(trace, threshold=0.0) == g


# ---- several processes and crashes ---------------------------------------------------------------------
def test_two_processes_writing_at_once_leave_a_readable_store(tmp_path):
    save_tiny_model(tmp_path / "m", seed=3)
    root = tmp_path / "store"
    TraceStore(root)
    procs = [
        subprocess.Popen([sys.executable, str(WORKER), str(root), str(tmp_path / "m"), str(first), "6"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for first in (0, 3)  # prompts 3..5 are written by both at once
    ]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    store = TraceStore(root)
    assert every_entry_reads_back(store) == 9
    model = rl.load(str(tmp_path / "m"))
    forwards = ForwardCounter(model)
    for n in range(9):
        trace = model.trace(worker_prompt(n), store=store)
        assert trace.capture.extra.get("stored")
        assert_graphs_close(trace.graph(threshold=0.0).to_dict(), model.trace(worker_prompt(n), store=False).graph(threshold=0.0).to_dict())
    assert forwards.n == 9  # only the store=False references ran
    assert len(list(store.blobs.iterdir())) == store.info()["entries"] + store.info()["segments"]


@pytest.mark.parametrize("point", ["blob", "rename", "commit"])
def test_a_writer_killed_mid_write_leaves_only_intact_entries(tmp_path, point):
    save_tiny_model(tmp_path / "m", seed=4)
    root = tmp_path / "store"
    store = TraceStore(root)
    model = rl.load(str(tmp_path / "m"))
    model.trace(worker_prompt(100), store=store)  # one complete entry before the crash
    marker = tmp_path / "reached"
    proc = subprocess.Popen([sys.executable, str(WORKER), str(root), str(tmp_path / "m"), "0", "1", point, str(marker)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the worker never reached the kill point"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    store = TraceStore(root)
    assert every_entry_reads_back(store) == 1  # the half-written trace is absent, the old one intact
    forwards = ForwardCounter(model)
    trace = model.trace(worker_prompt(0), store=store)  # the killed writer's prompt: a clean miss
    assert forwards.n == 1 and trace.check().ok
    assert every_entry_reads_back(store) == 2
    orphans = len(list(store.blobs.iterdir())) - store.info()["entries"] - store.info()["segments"]
    # the killed writer's blob, named by no row: never read, removed by gc; a temporary (killed
    # mid-write) names its dead writer and was removed when the store was opened
    assert orphans == (0 if point == "blob" else 1)
    assert store.gc(max_age=0.0) == orphans
    assert len(list(store.blobs.iterdir())) == store.info()["entries"] + store.info()["segments"]


# ---- the command line -------------------------------------------------------------------------------
def test_cache_commands(tmp_path):
    store = TraceStore(tmp_path)
    tiny().trace(PROMPT, store=store)
    env = {**os.environ, "ROUTELENS_STORE": str(tmp_path)}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "routelens", "cache", *args], capture_output=True, text=True, env=env, timeout=120)

    ls = cli("ls")
    assert ls.returncode == 0 and store.entries()[0].key[:12] in ls.stdout
    info = cli("info")
    assert info.returncode == 0 and "1 traces" in info.stdout and str(tmp_path) in info.stdout.replace("\n", "")
    assert "of which 0 B in files no stored trace names" in info.stdout.replace("\n", " ")
    cleared = cli("clear")
    assert cleared.returncode == 0 and "removed 1 stored trace" in cleared.stdout
    assert store.info()["entries"] == 0 and not list(store.blobs.iterdir())
    off = subprocess.run([sys.executable, "-m", "routelens", "cache", "info"], capture_output=True, text=True,
                         env={**env, "ROUTELENS_STORE": "off"}, timeout=120)
    assert off.returncode == 0 and "off" in off.stdout


def test_cli_trace_uses_the_store_and_no_store_bypasses_it(tmp_path):
    save_tiny_model(tmp_path / "m", seed=5)
    env = {**os.environ, "ROUTELENS_STORE": str(tmp_path / "store")}

    def trace(*extra):
        r = subprocess.run([sys.executable, "-m", "routelens", "trace", str(tmp_path / "m"), "the capital of france is", *extra],
                           capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, r.stderr
        return r

    trace("--no-store")
    store = TraceStore(tmp_path / "store")
    assert store.info()["entries"] == 0
    trace()
    assert store.info()["entries"] == 1 and store.info()["segments"] == 1


# ---- the server -------------------------------------------------------------------------------------
def test_a_restarted_server_reads_traces_back_from_the_store(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from routelens.server.app import create_app
    from routelens.server.config import ServerConfig

    save_tiny_model(tmp_path / "m", seed=6)
    monkeypatch.setenv("ROUTELENS_STORE", str(tmp_path / "store"))
    config = ServerConfig(models={"tiny": str(tmp_path / "m")}, default_model="tiny")
    body = {"model": "tiny", "prompt": "the capital of france is"}
    results = []
    for _restart in range(2):
        with TestClient(create_app(config, preload=False), base_url=LOCAL) as client:
            r = client.post("/api/trace", json=body)
            assert r.status_code == 200, r.text
            g = client.get(f"/api/trace/{r.json()['trace_id']}/graph", params={"threshold": 0.0})
            results.append((r.json(), g.json()))
    (first, g1), (second, g2) = results
    assert first["timings"]["stored"] is False and second["timings"]["stored"] is True
    assert first["predictions"] == second["predictions"] and g1 == g2
    config.store = False
    with TestClient(create_app(config, preload=False), base_url=LOCAL) as client:
        assert client.post("/api/trace", json=body).json()["timings"]["stored"] is False


def test_many_row_segments_are_merged_into_one(tmp_path):
    store = TraceStore(tmp_path)
    model = tiny()
    first = model.trace(PROMPT, store=store)
    graphs = [graph_json(first, target=t, threshold=0.0) for t in range(6)]  # each computes new rows
    predictions = first.predictions(k=3)
    assert store.info()["segments"] >= 6
    second = model.trace(PROMPT, store=store)
    assert store.info()["segments"] == 1
    assert len(list(store.blobs.iterdir())) == 2
    third = model.trace(PROMPT, store=store)
    assert [graph_json(third, target=t, threshold=0.0) for t in range(6)] == graphs
    assert third.predictions(k=3) == predictions == second.predictions(k=3)
