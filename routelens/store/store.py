"""The persistent trace store: an SQLite index beside safetensors files, shared by the CLI, the
Python API and the server, by any number of processes at once.

Over 400 lines on purpose: `TraceStore`'s methods share one connection, one lock order and one
write protocol (below); split apart, each piece would have to restate them.

Layout under the root (default `~/.cache/routelens/store`, `$ROUTELENS_STORE` moves it, `off`
turns it off):

    index.sqlite            entries (one per capture), segments (importance rows), file hashes
    blobs/<uuid>.safetensors

Why it is safe:
- A blob is written under a temporary name, fsynced, and renamed into place before the index
  row that names it is committed; the index is SQLite (WAL, synchronous=FULL), so a process
  killed at any point leaves either no row or a row whose file is complete. An interrupted write
  (Ctrl-C included) removes its files; what killed writers leave is removed on open and before
  each write, and counts against the budget until then (upkeep.py).
- A damaged index is rebuilt empty on open, with a warning (its blobs cannot be verified: all
  go); one that fails during use makes that trace bypass the store and is repaired at once.
- Every tensor's CRC-32 is kept in the index, away from the file, and checked on first read; a
  mismatch drops the entry, warns, and recomputes. A stored tensor that fails is never used.
- The total size is bounded by a budget (a positive size: to store nothing, turn the store off);
  the least recently used entries go first, and an entry that alone would not fit is not stored.
  A reader that already opened a file keeps reading it after eviction unlinks it (POSIX semantics).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
import warnings
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..errors import RoutelensError
from .codec import LazyCapture, LazySource, capture_tensors, crc, rows_from_tensors, rows_tensors
from .identity import hash_file, model_identity, trace_key
from .upkeep import (BUDGET_ENV, ORPHAN_AGE_S, STORE_ENV, disk_usage, is_corruption, named_files, open_index,  # noqa: F401
                     parse_budget, parse_size, repair_note, sweep, temporary_name)

if TYPE_CHECKING:
    from ..models.model import Model
    from ..trace.capture import Capture
    from ..trace.trace import Trace

DEFAULT_BUDGET = 4 << 30
COMPACT_AFTER = 4  # segments of one entry read back before they are merged into one
OFF_VALUES = {"off", "0", "false", "no", "none", "disable", "disabled"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY, file TEXT NOT NULL, size INTEGER NOT NULL, tensors TEXT NOT NULL,
    aliases TEXT NOT NULL, token_ids TEXT NOT NULL, n_layers INTEGER NOT NULL, model TEXT NOT NULL,
    identity TEXT NOT NULL, preview TEXT NOT NULL, forward_seconds REAL NOT NULL,
    created REAL NOT NULL, last_used REAL NOT NULL);
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, norm INTEGER NOT NULL, file TEXT NOT NULL,
    size INTEGER NOT NULL, tensors TEXT NOT NULL, created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS segments_key ON segments (key, norm);
CREATE TABLE IF NOT EXISTS file_hashes (
    path TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL,
    PRIMARY KEY (path, size, mtime_ns));
"""


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


@dataclass
class EntryInfo:
    key: str
    model: str
    n_tokens: int
    preview: str
    size: int
    created: float
    last_used: float
    segments: int


