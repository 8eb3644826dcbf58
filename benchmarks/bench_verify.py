"""Checking a route by knockout (routes-math.md section 10, docs/verify.md) on a real model.

smollm2-135m-instruct, "The capital of France is": the full run's probability of its top token,
what the route at each threshold keeps of it (probability and logit shares) with every attention
edge off the route removed, and random knockouts of the same attention weight (mean and max of
--trials, seeded), for the plain and the renormalised variant. No timing: these are the numbers
the check reports, and the seconds each curve took are printed for scale only.

    python benchmarks/bench_verify.py [--prompt "..."] [--trials 5] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

import routelens as rl

os.environ["ROUTELENS_STORE"] = "off"  # compute, never read a stored trace back

THRESHOLDS = (0.01, 0.02, 0.04, 0.08, 0.16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompt", default="The capital of France is")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    model = rl.load("smollm2-135m-instruct")
    trace = model.trace(args.prompt, store=False)
    print(f"{model.name}, {trace.n_positions} tokens {args.prompt!r}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {args.trials} random trials, seed {args.seed}")
    for renormalise in (False, True):
        start = time.perf_counter()
        reports = trace.verify_curve(-1, THRESHOLDS, renormalise=renormalise, trials=args.trials, seed=args.seed)
        seconds = time.perf_counter() - start
        first = reports[0]
        print()
        print(f"renormalise={renormalise}: target {first.token!r} at position {first.pos}, full p = "
              f"{first.full['prob']:.4f}, logit {first.full['logit']:.2f}; attention weight of every edge "
              f"{first.total_weight:.0f} ({first.total_edges} edges); curve in {seconds:.1f}s")
        print(f"{'threshold':>9} {'kept':>5} {'removed w':>9} | {'route p':>8} {'p share':>8} {'logit sh':>8} | "
              f"{'rand mean p':>11} {'rand max p':>10} {'rand logit':>10} | beats")
        for r in reports:
            best = max(t["prob"] for t in r.random)
            print(f"{r.threshold:>9g} {r.route['kept_edges']:>5} {r.route['removed_weight']:>9.1f} | "
                  f"{r.route['prob']:>8.2e} {r.shares['prob']:>8.2e} {r.shares['logit']:>8.1%} | "
                  f"{r.random_mean['prob']:>11.2e} {best:>10.2e} {r.random_mean['logit']:>10.2f} | "
                  f"{'yes' if r.beats_random else 'no'}")


if __name__ == "__main__":
    main()
