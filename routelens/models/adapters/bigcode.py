"""GPT-BigCode (StarCoder 1, SantaCoder): declared, with code for its two attention layouts."""

from __future__ import annotations

import torch

from .declare import DeclaredAdapter


class GPTBigCodeAdapter(DeclaredAdapter):
    """Multi-query attention (`multi_query=True`, every released checkpoint) keeps c_attn's rows as
    [q (H x dh) | k (dh) | v (dh)]: one key-value head. Without it, rows are per head [q_h|k_h|v_h]."""

    @property
    def n_kv_heads(self) -> int:
        return 1 if self.config.multi_query else self.n_heads

    def value_weight(self, layer: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        c_attn = self.decoder_layers()[layer].attn.c_attn
        w, b = c_attn.weight, c_attn.bias
        dh, h = self.head_dim, self.n_heads
        if self.config.multi_query:
            return w[h * dh + dh :], (b[h * dh + dh :] if b is not None else None)
        rows = w.view(h, 3, dh, -1)[:, 2].reshape(h * dh, -1)
        return rows, (b.view(h, 3, dh)[:, 2].reshape(h * dh) if b is not None else None)
