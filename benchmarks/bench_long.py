"""Long prompts on smollm2-135m-instruct: time and memory at T = 500, 1000, 2000 and 4000 tokens.

For each T, in fresh processes (one for times, one for memory: see `run_child`), measured side
by side:
- forward: the model's own forward pass with transformers' eager attention, no hooks;
- trace: `model.trace(ids, store=False)` (the forward pass that keeps the residual stream);
- single route: `trace.graph(target=-1, threshold=0.04)` on it, and its ratio to the forward;
- peak extra memory: of the trace, and of trace + route together, above what was in use before;
- store size: the bytes one trace takes in a fresh trace store (`TraceStore`);
- trace/estimate.py's figures beside the measured ones (peak memory, forward time).

Targets (issue 11): single route at T = 4000 within 2 GiB extra memory and within 3x the forward
pass; store size at T = 656 under 80 MiB; the memory estimate within 30% of the measured peak.

    python benchmarks/bench_long.py [--lengths 500 1000 2000 4000] [--store-at 656]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import routelens as rl
from routelens.routes import kernels
from routelens.trace.estimate import PeakMemory, estimate

os.environ["ROUTELENS_STORE"] = "off"  # computations are timed, never read back; children inherit it
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_trace import prompt_ids  # noqa: E402


def child(model_name: str, n: int, mode: str, store_at: int | None) -> dict:
    """One length, one kind of figure: "time" (forward, trace, route; the estimate's seconds) or
    "memory" (peaks; the estimate's bytes; the store size)."""
    torch.set_grad_enabled(False)
    model = rl.load(model_name)
    kernels.warm_up()
    ids = prompt_ids(model, n)
    model.trace(ids[:64], store=False).graph()  # first-call allocations are not the trace's
    est = estimate(model.adapter, n)  # before anything of this length ran
    out: dict = {"T": n, "estimate_peak": est.peak_bytes, "estimate_forward": est.forward_seconds}

    with PeakMemory() as fwd_mem:  # transformers' own eager attention, as a user would run the model
        model.hf_model.set_attn_implementation("eager")
        start = time.perf_counter()
        model.hf_model(input_ids=torch.tensor([ids]), use_cache=False, logits_to_keep=1)
        out["forward"] = time.perf_counter() - start
        model.hf_model.set_attn_implementation("routelens")
    out["forward_peak"] = fwd_mem.peak_bytes

    with PeakMemory() as both:
        with PeakMemory() as trace_mem:
            start = time.perf_counter()
            trace = model.trace(ids, store=False)
            out["trace"] = time.perf_counter() - start
        start = time.perf_counter()
        graph = trace.graph(target=-1, threshold=0.04)
        out["route"] = time.perf_counter() - start
    out["trace_peak"], out["peak"] = trace_mem.peak_bytes, both.peak_bytes
    out["kept"] = trace.capture.kept_bytes()
    out["edges"] = len(graph.edges)
    if store_at and mode == "memory":
        with tempfile.TemporaryDirectory() as root:
            store = rl.TraceStore(root)
            model.trace(prompt_ids(model, store_at), store=store)
            out["store_T"] = store_at
            out["store_bytes"] = sum(p.stat().st_size for p in Path(root).rglob("*.safetensors"))
    return out


def run_child(model: str, n: int, mode: str, store_at: int | None) -> dict:
    """A fresh process per measurement. For memory, glibc is told to give every large block back at
    once (so no earlier run's freed-but-kept memory hides a peak); that costs a page fault per new
    block, so times are measured in a process left as a user's would be."""
    env = dict(os.environ)
    if mode == "memory":
        env.update(MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    cmd = [sys.executable, __file__, "--model", model, "--child", str(n), mode] + (["--store-at", str(store_at)] if store_at else [])
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"T = {n} ({mode}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--lengths", type=int, nargs="+", default=[500, 1000, 2000, 4000])
    parser.add_argument("--store-at", type=int, default=656)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.model, int(args.child[0]), args.child[1], args.store_at)))
        return
    mib = 2**20
    print(f"{args.model}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    header = (f"{'T':>5} | {'forward':>8} {'trace':>7} {'route':>7} {'route/fwd':>9} | {'trace peak':>10} "
              f"{'peak':>8} {'estimate':>8} {'est/peak':>8} | {'est fwd':>7} | edges")
    print(header)
    print("-" * len(header))
    store = None
    for i, n in enumerate(args.lengths):
        r = run_child(args.model, n, "time", None)
        m = run_child(args.model, n, "memory", args.store_at if i == 0 else None)
        r.update({k: m[k] for k in ("trace_peak", "peak", "estimate_peak", "kept")})
        store = store or (m.get("store_T"), m.get("store_bytes"))
        print(f"{n:>5} | {r['forward']:>7.2f}s {r['trace']:>6.2f}s {r['route']:>6.2f}s {r['route'] / r['forward']:>8.2f}x | "
              f"{r['trace_peak'] / mib:>6.0f} MiB {r['peak'] / mib:>4.0f} MiB {r['estimate_peak'] / mib:>4.0f} MiB "
              f"{r['estimate_peak'] / max(r['peak'], 1):>7.2f}x | {r['estimate_forward']:>6.1f}s | {r['edges']}",
              flush=True)
    if store and store[0]:
        print(f"store size of one trace at T = {store[0]}: {store[1] / mib:.1f} MiB")


if __name__ == "__main__":
    main()
