"""The attention routelens runs models with: the model's own eager attention, a block of query rows
at a time, so that no heads x T x T tensor is ever whole, and able to hand back what it was given.

`transformers` calls attention through a registry (`AttentionInterface`); each family's modeling
file defines its `eager_attention_forward` (scaling, soft-cap, GQA, dtype of the softmax). Registered
as "routelens", this function calls that very eager function on blocks of query rows with the rows
of the mask the model built (causal, sliding window), so the output is the eager one and a layer's
pattern can later be recomputed for any rows from the queries and keys recorded here (already
rotated, already through any q/k norm). Nothing here knows a model family.

A backend that computes attention itself (TransformerLens) reports each layer's pattern instead
(`record_pattern`), kept whole as a `StoredPattern` that answers like an `AttentionCall`.

While an `editing(edit)` context is active (trace/knockout.py), each block of weights is handed to
`edit` before it multiplies the values: the same eager weights, edited, and the output computed here.
"""

from __future__ import annotations

import contextlib
import sys
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import nn

NAME = "routelens"
# Elements of one block of attention weights (heads x rows x T): bounds the transient per block.
ROW_BLOCK_ELEMENTS = 1 << 23


@dataclass
class AttentionCall:
    """One call of a layer's attention: enough to recompute any rows of its pattern exactly.

    query [1, H, T, dh] and key [1, Hkv, T, dh] as the eager function received them; mask
    [1, 1, T, T] additive (or None); kwargs the scaling / soft-cap the model passed."""

    module: nn.Module
    eager: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    query: torch.Tensor
    key: torch.Tensor
    value_dtype: torch.dtype
    mask: torch.Tensor | None
    kwargs: dict[str, Any]

    @property
    def n_positions(self) -> int:
        return int(self.query.shape[2])

    @torch.no_grad()
    def pattern_rows(self, positions: torch.Tensor | list[int]) -> torch.Tensor:
        """A[h, i, :] for the query positions given: [H, P, T] in the model's dtype, exactly the
        eager function's weights (the same code on the same inputs)."""
        idx = torch.as_tensor(positions, dtype=torch.long, device=self.query.device)
        out = []
        for part in idx.split(block_rows(self.query.shape[1], self.n_positions)):
            out.append(self._rows(part))
        return torch.cat(out, dim=1) if out else self.query.new_zeros(self.query.shape[1], 0, self.n_positions)

    def _rows(self, idx: torch.Tensor) -> torch.Tensor:
        q = self.query[:, :, idx]
        mask = self.mask[:, :, idx] if self.mask is not None else None
        empty = self.key.new_empty(*self.key.shape[:3], 0, dtype=self.value_dtype)  # no output needed
        _, weights = self.eager(self.module, q, self.key, empty, mask, **self.kwargs)
        return weights[0]

    def pattern(self) -> torch.Tensor:
        """The whole pattern [H, T, T] (T x T per head: for short prompts, checks and tests)."""
        return self.pattern_rows(torch.arange(self.n_positions))

    def scores_scale(self) -> float:
        """The factor the eager function multiplies q . k by (its default when the model passed none)."""
        scaling = self.kwargs.get("scaling")
        return float(scaling) if scaling is not None else float(self.query.shape[-1]) ** -0.5

    @property
    def softcap(self) -> float | None:
        cap = self.kwargs.get("softcap")
        return float(cap) if cap else None


@dataclass
class Recorder:
    """What the attention function keeps while active: calls by module, finiteness flags."""

    keep_calls: bool = True
    calls: dict[int, AttentionCall] = field(default_factory=dict)
    flags: dict[int, list[torch.Tensor]] = field(default_factory=dict)


_active: ContextVar[Recorder | None] = ContextVar("routelens_attention_recorder", default=None)
# (module, first query row, weights [1, H, rows, T]) -> edited weights of the same shape
Edit = Callable[[nn.Module, int, torch.Tensor], torch.Tensor]
_edit: ContextVar[Edit | None] = ContextVar("routelens_attention_edit", default=None)
_eager_of: dict[type, Callable[..., Any]] = {}


