"""What a trace of T tokens will cost, from the model's shape and T, before it runs.

Memory follows the design of trace/capture.py: a trace keeps the residual stream (L + 1 tensors of
T x d in the model's dtype) and the mask of each attention kind (T x T); while it runs, one
layer's activations and one block of attention rows exist at a time. A route replays one layer at
a time and keeps at most `REPLAY_CACHE_BYTES` of replays. Time is the forward pass's
multiply-adds (weights: 2 x parameters x T; attention: 4 x L x H x head_dim x T^2, since eager
attention computes every score) and its T^2 softmax elements, over rates this machine measured
once (`machine_rates`). benchmarks/bench_long.py prints every estimate beside what was measured.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ..models.adapters.base import Adapter
from .attention import ROW_BLOCK_ELEMENTS
from .capture import REPLAY_CACHE_BYTES

FP32 = 4


@dataclass
class Estimate:
    """Bytes and seconds, all estimates (benchmarks/bench_long.py measures them beside)."""

    n_tokens: int
    kept_bytes: int  # what a finished trace holds: residual stream, masks, cached replays
    peak_bytes: int  # the most memory the trace and one route take at once, above what was in use
    forward_seconds: float
    route_seconds: float  # one single-target route after the trace

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ffn_width(adapter: Adapter) -> int:
    cfg = adapter.config
    for name in ("intermediate_size", "n_inner", "ffn_dim", "moe_intermediate_size"):
        value = getattr(cfg, name, None)
        if value:
            return int(value)
    return 4 * adapter.d_model


def _dtype_bytes(adapter: Adapter) -> int:
    return next(adapter.model.parameters()).element_size()


def n_mask_kinds(adapter: Adapter) -> int:
    """Attention kinds with their own T x T mask: 2 for models mixing sliding and full layers."""
    cfg = adapter.config
    kinds = set(getattr(cfg, "layer_types", None) or [])
    if kinds:
        return len(kinds)
    return 1


def _has_rotary(adapter: Adapter) -> bool:
    return any("rope" in key or "rotary" in key for key in adapter.config.to_dict())


def replay_bytes(adapter: Adapter, n: int) -> int:
    """One replayed layer (capture.py LayerCapture): the attention and FFN inputs and outputs, the
    block output, the neuron activations, queries and keys, in the model's dtype (its input x[l]
    is the trace's own; a write without a post-norm is its output, held once)."""
    width = 5 * adapter.d_model + ffn_width(adapter) + (adapter.n_heads + adapter.n_kv_heads) * adapter.head_dim
    return n * width * _dtype_bytes(adapter)


def kept_bytes(adapter: Adapter, n: int) -> int:
    """What a finished trace holds (before any route): x[0..L], the masks and the rotary tables
    (cos and sin, fp32) of each attention kind, the positions."""
    b, kinds = _dtype_bytes(adapter), n_mask_kinds(adapter)
    rotary = kinds * 2 * n * adapter.head_dim * FP32 if _has_rotary(adapter) else 0
    rotary += 8 * n
    return (adapter.n_layers + 1) * n * adapter.d_model * b + kinds * n * n * b + rotary


def attention_block_bytes(adapter: Adapter, n: int) -> int:
    """Two blocks of attention weights alive at once (scores, then their softmax): attention.py
    computes at most ROW_BLOCK_ELEMENTS of them at a time, in fp32 or the model's dtype."""
    return 2 * min(ROW_BLOCK_ELEMENTS, adapter.n_heads * n * n) * FP32


def forward_bytes(adapter: Adapter, n: int) -> int:
    """The forward pass's transient above what the trace keeps: one layer's activations (the FFN's
    three d_ffn-wide ones dominate) and its attention blocks."""
    return n * (4 * adapter.d_model + 3 * ffn_width(adapter)) * FP32 + attention_block_bytes(adapter, n)


def route_bytes(adapter: Adapter, n: int) -> int:
    """A single-target route above what the trace keeps: the replays cached at their peak (the
    newest is built before the oldest leaves), the layer's head writes U [H, T, d] in fp32 and its
    attention blocks. Measured against this in benchmarks/bench_long.py."""
    head_writes = adapter.n_heads * n * adapter.d_model * FP32
    return cached_replays(adapter, n, peak=True) + head_writes + attention_block_bytes(adapter, n)


