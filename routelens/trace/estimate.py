"""What a trace of T tokens will cost, from the model's shape and T, before it runs.

Memory follows the design of trace/capture.py: a trace keeps the residual stream (L + 1 tensors of
T x d in the model's dtype) and the mask of each attention kind (T x T); while it runs, one
layer's activations and one block of attention rows exist at a time. A route replays one layer at
a time and keeps at most `REPLAY_CACHE_BYTES` of replays. Time: a block's cost is a * T (the
projections and FFN) + b * T^2 (attention's scores, all of them in eager attention); a and b are
measured once per model on this machine by running its first blocks at two lengths
(`block_timing`), and the forward passes that really run correct the estimate further
(`record_forward`). benchmarks/bench_long.py prints every estimate beside what was measured.
"""

from __future__ import annotations

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


def is_calibrated(adapter: Adapter) -> bool:
    """Whether `block_timing` has measured this model already (then `estimate` runs nothing)."""
    return "_block_timing" in adapter.__dict__


def block_timing(adapter: Adapter) -> tuple[float, float]:
    """(a, b) with one block's seconds ~ a * T + b * T^2 on this machine: the model's first block
    run (routelens attention, as a trace runs it) at two lengths, once per model (well under a
    second for small models; a few seconds for 7B ones on a CPU)."""
    cached = adapter.__dict__.get("_block_timing")
    if cached is not None:
        return cached
    ctx = adapter.context_length or 4096
    n1, n2 = max(8, min(256, ctx // 4)), max(16, min(1024, ctx))
    t1, t2 = _block_seconds(adapter, n1), _block_seconds(adapter, n2)
    b = max(0.0, (t2 / n2 - t1 / n1) / (n2 - n1))  # the quadratic part: attention's T x T scores
    a = max(0.0, t2 / n2 - b * n2)
    adapter.__dict__["_block_timing"] = (a, b)
    return a, b


# Weights streamed per timing: more than a CPU's last-level cache, so that each block's weights come
# from memory as in a forward pass (one block run again and again would time a warm cache).
STREAM_BYTES = 96 * 2**20


@torch.inference_mode()
def _block_seconds(adapter: Adapter, n: int) -> float:
    """Seconds per block at n tokens: the first k blocks (k blocks of weights exceed STREAM_BYTES)
    run one after another on random hidden states, called as the model calls them (mask, rotary:
    `record_block_calls`) with routelens attention, after one warm-up pass."""
    from .attention import Recorder, recording
    from .capture import model_lock, record_block_calls

    specs = adapter.layers()
    per_block = sum(p.numel() * p.element_size() for p in specs[0].block.parameters())
    k = min(len(specs), max(1, -(-STREAM_BYTES // max(1, per_block))))
    param = next(specs[0].block.parameters())
    calls = record_block_calls(adapter, torch.arange(n) % adapter.vocab_size)
    hidden = torch.randn(1, n, adapter.d_model, dtype=param.dtype, device=param.device)
    with model_lock(adapter.model), recording(Recorder(keep_calls=False)):
        for timed in (False, True):
            _sync(param.device)
            start = time.perf_counter()
            for spec, call in zip(specs[:k], calls):
                spec.block(hidden.to(next(spec.block.parameters()).device), *call.args, **call.kwargs)
            _sync(param.device)
            seconds = time.perf_counter() - start
    return seconds / k


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


LEARN_FROM_TOKENS = 256


def record_forward(adapter: Adapter, n: int, seconds: float) -> None:
    """Tell the estimate how long a forward pass of `n` tokens really took on this model: later
    time estimates are scaled by the median ratio of the last few (the calibration of
    `machine_rates` misses the model's own overheads, and other work on the machine)."""
    if seconds > 0 and n >= LEARN_FROM_TOKENS:  # a short pass is mostly overhead, not T-scaled work
        ratios = adapter.__dict__.setdefault("_forward_ratios", deque(maxlen=8))
        ratios.append(seconds / _raw_forward_seconds(adapter, n))


def _raw_forward_seconds(adapter: Adapter, n: int) -> float:
    a, b = block_timing(adapter)
    return adapter.n_layers * (a * n + b * n * n)


def estimate(adapter: Adapter, n: int, *, keep_layers_bytes: int = 0) -> Estimate:
    """The estimate for a trace of `n` tokens and one single-target route on it (the trace keeping
    up to `keep_layers_bytes` of its top layers for that route: Model.trace)."""
    if n < 1:
        raise ValueError("a trace has at least one token")
    ratios = adapter.__dict__.get("_forward_ratios")
    forward = _raw_forward_seconds(adapter, n) * (statistics.median(ratios) if ratios else 1.0)
    kept = kept_bytes(adapter, n)
    layers = min(keep_layers_bytes, adapter.n_layers * replay_bytes(adapter, n))
    peak = kept + layers + max(forward_bytes(adapter, n), route_bytes(adapter, n))
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
