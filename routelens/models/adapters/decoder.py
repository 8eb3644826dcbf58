"""Llama-style decoders: Llama, Mistral, Qwen2, Qwen3 (grouped-query attention, gated MLP) and
Gemma 1/2/3 (RMSNorm with a (1 + w) gain; Gemma 2/3 add norms after attention and FFN)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...errors import UnsupportedArchitectureError
from .base import Adapter, LayerModules


class LlamaAdapter(Adapter):
    model_types = ("llama", "mistral", "qwen2", "qwen3")
    family = "llama"

    def check_supported(self) -> None:
        if getattr(self.config, "pretraining_tp", 1) not in (1, None):
            raise UnsupportedArchitectureError(
                "Llama with pretraining_tp > 1 splits its projections; set pretraining_tp=1"
            )

    def decoder_layers(self):
        return self.model.model.layers

    def layers(self) -> list[LayerModules]:
        return [
            LayerModules(block=layer, attn=layer.self_attn, ffn=layer.mlp, ffn_out=layer.mlp.down_proj,
                         attn_norm=layer.input_layernorm)
            for layer in self.decoder_layers()
        ]

    def values(self, layer: int, normed: torch.Tensor) -> torch.Tensor:
        v_proj = self.decoder_layers()[layer].self_attn.v_proj
        v = F.linear(normed, v_proj.weight, v_proj.bias)
        return v.view(*normed.shape[:-1], self.n_kv_heads, self.head_dim)

    def out_proj(self, layer: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        o_proj = self.decoder_layers()[layer].self_attn.o_proj
        return o_proj.weight, o_proj.bias

    def final_norm(self):
        return self.model.model.norm


class GemmaAdapter(LlamaAdapter):
    """Gemma 1 is Llama-shaped; Gemma 2/3 write `RMSNorm_post(o)` after attention and FFN."""

    model_types = ("gemma", "gemma2", "gemma3_text")
    family = "gemma"
    norm_weight_offset = 1.0

    def check_supported(self) -> None:
        if getattr(self.config, "use_bidirectional_attention", False):
            raise UnsupportedArchitectureError(
                "Gemma with bidirectional attention is not a causal LM; routes need causal attention"
            )

    def layers(self) -> list[LayerModules]:
        specs = []
        for layer in self.decoder_layers():
            sandwich = hasattr(layer, "post_feedforward_layernorm")
            specs.append(
                LayerModules(
                    block=layer,
                    attn=layer.self_attn,
                    ffn=layer.mlp,
                    ffn_out=layer.mlp.down_proj,
                    attn_post_norm=layer.post_attention_layernorm if sandwich else None,
                    ffn_post_norm=layer.post_feedforward_layernorm if sandwich else None,
                    attn_norm=layer.input_layernorm,
                )
            )
        return specs
