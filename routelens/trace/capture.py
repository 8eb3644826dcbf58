"""One forward pass that keeps what grows linearly in T, and a replay that rebuilds one layer.

The forward pass keeps the residual stream `x[0..L]` ([T, d] per layer), how each block was
called (its mask and rotary embeddings, shared by all layers of a kind), the last position's logits
and a finiteness flag per part. Everything else a layer holds (normalised inputs, the attention's
queries and keys, writes before and after post-norms, neuron activations, MoE routing) is rebuilt
by running that block again on its stored input with the same call: the same module on the same
numbers, so the same result. The attention pattern is never whole: `trace/attention.py` computes
it a block of query rows at a time, and any rows again on demand. Memory is O(L x T x d) plus one
layer's replay; no layers x heads x T x T tensor exists.

Over 400 lines on purpose: the forward pass, the replay and the identity pass share one set of hooks
and must change together (a hook that differs between them breaks bit-identical replays).

A backend that runs the model its own way (Adapter.forward_logits, Adapter.hook_points: the
TransformerLens bridge) is captured the same way, through its own hook points; its attention hands
over its whole pattern, so each replayed layer there holds one heads x T x T tensor.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from .. import interrupt
from ..models.adapters.base import Adapter
from . import attention
from .finite import all_finite, raise_first_non_finite

# Replayed layers kept per capture (a panel opened twice, a route then its heads), by bytes.
REPLAY_CACHE_BYTES = 64 * 2**20

_model_locks: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_model_locks_guard = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """Held while routelens runs any part of `model` with hooks on it or a block's forward swapped:
    both are seen by every thread running the module, so two runs at once (two traces, a replay and
    a why_attends probe) would record each other's tensors. Take it after reading stored tensors."""
    with _model_locks_guard:
        lock = _model_locks.get(model)
        if lock is None:
            lock = _model_locks[model] = threading.RLock()
        return lock


@dataclass
class LayerCapture:
    """What one layer read and wrote, rebuilt by a replay of the block (tensors [T, ...])."""

    resid_in: torch.Tensor  # x[l]          [T, d]
    attn_in: torch.Tensor  # n[l]          [T, d]
    attention: attention.AttentionCall  # queries, keys, mask: any pattern rows on demand
    attn_out: torch.Tensor  # o before post-norm [T, d]
    attn_write: torch.Tensor  # a = post_norm(o) or o [T, d]
    ffn_in: torch.Tensor  # FFN input     [T, d]
    ffn_act: torch.Tensor | None  # neuron activations [T, d_ffn] (dense FFNs)
    ffn_out: torch.Tensor  # f before post-norm [T, d]
    ffn_write: torch.Tensor  # f = post_norm(f) or f [T, d]
    resid_out: torch.Tensor  # x[l+1] as the replay computed it [T, d]
    routing: tuple[torch.Tensor, torch.Tensor] | None = None  # MoE (expert index, weight) [T, k]

    def pattern_rows(self, positions: torch.Tensor | list[int]) -> torch.Tensor:
        """Attention pattern rows A[:, positions, :]: [H, P, T], the model's own numbers."""
        return self.attention.pattern_rows(positions)

    @property
    def pattern(self) -> torch.Tensor:
        """The whole pattern [H, T, T]: quadratic in T, for short prompts and checks."""
        return self.attention.pattern()

    def nbytes(self) -> int:
        seen: set[int] = set()
        total = 0
        for t in (self.resid_in, self.attn_in, self.attn_out, self.attn_write, self.ffn_in, self.ffn_act,
                  self.ffn_out, self.ffn_write, self.resid_out, self.attention.query, self.attention.key):
            if t is not None and t.data_ptr() not in seen:
                seen.add(t.data_ptr())
                total += t.numel() * t.element_size()
        return total


