"""Trace store upkeep, apart so store.py keeps to reads and writes: budgets, leftovers, disk usage, index repair."""

from __future__ import annotations

import math
import numbers
import os
import re
import sqlite3
import time
import uuid
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ..errors import RoutelensError

try:
    import fcntl
except ImportError:  # not POSIX: opens are not serialised (the store needs POSIX semantics anyway)
    fcntl = None  # type: ignore[assignment]

STORE_ENV = "ROUTELENS_STORE"
BUDGET_ENV = "ROUTELENS_STORE_BUDGET"
TMP_PREFIX = ".tmp-"
ORPHAN_AGE_S = 3600.0  # a file no row names is an orphan once it is this old (a writer may be mid-commit)
INDEX_FILES = ("index.sqlite", "index.sqlite-wal", "index.sqlite-shm", "index.sqlite-journal")
CORRUPTION_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
# the only names the store writes (blobs, and temporaries of this and older versions): upkeep never
# touches anything else, so a folder pointed at by mistake keeps its own files
STORE_FILE = re.compile(r"[0-9a-f]{32}\.safetensors|\.tmp-[0-9a-f-]+\.safetensors")


def parse_size(text: str) -> int:
    """'4G', '512M', '1.5GiB' or a number of bytes; zero is a size, negative or infinite ones are not."""
    t = str(text).strip().upper().removesuffix("IB").removesuffix("B")
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    try:
        value = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise RoutelensError(f"cannot read {text!r} as a size: use a positive number of bytes or e.g. 512M, 4G")
    return int(value)


def parse_budget(value: int | float | str, name: str = "the trace store budget") -> int:
    """A store budget in bytes from a number or a size such as '512M'. Zero, negative, fractional
    below one byte and non-numeric budgets are refused, not read as "store nothing": a store that
    keeps nothing would still hash every model's weights; turn it off instead."""
    n: Any = None
    if isinstance(value, str):
        try:
            n = parse_size(value)
        except RoutelensError:
            pass
    elif isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
        n = int(value)
    if n is None or n <= 0:
        raise RoutelensError(f"{name} must be a positive size such as 512M or 4G, not {value!r}; "
                             f"to store nothing set {STORE_ENV}=off")
    return n


class DamagedIndex(sqlite3.DatabaseError):
    """An index that SQLite opens but that fails its integrity check or lacks the store's tables."""


def temporary_name() -> str:
    """A name for a blob being written: `.tmp-<pid>-<uuid>.safetensors`, so that whoever opens the
    store later can tell a live writer's file from one a killed process left behind."""
    return f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex}.safetensors"


def writer_alive(name: str) -> bool:
    """Whether the process named in a temporary's name may still be writing it. A name without a
    PID (an older routelens) or a PID owned by another user counts as alive: age decides then."""
    pid = name[len(TMP_PREFIX):].split("-", 1)[0]
    if not pid.isdigit() or os.name != "posix":
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def _store_files(blobs: Path) -> Iterator[os.DirEntry]:
    return (entry for entry in os.scandir(blobs) if STORE_FILE.fullmatch(entry.name))


def sweep(blobs: Path, named: set[str], keep: Iterable[str] = (), max_age: float = ORPHAN_AGE_S) -> tuple[int, int]:
    """Remove the leftovers in `blobs` and measure the rest; returns (files removed, bytes left).

    A leftover is a store file no index row names and not in `keep`: a temporary whose writer is dead
    or that is older than ORPHAN_AGE_S (its PID may have been reused), or a complete blob older
    than `max_age` (a writer killed between rename and commit). What is left is a live writer's
    work or a young orphan: it is on disk, so the budget must count it.
    """
    keep, now, removed, left = set(keep), time.time(), 0, 0
    for entry in _store_files(blobs):
        if entry.name in named or entry.name in keep:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
            temporary = entry.name.startswith(TMP_PREFIX)
            age = now - st.st_mtime
            if (temporary and (age >= ORPHAN_AGE_S or not writer_alive(entry.name))) or (not temporary and age >= max_age):
                os.unlink(entry.path)
                removed += 1
            else:
                left += st.st_size
        except FileNotFoundError:  # its writer renamed or removed it meanwhile
            pass
    return removed, left


def disk_usage(blobs: Path, named: set[str]) -> tuple[int, int]:
    """(bytes of every store file under `blobs`, bytes of those no index row names): what the store
    really takes, and how much of it is leftovers (being written, or left by killed writers)."""
    total = leftover = 0
    for entry in _store_files(blobs):
        try:
            size = entry.stat(follow_symlinks=False).st_size
        except FileNotFoundError:
            continue
        total += size
        leftover += 0 if entry.name in named else size
    return total, leftover


