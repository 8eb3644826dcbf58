"""Projections onto the vocabulary (routes-math.md section 5)."""

from __future__ import annotations

import torch

from ..models.adapters.base import Adapter


def logit_lens(adapter: Adapter, resid: torch.Tensor, *, apply_norm: bool = True) -> torch.Tensor:
    """Logits of residual vectors [..., d] as the model would compute them after its last block."""
    weight = adapter.lm_head().weight
    with torch.inference_mode():
        return adapter.unembed(resid.to(weight.dtype).to(weight.device), apply_norm=apply_norm).float()


def direct_effect(adapter: Adapter, node: torch.Tensor, write: torch.Tensor) -> torch.Tensor:
    """Direct effect of `write` (one part of `node`) on the node's logit lens: [..., V].

    `W_U @ (g * z / rms(y))` for RMSNorm (LayerNorm: centre `z`, divide by `y`'s standard deviation).
    The unembedding bias and a final soft-cap are left out: the effect is the write's own share.
    """
    weight = adapter.lm_head().weight
    with torch.inference_mode():
        mapped = adapter.final_norm_linear(node.to(weight.device), write.to(weight.device))
        return adapter.lm_head_linear(mapped)


def top_k(logits: torch.Tensor, k: int) -> tuple[list[int], list[float]]:
    values, indices = logits.topk(min(k, logits.shape[-1]))  # a vocabulary smaller than k: all of it
    return indices.tolist(), values.tolist()


def ranks_of(logits: torch.Tensor, token_ids: list[int]) -> list[int]:
    """0-based rank of each token in `logits` (0 = the top token)."""
    chosen = logits[token_ids]
    return [int((logits > value).sum()) for value in chosen]
