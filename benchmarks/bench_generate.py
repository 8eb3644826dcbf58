"""Routes along a generated continuation: what tracing N generated tokens costs, against tracing
the final text alone (issue 14: under 2x for N = 10).

Measured side by side in one run (median of --repeat runs) on smollm2-135m-instruct, store off:
- final text alone: `model.trace(final_ids)` + the route at the last step's position;
- the generation traced in one pass: the same trace + the steps' probabilities and ranks + the
  route of every one of the N steps (`Generation.graphs()`: one top-down pass for all steps, then
  each step's graph from the cached rows; what the web app's stepper shows);
- step by step (what one pass saves): a separate trace of each step's prefix + its route;
- generating the N tokens (transformers' `generate` with its KV cache): the model's own sampling
  loop, printed beside the rest (N sequential forward passes; no tracing in it).
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
from routelens.trace.generation import Generation, generate_ids, steps_of

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
    print(f"{'prompt':<28} {'final text':>10} {'one pass':>9} {'ratio':>6} {'by step':>8} {'ratio':>6} {'generate':>9}")
    ratios, by_step, gens = [], [], []
    for prompt in PROMPTS:
        gen = model.generate(prompt, args.tokens, store=False)
        final, plen, n = gen.trace.token_ids, gen.prompt_length, len(gen.steps)
        new = final[plen:]
        rows: dict[str, list[float]] = {"alone": [], "pass": [], "steps": [], "gen": []}
        for _ in range(args.repeat):
            rows["alone"].append(timed(lambda: model.trace(final, store=False).graph(plen - 1 + n - 1)))

            def one_pass() -> None:
                trace = model.trace(final, store=False)
                Generation(trace, plen, steps_of(trace, plen, new), False, None, 1.0).graphs()

            rows["pass"].append(timed(one_pass))

            def step_by_step() -> None:
                for k in range(n):
                    model.trace(final[: plen + k], store=False).graph(-1)

            rows["steps"].append(timed(step_by_step))
            ids = model.tokenize(prompt)
            rows["gen"].append(timed(lambda: generate_ids(model, ids, args.tokens, sample=False, seed=None,
                                                          temperature=1.0)))
        a, b, c, g = (statistics.median(rows[k]) for k in ("alone", "pass", "steps", "gen"))
        ratios.append(b / a)
        by_step.append(c / a)
        gens.append(g / a)
        label = prompt.replace("\n", "\\n")[:26]
        print(f"{label:<28} {a * 1000:>8.0f}ms {b * 1000:>7.0f}ms {b / a:>5.2f}x {c * 1000:>6.0f}ms {c / a:>5.2f}x "
              f"{g * 1000:>7.0f}ms")
    print(f"tracing {args.tokens} generated tokens in one pass, every step's route included, vs tracing the final "
          f"text alone: {statistics.median(ratios):.2f}x (target < 2x); step by step: {statistics.median(by_step):.2f}x; "
          f"generating the tokens themselves: {statistics.median(gens):.2f}x")


if __name__ == "__main__":
    main()