def named_files(db: sqlite3.Connection) -> set[str]:
    return {r[0] for r in db.execute("SELECT file FROM entries")} | {r[0] for r in db.execute("SELECT file FROM segments")}


def is_corruption(err: BaseException) -> bool:
    """Whether an SQLite error means the index file itself is damaged (not locked, full or unreadable)."""
    if isinstance(err, DamagedIndex):
        return True
    if not isinstance(err, sqlite3.DatabaseError):
        return False
    code = getattr(err, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in CORRUPTION_CODES
    return type(err) is sqlite3.DatabaseError


@contextmanager
def index_lock(root: Path) -> Iterator[None]:
    """Serialise opening and repairing the index across processes (two repairs must not interleave)."""
    if fcntl is None:
        yield
        return
    fd = os.open(root / "index.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _columns(db: sqlite3.Connection) -> dict[str, set[str]]:
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {t: {r[1] for r in db.execute(f"PRAGMA table_info('{t}')")} for t in tables}


def _check(connect: Callable[[], sqlite3.Connection], schema: str) -> bool:
    """Open the index, create what is missing and check it; True when it was created just now.
    Raises sqlite3.DatabaseError when the file is damaged, DamagedIndex when it fails its check."""
    with closing(sqlite3.connect(":memory:")) as mem:
        mem.executescript(schema)
        expected = _columns(mem)
    with closing(connect()) as db:
        fresh = db.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'entries'").fetchone()[0] == 0
        db.executescript(schema)
        problems = [r[0] for r in db.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise DamagedIndex(f"quick_check: {'; '.join(problems[:3])}")
        found = _columns(db)
        missing = [t for t, cols in expected.items() if not cols <= found.get(t, set())]
        if missing:
            raise DamagedIndex(f"table {missing[0]} lacks columns the store needs")
    return fresh


def remove_blobs(blobs: Path) -> int:
    """Remove every store file except live writers' temporaries; returns the bytes freed."""
    freed = 0
    for entry in _store_files(blobs):
        if entry.name.startswith(TMP_PREFIX) and writer_alive(entry.name):
            continue
        try:
            freed += entry.stat(follow_symlinks=False).st_size
            os.unlink(entry.path)
        except FileNotFoundError:
            pass
    return freed


def open_index(root: Path, blobs: Path, connect: Callable[[], sqlite3.Connection], schema: str) -> str | None:
    """Make `root/index.sqlite` a sound index with `schema`, and clean up after killed writers.

    A damaged index (not an SQLite file, failing `PRAGMA quick_check`, or missing the store's
    tables) is deleted with its -wal/-shm files and rebuilt empty; the blobs it named can no longer
    be verified, so they are deleted too. An index created just now (a first open, or one deleted
    or truncated to nothing) cannot name the blobs already there: they are deleted as well.
    Returns what was repaired, for a warning, or None. Other SQLite errors (locked, read-only)
    propagate.
    """
    with index_lock(root):
        try:
            fresh = _check(connect, schema)
            why = None
        except sqlite3.DatabaseError as err:
            if not is_corruption(err):
                raise
            for name in INDEX_FILES:
                try:
                    (root / name).unlink()
                except FileNotFoundError:
                    pass
            why, fresh = f"{type(err).__name__}: {err}", True
            _check(connect, schema)
        freed = remove_blobs(blobs) if fresh else 0
        with closing(connect()) as db:
            sweep(blobs, named_files(db))  # temporaries of killed writers, old orphans
    if why is not None:
        return f"its index was damaged ({why}); rebuilt it empty: every stored trace was dropped, {freed} bytes of blobs removed"
    if freed:
        return f"its index was missing; started a new one and removed {freed} bytes of blobs it could not name"
    return None


def repair_note(err: BaseException, root: Path, blobs: Path, connect: Callable[[], sqlite3.Connection], schema: str) -> str:
    """After `err` in use: when it means the index is damaged, repair it; returns what was done
    (for the warning), or "" when the error is not damage (locked, full disk). A missing table
    (the index deleted under a running process) is recreated."""
    if not (is_corruption(err) or "no such table" in str(err)):
        return ""
    try:
        return "; " + (open_index(root, blobs, connect, schema) or "the index checks out now")
    except (OSError, sqlite3.Error) as again:
        return f"; could not repair the index ({type(again).__name__}: {again})"
