"""The trace store under abuse: writes killed or interrupted mid-way, entries larger than the
budget, budgets that make no sense, and a damaged index. Each test reproduces one fault found in
review (it failed before the fix) and checks the real numbers: bytes on disk, warnings, traces."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import routelens as rl
from routelens.store import TraceStore, default_store
from routelens.store import store as store_module
from routelens.store.codec import capture_tensors
from routelens.store.store import ORPHAN_AGE_S, parse_size

import tiny_models
from store_worker import prompt as worker_prompt
from tiny_models import PROMPT, TinyTokenizer

WORKER = Path(__file__).with_name("store_worker.py")


def tiny() -> rl.Model:
    return rl.wrap(tiny_models.llama(), TinyTokenizer(), name="tiny")


def on_disk(store: TraceStore) -> dict[str, int]:
    """{file name: bytes} of everything under blobs/, measured independently of the store."""
    return {p.name: p.stat().st_size for p in store.blobs.iterdir()}


def temporaries(store: TraceStore) -> dict[str, int]:
    return {name: size for name, size in on_disk(store).items() if name.startswith(".tmp-")}


def graph_json(trace, **kw) -> str:
    return json.dumps(trace.graph(**kw).to_dict())


def wait_for(condition, what: str, proc: subprocess.Popen | None = None, timeout: float = 120.0) -> None:
    """Poll `condition` until it holds; fail after `timeout` seconds or when `proc` exits first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the worker exited before {what}: {proc.communicate()[1][-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {timeout:.0f} s")
        time.sleep(0.05)


def dead_pid() -> int:
    """The PID of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=60)
    with pytest.raises(ProcessLookupError):
        os.kill(proc.pid, 0)
    return proc.pid


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def entry_bytes(tmp_path: Path) -> int:
    """The file size of one stored capture of the tiny model on PROMPT."""
    probe = TraceStore(tmp_path / "probe")
    tiny().trace(PROMPT, store=probe)
    return probe.info()["bytes"]


# ---- 1. leftovers of interrupted and killed writes ---------------------------------------------------
@pytest.mark.parametrize("where", ["capture file", "capture commit", "rows file"])
def test_an_interrupted_write_removes_its_files(tmp_path, monkeypatch, where):
    store = TraceStore(tmp_path)
    model = tiny()
    if where == "rows file":
        trace = model.trace(PROMPT, store=store)  # the capture is stored; the rows come with the graph
    before = on_disk(store)
    seen: list[tuple[str, int]] = []
    real_save = store_module.save_file

    def interrupted_save(tensors, path):  # Ctrl-C half-way through writing the file
        real_save(tensors, path)
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[: len(data) // 2])
        seen.append((Path(path).name, len(data) // 2))
        raise KeyboardInterrupt

    def interrupted_commit(*_a, **_k):
        seen.append(("commit", 0))
        raise KeyboardInterrupt

    if where == "capture commit":
        monkeypatch.setattr(TraceStore, "_make_room", interrupted_commit)
    else:
        monkeypatch.setattr(store_module, "save_file", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        if where == "rows file":
            trace.graph(threshold=0.0)
        else:
            model.trace(PROMPT, store=store)
    assert seen, "the write was never interrupted"
    assert on_disk(store) == before, f"interrupted write left {sorted(set(on_disk(store)) - set(before))}"
    if where != "capture commit":  # the temporary named its writer
        name, size = seen[0]
        assert name.startswith(f".tmp-{os.getpid()}-") and size > 0, (name, size)
    info = store.info()
    assert info["disk_bytes"] == sum(before.values()) and info["leftover_bytes"] == 0


def test_a_killed_writers_temporary_is_counted_then_removed_on_open(tmp_path, tiny_folder):
    root = tmp_path / "store"
    store = TraceStore(root)
    model = rl.load(str(tiny_folder))
    model.trace(worker_prompt(100), store=store)  # one complete entry
    indexed = store.info()["bytes"]
    marker = tmp_path / "reached"
    proc = subprocess.Popen([sys.executable, str(WORKER), str(root), str(tiny_folder), "0", "1", "blob", str(marker)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(marker.exists, "half-written temporary", proc)
        tmps = temporaries(store)
        assert len(tmps) == 1, tmps
        (name, size), = tmps.items()
        assert name.startswith(f".tmp-{proc.pid}-") and size > 0
        info = store.info()  # the writer is alive: its temporary is on disk and reported as such
        assert (info["bytes"], info["leftover_bytes"], info["disk_bytes"]) == (indexed, size, indexed + size)
        assert store.gc(max_age=0.0) == 0 and temporaries(TraceStore(root)) == tmps, "a live writer's file was removed"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert temporaries(store) == tmps  # killed: nothing removed it yet
    reopened = TraceStore(root)
    assert temporaries(reopened) == {}, "opening the store did not remove the dead writer's temporary"
    info = reopened.info()
    assert (info["bytes"], info["leftover_bytes"], info["disk_bytes"]) == (indexed, 0, indexed)
    assert sum(on_disk(reopened).values()) == indexed
    assert model.trace(worker_prompt(0), store=reopened).check().ok


def test_opening_removes_exactly_the_leftovers_no_writer_can_still_need(tmp_path):
    store = TraceStore(tmp_path)
    blobs = store.blobs
    files = {
        "live": f".tmp-{os.getpid()}-aa.safetensors",  # this process: still writing
        "dead": f".tmp-{dead_pid()}-bb.safetensors",  # its writer is gone
        "reused": f".tmp-{os.getpid()}-cc.safetensors",  # an alive PID, but too old: the PID was reused
        "unknown_young": f".tmp-{'1' * 32}.safetensors",  # no PID (an older routelens): age decides
        "unknown_old": f".tmp-{'2' * 32}.safetensors",
        "orphan_young": f"{'a' * 32}.safetensors",  # complete, no row: a writer may be about to commit it
        "orphan_old": f"{'b' * 32}.safetensors",
        "foreign_old": "notes.txt",  # not the store's: never touched, never counted
    }
    for kind, name in files.items():
        (blobs / name).write_bytes(b"x" * (1000 + len(kind)))
        if kind.endswith("old") or kind == "reused":
            age(blobs / name, ORPHAN_AGE_S + 60)
    TraceStore(tmp_path)
    kept = {"live", "unknown_young", "orphan_young"}
    assert set(on_disk(store)) == {files[k] for k in kept | {"foreign_old"}}
    info = store.info()
    assert info["leftover_bytes"] == info["disk_bytes"] == sum(1000 + len(k) for k in kept) and info["bytes"] == 0
    assert store.gc(max_age=0.0) == 1  # the young orphan; temporaries of live writers stay
    assert set(on_disk(store)) == {files["live"], files["unknown_young"], "notes.txt"}


@pytest.mark.parametrize("writer", ["live", "dead"])
def test_leftovers_cannot_push_the_store_over_its_budget(tmp_path, writer):
    one = entry_bytes(tmp_path)
    store = TraceStore(tmp_path / "s", budget=int(one * 2.5))  # room for two entries
    model = tiny()
    prompts = [PROMPT[:-1] + [k] for k in range(3)]
    model.trace(prompts[0], store=store)
    model.trace(prompts[1], store=store)
    pid = os.getpid() if writer == "live" else dead_pid()
    (store.blobs / f".tmp-{pid}-dd.safetensors").write_bytes(b"x" * one)  # a writer's temporary, one entry big
    model.trace(prompts[2], store=store)
    disk = sum(on_disk(store).values())
    assert disk <= store.budget, f"{disk} bytes on disk for a budget of {store.budget}"
    info = store.info()
    assert info["disk_bytes"] == disk and info["bytes"] + info["leftover_bytes"] == disk
    assert model.trace(prompts[2], store=store).capture.extra.get("stored")
    if writer == "live":  # its temporary stays, and the newest entry with it: the others were evicted
        assert info["leftover_bytes"] == one and info["entries"] == 1
    else:  # the dead writer's file was removed to make room, then one LRU entry went
        assert info["leftover_bytes"] == 0 and info["entries"] == 2


# ---- 2. one entry larger than the budget -----------------------------------------------------------
def test_a_capture_whose_file_exceeds_the_budget_is_not_stored(tmp_path):
    model = tiny()
    reference = model.trace(PROMPT, store=False)
    tensors, _ = capture_tensors(reference.capture)
    nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
    store = TraceStore(tmp_path, budget=nbytes)  # the tensors fit, the file (with its header) does not
    trace = model.trace(PROMPT, store=store)
    assert store.info()["entries"] == 0 and store.info()["bytes"] == 0
    assert on_disk(store) == {}
    assert not model.trace(PROMPT, store=store).capture.extra.get("stored")
    assert graph_json(trace, threshold=0.0) == graph_json(reference, threshold=0.0)


def test_rows_that_would_push_their_entry_over_the_budget_are_not_stored(tmp_path):
    one = entry_bytes(tmp_path)
    store = TraceStore(tmp_path / "s", budget=one + 64)  # the capture fits, its importance rows do not
    model = tiny()
    trace = model.trace(PROMPT, store=store)
    assert store.info()["entries"] == 1 and store.info()["bytes"] == one
    g = graph_json(trace, threshold=0.0)  # computes rows, offers them to the store
    info = store.info()
    assert (info["entries"], info["segments"], info["bytes"], info["disk_bytes"]) == (1, 0, one, one)
    assert info["bytes"] <= store.budget and len(on_disk(store)) == 1
    assert g == graph_json(model.trace(PROMPT, store=False), threshold=0.0)
    key = store.entries()[0].key
    assert store.put_rows(key, 1, {"rows": torch.zeros(store.budget // 4 + 1)}) is False  # alone over budget
    assert store.put_rows(key, 1, {"rows": torch.zeros(4)}) is False  # entry + rows over budget
    assert sum(on_disk(store).values()) == one
    again = model.trace(PROMPT, store=store)
    assert again.capture.extra.get("stored") and graph_json(again, threshold=0.0) == g


# ---- 3. budgets that make no sense ----------------------------------------------------------------
@pytest.mark.parametrize("text", ["-1G", "-5", "inf", "nan", "1e400", "-0.5M"])
def test_parse_size_refuses_negative_and_infinite_sizes(text):
    with pytest.raises(rl.RoutelensError, match="positive number of bytes or e.g. 512M, 4G"):
        parse_size(text)


def test_parse_size_reads_zero_and_units():
    assert parse_size("0") == 0 and parse_size("2K") == 2048 and parse_size(" 1.5 MiB ") == int(1.5 * (1 << 20))


@pytest.mark.parametrize("budget", [-5, 0, 0.4, "-1G", "0", "lots", True, None, float("nan"), float("inf")])
def test_a_store_budget_must_be_positive(tmp_path, budget):
    with pytest.raises(rl.RoutelensError) as caught:
        TraceStore(tmp_path / "s", budget=budget)
    assert str(caught.value) == (f"the trace store budget must be a positive size such as 512M or 4G, not {budget!r}; "
                                 "to store nothing set ROUTELENS_STORE=off")
    assert not (tmp_path / "s").exists()


def test_a_store_budget_can_be_a_size(tmp_path):
    assert TraceStore(tmp_path, budget="512M").budget == 512 << 20
    assert TraceStore(tmp_path, budget=1000.7).budget == 1000


@pytest.mark.parametrize("value", ["-1G", "0", "-1"])
def test_a_bad_budget_in_the_environment_says_what_to_set(tmp_path, monkeypatch, value):
    monkeypatch.setenv("ROUTELENS_STORE", str(tmp_path / "s"))
    monkeypatch.setenv("ROUTELENS_STORE_BUDGET", value)
    expected = (f"ROUTELENS_STORE_BUDGET must be a positive size such as 512M or 4G, not {value!r}; "
                "to store nothing set ROUTELENS_STORE=off")
    with pytest.raises(rl.RoutelensError) as caught:
        default_store()
    assert str(caught.value) == expected
    with pytest.raises(rl.RoutelensError, match="ROUTELENS_STORE_BUDGET must be a positive size"):
        tiny().trace(PROMPT)
    cli = subprocess.run([sys.executable, "-m", "routelens", "cache", "info"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "ROUTELENS_STORE": str(tmp_path / "s"), "ROUTELENS_STORE_BUDGET": value})
    assert cli.returncode == 2 and expected in cli.stderr.replace("\n", " "), cli.stderr


# ---- 4. a damaged index ---------------------------------------------------------------------------
def filled_store(root: Path, model: rl.Model) -> tuple[TraceStore, str]:
    """A store holding the trace of PROMPT with its importance rows; returns it and the graph."""
    store = TraceStore(root)
    g = graph_json(model.trace(PROMPT, store=store), threshold=0.0)
    assert store.info()["entries"] == 1 and store.info()["segments"] == 1
    return store, g


def damage(index: Path, how: str) -> None:
    for suffix in ("-wal", "-shm"):  # a clean close folds the log in; make sure nothing survives elsewhere
        assert not Path(f"{index}{suffix}").exists() or Path(f"{index}{suffix}").stat().st_size == 0
    data = index.read_bytes()
    if how == "random bytes":
        index.write_bytes(os.urandom(len(data)))
    elif how == "truncated":
        index.write_bytes(data[: len(data) // 2])
    elif how == "foreign schema":
        index.unlink()
        with sqlite3.connect(index) as db:
            db.execute("CREATE TABLE entries (key TEXT PRIMARY KEY, file TEXT)")
        db.close()


@pytest.mark.parametrize("how", ["random bytes", "truncated", "foreign schema"])
def test_a_damaged_index_is_rebuilt_on_open(tmp_path, how):
    model = tiny()
    store, g = filled_store(tmp_path, model)
    old_blobs = on_disk(store)
    assert len(old_blobs) == 2 and sum(old_blobs.values()) > 0
    damage(store.root / "index.sqlite", how)
    with pytest.warns(RuntimeWarning, match=r"index was damaged .*rebuilt it empty: every stored trace was dropped, "
                                            rf"{sum(old_blobs.values())} bytes of blobs removed"):
        repaired = TraceStore(tmp_path)
    assert on_disk(repaired) == {}, "the blobs the damaged index named are still there"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("index.sqlite")) in (["index.sqlite"], [
        "index.sqlite", "index.sqlite-shm", "index.sqlite-wal"])
    info = repaired.info()
    assert (info["entries"], info["segments"], info["bytes"], info["disk_bytes"]) == (0, 0, 0, 0)
    first = model.trace(PROMPT, store=repaired)
    assert not first.capture.extra.get("stored") and graph_json(first, threshold=0.0) == g
    second = model.trace(PROMPT, store=repaired)
    assert second.capture.extra.get("stored") and graph_json(second, threshold=0.0) == g
    assert repaired.clear() == 1 and on_disk(repaired) == {}


def test_cache_clear_works_on_a_damaged_index(tmp_path):
    store, _ = filled_store(tmp_path, tiny())
    damage(store.root / "index.sqlite", "random bytes")
    cleared = subprocess.run([sys.executable, "-m", "routelens", "cache", "clear"], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "ROUTELENS_STORE": str(tmp_path)})
    assert cleared.returncode == 0, cleared.stderr
    assert "removed 0 stored traces" in cleared.stdout and "index was damaged" in cleared.stderr
    assert on_disk(store) == {} and store.info()["entries"] == 0


def test_an_index_damaged_during_use_does_not_break_tracing(tmp_path):
    model = tiny()
    store, g = filled_store(tmp_path, model)
    reference = model.trace(PROMPT, store=False)
    damage(store.root / "index.sqlite", "random bytes")  # under a store already open (a server)
    with pytest.warns(RuntimeWarning) as caught:
        trace = model.trace(PROMPT, store=store)
    messages = [str(w.message) for w in caught]
    assert any("file is not a database); traced without it; its index was damaged" in m for m in messages), messages
    assert not trace.capture.extra.get("stored")
    assert graph_json(trace, threshold=0.0) == g and trace.check().ok
    assert trace.predictions(k=3) == reference.predictions(k=3)
    assert on_disk(store) == {} and store.info()["entries"] == 0  # repaired: the old blobs are gone
    model.trace(PROMPT, store=store)
    assert model.trace(PROMPT, store=store).capture.extra.get("stored"), "the repaired store does not store again"
    damage(store.root / "index.sqlite", "random bytes")
    with pytest.warns(RuntimeWarning, match="cleared it; its index was damaged"):
        assert store.clear() == 0
    assert on_disk(store) == {} and store.info()["entries"] == 0