class TraceStore:
    """A size-bounded, multi-process-safe store of captured traces and their importance rows."""

    def __init__(self, root: str | Path, budget: int | str = DEFAULT_BUDGET) -> None:
        """Open (or create) the store at `root`, bounded by `budget` bytes (or a size like '4G').
        Opening removes what killed writers left and rebuilds a damaged index (with a warning)."""
        self.root = Path(root).expanduser()
        self.budget = parse_budget(budget)
        self.blobs = self.root / "blobs"
        try:
            self.blobs.mkdir(parents=True, exist_ok=True)
            repaired = open_index(self.root, self.blobs, self._connect, SCHEMA)
        except (OSError, sqlite3.Error) as err:
            raise RoutelensError(f"cannot use the trace store at {self.root}: {err}; set {STORE_ENV}=off or another folder") from err
        if repaired:
            warnings.warn(f"routelens: the trace store at {self.root}: {repaired}", RuntimeWarning, stacklevel=2)

    def __repr__(self) -> str:
        return f"<routelens.TraceStore {str(self.root)!r}, budget {human(self.budget)}>"

    # ---- plumbing ------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.root / "index.sqlite", timeout=60.0, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db

    def _write_blob(self, tensors: dict[str, torch.Tensor]) -> tuple[str, int]:
        """Write tensors durably under a fresh name; returns (file name, size). Interrupted (Ctrl-C
        included), it removes what it wrote before re-raising."""
        name = f"{uuid.uuid4().hex}.safetensors"
        tmp = self.blobs / temporary_name()
        try:
            save_file(tensors, str(tmp))
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, self.blobs / name)
            dir_fd = os.open(self.blobs, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
            return name, (self.blobs / name).stat().st_size
        except BaseException:
            self._unlink([tmp.name, name])
            raise

    def _unlink(self, files: list[str]) -> None:
        for name in files:
            try:
                (self.blobs / name).unlink()
            except FileNotFoundError:
                pass

    def _make_room(self, db: sqlite3.Connection, incoming: int, keep: str | None = None,
                   pending: list[str] | tuple[str, ...] = ()) -> list[str] | None:
        """Inside a write transaction: evict LRU entries (never `keep`) until `incoming` bytes fit
        beside all that is on disk (dead writers' leftovers are removed, the rest is charged; not
        `pending`, this write's own files). Returns the files to unlink after the commit, or None."""
        _removed, leftovers = sweep(self.blobs, named_files(db), keep=pending)
        total = self._total(db) + leftovers
        doomed: list[str] = []
        if total + incoming <= self.budget:
            return doomed
        for key, file, size in db.execute("SELECT key, file, size FROM entries ORDER BY last_used ASC").fetchall():
            if key == keep:
                continue
            seg = db.execute("SELECT file, size FROM segments WHERE key = ?", (key,)).fetchall()
            doomed += [file] + [f for f, _ in seg]
            total -= size + sum(s for _, s in seg)
            db.execute("DELETE FROM segments WHERE key = ?", (key,))
            db.execute("DELETE FROM entries WHERE key = ?", (key,))
            if total + incoming <= self.budget:
                return doomed
        return None

    @staticmethod
    def _total(db: sqlite3.Connection) -> int:
        a = db.execute("SELECT COALESCE(SUM(size), 0) FROM entries").fetchone()[0]
        b = db.execute("SELECT COALESCE(SUM(size), 0) FROM segments").fetchone()[0]
        return int(a) + int(b)

    # ---- captures --------------------------------------------------------------------------------
    def _commit_blob(self, file: str, size: int, insert: Callable[[sqlite3.Connection], list[str] | None]) -> bool:
        """Name a written blob in the index: `insert` (in a write transaction) returns the files to
        unlink after the commit, or None to store nothing. Unless committed, the blob is removed."""
        committed, doomed = False, None
        try:
            if size <= self.budget:  # the file, header included, must fit alone
                with closing(self._connect()) as db:
                    db.execute("BEGIN IMMEDIATE")
                    try:
                        doomed = insert(db)
                        db.execute("ROLLBACK" if doomed is None else "COMMIT")
                        committed = doomed is not None
                    except BaseException:
                        if db.in_transaction:
                            db.execute("ROLLBACK")
                        raise
        finally:
            if not committed:
                self._unlink([file])
        self._unlink(doomed or [])
        return committed

    def put_capture(self, key: str, capture: Capture, *, model: str, identity: dict[str, Any], preview: str) -> bool:
        """Store a capture under `key`. Returns False, storing nothing, when it is present already
        or its file would exceed the budget even with every other entry evicted (a cache: quiet)."""
        tensors, aliases = capture_tensors(capture)
        if sum(t.numel() * t.element_size() for t in tensors.values()) > self.budget:
            return False  # the file is larger still: not worth writing
        with closing(self._connect()) as db:
            if db.execute("SELECT 1 FROM entries WHERE key = ?", (key,)).fetchone():
                return False
        checksums = {name: crc(t) for name, t in tensors.items()}
        file, size = self._write_blob(tensors)
        now = time.time()

        def insert(db: sqlite3.Connection) -> list[str] | None:
            if db.execute("SELECT 1 FROM entries WHERE key = ?", (key,)).fetchone():
                return None  # another process stored the same trace first
            doomed = self._make_room(db, size, pending=[file])
            if doomed is not None:
                db.execute(
                    "INSERT INTO entries (key, file, size, tensors, aliases, token_ids, n_layers, model, identity, preview, "
                    "forward_seconds, created, last_used) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (key, file, size, json.dumps(checksums), json.dumps(aliases), json.dumps(capture.token_ids.tolist()),
                     capture.n_layers, model, json.dumps(identity), preview[:200], capture.forward_seconds, now, now),
                )
            return doomed

        return self._commit_blob(file, size, insert)

    def open_capture(self, key: str, device: torch.device, recompute: Callable[[], Capture]) -> LazyCapture | None:
        """The capture stored under `key`, read lazily; None when absent or unreadable."""
        with closing(self._connect()) as db:
            row = db.execute(
                "SELECT file, tensors, aliases, token_ids, n_layers, forward_seconds FROM entries WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                return None
            db.execute("UPDATE entries SET last_used = ? WHERE key = ?", (time.time(), key))
        file, tensors, aliases, token_ids, n_layers, forward_seconds = row
        path = self.blobs / file
        if not path.is_file():
            self._damaged(key, f"its file {file} is missing")
            return None

        def on_corrupt(why: str) -> None:
            self._damaged(key, why)

        source = LazySource(lambda: safe_open(str(path), framework="pt"), json.loads(tensors), json.loads(aliases),
                            device, recompute, on_corrupt)
        try:  # open now: a damaged header is found before anything is handed out
            source.handle = source.opener()
        except Exception as err:
            self._damaged(key, f"{type(err).__name__}: {err}")
            return None
        return LazyCapture(source, json.loads(token_ids), n_layers, forward_seconds)

    def _damaged(self, key: str, why: str) -> None:
        warnings.warn(f"routelens: stored trace {key[:12]} is damaged ({why}); dropped it, recomputing", RuntimeWarning, stacklevel=3)
        try:
            self.drop(key)
        except sqlite3.Error as err:  # called while a graph reads lazily: must not break it
            self._index_failed(err, "could not drop a damaged trace")

    def drop(self, key: str) -> None:
        with closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")
            files = [r[0] for r in db.execute("SELECT file FROM entries WHERE key = ?", (key,))]
            files += [r[0] for r in db.execute("SELECT file FROM segments WHERE key = ?", (key,))]
            db.execute("DELETE FROM segments WHERE key = ?", (key,))
            db.execute("DELETE FROM entries WHERE key = ?", (key,))
            db.execute("COMMIT")
        self._unlink(files)

    # ---- importance rows -------------------------------------------------------------------------
    def put_rows(self, key: str, norm: int, tensors: dict[str, torch.Tensor], replaces: tuple[int, ...] | list[int] = ()) -> bool:
        """Add a segment of importance rows to an entry; the segments `replaces` names are removed
        in the same transaction (compaction). Returns False, storing nothing, when the entry is
        gone or the entry with this segment would exceed the budget on its own."""
        if not tensors or sum(t.numel() * t.element_size() for t in tensors.values()) > self.budget:
            return False
        checksums = {name: crc(t) for name, t in tensors.items()}
        file, size = self._write_blob(tensors)

        def insert(db: sqlite3.Connection) -> list[str] | None:
            if not db.execute("SELECT 1 FROM entries WHERE key = ?", (key,)).fetchone():
                return None
            replaced = []
            for seg_id in replaces:
                replaced += [r[0] for r in db.execute("SELECT file FROM segments WHERE id = ?", (seg_id,))]
                db.execute("DELETE FROM segments WHERE id = ?", (seg_id,))
            evicted = self._make_room(db, size, keep=key, pending=[file, *replaced])
            if evicted is None:  # the entry with its rows would exceed the budget: keep what it has
                return None
            db.execute("INSERT INTO segments (key, norm, file, size, tensors, created) VALUES (?,?,?,?,?,?)",
                       (key, norm, file, size, json.dumps(checksums), time.time()))
            return replaced + evicted

        return self._commit_blob(file, size, insert)

    def rows(self, key: str, norm: int) -> Iterator[tuple[int, dict[str, torch.Tensor]]]:
        """Each intact segment of rows (id, tensors); a damaged one is dropped with a warning."""
        with closing(self._connect()) as db:
            segs = db.execute("SELECT id, file, tensors FROM segments WHERE key = ? AND norm = ? ORDER BY id", (key, norm)).fetchall()
        for seg_id, file, tensors in segs:
            checksums = json.loads(tensors)
            try:
                with safe_open(str(self.blobs / file), framework="pt") as f:
                    out = {name: f.get_tensor(name) for name in checksums}
                bad = [name for name, t in out.items() if crc(t) != checksums[name]]
                if bad:
                    raise ValueError(f"{bad[0]} does not match its checksum")
            except Exception as err:
                warnings.warn(f"routelens: stored importance rows of {key[:12]} are damaged ({type(err).__name__}: {err}); "
                              "dropped them, they will be recomputed", RuntimeWarning, stacklevel=2)
                with closing(self._connect()) as db:
                    db.execute("DELETE FROM segments WHERE id = ?", (seg_id,))
                self._unlink([file])
                continue
            yield seg_id, out

    # ---- the one entry point the API uses ----------------------------------------------------------
    def trace(self, model: Model, token_ids: torch.Tensor, norm: int, run: Callable[[], Capture]) -> Trace:
        """A Trace of `token_ids` on `model`: from the store when it holds one, else `run()` and store it.
        When the index fails (damaged, or locked past the timeout) the trace is computed without
        the store, with a warning, and a damaged index is rebuilt for the next trace."""
        try:
            return self._trace(model, token_ids, norm, run)
        except sqlite3.Error as err:
            from ..trace.trace import Trace

            self._index_failed(err, "traced without it")
            return Trace(model, run(), norm=norm)

    def _index_failed(self, err: sqlite3.Error, consequence: str) -> None:
        """Warn that the index failed; when it is damaged, rebuild it so the store works again."""
        note = repair_note(err, self.root, self.blobs, self._connect, SCHEMA)
        warnings.warn(f"routelens: the trace store at {self.root} failed ({type(err).__name__}: {err}); {consequence}{note}",
                      RuntimeWarning, stacklevel=3)

    def _trace(self, model: Model, token_ids: torch.Tensor, norm: int, run: Callable[[], Capture]) -> Trace:
        from ..trace.trace import Trace

        identity = model_identity(model, self.file_hash)
        ids = token_ids.tolist()
        key = trace_key(identity, ids)
        device = next(model.hf_model.parameters()).device
        preview = model.tokenizer.decode(ids[:64])

        def fresh() -> Capture:
            capture = run()
            self._put_quietly(key, capture, model=model.name, identity=identity.as_dict(), preview=preview)
            return capture

        capture: Capture | None = self.open_capture(key, device, fresh)
        if capture is None:
            capture = fresh()
        if capture.adapter is None:
            capture.adapter = model.adapter  # a stored capture replays its layers with this model
        trace = Trace(model, capture, norm=norm)
        if getattr(capture, "extra", {}).get("stored"):
            read = []
            for seg_id, seg in self.rows(key, norm):
                trace.restore_rows(*rows_from_tensors(seg, model.adapter.n_heads))
                read.append(seg_id)
            if len(read) > COMPACT_AFTER:  # many small segments (one per graph that computed rows): merge them
                try:
                    self.put_rows(key, norm, rows_tensors(*trace.all_rows()), replaces=read)
                except OSError:
                    pass  # compaction is an optimisation; the segments stay valid
        trace.store_key = key  # type: ignore[attr-defined]

        def save_rows(t: Trace) -> None:
            try:
                self.put_rows(key, norm, rows_tensors(*t.take_unsaved_rows()))
            except OSError as err:
                warnings.warn(f"routelens: could not save importance rows to the store: {err}", RuntimeWarning, stacklevel=2)
            except sqlite3.Error as err:
                self._index_failed(err, "could not save importance rows")

        trace.on_new_rows = save_rows
        return trace

    def _put_quietly(self, key: str, capture: Capture, **meta: Any) -> None:
        try:
            self.put_capture(key, capture, **meta)
        except OSError as err:  # a full disk must not break tracing
            warnings.warn(f"routelens: could not save the trace to the store at {self.root}: {err}", RuntimeWarning, stacklevel=2)
        except sqlite3.Error as err:
            self._index_failed(err, "could not save the trace")

    # ---- file hashes (memoised across processes) ----------------------------------------------------
    def file_hash(self, path: Path) -> str:
        st = path.stat()
        ident = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        with closing(self._connect()) as db:
            row = db.execute("SELECT sha256 FROM file_hashes WHERE path = ? AND size = ? AND mtime_ns = ?", ident).fetchone()
            if row:
                return row[0]
        digest = hash_file(path)
        with closing(self._connect()) as db:
            db.execute("INSERT OR REPLACE INTO file_hashes VALUES (?,?,?,?)", (*ident, digest))
        return digest

    # ---- management (`routelens cache ...`) -------------------------------------------------------
    def entries(self) -> list[EntryInfo]:
        with closing(self._connect()) as db:
            rows = db.execute(
                "SELECT e.key, e.model, e.token_ids, e.preview, e.size + COALESCE(SUM(s.size), 0), e.created, e.last_used, "
                "COUNT(s.id) FROM entries e LEFT JOIN segments s ON s.key = e.key GROUP BY e.key ORDER BY e.last_used DESC"
            ).fetchall()
        return [EntryInfo(k, m, len(json.loads(ids)), p, int(size), c, u, int(n)) for k, m, ids, p, size, c, u, n in rows]

    def info(self) -> dict[str, Any]:
        """What the store holds: `path`, `entries`, `segments`, `budget`; `bytes`: the sizes the
        index records for its entries and segments; `disk_bytes`: every file under blobs/ as it
        is on disk now; `leftover_bytes`: the part of `disk_bytes` no index row names (blobs being
        written, or left by killed writers until `gc()`). Each write keeps bytes + leftover_bytes
        within the budget."""
        with closing(self._connect()) as db:
            n = db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
            segs = db.execute("SELECT COUNT(*) FROM segments").fetchone()[0]
            total = self._total(db)
            disk, leftover = disk_usage(self.blobs, named_files(db))
        return {"path": str(self.root), "entries": n, "segments": segs, "bytes": total, "budget": self.budget,
                "disk_bytes": disk, "leftover_bytes": leftover}

    def clear(self) -> int:
        """Remove every entry and leftover file (live writers' temporaries excepted); returns how
        many entries. A damaged index is rebuilt (every blob removed) and 0 returned."""
        try:
            with closing(self._connect()) as db:
                db.execute("BEGIN IMMEDIATE")
                files = list(named_files(db))
                n = db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
                db.execute("DELETE FROM segments")
                db.execute("DELETE FROM entries")
                db.execute("COMMIT")
        except sqlite3.DatabaseError as err:
            if not is_corruption(err):
                raise
            self._index_failed(err, "cleared it")
            return 0
        self._unlink(files)
        self.gc(max_age=0.0)
        return n

    def gc(self, max_age: float = ORPHAN_AGE_S) -> int:
        """Delete files no index row names: blobs older than `max_age` seconds (left by writers
        killed before their commit) and temporaries whose writer is dead or that are older than
        ORPHAN_AGE_S. Returns how many files were removed."""
        with closing(self._connect()) as db:
            named = named_files(db)
        return sweep(self.blobs, named, max_age=max_age)[0]


_DEFAULT: dict[tuple[str, int], TraceStore] = {}


def default_store() -> TraceStore | None:
    """The store named by the environment: `$ROUTELENS_STORE` (a folder, or `off`), else under
    the routelens cache folder; `$ROUTELENS_STORE_BUDGET` bounds its size (default 4G)."""
    from ..models.catalog import cache_root

    env = os.environ.get(STORE_ENV)
    if env is not None and env.strip().lower() in OFF_VALUES | {""}:
        return None
    root = Path(env).expanduser() if env else cache_root() / "store"
    budget = parse_budget(os.environ.get(BUDGET_ENV, str(DEFAULT_BUDGET)), BUDGET_ENV)
    key = (str(root), budget)
    if key not in _DEFAULT:
        _DEFAULT[key] = TraceStore(root, budget)
    return _DEFAULT[key]
