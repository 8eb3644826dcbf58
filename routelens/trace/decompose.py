"""The exact decomposition of each residual write into its parts (routes-math.md section 2).

Attention: `a[i] = s[i] * (sum_h sum_j A[h,i,j] U[h,j] + b_O)` with `U[h,j] = W_O[h] (W_V[h] n[j] + b_V[h])`
(`b_V` once, inside `U`; the value of query head `h` is its key-value head's) and `s` the post-norm
scale (1 without one). FFN: `f[i] = s[i] * (sum_k act[i,k] W_out[:,k] + b_out)`.
All of it in fp32, whatever dtype the model ran in.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.adapters.base import Adapter
from .attention import AttentionCall, block_rows
from .capture import Capture, LayerCapture


@dataclass
class AttentionParts:
    """Everything needed to form any part of one layer's attention write. The pattern is read a
    block of rows at a time from the layer's recorded attention call (never whole)."""

    head_writes: torch.Tensor  # U [H, T, d]: each head's write per unit of attention to source j
    call: AttentionCall  # queries, keys and mask of the layer: A[h, i, j] for any rows i
    bias: torch.Tensor | None  # b_O [d]
    scale: torch.Tensor | None  # post-norm scale s [T, d]

    def rows(self, positions: list[int] | torch.Tensor) -> torch.Tensor:
        """A[:, positions, :] in fp32: [H, P, T]."""
        return self.call.pattern_rows(positions).float()

    def write(self) -> torch.Tensor:
        """The sum of all parts: the attention write `a` [T, d], a block of rows at a time."""
        n = self.head_writes.shape[1]
        out = []
        for block in torch.arange(n).split(block_rows(self.head_writes.shape[0], n)):
            out.append(torch.einsum("hij,hjd->id", self.rows(block), self.head_writes))
        write = torch.cat(out)
        if self.bias is not None:
            write = write + self.bias
        return write * self.scale if self.scale is not None else write


@torch.no_grad()
def head_writes_at(adapter: Adapter, layer: LayerCapture, index: int, pos: int) -> torch.Tensor:
    """Each head's total write into `pos`, write scale (post-norm or multiplier) applied, bias
    excluded: [H, d] fp32. The values are mixed by A[h, pos, :] before W_O, so no [H, T, d] tensor
    is formed."""
    dtype = next(adapter.model.parameters()).dtype
    values = adapter.values(index, layer.attn_in[: pos + 1].to(dtype)).float()  # [pos+1, Hkv, dh]: causal
    kv = torch.tensor([adapter.kv_head_of(h) for h in range(adapter.n_heads)], device=values.device)
    weights = layer.pattern_rows([pos])[:, 0, : pos + 1].float().to(values.device)  # [H, pos+1]
    mixed = torch.einsum("ht,thk->hk", weights, values[:, kv])
    w_o, _ = adapter.out_proj(index)
    w_o = w_o.detach().float().view(adapter.d_model, adapter.n_heads, adapter.head_dim)
    writes = torch.einsum("hk,dhk->hd", mixed, w_o)
    scale = attn_scale(adapter, layer, index, slice(pos, pos + 1))
    return writes * scale[0] if scale is not None else writes


@torch.no_grad()
def attention_parts(adapter: Adapter, layer: LayerCapture, index: int) -> AttentionParts:
    n = layer.attn_in.float()
    values = adapter.values(index, n.to(next(adapter.model.parameters()).dtype)).float()  # [T, Hkv, dh]
    kv_of_head = torch.tensor([adapter.kv_head_of(h) for h in range(adapter.n_heads)], device=values.device)
    per_head_values = values[:, kv_of_head]  # [T, H, dh]: each query head reads its kv head's values
    w_o, b_o = adapter.out_proj(index)
    w_o = w_o.detach().float().view(adapter.d_model, adapter.n_heads, adapter.head_dim)
    head_writes = torch.einsum("thk,dhk->htd", per_head_values, w_o)
    scale = attn_scale(adapter, layer, index)
    return AttentionParts(
        head_writes=head_writes,
        call=layer.attention,
        bias=b_o.detach().float() if b_o is not None else None,
        scale=scale,
    )


