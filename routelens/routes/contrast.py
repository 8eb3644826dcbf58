"""Contrastive routes and direct logit attribution (routes-math.md section 8, docs/contrastive.md).

"Why `target` rather than `foil`": a write `z` moves the logit difference by `w . z`, where `w` is
the contrast direction `u = W_U[target] - W_U[foil]` pulled back through the final norm with its
scale frozen at the top node `x[L, t]` (and through any constant logit scale). Linear in `z`, so the
signed direct logit attributions `w . z_k` of a node's parts sum to `w . y`, and over the top node's
parts to the logit difference less the constant bias terms (`constant`).

On the target position's residual chain a part `z_k` of node `y` gets the contrastive proximity
`prox_k = max(|D| - |D - w . z_k|, 0)` with `D = w . y`: the share of the node's push along the
contrast that the part supplies in the same direction. Nodes off the chain keep vector proximity.
With no foil, `u = W_U[target]`: plain direct logit attribution to the target's logit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.adapters.base import Adapter
from ..trace.decompose import AttentionParts
from .importance import NodeImportances, normalise

DEFINITION = (
    "contrastive proximity on the target position's residual chain: prox_k = max(|D| - |D - w.z_k|, 0), "
    "D = w.y, w = (W_U[target] - W_U[foil]) through the final norm with its scale frozen at x[L, t]; "
    "other nodes: vector proximity (routes-math.md section 8)")


@dataclass
class Direction:
    """The contrast direction of one target position: `w` [d] fp32 (logit-difference units per
    unit of residual), `constant` (the logit difference that no residual part carries: the final
    norm's bias and the unembedding bias, pre soft-cap), the model's logit difference and the ids."""

    pos: int
    token_id: int
    foil_id: int | None
    w: torch.Tensor
    constant: float
    logit_diff: float  # the model's own logit[token] - logit[foil] at the top node, pre soft-cap

    def key(self) -> tuple[int, int, int | None]:
        return (self.pos, self.token_id, self.foil_id)


@torch.no_grad()
def direction(adapter: Adapter, top: torch.Tensor, pos: int, token_id: int, foil_id: int | None) -> Direction:
    """`w` such that `w . z` is the direct effect of a write `z` on logit[token] - logit[foil],
    with the final norm linearised at the top node `top` [d] (adapter.final_norm_linear: RMSNorm
    `g * z / rms(y)`, LayerNorm centred and over `y`'s standard deviation)."""
    weight = adapter.lm_head().weight
    u = weight[token_id].float() - (weight[foil_id].float() if foil_id is not None else 0.0)
    d = top.shape[-1]
    eye = torch.eye(d, dtype=torch.float32, device=weight.device)
    mapped = adapter.final_norm_linear(top.float().to(weight.device).expand(d, d), eye)  # row k: the map of e_k
    w = adapter.scale_logits(mapped @ u.to(mapped.device))  # a constant logit scale is linear too
    y = top.float().to(weight.device)
    normed = adapter.final_norm()(y.to(weight.dtype).unsqueeze(0)).float()[0]
    logits = adapter.scale_logits(torch.nn.functional.linear(normed, weight.float(), _bias(adapter)))
    logit_diff = float(logits[token_id] - (logits[foil_id] if foil_id is not None else 0.0))  # pre soft-cap
    # what the linear map leaves out: the norm's own shift (LayerNorm's beta) and the unembedding bias
    shift = normed - adapter.final_norm_linear(y, y)
    constant = float(adapter.scale_logits(shift @ u))
    bias = _bias(adapter)
    if bias is not None:
        constant += float(adapter.scale_logits(bias[token_id] - (bias[foil_id] if foil_id is not None else 0.0)))
    return Direction(pos=pos, token_id=token_id, foil_id=foil_id, w=w.float().cpu(), constant=constant,
                     logit_diff=logit_diff)


def _bias(adapter: Adapter) -> torch.Tensor | None:
    bias = getattr(adapter.lm_head(), "bias", None)
    return bias.float() if bias is not None else None


def clamp_prox(total: torch.Tensor, dla: torch.Tensor) -> torch.Tensor:
    """`max(|D| - |D - a|, 0)` elementwise, D broadcast against the attributions `a`."""
    return (total.abs() - (total - dla).abs()).clamp_min(0)


def attention_node(parts: AttentionParts, pos: int, resid_in: torch.Tensor, node: torch.Tensor,
                   w: torch.Tensor, ffn_write: torch.Tensor | None = None) -> tuple[NodeImportances, dict]:
    """Contrastive importances of the node after attention at `pos` (parts as in routes/nodes.py)
    and the signed attributions of its parts: {"resid": float, "heads": [H, pos+1], "bias", "ffn"}."""
    w = w.to(node.device).double()  # float64: D can be far smaller than the parts that sum to it
    y = node[pos].double()
    total = (w @ y)
    scale = parts.scale[pos].double() if parts.scale is not None else None
    w_eff = w * scale if scale is not None else w  # w . (s * z) = (w * s) . z
    pattern = parts.rows([pos])[:, 0, : pos + 1].double()  # [H, J]
    heads = pattern * (parts.head_writes[:, : pos + 1].double() @ w_eff)  # [H, J]
    dla = {
        "resid": w @ resid_in[pos].double(),
        "heads": heads,
        "bias": (w_eff @ parts.bias.double()) if parts.bias is not None else None,
        "ffn": (w @ ffn_write[pos].double()) if ffn_write is not None else None,
    }
    return _normalise(pos, total, dla), dla


def ffn_node(pos: int, mid: torch.Tensor, ffn_write: torch.Tensor, node: torch.Tensor,
             w: torch.Tensor) -> tuple[NodeImportances, dict]:
    """Contrastive importances of `x[l+1, pos] = m + f` and the attributions of `m` and `f`."""
    w = w.to(node.device).double()
    dla = {"resid": w @ mid[pos].double(), "ffn": w @ ffn_write[pos].double()}
    return _normalise(pos, w @ node[pos].double(), dla), dla


def neuron_shares(total: torch.Tensor, neuron_dla: torch.Tensor, rest_dla: torch.Tensor,
                  bias_dla: torch.Tensor | None) -> torch.Tensor:
    """Contrastive per-neuron importances [N] at a chain node (falls back to |w . z| shares)."""
    parts = [neuron_dla, rest_dla.reshape(1)] + ([bias_dla.reshape(1)] if bias_dla is not None else [])
    prox = [clamp_prox(total, p) for p in parts]
    if float(sum(p.sum() for p in prox)) <= 0:
        prox = [p.abs() for p in parts]
    return prox[0] / sum(p.sum() for p in prox).clamp_min(1e-30)


def _normalise(pos: int, total: torch.Tensor, dla: dict) -> NodeImportances:
    prox = {k: (clamp_prox(total, v.reshape(1, *v.shape)) if v is not None else None) for k, v in dla.items()}

    def norms(rows: torch.Tensor) -> dict:  # section 6 on the contrast: shares of |w . z_k|
        return {k: (v.reshape(1, *v.shape).abs() if v is not None else None) for k, v in dla.items()}

    return normalise([pos], prox, norms)
