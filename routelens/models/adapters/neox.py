"""GPT-NeoX / Pythia: fused per-head [q|k|v] projection; parallel blocks when use_parallel_residual."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Adapter, LayerModules


class NeoXAdapter(Adapter):
    model_types = ("gpt_neox",)
    family = "gpt_neox"

    def layers(self) -> list[LayerModules]:
        parallel = bool(getattr(self.config, "use_parallel_residual", True))
        return [
            LayerModules(
                block=layer, attn=layer.attention, ffn=layer.mlp, ffn_out=layer.mlp.dense_4h_to_h, parallel=parallel,
                attn_norm=layer.input_layernorm,
            )
            for layer in self.model.gpt_neox.layers
        ]

    def values(self, layer: int, normed: torch.Tensor) -> torch.Tensor:
        qkv = self.model.gpt_neox.layers[layer].attention.query_key_value
        dh, h = self.head_dim, self.n_heads
        # Rows are laid out per head as [q_h | k_h | v_h]; keep only each head's value rows.
        w = qkv.weight.view(h, 3, dh, -1)[:, 2].reshape(h * dh, -1)
        b = qkv.bias.view(h, 3, dh)[:, 2].reshape(h * dh) if qkv.bias is not None else None
        return F.linear(normed, w, b).view(*normed.shape[:-1], h, dh)

    def out_proj(self, layer: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        dense = self.model.gpt_neox.layers[layer].attention.dense
        return dense.weight, dense.bias

    def final_norm(self):
        return self.model.gpt_neox.final_layer_norm
