"""A separate process that writes traces into a store: for the multi-process and crash tests.

    python store_worker.py STORE MODEL_FOLDER FIRST COUNT [KILL_POINT MARKER]

Traces prompts FIRST..FIRST+COUNT-1 (each a distinct word sequence) on the local model folder.
With KILL_POINT, the process announces (by creating MARKER) that it reached that point of its
first write and then waits to be killed: `blob` = the temporary file is half written, `rename` =
the blob is in place but its index row is not, `commit` = the row is inserted, not committed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import routelens as rl
from routelens.store import TraceStore
from routelens.store import store as store_module

WORDS = ["the", "capital", "of", "france", "is", "paris", "a", "b", "c"]


def prompt(n: int) -> str:
    words, k = [], n + 1
    while k:
        k, r = divmod(k, len(WORDS))
        words.append(WORDS[r])
    return " ".join(words + ["is", "a"] * 4)


def hold(marker: Path) -> None:
    marker.touch()
    time.sleep(600)  # killed here


def main() -> None:
    root, folder, first, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    kill_point = sys.argv[5] if len(sys.argv) > 5 else None
    marker = Path(sys.argv[6]) if len(sys.argv) > 6 else None
    store = TraceStore(root)
    if kill_point == "blob":
        real_save = store_module.save_file

        def half_save(tensors, path):
            real_save(tensors, path)
            data = Path(path).read_bytes()
            Path(path).write_bytes(data[: len(data) // 2])
            hold(marker)

        store_module.save_file = half_save
    elif kill_point == "rename":
        real_write = TraceStore._write_blob

        def write_then_hold(self, tensors):
            out = real_write(self, tensors)
            hold(marker)
            return out

        TraceStore._write_blob = write_then_hold
    elif kill_point == "commit":
        real_connect = TraceStore._connect

        class Holding:
            def __init__(self, db):
                self.db = db

            def execute(self, sql, *args):
                if sql.startswith("COMMIT") and self.db.in_transaction:
                    hold(marker)
                return self.db.execute(sql, *args)

            def __getattr__(self, name):
                return getattr(self.db, name)

        TraceStore._connect = lambda self: Holding(real_connect(self))
    model = rl.load(folder)
    for n in range(first, first + count):
        trace = model.trace(prompt(n), store=store)
        trace.graph(threshold=0.0)  # also writes a segment of importance rows
    print("done", flush=True)


if __name__ == "__main__":
    main()
