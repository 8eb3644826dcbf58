"""The Ray executor of `analyze` (optional extra `routelens[ray]`): shards of a dataset computed by
Ray actors, each loading the model and opening the dataset once, on this machine or on a cluster.

Ray does the scheduling, the transport and the fault reporting; this module only keeps every actor
busy with at most `IN_FLIGHT` shards (so memory stays bounded whatever the dataset's size) and
writes each shard's statistics on the driver as soon as it comes back, so a killed run keeps every
finished shard and a resumed one skips them (run.py). A shard travels as `Stats.tensors()` plus its
label names (plain tensors, float64 sums: the merge stays exact). Each actor limits torch to its
share of CPUs, so actors on one machine do not oversubscribe the cores.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

from ..errors import InvalidArgumentError, RoutelensError
from .collect import shard_stats
from .stats import Stats

IN_FLIGHT = 2  # shards handed to one actor at a time: one running, one queued behind it


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise InvalidArgumentError('the Ray executor needs Ray, which is not installed: pip install "routelens[ray]" '
                                   '(or run with the local executor)') from None
    return ray


class ShardWorker:
    """One Ray actor: a loaded model and an open dataset, computing shards one after another."""

    def __init__(self, spec: Any, threads: int) -> None:
        import torch

        torch.set_num_threads(max(1, int(threads)))
        from ..models.loading import load
        from .dataset import Dataset

        self.spec, self.error = spec, None
        try:
            self.model = load(spec.model, dtype=spec.dtype, device=spec.device)
            self.dataset = Dataset(spec.dataset, text_field=spec.text_field, label_field=spec.label_field)
        except Exception as err:  # raised by the first shard: Ray would only report a dead actor
            self.error = err

    def shard(self, start: int, stop: int) -> tuple[dict[str, Any], list[str]]:
        if self.error is not None:
            raise self.error
        stats = shard_stats(self.model, self.dataset, self.spec, start, stop)
        return stats.tensors(), stats.label_names()

    def peak_rss(self) -> int:
        """The actor process's peak resident memory in bytes (VmHWM)."""
        return peak_rss()


def peak_rss() -> int:
    """This process's peak resident memory in bytes (Linux VmHWM; ru_maxrss elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def run_on_ray(spec: Any, todo: list[tuple[int, int]], write_shard: Callable[[int, Stats], None], *,
               address: str | None = None, workers: int | None = None,
               on_shard: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Compute the shards `todo` ((start, stop) prompt ranges) on Ray actors; each one's statistics
    is passed to `write_shard(start, stats)` as soon as it is back, then `on_shard(stop - start)`.

    `address` "auto" (or "ray://host:10001", ...) joins a running cluster; None uses Ray if the
    caller initialised it, else starts it here with `workers` CPUs (default min(2, CPU count)) and
    shuts it down at the end. `workers` actors are started (default min(2, the cluster's CPUs)),
    each with torch limited to an equal share of the CPUs. Returns the
    number of workers, their torch threads and each one's peak resident memory in bytes."""
    ray = _ray()
    if not todo:  # every shard done already: no Ray to start, no model to load
        return {"workers": 0, "threads": 0, "peak_rss": []}
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise InvalidArgumentError(f"workers must be a positive number, not {workers!r}")
    started, actors = False, []
    if not ray.is_initialized():
        if address is not None:
            ray.init(address=address, logging_level="warning")
        else:
            ray.init(num_cpus=workers or min(2, os.cpu_count() or 1), include_dashboard=False,
                     logging_level="warning")
        started = True
    try:
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        n = workers or min(2, cpus)
        threads = max(1, cpus // n)  # torch threads of each actor: its share of the CPUs
        actor = ray.remote(num_cpus=min(threads, cpus / n))(ShardWorker)  # a fraction when workers > CPUs
        actors = [actor.remote(spec, threads) for _ in range(min(n, max(1, len(todo))))]
        _pool(ray, actors, todo, write_shard, on_shard)
        peaks = _get(ray, [a.peak_rss.remote() for a in actors], "reading the workers' memory")
        return {"workers": len(actors), "threads": threads, "peak_rss": peaks}
    finally:
        for a in actors:  # also on an error or Ctrl-C: no actor left computing shards nobody will write
            ray.kill(a)
        if started:
            ray.shutdown()


def _pool(ray: Any, actors: list[Any], todo: list[tuple[int, int]], write_shard: Callable[[int, Stats], None],
          on_shard: Callable[[int], None] | None) -> None:
    """Every actor kept busy with up to IN_FLIGHT shards; each result written the moment it is back."""
    queue = list(todo)
    running: dict[Any, tuple[int, int, int]] = {}  # object ref -> (actor's index, start, stop)
    load = {i: 0 for i in range(len(actors))}

    def hand_out() -> None:
        while queue:
            i = min(load, key=load.__getitem__)
            if load[i] >= IN_FLIGHT:
                return
            start, stop = queue.pop(0)
            running[actors[i].shard.remote(start, stop)] = (i, start, stop)
            load[i] += 1

    hand_out()
    while running:
        ready, _ = ray.wait(list(running), num_returns=1)
        i, start, stop = running.pop(ready[0])
        load[i] -= 1
        tensors, labels = _get(ray, ready[0], f"prompts {start}..{stop - 1}")
        write_shard(start, Stats.from_tensors(tensors, labels))
        if on_shard is not None:
            on_shard(stop - start)
        hand_out()


def _get(ray: Any, ref: Any, what: str) -> Any:
    """ray.get, with a worker's exception re-raised under its own message (routelens errors as they are)."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        cause = getattr(err, "cause", None)
        if isinstance(cause, RoutelensError):
            raise cause from None
        name = type(cause).__name__ if cause is not None else "error"
        raise RuntimeError(f"a Ray worker failed on {what}: {name}: {cause if cause is not None else err}") from None
    except ray.exceptions.RayActorError as err:
        raise RuntimeError(f"a Ray worker died on {what} (out of memory, killed, or its model failed to load): "
                           f"{err}") from None