@contextlib.contextmanager
def recording(recorder: Recorder) -> Iterator[Recorder]:
    """Make the attention function report to `recorder` in this thread (and context) only."""
    token = _active.set(recorder)
    try:
        yield recorder
    finally:
        _active.reset(token)


@contextlib.contextmanager
def editing(edit: Edit) -> Iterator[None]:
    """Make the attention function edit its weights with `edit` in this thread (and context) only.
    An edited run records nothing: its numbers are not the model's own (see `_edited`)."""
    token = _edit.set(edit)
    try:
        yield
    finally:
        _edit.reset(token)


def block_rows(n_heads: int, n_keys: int) -> int:
    return max(1, ROW_BLOCK_ELEMENTS // max(1, n_heads * n_keys))


def eager_function(module: nn.Module) -> Callable[..., Any]:
    """The `eager_attention_forward` of the module's own modeling file."""
    cls = type(module)
    fn = _eager_of.get(cls)
    if fn is None:
        fn = getattr(sys.modules.get(cls.__module__), "eager_attention_forward", None)
        if fn is None:
            from ..errors import UnsupportedArchitectureError

            raise UnsupportedArchitectureError(
                f"{cls.__name__} ({cls.__module__}) has no eager_attention_forward to compute its attention with")
        _eager_of[cls] = fn
    return fn


def routelens_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                        attention_mask: torch.Tensor | None, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The eager attention of the module's family, computed a block of query rows at a time:
    output [1, T, H, dh] as eager returns it, and no weights (they are recomputed when asked).
    Outside a routelens run (the user calling the wrapped model: generate, output_attentions,
    batches) it is the eager function itself, weights included: the user's model works as before."""
    eager = eager_function(module)
    edit = _edit.get()
    if edit is not None and query.shape[0] == 1:
        return _edited(module, eager, query, key, value, attention_mask, kwargs, edit)
    recorder = _active.get()
    if recorder is None or query.shape[0] != 1:
        return eager(module, query, key, value, attention_mask, **kwargs)
    n_heads, n_pos = query.shape[1], query.shape[2]
    outputs, flags = [], []
    for start in range(0, n_pos, block_rows(n_heads, key.shape[2])):
        stop = min(start + block_rows(n_heads, key.shape[2]), n_pos)
        mask = attention_mask[:, :, start:stop] if attention_mask is not None else None
        out, weights = eager(module, query[:, :, start:stop], key, value, mask, **kwargs)
        outputs.append(out)
        flags.append(torch.isfinite(weights.sum(dtype=torch.float32)))
    recorder.flags[id(module)] = flags
    if recorder.keep_calls:
        recorder.calls[id(module)] = AttentionCall(
            module=module, eager=eager, query=query.detach(), key=key.detach(), value_dtype=value.dtype,
            mask=attention_mask.detach() if attention_mask is not None else None,
            kwargs=dict(kwargs),  # passed again as given: the same eager code on the same inputs
        )
    return torch.cat(outputs, dim=1), None


def _edited(module: nn.Module, eager: Callable[..., Any], query: torch.Tensor, key: torch.Tensor,
            value: torch.Tensor, attention_mask: torch.Tensor | None, kwargs: dict[str, Any],
            edit: Edit) -> tuple[torch.Tensor, None]:
    """Attention with edited weights: per block of query rows, the eager weights (computed as
    `AttentionCall._rows` does, with an empty value), `edit(module, start, weights)`, then
    weights @ values with each key-value head repeated for its query heads (GQA), in the value's
    dtype. Output [1, T, H, dh] as eager returns it; no weights."""
    n_heads, n_pos = query.shape[1], query.shape[2]
    groups = n_heads // value.shape[1]
    values = value.repeat_interleave(groups, dim=1) if groups > 1 else value  # [1, H, T, dh]
    empty = key.new_empty(*key.shape[:3], 0, dtype=value.dtype)
    step = block_rows(n_heads, key.shape[2])
    outputs = []
    for start in range(0, n_pos, step):
        mask = attention_mask[:, :, start:start + step] if attention_mask is not None else None
        _, weights = eager(module, query[:, :, start:start + step], key, empty, mask, **kwargs)
        weights = edit(module, start, weights)
        outputs.append(torch.matmul(weights.to(value.dtype), values).transpose(1, 2))
    return torch.cat(outputs, dim=1).contiguous(), None


def register() -> None:
    """Make "routelens" an attention implementation (and its masks the eager ones) in transformers."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, eager_mask

    AttentionInterface.register(NAME, routelens_attention)
    AttentionMaskInterface.register(NAME, eager_mask)


def use_routelens_attention(model: nn.Module) -> None:
    """Run `model` (a transformers PreTrainedModel) with this attention from now on (a no-op when
    it does already: a user who switched the model to sdpa since is switched back before a trace)."""
    if getattr(model.config, "_attn_implementation", None) != NAME:
        register()
        model.set_attn_implementation(NAME)


@dataclass
class StoredPattern:
    """A layer's attention pattern as a backend that computes attention itself handed it over
    (TransformerLens's `hook_pattern`): the whole [1, H, T, T] tensor, kept, since the queries and
    keys behind it are not the model's own call of a transformers eager function to run again.
    Memory: H x T x T per replayed layer, in the model's dtype (T = 4096, H = 32, fp32: 2 GiB).

    It answers like `AttentionCall` for the pattern (`pattern_rows`, `pattern`, `n_positions`),
    so capture, decompose, routes and knockout read it unchanged. It keeps no queries, keys or
    mask: "why a head attends" (routes/qk.py) needs them and is refused on such a backend."""

    module: nn.Module
    weights: torch.Tensor  # [1, H, T, T], the pattern the model multiplied its values by

    @property
    def n_positions(self) -> int:
        return int(self.weights.shape[2])

    def pattern_rows(self, positions: torch.Tensor | list[int]) -> torch.Tensor:
        """A[h, i, :] for the query positions given: [H, P, T], the model's own numbers."""
        idx = torch.as_tensor(positions, dtype=torch.long, device=self.weights.device)
        return self.weights[0][:, idx]

    def pattern(self) -> torch.Tensor:
        """The whole pattern [H, T, T]."""
        return self.weights[0]

    @property
    def query(self) -> torch.Tensor:
        """No queries are kept: the pattern [1, H, T, T] stands in where code sizes row blocks by
        `query.shape[1]` (heads) or counts a layer's bytes."""
        return self.weights

    @property
    def key(self) -> torch.Tensor:
        return self.weights

    @property
    def mask(self) -> torch.Tensor:
        raise _no_scores()

    def scores_scale(self) -> float:
        raise _no_scores()

    @property
    def softcap(self) -> float | None:
        raise _no_scores()


def _no_scores() -> Exception:
    from ..errors import UnsupportedArchitectureError

    return UnsupportedArchitectureError(
        "why a head attends needs the model's own queries, keys and mask, and this backend "
        "(TransformerLens) hands routelens only the attention pattern; load the model with "
        "rl.load or rl.wrap of the transformers model (a native adapter) to split attention scores")


def record_pattern(module: nn.Module, weights: torch.Tensor) -> None:
    """Report a pattern [1, H, T, T] that `module` computed itself to the active recorder (if any):
    its finiteness flag, and the pattern when the recorder keeps calls (StoredPattern)."""
    recorder = _active.get()
    if recorder is None or weights.shape[0] != 1:
        return
    weights = weights.detach()
    recorder.flags[id(module)] = [torch.isfinite(weights.sum(dtype=torch.float32))]
    if recorder.keep_calls:
        recorder.calls[id(module)] = StoredPattern(module=module, weights=weights)