@dataclass
class BlockCall:
    """How the model called one block, less the hidden states: mask, rotary, positions."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class Capture:
    """The linear part of a forward pass; `layers[l]` replays layer l (cached, bounded)."""

    def __init__(self, adapter: Adapter | None, token_ids: torch.Tensor, resid: Sequence[torch.Tensor],
                 last_logits: torch.Tensor, forward_seconds: float = 0.0, calls: list[BlockCall] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        self.adapter = adapter
        self._token_ids = token_ids
        self._resid = resid
        self._last_logits = last_logits
        self.forward_seconds = forward_seconds
        self.calls = calls
        self.extra: dict[str, Any] = extra if extra is not None else {}
        self._replays = ReplayCache()

    @property
    def layers(self) -> Replays:
        """`layers[l]`: layer l replayed from x[l], or kept (ReplayCache). A view: holding it keeps
        the capture alive, and the capture holds only the cache (no reference cycle)."""
        return Replays(self, self._replays)

    @property
    def token_ids(self) -> torch.Tensor:
        return self._token_ids

    @property
    def last_logits(self) -> torch.Tensor:
        """The model's own logits at the last position [V]."""
        return self._last_logits

    @property
    def n_layers(self) -> int:
        return len(self._resid) - 1

    def resid(self, index: int) -> torch.Tensor:
        """x[index] [T, d] for index 0..L (0: embeddings; L: the last block's output)."""
        return self._resid[index]

    def block_calls(self) -> list[BlockCall]:
        if self.calls is None:
            assert self.adapter is not None, "a capture replays layers only with its model's adapter"
            self.calls = record_block_calls(self.adapter, self.token_ids)
        return self.calls

    def kept_bytes(self) -> int:
        """What this capture holds apart from replays: the residual stream and the calls' tensors."""
        total = sum(t.numel() * t.element_size() for t in (self.resid(i) for i in range(self.n_layers + 1)))
        seen: set[int] = set()
        for call in self.calls or []:
            for value in list(call.args) + list(call.kwargs.values()):
                for t in value if isinstance(value, (tuple, list)) else (value,):
                    if isinstance(t, torch.Tensor) and t.data_ptr() not in seen:
                        seen.add(t.data_ptr())
                        total += t.numel() * t.element_size()
        return total


class ReplayCache:
    """The replays a capture keeps: the latest few (by bytes) and the layers its forward pass kept.
    It holds no reference to the capture: a capture and its cache in a reference cycle would wait
    for Python's rare full garbage collection to free their tensors (a server grew 2 MB a trace)."""

    def __init__(self, budget: int = REPLAY_CACHE_BYTES) -> None:
        self.budget = budget
        self.kept: OrderedDict[int, LayerCapture] = OrderedDict()
        self.seeded: dict[int, LayerCapture] = {}  # layers kept from the forward pass, each used once
        self.lock = threading.Lock()
        self.replayed = 0  # how many replays ran (benchmarks and tests read it)


class Replays:
    """`capture.layers`: layer l rebuilt by replaying its block (a view of the capture's cache)."""

    def __init__(self, capture: Capture, cache: ReplayCache) -> None:
        self.capture = capture
        self.cache = cache

    @property
    def replayed(self) -> int:
        return self.cache.replayed

    def __len__(self) -> int:
        return self.capture.n_layers

    def __iter__(self) -> Iterator[LayerCapture]:
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, index: int) -> LayerCapture:
        if not isinstance(index, int) or not -len(self) <= index < len(self):
            raise IndexError(f"layer {index!r} out of range 0..{len(self) - 1}")
        index %= len(self)
        cache = self.cache
        with cache.lock:
            layer = cache.kept.get(index)
            if layer is not None:
                cache.kept.move_to_end(index)
                return layer
            layer = cache.seeded.pop(index, None)  # the forward pass's own tensors: no replay needed
            if layer is None:
                layer = replay_layer(self.capture, index)
                cache.replayed += 1
            cache.kept[index] = layer
            total = sum(x.nbytes() for x in cache.kept.values())
            while len(cache.kept) > 1 and total > cache.budget:
                _, old = cache.kept.popitem(last=False)
                total -= old.nbytes()
            return layer

    def seed(self, layers: dict[int, LayerCapture]) -> None:
        """Layers the forward pass kept (run_with_capture's `keep_layers_bytes`): each is handed out
        once instead of a replay, then joins the bounded cache like a replay."""
        with self.cache.lock:
            self.cache.seeded.update(layers)

    def drop_seeds(self) -> None:
        """Forget the layers the forward pass kept that were not used (their memory is freed)."""
        with self.cache.lock:
            self.cache.seeded.clear()

    def seeded(self) -> list[int]:
        with self.cache.lock:
            return sorted(self.cache.seeded)

    def clear(self) -> None:
        with self.cache.lock:
            self.cache.kept.clear()
            self.cache.seeded.clear()


