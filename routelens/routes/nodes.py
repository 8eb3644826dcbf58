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
from .importance import NodeImportances, normalise, part_norms, part_norms_heads, prox_dense, prox_heads


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
    pattern, writes = parts.rows(idx)[:, :, :n_src], parts.head_writes[:, :n_src]
    resid_parts = resid_in.float()[idx]
    bias_write = None
    if parts.bias is not None:
        bias_write = parts.bias[None].expand_as(y)
        if scale is not None:
            bias_write = bias_write * scale
    ffn_parts = ffn_write.float()[idx] if ffn_write is not None else None
    prox = {
        "resid": prox_dense(y, resid_parts, p),
        "heads": prox_heads(y, pattern, writes, scale, p),
        "bias": prox_dense(y, bias_write, p) if bias_write is not None else None,
        "ffn": prox_dense(y, ffn_parts, p) if ffn_parts is not None else None,
    }

    def norms(rows: torch.Tensor) -> dict:
        return {
            "resid": part_norms(resid_parts[rows], p),
            "heads": part_norms_heads(pattern[:, rows], writes, scale[rows] if scale is not None else None, p),
            "bias": part_norms(bias_write[rows], p) if bias_write is not None else None,
            "ffn": part_norms(ffn_parts[rows], p) if ffn_parts is not None else None,
        }

    return normalise(positions, prox, norms)


def ffn_node_importances(
    positions: list[int], mid: torch.Tensor, ffn_write: torch.Tensor, node: torch.Tensor, p: int
) -> NodeImportances:
    """Importances of `x[l+1,i] = m[l,i] + f[l,i]` for a sequential block."""
    idx = torch.tensor(positions, device=node.device)
    y = node.float()[idx]
    mids, ffns = mid.float()[idx], ffn_write.float()[idx]
    prox = {"resid": prox_dense(y, mids, p), "ffn": prox_dense(y, ffns, p)}
    return normalise(positions, prox, lambda rows: {"resid": part_norms(mids[rows], p), "ffn": part_norms(ffns[rows], p)})


def neuron_importances(node: torch.Tensor, resid: torch.Tensor, neuron_writes: torch.Tensor, bias_write, p: int):
    """Per-neuron importances for one node `y = rest + sum_k neuron_k (+ bias)`: c [N], c_rest, c_bias.

    `rest` is everything in the node that is not the FFN write. Falls back to norms like
    `normalise` when every proximity is zero.
    """
    y = node.float()[None]
    parts = [neuron_writes.float(), resid.float()[None]] + ([bias_write.float()[None]] if bias_write is not None else [])
    prox = [prox_dense(y, z, p) for z in parts]
    if float(sum(x.sum() for x in prox)) <= 0:
        prox = [part_norms(z, p) for z in parts]
    total = sum(x.sum() for x in prox).clamp_min(1e-30)
    c_bias = prox[2][0] / total if bias_write is not None else torch.zeros(())
    return prox[0] / total, prox[1][0] / total, c_bias
