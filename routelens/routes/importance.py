"""Proximity importances of the parts of a node (routes-math.md section 3), in fp32 or better.

For a node `y = sum_k z_k`: `prox_k = max(||y||_p - ||y - z_k||_p, 0)`, `c_k = prox_k / sum prox`.
For p = 1 the difference is taken coordinate by coordinate, `sum_d |y_d| - |y_d - z_d|`, which keeps
fp32 rounding at the scale of `z` rather than of `y`. For p = 2 the distances expand into dot
products (float64 so the cancellation stays harmless), so a whole layer is a few matrix products.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from . import kernels


def prox_dense(y: torch.Tensor, parts: torch.Tensor, p: int) -> torch.Tensor:
    """Proximity of parts [..., P, d] to nodes y [P, d] (parts broadcast against y)."""
    if p == 1:
        return (y.abs() - (y - parts).abs()).sum(-1).clamp_min(0)
    y64, parts64 = y.double(), parts.double()
    return (y64.norm(dim=-1) - (y64 - parts64).norm(dim=-1)).clamp_min(0).float()


def prox_heads(
    y: torch.Tensor,
    pattern: torch.Tensor,
    head_writes: torch.Tensor,
    scale: torch.Tensor | None,
    p: int,
) -> torch.Tensor:
    """Proximity of every (head, source) part `A[h,i,j] * s_i * U[h,j]` to its node `y_i`.

    y [P, d], pattern [H, P, J] (rows of A for the P nodes, sources up to J), head_writes [H, J, d],
    scale [P, d] or None. Returns [P, H, J].
    """
    if p == 2:
        return _prox_heads_l2(y, pattern, head_writes, scale)
    return kernels.l1_prox_heads(y, pattern.permute(1, 0, 2), head_writes, scale).clamp_min_(0)


def _prox_heads_l2(y, pattern, head_writes, scale) -> torch.Tensor:
    y64 = y.double()
    u64 = head_writes.double()
    a64 = pattern.double().permute(1, 0, 2)  # [P, H, J]
    if scale is None:
        dot = torch.einsum("pd,hjd->phj", y64, u64)
        sq = (u64 * u64).sum(-1)[None]  # [1, H, J]
    else:
        s64 = scale.double()
        dot = torch.einsum("pd,hjd->phj", y64 * s64, u64)
        sq = torch.einsum("pd,hjd->phj", s64 * s64, u64 * u64)
    y_sq = (y64 * y64).sum(-1)[:, None, None]
    dist_sq = (y_sq - 2 * a64 * dot + a64 * a64 * sq).clamp_min(0)
    return (y_sq.sqrt() - dist_sq.sqrt()).clamp_min(0).float()


def part_norms_heads(pattern: torch.Tensor, head_writes: torch.Tensor, scale: torch.Tensor | None, p: int) -> torch.Tensor:
    """`||A[h,i,j] * s_i * U[h,j]||_p` for every (node, head, source): [P, H, J], by matrix products."""
    a = pattern.permute(1, 0, 2).float()  # [P, H, J]
    if p == 1:
        mag = head_writes.abs()
        norms = mag.sum(-1)[None] if scale is None else torch.einsum("pd,hjd->phj", scale.abs(), mag)
    else:
        sq = head_writes.double() ** 2
        norms = (sq.sum(-1)[None] if scale is None else torch.einsum("pd,hjd->phj", scale.double() ** 2, sq)).sqrt().float()
    return a * norms


def part_norms(parts: torch.Tensor, p: int) -> torch.Tensor:
    return parts.float().norm(p=p, dim=-1)


@dataclass
class NodeImportances:
    """Normalised importances of the parts of a set of nodes at one layer.

    `heads` [P, H, J] for attention parts (J = number of sources kept), `resid` [P], `bias` [P],
    `ffn` [P] (parallel blocks and FFN-output nodes). `degenerate` [P] marks nodes whose parts
    cancel so that no part is closer to the node than zero is (every proximity is 0); their
    importances fall back to the parts' norms (`c_k = ||z_k|| / sum ||z||`).
    """

    positions: list[int]
    resid: torch.Tensor
    heads: torch.Tensor | None
    bias: torch.Tensor
    ffn: torch.Tensor | None
    degenerate: torch.Tensor


Parts = dict[str, torch.Tensor | None]


def total_of(parts: Parts) -> torch.Tensor:
    total = parts["resid"].clone()
    if parts.get("heads") is not None:
        total += parts["heads"].sum(dim=(1, 2))
    for key in ("bias", "ffn"):
        if parts.get(key) is not None:
            total += parts[key]
    return total


def normalise(positions: list[int], prox: Parts, norms: Callable[[torch.Tensor], Parts]) -> NodeImportances:
    """`c_k = prox_k / sum prox`; rows whose proximities are all zero use `norms(rows)` instead."""
    total = total_of(prox)
    degenerate = total <= 0
    if bool(degenerate.any()):
        rows = degenerate.nonzero().flatten()
        fallback = norms(rows)
        for key, value in fallback.items():
            if value is not None:
                prox[key] = prox[key].clone()
                prox[key][rows] = value
        total = total_of(prox)
    denom = total.clamp_min(1e-30)
    zeros = torch.zeros_like(prox["resid"])
    heads, bias, ffn = prox.get("heads"), prox.get("bias"), prox.get("ffn")
    return NodeImportances(
        positions=positions,
        resid=prox["resid"] / denom,
        heads=heads / denom[:, None, None] if heads is not None else None,
        bias=bias / denom if bias is not None else zeros,
        ffn=ffn / denom if ffn is not None else None,
        degenerate=degenerate,
    )
