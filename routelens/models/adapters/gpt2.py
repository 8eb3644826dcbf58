"""GPT-2: fused qkv Conv1D, learned positions, LayerNorm, GELU MLP, biases everywhere."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...errors import UnsupportedArchitectureError
from .base import Adapter, LayerModules, linear_bias, linear_weight


class GPT2Adapter(Adapter):
    model_types = ("gpt2",)
    family = "gpt2"

    def check_supported(self) -> None:
        if getattr(self.config, "add_cross_attention", False):
            raise UnsupportedArchitectureError("GPT-2 with cross-attention is not a decoder-only LM")

    def layers(self) -> list[LayerModules]:
        return [
            LayerModules(block=b, attn=b.attn, ffn=b.mlp, ffn_out=b.mlp.c_proj, attn_norm=b.ln_1)
            for b in self.model.transformer.h
        ]

    def values(self, layer: int, normed: torch.Tensor) -> torch.Tensor:
        c_attn = self.model.transformer.h[layer].attn.c_attn
        d = self.d_model
        w, b = linear_weight(c_attn)[2 * d : 3 * d], linear_bias(c_attn)[2 * d : 3 * d]
        return F.linear(normed, w, b).view(*normed.shape[:-1], self.n_heads, self.head_dim)

    def out_proj(self, layer: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        c_proj = self.model.transformer.h[layer].attn.c_proj
        return linear_weight(c_proj), linear_bias(c_proj)

    def final_norm(self):
        return self.model.transformer.ln_f
