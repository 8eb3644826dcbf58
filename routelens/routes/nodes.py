"""Importances of the nodes of one layer, from a trace's decomposition.

Two node types per layer (routes-math.md section 3):
- the node after attention (`m[l,i]`, or for parallel blocks directly `x[l+1,i]`), whose parts are
  the residual `x[l,i]`, one part per (head, source) and the attention bias (plus, for parallel
  blocks, the FFN write);
- for sequential blocks, the node after the FFN `x[l+1,i]`, whose parts are `m[l,i]` and `f[l,i]`.
"""

from __future__ import annotations

import torch

from ..trace.decompose import AttentionParts
from .importance import NodeImportances, normalise, prox_dense, prox_heads


def attention_node_importances(
    parts: AttentionParts,
    positions: list[int],
    resid_in: torch.Tensor,
    node: torch.Tensor,
    p: int,
    ffn_write: torch.Tensor | None = None,
) -> NodeImportances:
    """Importances for nodes at `positions`; resid_in/node/ffn_write are full [T, d] tensors."""
    idx = torch.tensor(positions, device=node.device)
    y = node.float()[idx]
    n_src = max(positions) + 1  # causal: no node reads a later source
    scale = parts.scale[idx] if parts.scale is not None else None
    heads = prox_heads(y, parts.pattern[:, idx, :n_src], parts.head_writes[:, :n_src], scale, p)
    resid = prox_dense(y, resid_in.float()[idx], p)
    bias = None
    if parts.bias is not None:
        bias_write = parts.bias[None].expand_as(y)
        if scale is not None:
            bias_write = bias_write * scale
        bias = prox_dense(y, bias_write, p)
    ffn = prox_dense(y, ffn_write.float()[idx], p) if ffn_write is not None else None
    return normalise(positions, resid, heads, bias, ffn)


def ffn_node_importances(
    positions: list[int], mid: torch.Tensor, ffn_write: torch.Tensor, node: torch.Tensor, p: int
) -> NodeImportances:
    """Importances of `x[l+1,i] = m[l,i] + f[l,i]` for a sequential block."""
    idx = torch.tensor(positions, device=node.device)
    y = node.float()[idx]
    resid = prox_dense(y, mid.float()[idx], p)
    ffn = prox_dense(y, ffn_write.float()[idx], p)
    return normalise(positions, resid, None, None, ffn)


def neuron_importances(node: torch.Tensor, resid: torch.Tensor, neuron_writes: torch.Tensor, bias_write, p: int):
    """Per-neuron importances for one node `y = resid + sum_k neuron_k (+ bias)`: returns c [N], c_resid, c_bias."""
    y = node.float()[None]
    prox_n = prox_dense(y, neuron_writes, p)
    prox_r = prox_dense(y, resid.float()[None], p)[0]
    prox_b = prox_dense(y, bias_write[None], p)[0] if bias_write is not None else torch.zeros(())
    total = (prox_n.sum() + prox_r + prox_b).clamp_min(1e-30)
    return prox_n / total, prox_r / total, prox_b / total
