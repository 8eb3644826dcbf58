"""Speed and memory of tracing smollm2-135m-instruct, as ratios to the bare forward pass.

For T = 60, 200 and 500 tokens, measured side by side in one run (median of --repeat runs):
- bare forward: the model's own forward pass, no hooks, with the eager attention routelens
  runs it with, and with PyTorch's SDPA attention (the fastest a user would get without routelens);
- single-target route: `model.trace(ids)` + `trace.graph(target=-1, threshold=0.04)`;
- full mode: `model.trace(ids)` + `trace.graph(target="all", threshold=0.04)`;
- peak extra memory of each (peak resident memory minus the resident memory before it), next to
  the size a layers x T x T x d_model fp32 tensor would have: routelens never builds one.

Targets (issue 2): full mode at T = 200 within 4x the forward pass; single target at T = 500 within 2x.
The fused L1 kernel is compiled before timing (`kernels.warm_up()`), as a server does at start.
The trace store is off (`store=False`, and `$ROUTELENS_STORE=off` for the child processes): a run
read back from the store would time the store, not the computation (bench_store.py times that).

    python benchmarks/bench_trace.py [--lengths 60 200 500] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

import routelens as rl
from routelens.routes import kernels

os.environ["ROUTELENS_STORE"] = "off"  # this benchmark times computation; children inherit it


def computed(model: rl.Model, ids: list[int]) -> Any:
    """A trace computed now, never read back from a store (checked, so the figures cannot lie)."""
    trace = model.trace(ids, store=False)
    assert not trace.capture.extra.get("stored"), "a benchmark run was read from the trace store"
    return trace


def rss_bytes(field: str = "VmRSS") -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def reset_peak() -> None:
    """Linux: writing 5 to clear_refs resets the peak resident set size (VmHWM)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_extra(fn) -> int:
    """Peak resident memory during fn() minus resident memory just before it."""
    import gc

    gc.collect()
    reset_peak()
    before = rss_bytes()
    result = fn()
    peak = rss_bytes("VmHWM")
    del result
    return max(0, peak - before)


def measure_in_child(model_name: str, n: int, mode: str) -> int:
    """Peak extra memory of one step, in a fresh process so no earlier run's freed-but-kept
    memory hides it; glibc is told to return every large block to the system at once."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    out = subprocess.run(
        [sys.executable, __file__, "--model", model_name, "--child", mode, str(n)],
        capture_output=True, text=True, env=env, check=True,
    )
    return int(out.stdout.strip().splitlines()[-1])


def child(model_name: str, mode: str, n: int) -> None:
    torch.set_grad_enabled(False)
    model = rl.load(model_name)
    kernels.warm_up()
    ids = prompt_ids(model, n)
    x = torch.tensor([ids])
    model.hf_model(input_ids=x, use_cache=False)  # first-call allocations are not the trace's
    computed(model, ids[: max(2, n // 4)]).graph(target=-1)
    steps = {
        "forward": lambda: model.hf_model(input_ids=x, use_cache=False),
        "single": lambda: computed(model, ids).graph(target=-1, threshold=0.04),
        "full": lambda: computed(model, ids).graph(target="all", threshold=0.04),
    }
    print(peak_extra(steps[mode]))


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def prompt_ids(model: rl.Model, n: int) -> list[int]:
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    ids = model.tokenizer(text)["input_ids"]
    while len(ids) < n:
        ids = ids + ids
    return ids[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--lengths", type=int, nargs="+", default=[60, 200, 500])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.model, args.child[0], int(args.child[1]))
        return

    torch.set_grad_enabled(False)
    model = rl.load(args.model)
    hf = model.hf_model
    compiled = kernels.warm_up()
    a = model.adapter
    print(f"model {model.name}: {a.n_layers} layers, {a.n_heads} heads, d_model {a.d_model}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; fused L1 kernel compiled: {compiled}")
    header = (f"{'T':>4} | {'fwd eager':>9} {'fwd sdpa':>8} | {'single':>7} {'x eager':>7} {'x sdpa':>6} | "
              f"{'full':>7} {'x eager':>7} {'x sdpa':>6} | {'mem fwd':>8} {'mem single':>10} {'x fwd':>5} "
              f"{'mem full':>9} {'x fwd':>5} | {'LxTxTxd':>8}")
    print(header)
    print("-" * len(header))
    for n in args.lengths:
        ids = prompt_ids(model, n)
        x = torch.tensor([ids])

        def forward() -> None:
            hf(input_ids=x, use_cache=False)

        forward()
        fwd_eager = timed(forward, args.repeat)
        hf.set_attn_implementation("sdpa")
        forward()
        fwd_sdpa = timed(forward, args.repeat)
        hf.set_attn_implementation("routelens")  # back to what routelens traces with

        single = timed(lambda: computed(model, ids).graph(target=-1, threshold=0.04), args.repeat)
        full = timed(lambda: computed(model, ids).graph(target="all", threshold=0.04), args.repeat)
        mem_fwd, mem_single, mem_full = (measure_in_child(args.model, n, m) for m in ("forward", "single", "full"))
        dense = a.n_layers * n * n * a.d_model * 4
        mib = 1 << 20
        print(f"{n:>4} | {fwd_eager:>8.3f}s {fwd_sdpa:>7.3f}s | {single:>6.3f}s {single / fwd_eager:>6.2f}x {single / fwd_sdpa:>5.2f}x | "
              f"{full:>6.3f}s {full / fwd_eager:>6.2f}x {full / fwd_sdpa:>5.2f}x | "
              f"{mem_fwd / mib:>4.0f} MiB {mem_single / mib:>6.0f} MiB {mem_single / max(mem_fwd, 1):>4.1f}x "
              f"{mem_full / mib:>5.0f} MiB {mem_full / max(mem_fwd, 1):>4.1f}x | {dense / mib / 1024:>5.1f} GiB")


if __name__ == "__main__":
    main()
