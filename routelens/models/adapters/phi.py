"""Phi-1 / 1.5 / 2: one LayerNorm feeds attention and MLP in parallel; biased projections."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Adapter, LayerModules


class PhiAdapter(Adapter):
    model_types = ("phi",)
    family = "phi"

    def layers(self) -> list[LayerModules]:
        return [
            LayerModules(block=layer, attn=layer.self_attn, ffn=layer.mlp, ffn_out=layer.mlp.fc2, parallel=True,
                         attn_norm=layer.input_layernorm)
            for layer in self.model.model.layers
        ]

    def values(self, layer: int, normed: torch.Tensor) -> torch.Tensor:
        v_proj = self.model.model.layers[layer].self_attn.v_proj
        v = F.linear(normed, v_proj.weight, v_proj.bias)
        return v.view(*normed.shape[:-1], self.n_kv_heads, self.head_dim)

    def out_proj(self, layer: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        dense = self.model.model.layers[layer].self_attn.dense
        return dense.weight, dense.bias

    def final_norm(self):
        return self.model.model.final_layernorm
