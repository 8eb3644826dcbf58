"""The persistent trace store: a trace read back against a fresh one, smollm2-135m-instruct, T = 200.

Measured side by side in one run, in a fresh store folder, median of --repeat:
- trace: `model.trace(ids)` fresh (the forward pass with hooks) vs. read from the store (a new
  Trace object each time, as in a new process: index lookup, file open; tensors are read lazily);
- trace + route: the same followed by `graph(target=-1, threshold=0.04)` (the stored entry holds
  the importance rows computed before, so no importance is recomputed);
- trace + route + predictions at every position + a token panel (what the web app asks first);
  the predictions are stored too, the token panel reads two stored residuals;
- the store's size per trace (capture + importance rows) on disk.

Target (issue 4): a stored trace at least 20x faster than a fresh one.

    python benchmarks/bench_store.py [--tokens 200] [--repeat 5]
"""

from __future__ import annotations

import argparse
import random
import tempfile

import routelens as rl
from routelens.routes import kernels
from routelens.store import TraceStore
from routelens.store.store import human

from bench_trace import timed  # noqa: E402 (benchmarks/ is the script's folder)

WORDS = ("the river city north light stone market winter garden music paper letter forest "
         "window silver morning harbor bridge story mountain").split()


def ids_of(model: rl.Model, n_tokens: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    text = " ".join(rng.choice(WORDS) for _ in range(n_tokens))
    return model.tokenize(text).tolist()[:n_tokens]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    model = rl.load("smollm2-135m-instruct")
    kernels.warm_up()
    ids = ids_of(model, args.tokens, seed=1)
    with tempfile.TemporaryDirectory() as folder:
        store = TraceStore(folder)
        first = model.trace(ids, store=store)  # the entry: capture, the route's importance rows, predictions
        first.graph()
        first.predictions(k=5)
        model.trace(ids, store=False)  # warm the forward path as much as the stored one

        def route(t):
            return t.graph(target=-1, threshold=0.04)

        def web(t):
            route(t)
            t.predictions(k=5)
            t.top_tokens("block", t.n_layers - 1, -1)

        rows = []
        for label, then in (("trace", lambda t: t), ("trace + route", route), ("trace + route + predictions + token panel", web)):
            fresh = timed(lambda: then(model.trace(ids, store=False)), args.repeat)
            stored = timed(lambda: then(model.trace(ids, store=store)), args.repeat)
            rows.append((label, fresh, stored))
        info = store.info()
        stored_trace = model.trace(ids, store=store)
        assert stored_trace.capture.extra.get("stored"), "the benchmark's entry was not read back"

    print(f"smollm2-135m-instruct, T = {len(ids)} tokens, fp32 CPU, median of {args.repeat}; fused L1 kernel compiled: {bool(kernels._compiled)}")
    print(f"{'':44} {'fresh':>9} {'stored':>9} {'speed-up':>9}")
    for label, fresh, stored in rows:
        print(f"{label:44} {fresh * 1000:7.0f}ms {stored * 1000:7.1f}ms {fresh / stored:8.1f}x")
    print(f"store size per trace: {human(info['bytes'])} ({info['entries']} capture + {info['segments']} segments of importances and predictions); "
          f"target: stored >= 20x faster")


if __name__ == "__main__":
    main()
