"""GPT-J: parallel attention and MLP off one LayerNorm; bias-free attention projections."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Adapter, LayerModules


class GPTJAdapter(Adapter):
    model_types = ("gptj",)
    family = "gptj"

    def layers(self) -> list[LayerModules]:
        return [
            LayerModules(block=b, attn=b.attn, ffn=b.mlp, ffn_out=b.mlp.fc_out, parallel=True, attn_norm=b.ln_1)
            for b in self.model.transformer.h
        ]

    def values(self, layer: int, normed: torch.Tensor) -> torch.Tensor:
        v_proj = self.model.transformer.h[layer].attn.v_proj
        return F.linear(normed, v_proj.weight).view(*normed.shape[:-1], self.n_heads, self.head_dim)

    def out_proj(self, layer: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.model.transformer.h[layer].attn.out_proj.weight, None

    def final_norm(self):
        return self.model.transformer.ln_f