def _write_scale(adapter: Adapter, norm: torch.nn.Module | None, multiplier: float | None,
                 out: torch.Tensor) -> torch.Tensor | None:
    """The per-position scale `s` [T, d] of a write: a post-norm's, linearised with the whole write
    (routes-math.md section 2), or a constant multiplier's (Granite); None when the write is `out`."""
    if norm is not None:
        return adapter.post_norm_scale(norm, out)
    if multiplier is not None:
        return torch.full(out.shape, multiplier, dtype=torch.float32, device=out.device)
    return None


@torch.no_grad()
def attn_scale(adapter: Adapter, layer: LayerCapture, index: int, rows: slice = slice(None)) -> torch.Tensor | None:
    spec = adapter.spec(index)
    return _write_scale(adapter, spec.attn_post_norm, spec.write_scale, layer.attn_out[rows])


@torch.no_grad()
def ffn_scale(adapter: Adapter, layer: LayerCapture, index: int) -> torch.Tensor | None:
    spec = adapter.spec(index)
    return _write_scale(adapter, spec.ffn_post_norm, spec.write_scale, layer.ffn_out)


@dataclass
class NeuronParts:
    """The FFN write at one position as `scale * (coef @ columns.T + bias)`."""

    coef: torch.Tensor  # [N]: signed activation (times the routing weight for experts)
    columns: torch.Tensor  # [d, N]: output-projection columns
    bias: torch.Tensor | None  # [d]
    scale: torch.Tensor | None  # [d]
    labels: list[str]  # a name per neuron ("123" or "e3:123")

    def parts(self) -> torch.Tensor:
        """[N, d]: each neuron's signed write."""
        out = self.columns.t() * self.coef[:, None]
        return out * self.scale if self.scale is not None else out

    def write(self) -> torch.Tensor:
        out = self.columns @ self.coef
        if self.bias is not None:
            out = out + self.bias
        return out * self.scale if self.scale is not None else out


@torch.no_grad()
def neuron_parts(adapter: Adapter, layer: LayerCapture, index: int, pos: int) -> NeuronParts:
    scale = ffn_scale(adapter, layer, index)
    scale_at = scale[pos] if scale is not None else None
    if layer.ffn_act is not None:
        w_out, b_out = adapter.ffn_out_proj(index)
        coef = layer.ffn_act[pos].float()
        return NeuronParts(
            coef=coef,
            columns=w_out.detach().float(),
            bias=b_out.detach().float() if b_out is not None else None,
            scale=scale_at,
            labels=[str(k) for k in range(coef.shape[0])],
        )
    coef, columns, labels = adapter.expert_neurons(index, layer, pos)
    return NeuronParts(coef=coef, columns=columns, bias=None, scale=scale_at, labels=labels)


@torch.no_grad()
def ffn_write(adapter: Adapter, layer: LayerCapture, index: int) -> torch.Tensor:
    """The FFN write of every position rebuilt from neuron parts: [T, d]."""
    if layer.ffn_act is not None:
        w_out, b_out = adapter.ffn_out_proj(index)
        out = layer.ffn_act.float() @ w_out.float().t()
        if b_out is not None:
            out = out + b_out.float()
        scale = ffn_scale(adapter, layer, index)
        return out * scale if scale is not None else out
    return torch.stack([neuron_parts(adapter, layer, index, i).write() for i in range(layer.ffn_in.shape[0])])


def relative_error(rebuilt: torch.Tensor, actual: torch.Tensor) -> float:
    """Largest absolute difference over the largest absolute value of the tensor."""
    actual = actual.float()
    scale = actual.abs().max().clamp_min(1e-30)
    return float((rebuilt.float() - actual).abs().max() / scale)


@torch.no_grad()
def check_capture(adapter: Adapter, capture: Capture) -> list[dict[str, float]]:
    """Per layer: how exactly the parts rebuild the attention write, FFN write and residual (the
    residual against the forward pass's own x[l+1], the writes against the replay's)."""
    rows = []
    for index in range(capture.n_layers):
        layer = capture.layers[index]
        parts = attention_parts(adapter, layer, index)
        attn = parts.write()
        ffn = ffn_write(adapter, layer, index)
        resid = layer.resid_in.float() + attn + ffn
        rows.append(
            {
                "layer": index,
                "attention": relative_error(attn, layer.attn_write),
                "ffn": relative_error(ffn, layer.ffn_write),
                # against the forward pass itself: proves the replay rebuilt what the model computed
                "residual": relative_error(resid, capture.resid(index + 1)),
            }
        )
    return rows
