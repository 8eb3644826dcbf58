"""GPT-Neo: global and local (windowed) attention layers, computed inline by transformers (inline.py).

GPTNeoSelfAttention (transformers 5.x `modeling_gpt_neo.py`, `_attn`): no 1/sqrt(d) scaling; query
and key cast to fp32 before `q @ k^T`; a causal bias buffer `bias` [1, 1, P, P] (bool, a window of
`window_size` keys for local layers) applied as `where(bias, w, fp32 min)`, then the model's additive
mask added; softmax in fp32, cast to the value dtype; q/k/v projections without bias, out_proj
with one. The routed class folds the buffer into the additive mask it passes to the attention
function (`where(bias, 0, min) + mask`), so that the mask rows recorded for any query row carry the
window: on every kept key the score is `w + mask` as before, bit for bit, and a cut key gets a score
of about fp32 min instead of exactly min (or -inf): its softmax weight is 0 either way.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch import nn

from .declare import Family, Values
from .inline import InlineAdapter, allow_attention_switch, attention_function, routed, swap_class


def eager_attention_forward(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, **_kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """GPTNeoSelfAttention._attn with the causal / window bias already in `attention_mask` (module
    docstring). query [B, H, q, dh], key / value [B, H, k, dh], mask [B, 1, q, k] additive fp32.
    Returns the output as transformers' eager functions do, [B, q, H, dh], and the weights [B, H, q, k]."""
    weights = torch.matmul(query.to(torch.float32), key.to(torch.float32).transpose(-1, -2))
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = nn.functional.softmax(weights, dim=-1)
    weights = weights.to(value.dtype)
    weights = module.attn_dropout(weights)
    return torch.matmul(weights, value).transpose(1, 2), weights


def window_mask(module: nn.Module, query_length: int, key_length: int,
                attention_mask: torch.Tensor | None) -> torch.Tensor:
    """The additive mask [B, 1, q, k] (fp32) that is 0 (plus the model's mask) where the layer's bias
    buffer keeps a key and fp32 min where it cuts one: the same rows as `_attn`'s `where`."""
    keep = module.bias[:, :, key_length - query_length : key_length, :key_length]
    low = torch.finfo(torch.float32).min
    zero = torch.zeros((), dtype=torch.float32, device=keep.device)
    mask = torch.where(keep, zero, torch.tensor(low, dtype=torch.float32, device=keep.device))
    return mask + attention_mask if attention_mask is not None else mask


@functools.cache
def routed_attention_class() -> type:
    from transformers.models.gpt_neo.modeling_gpt_neo import GPTNeoSelfAttention

    class RoutedGPTNeoSelfAttention(GPTNeoSelfAttention):
        """GPTNeoSelfAttention.forward with the attention through `attention_function` (module docstring)."""

        def forward(self, hidden_states, attention_mask=None, layer_past=None, use_cache=False,
                    output_attentions=False, **kwargs):
            if not routed(self.config):
                return super().forward(hidden_states, attention_mask=attention_mask, layer_past=layer_past,
                                       use_cache=use_cache, output_attentions=output_attentions, **kwargs)
            query = self._split_heads(self.q_proj(hidden_states), self.num_heads, self.head_dim)
            key = self._split_heads(self.k_proj(hidden_states), self.num_heads, self.head_dim)
            value = self._split_heads(self.v_proj(hidden_states), self.num_heads, self.head_dim)
            if layer_past is not None:
                key, value = layer_past.update(key, value, self.layer_id)
            mask = window_mask(self, query.size(-2), key.size(-2), attention_mask)
            attend = attention_function(self.config, eager_attention_forward)
            # scaling=1.0: GPT-Neo does not scale its scores (read by why-attends, unused by the eager math)
            attn_output, attn_weights = attend(self, query, key, value, mask, scaling=1.0, dropout=0.0)
            batch, length = attn_output.shape[:2]
            attn_output = attn_output.reshape(batch, length, self.num_heads * self.head_dim).contiguous()
            attn_output = self.resid_dropout(self.out_proj(attn_output))
            return attn_output, attn_weights

    return RoutedGPTNeoSelfAttention


class GPTNeoAdapter(InlineAdapter):
    """Routes each layer's attention through routelens (inline.py); multi-head attention only."""

    def __init__(self, model: nn.Module, family: Family) -> None:
        super().__init__(model, family)
        cls = routed_attention_class()
        for spec in self.layers():
            swap_class(spec.attn, cls)
        allow_attention_switch(model)

    @property
    def n_kv_heads(self) -> int:
        return self.n_heads  # GPT-Neo has no grouped-query attention (ignore a stray num_key_value_heads)


GPT_NEO = Family(
    name="gpt_neo",
    model_types=("gpt_neo",),
    layers="transformer.h",
    final_norm="transformer.ln_f",
    attn="attn.attention",  # GPTNeoAttention only forwards to its GPTNeoSelfAttention
    attn_norm="ln_1",
    values=Values("attn.attention.v_proj"),
    out_proj="attn.attention.out_proj",
    ffn_out="mlp.c_proj",
    norm="layer",
    tiny=(
        # a local layer whose window (4) is shorter than the 10-token prompt, then a global one
        {"attention_types": [[["local", "global"], 1]], "window_size": 4},
        {"attention_types": [[["global", "local"], 1]], "window_size": 3, "activation_function": "gelu"},
    ),
    adapter=GPTNeoAdapter,
    notes="unscaled scores, fp32 q.k, local layers with a window (folded into the recorded mask)",
)
