"""Routes over a dataset (issue 15): prompts per second of `analyze` with the local executor, peak
resident memory of the process and of each Ray worker, and the Ray executor's wall time with 2
workers against the local one on the same machine (target: under 1.5x).

Measured side by side in one run on smollm2-135m-instruct, positions=last, threshold 0.04, on
prompts of exactly T tokens cut from the shipped sample (routelens/analysis/sample.jsonl, its
texts run together and cycled), 8 prompts a shard:
- local: `rl.load` then every shard in this process, as `analyze` runs it, with torch's default
  threads (all cores) and again with one thread (what each Ray worker gets on 2 CPUs);
- ray: `ray.init` here (2 CPUs, no dashboard), then 2 actors that each load the model and take
  shards (one torch thread each), every shard written by the driver as it comes back.
Wall times include loading the model (each Ray worker loads its own); Ray's start is printed apart.

    python benchmarks/bench_analyze.py [--prompts 24] [--tokens 64] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ROUTELENS_STORE", "off")

import routelens as rl  # noqa: E402
from routelens.analysis import run  # noqa: E402
from routelens.analysis.dataset import SAMPLE, Dataset  # noqa: E402
from routelens.analysis.ray_executor import peak_rss, run_on_ray  # noqa: E402
from routelens.analysis.run import Spec, shard_stats, shards  # noqa: E402

MODEL = "smollm2-135m-instruct"


def prompts_of(model, n: int, tokens: int) -> list[dict]:
    """`n` prompts of exactly `tokens` tokens: windows over the sample's texts run together."""
    rows = [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]
    out: list[dict] = []
    i = 0
    while len(out) < n:
        row, text, j = rows[i % len(rows)], "", i
        while not text or len(model.tokenize(text)) < tokens + 8:
            text += ("" if not text else " ") + rows[j % len(rows)]["text"]
            j += 1
        ids = model.tokenize(text)[:tokens].tolist()
        cut = model.tokenizer.decode(ids)
        if len(model.tokenize(cut)) == tokens:  # a window whose text tokenizes back to T tokens
            out.append({"text": cut, "label": row["label"]})
        i += 1
    return out


def mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    import ray
    import torch

    folder = Path(tempfile.mkdtemp(prefix="bench_analyze-"))
    model = rl.load(MODEL)  # converted and cached once; timed again below as the executors load it
    data = folder / "prompts.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in prompts_of(model, args.prompts, args.tokens)))
    del model
    spec = Spec(model=MODEL, dataset=str(data), positions="last", threshold=0.04, shard_size=8)
    dataset = Dataset(spec.dataset)
    todo = shards(len(dataset), spec.shard_size)

    # local: load, then every shard here, with torch's default threads (what `analyze` runs) and with 1
    local = []
    for threads in dict.fromkeys([torch.get_num_threads(), 1]):
        torch.set_num_threads(threads)
        start = time.perf_counter()
        model = rl.load(spec.model, dtype=spec.dtype, device=spec.device)
        load = time.perf_counter() - start
        output = run.Output(folder / f"local{threads}", spec, dataset)
        for a, b in todo:
            output.write_shard(a, shard_stats(model, dataset, spec, a, b))
        here = output.merge()
        local.append((threads, time.perf_counter() - start, load))
        del model
    local_peak = peak_rss()

    # ray: start it, then the workers, each loading the model and taking shards
    start = time.perf_counter()
    ray.init(num_cpus=args.workers, include_dashboard=False, logging_level="error")
    up = time.perf_counter() - start
    output = run.Output(folder / "ray", spec, dataset)
    info = run_on_ray(spec, todo, output.write_shard, workers=args.workers)
    there = output.merge()
    ray_wall = time.perf_counter() - start
    ray.shutdown()

    diff = max(float((here.labels[k].tensors(k)[n].double() - t.double()).abs().max())
               for k in here.labels for n, t in there.labels[k].tensors(k).items())
    n = len(dataset)
    print(f"{MODEL}, {n} prompts of {args.tokens} tokens, positions=last, threshold 0.04, "
          f"{spec.shard_size} prompts a shard, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")
    print(f"{'executor':<22}{'wall':>8}{'start':>16}{'prompts/s':>11}  peak resident memory")
    for threads, wall, load in local:
        print(f"{f'local, {threads} thread' + 's' * (threads > 1):<22}{wall:>7.1f}s{f'load {load:.1f}s':>16}"
              f"{n / (wall - load):>11.2f}  {mib(local_peak)} (the process, both local runs)")
    workers = ", ".join(mib(p) for p in info["peak_rss"])
    label = f"ray, {info['workers']} x {info['threads']} thread"
    print(f"{label:<22}{ray_wall:>7.1f}s{f'ray.init {up:.1f}s':>16}{n / (ray_wall - up):>11.2f}  {workers} (each worker)")
    ratios = ", ".join(f"{ray_wall / wall:.2f}x local with {threads} thread{'s' * (threads > 1)}"
                       for threads, wall, _ in local)
    print(f"Ray with {info['workers']} workers, wall time: {ratios} (target < 1.5x). Ray's prompts/s counts "
          f"from ray.init's end (the workers' model loads in it); local's excludes the load. Ray's statistics "
          f"differ from local 1-thread by at most {diff:.1e}")


if __name__ == "__main__":
    main()
