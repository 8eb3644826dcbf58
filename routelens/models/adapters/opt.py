"""OPT: pre-LayerNorm decoder with biased projections; the FFN has no module of its own."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...errors import UnsupportedArchitectureError
from .base import Adapter, LayerModules


class OPTAdapter(Adapter):
    model_types = ("opt",)
    family = "opt"

    def check_supported(self) -> None:
        if not getattr(self.config, "do_layer_norm_before", True):
            raise UnsupportedArchitectureError(
                "OPT with do_layer_norm_before=False (e.g. opt-350m) normalises after the residual "
                "add, so the residual stream is not a sum of writes and routes are undefined"
            )

    def decoder(self):
        return self.model.model.decoder

    def layers(self) -> list[LayerModules]:
        # fc1 reads the FFN's normalised input; fc2's input is the neuron activation.
        return [
            LayerModules(block=layer, attn=layer.self_attn, ffn=layer.fc1, ffn_out=layer.fc2,
                         attn_norm=layer.self_attn_layer_norm)
            for layer in self.decoder().layers
        ]

    def values(self, layer: int, normed: torch.Tensor) -> torch.Tensor:
        v_proj = self.decoder().layers[layer].self_attn.v_proj
        return F.linear(normed, v_proj.weight, v_proj.bias).view(*normed.shape[:-1], self.n_heads, self.head_dim)

    def out_proj(self, layer: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.decoder().layers[layer].self_attn.out_proj
        return out.weight, out.bias

    def final_norm(self):
        return self.decoder().final_layer_norm

    def _project_out(self, h: torch.Tensor) -> torch.Tensor:
        proj = self.decoder().project_out
        return proj(h) if proj is not None else h

    def unembed(self, resid: torch.Tensor, *, apply_norm: bool = True) -> torch.Tensor:
        h = self.final_norm()(resid) if apply_norm else resid
        return self.lm_head()(self._project_out(h))

    def final_norm_linear(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        lin = super().final_norm_linear(y, z)
        proj = self.decoder().project_out
        return F.linear(lin, proj.weight.float()) if proj is not None else lin
