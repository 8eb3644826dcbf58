"""Falcon: parallel or sequential blocks, multi-query / grouped / multi-head fused qkv, rotary or ALiBi.

transformers 5.x `modeling_falcon.py`, FalconAttention.forward (eager path, computed inline):
- rotary: `s = q @ k^T; s /= sqrt(dh); p = softmax(s + mask, dtype=hidden dtype); out = p @ v`;
- ALiBi: `s = q @ k^T` (fp32 when half), `s + alibi[B, H, 1, k]`, `*= 1/sqrt(dh)`, softmax of
  `s + mask` (the model's mask itself holds `alibi / sqrt(dh)` on kept keys: [B, H, q, k]), dropout,
  `p @ v`. The alibi goes to the attention function as a keyword (one row per head over the keys).
Layouts of `query_key_value` rows: new_decoder_architecture, per kv group [q_g,0 .. q_g,r-1 | k_g | v_g]
(declare.py's "per_group"); multi_query, [q (H dh) | k (dh) | v (dh)] ("qkv", one kv head, broadcast
by the matmul); otherwise per head [q_h | k_h | v_h] ("per_head"). The model repeats a group's key and
value over its r query heads before the matmul; the routed class hands the attention function the
group's own key and value [B, Hkv, T, dh] (what routelens records, one per kv head, as GQA families
do) and repeats them inside the eager function: the same numbers reach the same matmul.
Blocks: parallel when parallel_attn (one norm, or ln_attn / ln_mlp when new_decoder_architecture and
num_ln_in_parallel_attn == 2), sequential otherwise. The layer adds the FFN output and the attention
output in place (`mlp_output += attention_output`): the routed MLP returns a copy, so that the FFN
write routelens recorded at dense_4h_to_h is not overwritten.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .declare import Family, Values
from .inline import InlineAdapter, allow_attention_switch, attention_function, routed, swap_class


def _repeat(x: torch.Tensor, times: int) -> torch.Tensor:
    """[B, Hkv, T, dh] -> [B, Hkv * times, T, dh], head g*times + i = group g (the model's broadcast)."""
    if times == 1:
        return x
    b, kv, t, d = x.shape
    return x[:, :, None].expand(b, kv, times, t, d).reshape(b, kv * times, t, d)


def _keys(alibi: torch.Tensor, n_keys: int) -> torch.Tensor:
    """ALiBi over `n_keys` keys. The model's calls always match; routes/qk.py's probe calls the
    attention on N rows that all stand at one position: their bias is one constant per head (the
    first key's; a constant shifts no softmax, and the probe reads only the queries and keys)."""
    return alibi if alibi.shape[-1] == n_keys else alibi[..., :1].expand(*alibi.shape[:-1], n_keys)


def eager_attention_forward(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            attention_mask: torch.Tensor | None, alibi: torch.Tensor | None = None,
                            **_kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """FalconAttention's eager scores, softmax and value mix (module docstring). query [B, H, q, dh];
    key / value [B, Hkv, k, dh]; mask [B, 1 or H, q, k] additive; alibi [B, H, 1, k] or None.
    Returns [B, q, H, dh] and the weights [B, H, q, k]."""
    if module.new_decoder_architecture:  # the model broadcast each group's key / value to its heads
        times = query.shape[1] // key.shape[1]
        key, value = _repeat(key, times), _repeat(value, times)
    dtype = query.dtype  # the hidden states' dtype: softmax's output dtype in both paths
    if alibi is None:
        scores = query @ key.transpose(-1, -2)
        scores = scores / math.sqrt(module.head_dim)
        if attention_mask is not None:  # the model always passes one; routes/qk.py's probe does not
            scores = scores + attention_mask
        probs = F.softmax(scores, dim=-1, dtype=dtype)
    else:
        scores = query @ key.transpose(-1, -2)
        if scores.dtype in (torch.float16, torch.bfloat16):
            scores = scores.to(torch.float32)
        logits = scores + _keys(alibi, key.shape[2])
        logits = logits * module.inv_norm_factor
        if attention_mask is not None:
            logits = logits + attention_mask
        probs = F.softmax(logits, dim=-1, dtype=dtype)
        probs = module.attention_dropout(probs)
    return (probs @ value).transpose(1, 2), probs


@functools.cache
def routed_classes() -> tuple[type, type]:
    from transformers.models.falcon.modeling_falcon import FalconAttention, FalconMLP, apply_rotary_pos_emb

    class RoutedFalconAttention(FalconAttention):
        """FalconAttention.forward through `attention_function`; sdpa / flash: the original."""

        def forward(self, hidden_states, alibi, attention_mask, position_ids=None, layer_past=None,
                    use_cache=False, output_attentions=False, position_embeddings=None, **kwargs):
            if not routed(self.config):
                return super().forward(hidden_states, alibi, attention_mask, position_ids=position_ids,
                                       layer_past=layer_past, use_cache=use_cache,
                                       output_attentions=output_attentions,
                                       position_embeddings=position_embeddings, **kwargs)
            fused = self.query_key_value(hidden_states)
            batch, length, _ = fused.shape
            dh = self.head_dim
            if self.new_decoder_architecture:  # per group: r queries, then the group's key and value
                qkv = fused.view(batch, length, -1, self.num_heads // self.num_kv_heads + 2, dh)
                query, key, value = qkv[:, :, :, :-2].flatten(2, 3), qkv[:, :, :, -2], qkv[:, :, :, -1]
            else:
                query, key, value = self._split_heads(fused)
            query = query.transpose(1, 2).reshape(batch, self.num_heads, length, dh)
            key = key.transpose(1, 2).reshape(batch, -1, length, dh)
            value = value.transpose(1, 2).reshape(batch, -1, length, dh)
            if alibi is None:
                cos, sin = position_embeddings
                query, key = apply_rotary_pos_emb(query, key, cos, sin)
            if layer_past is not None:
                key, value = layer_past.update(key, value, self.layer_idx)
            attend = attention_function(self.config, eager_attention_forward)
            extra = {"alibi": alibi.view(batch, self.num_heads, 1, -1)} if alibi is not None else {}
            out, probs = attend(self, query, key, value, attention_mask, scaling=self.inv_norm_factor,
                                dropout=0.0, **extra)
            out = out.reshape(batch, length, self.num_heads * dh)
            return self.dense(out), probs

    class RoutedFalconMLP(FalconMLP):
        """FalconMLP.forward returning a copy: the layer's in-place `mlp_output += attention_output`
        then leaves the FFN output routelens recorded (dense_4h_to_h's output) as it was."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x).clone()

    return RoutedFalconAttention, RoutedFalconMLP


class FalconAdapter(InlineAdapter):
    """The declaration resolved for the model's configuration (block kind, norms, qkv layout, kv
    heads), then the attention and MLP classes swapped for the routed ones (inline.py)."""

    def __init__(self, model: nn.Module, family: Family) -> None:
        config = model.config
        new = bool(config.new_decoder_architecture)
        layout = "per_group" if new else ("qkv" if config.multi_query else "per_head")
        two_norms = new and config.num_ln_in_parallel_attn in (None, 2)  # the layer makes None 2
        family = dataclasses.replace(
            family,
            values=Values(family.values.path, layout),
            attn_norm="ln_attn" if two_norms else "input_layernorm",
        )
        super().__init__(model, family)
        attention_class, mlp_class = routed_classes()
        for spec in self.layers():
            swap_class(spec.attn, attention_class)
            swap_class(spec.ffn, mlp_class)
        allow_attention_switch(model)

    @property
    def n_kv_heads(self) -> int:
        """As FalconAttention counts them: the config's num_kv_heads (new architecture), 1 (multi-query), H."""
        if self.config.new_decoder_architecture:
            return int(self.config.num_kv_heads)
        return 1 if self.config.multi_query else self.n_heads


FALCON = Family(
    name="falcon",
    model_types=("falcon",),
    layers="transformer.h",
    final_norm="transformer.ln_f",
    attn="self_attention",
    values=Values("self_attention.query_key_value", "per_group"),  # the layout: per configuration (adapter)
    out_proj="self_attention.dense",
    ffn_out="mlp.dense_4h_to_h",
    # parallel_attn decides (new_decoder_architecture runs only with parallel_attn: its layer reads
    # ln_attn / ln_mlp or one shared norm, and has no sequential path)
    parallel="parallel_attn",
    norm="layer",
    tiny=(
        {"new_decoder_architecture": True, "num_kv_heads": 2, "bias": True},  # grouped, ln_attn / ln_mlp
        {"new_decoder_architecture": True, "num_kv_heads": 2, "num_ln_in_parallel_attn": 1},
        {"new_decoder_architecture": False, "multi_query": True, "parallel_attn": True},
        {"new_decoder_architecture": False, "multi_query": False, "parallel_attn": False, "num_kv_heads": 4,
         "bias": True},
        {"new_decoder_architecture": False, "multi_query": True, "parallel_attn": True, "alibi": True, "bias": True},
        {"new_decoder_architecture": True, "num_kv_heads": 2, "alibi": True},
    ),
    adapter=FalconAdapter,
    notes="parallel blocks (one or two norms), multi-query / grouped fused qkv, rotary or ALiBi",
)
