"""The model's forward pass with attention edges removed (routes-math.md section 10).

An attention edge is (layer l, query i, key j), all heads together: removing it sets A[h, i, j] = 0
for every head h of layer l and leaves the rest of the row as it was (`renormalise`: the row is
then divided by its new sum; a row whose sum is 0 stays 0). Residual and FFN paths are untouched.

The run goes through the same "routelens" attention as a trace (trace/attention.py `editing`): the
model's own eager weights, a block of query rows at a time, edited, then multiplied by the values.
Which edges go is described compactly, per layer, as the (i, j) pairs kept or the pairs removed;
the 0/1 mask of one block of rows ([rows, T]) is built from it when that block runs, so no
layers x heads x T x T tensor exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

import torch
from torch import nn

from .. import interrupt
from ..errors import InvalidArgumentError, NonFiniteError, UnsupportedArchitectureError
from ..models.adapters.base import Adapter
from . import attention
from .capture import _forward_logits, model_lock


def _pairs(pairs: Iterable[tuple[int, int]] | torch.Tensor) -> torch.Tensor:
    """(i, j) pairs as a long tensor [P, 2]."""
    t = torch.as_tensor(pairs if isinstance(pairs, torch.Tensor) else list(pairs), dtype=torch.long)
    return t.reshape(-1, 2)


@dataclass(frozen=True)
class Knockout:
    """Which attention edges a run removes: `pairs[l]` ([P, 2] long, (query i, key j)) are the edges
    of layer l that are kept (`keep=True`: every other edge of every layer goes, a layer absent from
    `pairs` loses all its edges) or the ones removed (`keep=False`: a layer absent loses none)."""

    pairs: dict[int, torch.Tensor] = field(default_factory=dict)
    keep: bool = False
    renormalise: bool = False

    @classmethod
    def keeping(cls, kept: Mapping[int, Iterable[tuple[int, int]] | torch.Tensor], *,
                renormalise: bool = False) -> Knockout:
        """Remove every edge but `kept[l]`'s (a route's attention edges)."""
        return cls({int(l): _pairs(p) for l, p in kept.items()}, keep=True, renormalise=renormalise)

    @classmethod
    def removing(cls, removed: Mapping[int, Iterable[tuple[int, int]] | torch.Tensor], *,
                 renormalise: bool = False) -> Knockout:
        """Remove exactly `removed[l]`'s edges ({}: nothing, the model's own forward pass)."""
        return cls({int(l): _pairs(p) for l, p in removed.items()}, keep=False, renormalise=renormalise)

    def block_mask(self, layer: int, start: int, rows: int, n_keys: int) -> torch.Tensor | None:
        """The 0/1 multiplier [rows, n_keys] for query rows start..start+rows of `layer` (float32);
        None when the block keeps every edge."""
        pairs = self.pairs.get(layer)
        if pairs is None or pairs.numel() == 0:
            return torch.zeros(rows, n_keys) if self.keep else None
        pairs = pairs[(pairs[:, 0] >= start) & (pairs[:, 0] < start + rows) & (pairs[:, 1] < n_keys)]
        if not self.keep and pairs.numel() == 0:
            return None
        mask = torch.zeros(rows, n_keys) if self.keep else torch.ones(rows, n_keys)
        mask[pairs[:, 0] - start, pairs[:, 1]] = 1.0 if self.keep else 0.0
        return mask

    def edit(self, layer: int, start: int, weights: torch.Tensor) -> torch.Tensor:
        """Weights [1, H, rows, T] with this knockout's edges of `layer` removed (same dtype)."""
        mask = self.block_mask(layer, start, weights.shape[2], weights.shape[3])
        if mask is None:
            return weights
        edited = weights.float() * mask.to(weights.device)
        if self.renormalise:
            total = edited.sum(-1, keepdim=True)
            edited = torch.where(total > 0, edited / total.clamp_min(torch.finfo(torch.float32).tiny), 0.0)
        return edited.to(weights.dtype)


def knockout_logits(adapter: Adapter, token_ids: torch.Tensor, knockout: Knockout, target: int) -> torch.Tensor:
    """The model's logits at position `target` [V] (float32) with `knockout`'s edges removed.

    Runs the prefix token_ids[:target + 1] ([T] long): later positions cannot reach `target`.
    Raises UnsupportedArchitectureError for a backend that computes attention itself
    (TransformerLens), or when a layer's attention never ran through the routelens attention;
    NonFiniteError when the edited run's logits are not finite."""
    if not adapter.uses_routelens_attention:
        raise UnsupportedArchitectureError(
            "a knockout edits attention weights inside routelens's own attention, and this backend "
            "(TransformerLens) computes attention itself; load the model with rl.load or rl.wrap of "
            "the transformers model (a native adapter) to check a route by knockout")
    n = int(token_ids.shape[0])
    if not isinstance(target, int) or not 0 <= target < n:
        raise InvalidArgumentError(f"target position {target!r} is out of range 0..{n - 1}")
    model = adapter.model
    layer_of = {id(spec.attn): i for i, spec in enumerate(adapter.layers())}
    seen: set[int] = set()

    def edit(module: nn.Module, start: int, weights: torch.Tensor) -> torch.Tensor:
        layer = layer_of.get(id(module))
        if layer is None:
            raise UnsupportedArchitectureError(
                f"an attention module ({type(module).__name__}) that is no layer's attention in the adapter "
                "ran; a knockout cannot say which layer's edges to remove")
        if start == 0:
            interrupt.check()  # a safe point per layer, as in a trace's forward pass
        seen.add(layer)
        return knockout.edit(layer, start, weights)

    device = next(model.parameters()).device
    ids = token_ids[: target + 1].to(device)[None]
    with model_lock(model):
        attention.use_routelens_attention(model)  # the user may have switched it (sdpa) since wrapping
        with torch.inference_mode(), attention.editing(edit):
            logits = _forward_logits(adapter, ids)[0, -1].float().cpu()
    missing = sorted(set(layer_of.values()) - seen)
    if missing:
        raise UnsupportedArchitectureError(
            f"the attention of layers {missing} did not run through the routelens attention, so their edges "
            "could not be removed; this model cannot be checked by knockout")
    if not bool(torch.isfinite(logits).all()):
        raise NonFiniteError(f"the logits at position {target} of the run with attention edges removed are not "
                             "finite; run the model in float32 (or bfloat16) to check this route", layer=None,
                             pos=target, part="logits")
    return logits
