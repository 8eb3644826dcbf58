"""The persistent trace store: an SQLite index beside safetensors files, shared by the CLI, the
Python API and the server, by any number of processes at once.

Layout under the root (default `~/.cache/routelens/store`, `$ROUTELENS_STORE` moves it, `off`
turns it off):

    index.sqlite            entries (one per capture), segments (importance rows), file hashes
    blobs/<uuid>.safetensors

Why it is safe:
- A blob is written under a temporary name, fsynced, and renamed into place before the index
  row that names it is committed; the index is SQLite (WAL, synchronous=FULL), so a process
  killed at any point leaves either no row or a row whose file is complete. Files no row names
  are orphans, removed later by `gc()`.
- Every tensor's CRC-32 is kept in the index, away from the file, and checked on first read; a
  mismatch drops the entry, warns, and recomputes. A stored tensor that fails is never used.
- The total size is bounded by a budget; the least recently used entries go first. A reader that
  already opened a file keeps reading it after eviction unlinks it (POSIX semantics).
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

if TYPE_CHECKING:
    from ..models.model import Model
    from ..trace.capture import Capture
    from ..trace.trace import Trace

STORE_ENV = "ROUTELENS_STORE"
BUDGET_ENV = "ROUTELENS_STORE_BUDGET"
DEFAULT_BUDGET = 4 << 30
COMPACT_AFTER = 4  # segments of one entry read back before they are merged into one
ORPHAN_AGE_S = 3600.0  # a blob no row names is an orphan once it is this old (a writer may be mid-commit)
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


def parse_size(text: str) -> int:
    """'4G', '512M', '1.5GiB' or a number of bytes."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(float(t))
    except ValueError:
        raise RoutelensError(f"cannot read {text!r} as a size: use a number of bytes or e.g. 512M, 4G") from None


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

    def __init__(self, root: str | Path, budget: int = DEFAULT_BUDGET) -> None:
        self.root = Path(root).expanduser()
        self.budget = int(budget)
        self.blobs = self.root / "blobs"
        try:
            self.blobs.mkdir(parents=True, exist_ok=True)
            with closing(self._connect()) as db:
                db.executescript(SCHEMA)
        except (OSError, sqlite3.Error) as err:
            raise RoutelensError(f"cannot use the trace store at {self.root}: {err}; set {STORE_ENV}=off or another folder") from err

    def __repr__(self) -> str:
        return f"<routelens.TraceStore {str(self.root)!r}, budget {human(self.budget)}>"

    # ---- plumbing ------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.root / "index.sqlite", timeout=60.0, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        return db

    def _write_blob(self, tensors: dict[str, torch.Tensor]) -> tuple[str, int]:
        """Write tensors durably under a fresh name; returns (file name, size)."""
        name = f"{uuid.uuid4().hex}.safetensors"
        tmp = self.blobs / f".tmp-{name}"
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

    def _unlink(self, files: list[str]) -> None:
        for name in files:
            try:
                (self.blobs / name).unlink()
            except FileNotFoundError:
                pass

    def _make_room(self, db: sqlite3.Connection, incoming: int, keep: str | None = None) -> list[str]:
        """Inside a write transaction: delete LRU entries until `incoming` more bytes fit."""
        total = self._total(db)
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
                break
        return doomed

    @staticmethod
    def _total(db: sqlite3.Connection) -> int:
        a = db.execute("SELECT COALESCE(SUM(size), 0) FROM entries").fetchone()[0]
        b = db.execute("SELECT COALESCE(SUM(size), 0) FROM segments").fetchone()[0]
        return int(a) + int(b)

    # ---- captures --------------------------------------------------------------------------------
    def put_capture(self, key: str, capture: Capture, *, model: str, identity: dict[str, Any], preview: str) -> bool:
        """Store a capture under `key` (no-op if present or larger than the whole budget)."""
        tensors, aliases = capture_tensors(capture)
        nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
        if nbytes > self.budget:
            return False
        with closing(self._connect()) as db:
            if db.execute("SELECT 1 FROM entries WHERE key = ?", (key,)).fetchone():
                return False
        checksums = {name: crc(t) for name, t in tensors.items()}
        file, size = self._write_blob(tensors)
        now = time.time()
        doomed: list[str] = []
        with closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                if db.execute("SELECT 1 FROM entries WHERE key = ?", (key,)).fetchone():
                    db.execute("ROLLBACK")
                    self._unlink([file])  # another process stored the same trace first
                    return False
                doomed = self._make_room(db, size)
                db.execute(
                    "INSERT INTO entries VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (key, file, size, json.dumps(checksums), json.dumps(aliases), json.dumps(capture.token_ids.tolist()),
                     len(capture.layers), model, json.dumps(identity), preview[:200], capture.forward_seconds, now, now),
                )
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                self._unlink([file])
                raise
        self._unlink(doomed)
        return True

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
        self.drop(key)

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
        """Add a segment of importance rows to an entry (dropped if the entry is gone); the
        segments `replaces` names are removed in the same transaction (compaction)."""
        if not tensors:
            return False
        checksums = {name: crc(t) for name, t in tensors.items()}
        file, size = self._write_blob(tensors)
        with closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")
            if not db.execute("SELECT 1 FROM entries WHERE key = ?", (key,)).fetchone():
                db.execute("ROLLBACK")
                self._unlink([file])
                return False
            doomed = []
            for seg_id in replaces:
                doomed += [r[0] for r in db.execute("SELECT file FROM segments WHERE id = ?", (seg_id,))]
                db.execute("DELETE FROM segments WHERE id = ?", (seg_id,))
            doomed += self._make_room(db, size, keep=key)
            db.execute("INSERT INTO segments (key, norm, file, size, tensors, created) VALUES (?,?,?,?,?,?)",
                       (key, norm, file, size, json.dumps(checksums), time.time()))
            db.execute("COMMIT")
        self._unlink(doomed)
        return True

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
        """A Trace of `token_ids` on `model`: from the store when it holds one, else `run()` and store it."""
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
        trace = Trace(model, capture, norm=norm)
        if getattr(capture, "extra", {}).get("stored"):
            read = []
            for seg_id, seg in self.rows(key, norm):
                trace.restore_rows(*rows_from_tensors(seg, model.adapter.n_heads))
                read.append(seg_id)
            if len(read) > COMPACT_AFTER:  # many small segments (one per graph that computed rows): merge them
                try:
                    self.put_rows(key, norm, rows_tensors(*trace.all_rows()), replaces=read)
                except (OSError, sqlite3.Error):
                    pass  # compaction is an optimisation; the segments stay valid
        trace.store_key = key  # type: ignore[attr-defined]

        def save_rows(t: Trace) -> None:
            try:
                self.put_rows(key, norm, rows_tensors(*t.take_unsaved_rows()))
            except (OSError, sqlite3.Error) as err:
                warnings.warn(f"routelens: could not save importance rows to the store: {err}", RuntimeWarning, stacklevel=2)

        trace.on_new_rows = save_rows
        return trace

    def _put_quietly(self, key: str, capture: Capture, **meta: Any) -> None:
        try:
            self.put_capture(key, capture, **meta)
        except (OSError, sqlite3.Error) as err:  # a full disk must not break tracing
            warnings.warn(f"routelens: could not save the trace to the store at {self.root}: {err}", RuntimeWarning, stacklevel=2)

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
        with closing(self._connect()) as db:
            n = db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
            segs = db.execute("SELECT COUNT(*) FROM segments").fetchone()[0]
            total = self._total(db)
        return {"path": str(self.root), "entries": n, "segments": segs, "bytes": total, "budget": self.budget}

    def clear(self) -> int:
        """Remove every entry; returns how many."""
        with closing(self._connect()) as db:
            db.execute("BEGIN IMMEDIATE")
            files = [r[0] for r in db.execute("SELECT file FROM entries")] + [r[0] for r in db.execute("SELECT file FROM segments")]
            n = db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
            db.execute("DELETE FROM segments")
            db.execute("DELETE FROM entries")
            db.execute("COMMIT")
        self._unlink(files)
        self.gc(max_age=0.0)
        return n

    def gc(self, max_age: float = ORPHAN_AGE_S) -> int:
        """Delete blobs no index row names (left by killed writers) older than `max_age` seconds."""
        with closing(self._connect()) as db:
            named = {r[0] for r in db.execute("SELECT file FROM entries")} | {r[0] for r in db.execute("SELECT file FROM segments")}
        now, removed = time.time(), 0
        for f in self.blobs.iterdir():
            if f.name in named:
                continue
            try:
                if now - f.stat().st_mtime >= max_age:
                    f.unlink()
                    removed += 1
            except FileNotFoundError:
                pass
        return removed


_DEFAULT: dict[tuple[str, int], TraceStore] = {}


def default_store() -> TraceStore | None:
    """The store named by the environment: `$ROUTELENS_STORE` (a folder, or `off`), else under
    the routelens cache folder; `$ROUTELENS_STORE_BUDGET` bounds its size (default 4G)."""
    from ..models.catalog import cache_root

    env = os.environ.get(STORE_ENV)
    if env is not None and env.strip().lower() in OFF_VALUES | {""}:
        return None
    root = Path(env).expanduser() if env else cache_root() / "store"
    budget = parse_size(os.environ.get(BUDGET_ENV, str(DEFAULT_BUDGET)))
    key = (str(root), budget)
    if key not in _DEFAULT:
        _DEFAULT[key] = TraceStore(root, budget)
    return _DEFAULT[key]
