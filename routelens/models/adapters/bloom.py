"""Bloom: ALiBi, a per-head fused query_key_value, and attention / MLP modules that add the residual.

transformers 5.x `modeling_bloom.py`: BloomAttention computes `alibi.baddbmm(q, k^T, beta=1,
alpha=1/sqrt(dh))` ([B*H, q, k]; alibi [B*H, 1, k] depends on the key only), adds the mask, softmax
in fp32 cast back, `bmm` with the values, `dense`, and returns `residual + dense(...)`
(`dropout_add`); BloomMLP.forward(h, residual) also returns `residual + dense_4h_to_h(...)`.

The write of the attention is therefore not its module's output. The routed BloomAttention returns
the write itself (`dense(...)`) and the routed BloomBlock does the `dropout_add` the attention did,
with the same operands: the block output is bit for bit the same and the attention hooks see the
write. The MLP needs nothing: routelens reads its write at `dense_4h_to_h`. ALiBi is passed to the
attention function as a keyword (`alibi`, one row per head over the keys): every query row block,
and every recomputed pattern row, adds the same bias as the model did.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import UnsupportedArchitectureError
from .declare import Family, Refuse, Values
from .inline import InlineAdapter, allow_attention_switch, attention_function, routed, swap_class


def eager_attention_forward(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, alibi: torch.Tensor,
                            **_kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """BloomAttention's scores, softmax and value mix. query [B, H, q, dh], key / value [B, H, k, dh],
    alibi [B*H, 1, k], mask [B, 1, q, k] additive. Returns [B, q, H, dh] and the weights [B, H, q, k]."""
    batch, heads, q_len, dh = query.shape
    k_len = key.shape[2]
    if alibi.shape[-1] != k_len:  # routes/qk.py's probe: N rows at one position, one constant bias per head
        alibi = alibi[..., :1].expand(*alibi.shape[:-1], k_len)
    scores = alibi.baddbmm(
        batch1=query.reshape(batch * heads, q_len, dh),
        batch2=key.reshape(batch * heads, k_len, dh).transpose(-1, -2),
        beta=module.beta,
        alpha=module.inv_norm_factor,
    )
    weights = scores.view(batch, heads, q_len, -1)
    if attention_mask is not None:
        weights = weights + attention_mask
    probs = F.softmax(weights, dim=-1, dtype=torch.float32).to(query.dtype)
    probs = module.attention_dropout(probs)
    value_dim = value.shape[-1]  # 0 when only the weights are asked for (trace/attention.py)
    context = torch.bmm(probs.view(batch * heads, q_len, -1), value.reshape(batch * heads, k_len, value_dim))
    return context.view(batch, heads, q_len, value_dim).transpose(1, 2), probs


@functools.cache
def routed_classes() -> tuple[type, type]:
    from transformers.models.bloom.modeling_bloom import BloomAttention, BloomBlock, dropout_add

    class RoutedBloomAttention(BloomAttention):
        """BloomAttention.forward through `attention_function`, returning the write (no residual):
        the routed block adds it. Outside eager / routelens, the original (residual added)."""

        def forward(self, hidden_states, residual, alibi, attention_mask, layer_past=None, use_cache=False,
                    output_attentions=False, **kwargs):
            if not routed(self.routelens_config):
                return super().forward(hidden_states, residual, alibi, attention_mask, layer_past=layer_past,
                                       use_cache=use_cache, output_attentions=output_attentions, **kwargs)
            batch, q_len, _ = hidden_states.shape
            query, key, value = self._reshape(self.query_key_value(hidden_states))  # [B, H, T, dh] each
            if layer_past is not None:
                key, value = layer_past.update(key, value, self.layer_idx)
            attend = attention_function(self.routelens_config, eager_attention_forward)
            context, probs = attend(self, query, key, value, attention_mask, alibi=alibi,
                                    scaling=self.inv_norm_factor, dropout=0.0)
            context = context.reshape(batch, q_len, self.num_heads * self.head_dim)
            if self.pretraining_tp > 1 and self.slow_but_exact:  # refused by the adapter; kept for eager use
                slices = self.hidden_size / self.pretraining_tp
                output = torch.zeros_like(context)
                for i in range(self.pretraining_tp):
                    output = output + F.linear(context[:, :, int(i * slices) : int((i + 1) * slices)],
                                               self.dense.weight[:, int(i * slices) : int((i + 1) * slices)])
                return output, probs
            return self.dense(context), probs

    class RoutedBloomBlock(BloomBlock):
        """BloomBlock.forward with the attention's residual add done here, on the same operands."""

        def forward(self, hidden_states, alibi, attention_mask, layer_past=None, use_cache=False,
                    output_attentions=False, **kwargs):
            if not routed(self.routelens_config):
                return super().forward(hidden_states, alibi, attention_mask, layer_past=layer_past,
                                       use_cache=use_cache, output_attentions=output_attentions, **kwargs)
            layernorm_output = self.input_layernorm(hidden_states)
            residual = layernorm_output if self.apply_residual_connection_post_layernorm else hidden_states
            write, attn_weights = self.self_attention(
                layernorm_output, residual, layer_past=layer_past, attention_mask=attention_mask, alibi=alibi,
                use_cache=use_cache, output_attentions=output_attentions,
            )
            attention_output = dropout_add(write, residual, self.self_attention.hidden_dropout, self.training)
            layernorm_output = self.post_attention_layernorm(attention_output)
            residual = layernorm_output if self.apply_residual_connection_post_layernorm else attention_output
            output = self.mlp(layernorm_output, residual)
            return output, attn_weights

    return RoutedBloomAttention, RoutedBloomBlock


class BloomAdapter(InlineAdapter):
    """Swaps Bloom's attention and block classes for the routed ones (module docstring, inline.py)."""

    def __init__(self, model: nn.Module, family: Family) -> None:
        super().__init__(model, family)
        attention_class, block_class = routed_classes()
        for spec in self.layers():
            for module in (spec.attn, spec.block):  # Bloom's modules keep no config; `routed` reads it
                module.routelens_config = model.config
            swap_class(spec.attn, attention_class)
            swap_class(spec.block, block_class)
        allow_attention_switch(model)

    def check_supported(self) -> None:
        super().check_supported()
        if int(getattr(self.config, "pretraining_tp", 1) or 1) > 1 and getattr(self.config, "slow_but_exact", False):
            raise UnsupportedArchitectureError(
                "Bloom with pretraining_tp > 1 and slow_but_exact=True sums its projections slice by slice without "
                "their biases, outside the modules routelens reads; set slow_but_exact=False")

    @property
    def n_kv_heads(self) -> int:
        return self.n_heads  # Bloom has no grouped-query attention (ignore a stray num_key_value_heads)


BLOOM = Family(
    name="bloom",
    model_types=("bloom",),
    layers="transformer.h",
    final_norm="transformer.ln_f",
    attn="self_attention",
    values=Values("self_attention.query_key_value", "per_head"),
    out_proj="self_attention.dense",
    ffn_out="mlp.dense_4h_to_h",
    norm="layer",
    refuse=(Refuse("apply_residual_connection_post_layernorm", bool,
                   "Bloom with apply_residual_connection_post_layernorm=True carries the normalised residual, not "
                   "the sum of the writes, so routes are undefined"),),
    tiny=({}, {"num_attention_heads": 6}),  # 6 heads: ALiBi slopes of a head count that is not a power of 2
    adapter=BloomAdapter,
    notes="ALiBi (a keyword of the recorded attention call), per-head fused q|k|v, LayerNorm on the embeddings",
)