def _first(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


def _hidden_arg(args: tuple, kwargs: dict) -> torch.Tensor:
    if args:
        return args[0]
    return kwargs["hidden_states"]


def _flat(t: torch.Tensor) -> torch.Tensor:
    """Drop the batch dimension (batch is always 1); OPT reshapes to [B*T, d] inside its FFN."""
    t = t.detach()
    if t.dim() == 3:
        assert t.shape[0] == 1
        t = t[0]
    return t


def _split_call(args: tuple, kwargs: dict) -> BlockCall:
    if args:
        return BlockCall(args=tuple(args[1:]), kwargs=dict(kwargs))
    rest = {k: v for k, v in kwargs.items() if k != "hidden_states"}
    return BlockCall(args=(), kwargs=rest)


_SCALED = {"attn_out": "attn_write", "ffn_out": "ffn_write"}  # write before -> after a constant multiplier


def _layer_hooks(spec: Any, keep: dict[str, Any], on_tensor: Any,
                 points: list[tuple[str, nn.Module]] | None = None) -> list[Any]:
    """Hooks on one layer's modules: `on_tensor(key, tensor)` for every part, in computation order.
    `points`: the backend's own (part, module) hook points (Adapter.hook_points), each part its
    module's output, the pattern reported to the active attention recorder; None hooks `spec`."""

    def pre(key: str):
        def hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
            on_tensor(key, _flat(_hidden_arg(args, kwargs)))

        return hook

    def post(key: str):
        def hook(_module: nn.Module, _args: tuple, output: Any) -> None:
            t = _flat(_first(output))
            on_tensor(key, t)
            if spec.write_scale is not None and key in _SCALED:  # the model's own `write * multiplier`
                on_tensor(_SCALED[key], t * spec.write_scale)

        return hook

    def routing(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        index = args[1] if len(args) > 1 else kwargs["top_k_index"]
        weight = args[2] if len(args) > 2 else kwargs["top_k_weights"]
        keep["routing"] = (index.detach(), weight.detach())

    def pattern(_module: nn.Module, _args: tuple, output: Any) -> None:
        attention.record_pattern(spec.attn, _first(output))

    if points is not None:
        return [module.register_forward_hook(pattern if key == "pattern" else post(key)) for key, module in points]
    handles = [
        spec.attn.register_forward_pre_hook(pre("attn_in"), with_kwargs=True),
        spec.attn.register_forward_hook(post("attn_out")),
        spec.ffn.register_forward_pre_hook(pre("ffn_in"), with_kwargs=True),
    ]
    if spec.ffn_out is not None:
        handles.append(spec.ffn_out.register_forward_pre_hook(pre("ffn_act"), with_kwargs=True))
        handles.append(spec.ffn_out.register_forward_hook(post("ffn_out")))
    else:
        handles.append(spec.ffn.register_forward_hook(post("ffn_out")))
    if spec.experts is not None:
        handles.append(spec.experts.register_forward_pre_hook(routing, with_kwargs=True))
    if spec.attn_post_norm is not None:
        handles.append(spec.attn_post_norm.register_forward_hook(post("attn_write")))
    if spec.ffn_post_norm is not None:
        handles.append(spec.ffn_post_norm.register_forward_hook(post("ffn_write")))
    return handles


def run_with_capture(adapter: Adapter, token_ids: torch.Tensor, *, keep_layers_bytes: int = 0) -> Capture:
    """Run the model once on `token_ids` ([T]) and keep its residual stream (module docstring).

    `keep_layers_bytes`: also keep, up to that many bytes, the top layers' tensors as this pass
    computed them (what a replay would rebuild, bit for bit), so that the first route after the
    trace needs no replay of them (`Replays.seed`); 0 keeps none.
    Raises NonFiniteError at the first layer, part and position holding NaN or infinity."""
    model = adapter.model
    specs = adapter.layers()
    resid: list[torch.Tensor | None] = [None] * (len(specs) + 1)
    calls: list[BlockCall | None] = [None] * len(specs)
    flags: list[tuple[int, str, torch.Tensor]] = []  # (layer, part, finite?) in computation order
    recorder = attention.Recorder(keep_calls=keep_layers_bytes > 0)
    handles: list[Any] = []
    parts: list[dict[str, Any]] = [{} for _ in specs]  # a layer's tensors, while it may be kept
    kept: dict[int, LayerCapture] = {}  # the top layers that fit keep_layers_bytes

    def block_in(i: int):
        def hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
            interrupt.check()  # a safe point before each block: a cancelled request stops here
            x = _flat(_hidden_arg(args, kwargs))
            resid[i] = x
            calls[i] = _split_call(args, kwargs)
            flags.append((i, "resid_in", all_finite(x)))

        return hook

    def block_out(i: int):
        def hook(_module: nn.Module, _args: tuple, output: Any) -> None:
            x = _flat(_first(output))
            resid[i + 1] = x
            flags.append((i, "resid_out", all_finite(x)))
            if keep_layers_bytes > 0:
                keep_layer(i, x)

        return hook

    def keep_layer(i: int, out: torch.Tensor) -> None:
        """Layer i as a replay would rebuild it; lower layers leave first when over the budget."""
        got, call = parts[i], recorder.calls.pop(id(specs[i].attn), None)
        parts[i] = {}
        if call is None or resid[i] is None:
            return
        kept[i] = _layer_capture(resid[i], got, call, out)
        total = sum(layer.nbytes() for layer in kept.values())
        while kept and total > keep_layers_bytes:
            total -= kept.pop(min(kept)).nbytes()

    def part(i: int, spec: Any):
        def on_tensor(key: str, t: torch.Tensor) -> None:
            if key == "attn_out":  # the pattern was computed (and flagged) inside the attention
                flags.extend((i, "pattern", f) for f in recorder.flags.pop(id(spec.attn), []))
            flags.append((i, key, all_finite(t)))
            if keep_layers_bytes > 0:
                parts[i][key] = t

        return on_tensor

    device = next(model.parameters()).device
    ids = token_ids.to(device)[None]
    with model_lock(model):
        if adapter.uses_routelens_attention:
            attention.use_routelens_attention(model)  # the user may have switched it (sdpa) since wrapping
        try:
            for i, spec in enumerate(specs):
                handles.append(spec.block.register_forward_pre_hook(block_in(i), with_kwargs=True))
                handles.extend(_layer_hooks(spec, parts[i], part(i, spec), adapter.hook_points(i)))
                handles.append(spec.block.register_forward_hook(block_out(i)))
            start = time.perf_counter()
            with torch.inference_mode(), attention.recording(recorder):
                logits = _forward_logits(adapter, ids)
            seconds = time.perf_counter() - start
        finally:
            for handle in handles:
                handle.remove()
    capture = Capture(adapter, token_ids.cpu(), resid, logits[0, -1].detach(), forward_seconds=seconds,
                      calls=calls)  # type: ignore[arg-type]
    flags.append((len(specs), "logits", all_finite(capture.last_logits)))
    raise_first_non_finite(capture, flags, next(model.parameters()).dtype)
    capture.layers.seed(kept)
    return capture


@torch.inference_mode()
def replay_layer(capture: Capture, index: int) -> LayerCapture:
    """Run block `index` again on its stored input with the call the model made: LayerCapture."""
    adapter = capture.adapter
    assert adapter is not None, "a capture replays layers only with its model's adapter"
    spec = adapter.spec(index)
    call = capture.block_calls()[index]
    keep: dict[str, Any] = {}

    def on_tensor(key: str, t: torch.Tensor) -> None:
        keep[key] = t

    x = capture.resid(index)  # read (and, from a damaged store, recomputed) before any hook is on
    recorder = attention.Recorder()
    device = next(spec.block.parameters()).device
    with model_lock(adapter.model):
        if adapter.uses_routelens_attention:
            attention.use_routelens_attention(adapter.model)
        handles = _layer_hooks(spec, keep, on_tensor, adapter.hook_points(index))
        try:
            with attention.recording(recorder):
                out = spec.block(x.to(device)[None], *call.args, **call.kwargs)
        finally:
            for handle in handles:
                handle.remove()
    call = recorder.calls.get(id(spec.attn))
    if call is None:  # a backend whose attention reports no pattern (adapter.hook_points)
        from ..errors import UnsupportedArchitectureError

        raise UnsupportedArchitectureError(f"the attention of layer {index} ({type(spec.attn).__name__}) reported no "
                                           "attention pattern, so its write cannot be decomposed")
    return _layer_capture(x, keep, call, _flat(_first(out)))


def _layer_capture(x: torch.Tensor, keep: dict[str, Any], call: attention.AttentionCall,
                   out: torch.Tensor) -> LayerCapture:
    """A LayerCapture from what the hooks of one layer saw (a write without post-norm is its output)."""
    return LayerCapture(
        resid_in=x,
        attn_in=keep["attn_in"],
        attention=call,
        attn_out=keep["attn_out"],
        attn_write=keep.get("attn_write", keep["attn_out"]),
        ffn_in=keep["ffn_in"],
        ffn_act=keep.get("ffn_act"),
        ffn_out=keep["ffn_out"],
        ffn_write=keep.get("ffn_write", keep["ffn_out"]),
        resid_out=out,
        routing=keep.get("routing"),
    )


@torch.inference_mode()
def record_block_calls(adapter: Adapter, token_ids: torch.Tensor) -> list[BlockCall]:
    """How the model calls each block for `token_ids`, without computing any block: each block's
    forward is swapped for the identity while the model runs (embeddings, mask, rotary only).
    Used for a capture read back from the store, which keeps no T x T mask."""
    model = adapter.model
    specs = adapter.layers()
    calls: list[BlockCall | None] = [None] * len(specs)
    handles = []
    swapped: list[tuple[nn.Module, Any]] = []

    def keep(i: int):
        def hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
            calls[i] = _split_call(args, kwargs)

        return hook

    def identity(*args: Any, **kwargs: Any) -> Any:
        hidden = _hidden_arg(args, kwargs)
        return (hidden, None) if adapter.block_returns_tuple else hidden

    device = next(model.parameters()).device
    with model_lock(model):
        if adapter.uses_routelens_attention:
            attention.use_routelens_attention(model)  # the masks of the model's own calls
        try:
            for i, spec in enumerate(specs):
                handles.append(spec.block.register_forward_pre_hook(keep(i), with_kwargs=True))
                swapped.append((spec.block, spec.block.__dict__.get("forward")))  # accelerate may have set one
                # the instance's own attribute, past any __setattr__ of a wrapper (TransformerLens's
                # bridge components pass attributes on to the module they wrap)
                spec.block.__dict__["forward"] = identity
            _forward_logits(adapter, token_ids.to(device)[None])
        finally:
            for block, before in swapped:
                if before is None:
                    block.__dict__.pop("forward", None)
                else:
                    block.__dict__["forward"] = before
            for handle in handles:
                handle.remove()
    return calls  # type: ignore[return-value]


def _forward_logits(adapter: Adapter, ids: torch.Tensor) -> torch.Tensor:
    """The model's logits [1, T', V] for `ids` [1, T]: the adapter's own way of running it
    (Adapter.forward_logits), or a transformers causal LM call without a cache."""
    logits = adapter.forward_logits(ids)
    if logits is None:
        model = adapter.model
        logits = model(input_ids=ids, use_cache=False, **_keep_last_logits(model)).logits
    return logits


def _keep_last_logits(model: nn.Module) -> dict[str, Any]:
    """Ask for the last position's logits only, when the model supports it (saves T x V memory)."""
    import inspect

    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return {}
    return {"logits_to_keep": 1} if "logits_to_keep" in params else {}
