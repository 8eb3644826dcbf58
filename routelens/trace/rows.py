"""Importance rows of one node, as traces cache them and the store keeps them (routes-math.md section 3)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class AttentionRow:
    """Importances of the parts of one node after attention (routes-math.md section 3)."""

    resid: float
    heads: torch.Tensor  # [H, i+1]: per head and source position
    bias: float
    ffn: float | None  # parallel blocks: the FFN write is a part of the same node
    degenerate: bool = False  # every proximity was 0; importances fell back to part norms

    def edge_weights(self) -> torch.Tensor:
        """Attention edge weight per source position: the sum over heads."""
        return self.heads.sum(0)


@dataclass
class FfnRow:
    resid: float
    ffn: float
    degenerate: bool = False
