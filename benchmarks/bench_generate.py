"""Routes along a generated continuation: cost of generating N tokens and tracing them in one pass,
against tracing the final text alone (issue 14: under 2x for N = 10).

Measured side by side in one run, median of --repeat runs, on smollm2-135m-instruct, store off:
- final text alone: `model.trace(final_ids)` + the route at its last step's position;
- generation: `model.generate(prompt, N)` (transformers' generate with its KV cache, then one trace
  of prompt + continuation) + the route of the last step;
- generation, every step: the same plus the route of every one of the N steps.
The fused L1 kernel is compiled first (`kernels.warm_up()`), as a server does at start.

    python benchmarks/bench_generate.py [--tokens 10] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import routelens as rl
from routelens.routes import kernels

os.environ["ROUTELENS_STORE"] = "off"
PROMPTS = ["The capital of France is", "When Mary and John went to the store, John gave a drink to",
           "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    kernels.warm_up()
    model = rl.load("smollm2-135m-instruct")
    model.generate(PROMPTS[0], 2, store=False).graph(-1)  # warm: first calls build caches
    print(f"{'prompt':<28} {'final text':>11} {'generate':>9} {'ratio':>6} {'every step':>11} {'ratio':>6}")
    ratios, ratios_all = [], []
    for prompt in PROMPTS:
        alone, gen, every = [], [], []
        for _ in range(args.repeat):
            holder: dict = {}

            def generation() -> None:
                holder["g"] = g = model.generate(prompt, args.tokens, store=False)
                g.graph(-1)

            gen.append(timed(generation))
            g = holder["g"]
            final = g.trace.token_ids
            alone.append(timed(lambda: model.trace(final, store=False).graph(g.steps[-1]["pos"])))

            def all_steps() -> None:
                gg = model.generate(prompt, args.tokens, store=False)
                for k in range(len(gg.steps)):
                    gg.graph(k)

            every.append(timed(all_steps))
        a, b, c = (statistics.median(x) for x in (alone, gen, every))
        ratios.append(b / a)
        ratios_all.append(c / a)
        label = prompt.replace("\n", "\\n")[:26]
        print(f"{label:<28} {a * 1000:>9.0f}ms {b * 1000:>7.0f}ms {b / a:>5.2f}x {c * 1000:>9.0f}ms {c / a:>5.2f}x")
    print(f"generate {args.tokens} tokens + trace in one pass, vs tracing the final text alone: "
          f"{statistics.median(ratios):.2f}x (target < 2x); with every step's route: {statistics.median(ratios_all):.2f}x")


if __name__ == "__main__":
    main()