def cached_replays(adapter: Adapter, n: int, *, peak: bool = False) -> int:
    """Replays a trace keeps (capture.py `Replays`): as many as fit the budget, at least one; at
    the peak, one more (built while the others are still held)."""
    replay = replay_bytes(adapter, n)
    kept = max(1, REPLAY_CACHE_BYTES // max(1, replay)) + (1 if peak else 0)
    return min(adapter.n_layers, kept) * replay


def forward_work(adapter: Adapter, n: int) -> tuple[float, float]:
    """(multiply-add FLOPs, softmax elements) of one forward pass over n tokens. A token runs
    through top-k of a layer's routed experts, so their weights count k / n_experts of theirs."""
    share: dict[int, float] = {}
    for spec in adapter.layers():
        if spec.experts is not None:
            k = getattr(adapter.config, "num_experts_per_tok", None)
            n_experts = getattr(spec.experts, "num_experts", None)
            for p in spec.experts.parameters():
                share[id(p)] = min(1.0, k / n_experts) if k and n_experts else 1.0
    weights = sum(p.numel() * share.get(id(p), 1.0) for name, p in adapter.model.named_parameters()
                  if "embed" not in name and "wte" not in name)
    flops = 2.0 * weights * n + 4.0 * adapter.n_layers * adapter.n_heads * adapter.head_dim * n * n
    return flops, float(adapter.n_layers * adapter.n_heads * n * n)


@functools.lru_cache(maxsize=8)
def machine_rates(device: str = "cpu") -> tuple[float, float]:
    """(FLOP/s of a model-sized matrix product, softmax elements/s) on this machine, measured once
    (~0.1 s): the time estimate scales the model's work by them."""
    dev = torch.device(device)
    a, b = torch.randn(256, 576, device=dev), torch.randn(576, 1536, device=dev)
    s = torch.randn(4, 256, 1024, device=dev)

    def rate(fn, work: float) -> float:
        fn()
        best = float("inf")
        for _ in range(3):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        return work / max(best, 1e-9)

    with torch.inference_mode():
        mm = rate(lambda: [a @ b for _ in range(8)], 8 * 2.0 * 256 * 576 * 1536)
        sm = rate(lambda: [torch.softmax(s + 0.0, -1) for _ in range(4)], 4.0 * s.numel())
    return mm, sm


def record_forward(adapter: Adapter, n: int, seconds: float) -> None:
    """Tell the estimate how long a forward pass of `n` tokens really took on this model: later
    time estimates are scaled by the median ratio of the last few (the calibration of
    `machine_rates` misses the model's own overheads, and other work on the machine)."""
    if seconds > 0:
        ratios = adapter.__dict__.setdefault("_forward_ratios", deque(maxlen=8))
        ratios.append(seconds / _raw_forward_seconds(adapter, n))


def _raw_forward_seconds(adapter: Adapter, n: int) -> float:
    mm, sm = machine_rates(str(next(adapter.model.parameters()).device))
    flops, softmax = forward_work(adapter, n)
    return flops / mm + 3.0 * softmax / sm  # eager: add the mask, softmax, cast


def estimate(adapter: Adapter, n: int) -> Estimate:
    """The estimate for a trace of `n` tokens and one single-target route on it."""
    if n < 1:
        raise ValueError("a trace has at least one token")
    ratios = adapter.__dict__.get("_forward_ratios")
    forward = _raw_forward_seconds(adapter, n) * (statistics.median(ratios) if ratios else 1.0)
    kept = kept_bytes(adapter, n)
    peak = kept + max(forward_bytes(adapter, n), route_bytes(adapter, n))
    route = 1.3 * forward  # every layer replayed once (a forward pass), and the kept nodes' importances
    return Estimate(n_tokens=n, kept_bytes=kept + cached_replays(adapter, n), peak_bytes=int(peak),
                    forward_seconds=forward, route_seconds=route)


class PeakMemory:
    """Measures the peak memory above the start while a block runs: CUDA's allocator peak on a GPU;
    on Linux the process's peak resident set (reset through /proc/self/clear_refs); else None.
    Process-wide on the CPU: other work running at the same time counts too."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.peak_bytes: int | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        else:
            self._start = _status_bytes("VmRSS") if _reset_peak_rss() else None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            self.peak_bytes = max(0, torch.cuda.max_memory_allocated(self.device) - self._start)
        elif self._start is not None:
            peak = _status_bytes("VmHWM")
            self.peak_bytes = max(0, peak - self._start) if peak is not None else None


def _status_bytes(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
