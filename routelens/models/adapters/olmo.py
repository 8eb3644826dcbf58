"""OLMo (1): declared, with code for clip_qkv, which clamps the values the attention mixes."""

from __future__ import annotations

import torch

from .declare import DeclaredAdapter


class OLMoAdapter(DeclaredAdapter):
    """With `clip_qkv = c`, OLMo clamps q, k and v to [-c, c] after their projections; the values
    U is formed from are the clamped ones (the write is still linear in them)."""

    def values(self, layer: int, normed: torch.Tensor) -> torch.Tensor:
        v = super().values(layer, normed)
        clip = self.config.clip_qkv
        return v.clamp(min=-clip, max=clip) if clip is not None else v
