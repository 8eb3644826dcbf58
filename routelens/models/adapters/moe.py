"""Mixture-of-experts decoders (Mixtral, Qwen2-MoE, Qwen3-MoE): Llama-style attention, routed experts.

The FFN write is `sum_e g_e E_e(n)` (plus Qwen2-MoE's sigmoid-gated shared expert); neuron parts
are `g_e * act_e,k * W_out_e[:, k]` for the experts the router chose at that position.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...errors import UnsupportedArchitectureError
from .declare import DeclaredAdapter


class MoEAdapter(DeclaredAdapter):
    """The declaration names `mlp.experts?`; code forms the neuron parts of the chosen experts."""

    def check_supported(self) -> None:
        super().check_supported()
        for layer in self.decoder_layers():
            experts = getattr(layer.mlp, "experts", None)
            if experts is not None and not hasattr(experts, "gate_up_proj"):
                raise UnsupportedArchitectureError(
                    f"{type(experts).__name__} does not keep its experts as fused gate_up_proj / down_proj "
                    "tensors; this transformers version's MoE layout is not supported"
                )

    @torch.no_grad()
    def expert_neurons(self, index: int, layer, pos: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """Signed neuron coefficients, output columns and labels of the experts used at `pos`."""
        mlp = self.decoder_layers()[index].mlp
        experts = mlp.experts
        n = layer.ffn_in[pos].to(experts.gate_up_proj.dtype)
        expert_index, expert_weight = layer.routing
        coefs, columns, labels = [], [], []
        for e, g in zip(expert_index[pos].tolist(), expert_weight[pos].float().tolist()):
            if e >= experts.num_experts:
                continue
            gate, up = F.linear(n, experts.gate_up_proj[e]).chunk(2, dim=-1)
            act = experts.act_fn(gate) * up
            coefs.append(act.float() * g)
            columns.append(experts.down_proj[e].detach().float())
            labels.extend(f"e{e}:{k}" for k in range(act.shape[-1]))
        shared = getattr(mlp, "shared_expert", None)
        if shared is not None:
            act = shared.act_fn(shared.gate_proj(n)) * shared.up_proj(n)
            gate = torch.sigmoid(mlp.shared_expert_gate(n)).float()
            coefs.append(act.float() * gate)
            columns.append(shared.down_proj.weight.detach().float())
            labels.extend(f"shared:{k}" for k in range(act.shape[-1]))
        return torch.cat(coefs), torch.cat(columns, dim=1), labels
