"""A TransformerLens backend: trace a `TransformerBridge` (transformer-lens >= 4.3) through its own
hook points and weights, so that an architecture TransformerLens supports and routelens's native
adapters do not still gets exact routes (docs/transformer-lens.md).

A bridge wraps a transformers model: its decoder blocks, attention, MLP and norms are replaced by
bridge components that call (or re-implement) the original ones and fire hook points. routelens
hooks each block (`blocks.{l}`: its input is x[l], its output x[l+1], called by the model with the
model's own mask and positions, so a replay runs it again the same way) and reads each layer's parts
from the hook points below; every weight comes from the bridge (`W_V`, `b_V`, `W_O`, `b_O`, `W_out`,
`b_out`, `W_U`), so whatever processing the bridge applied is what is decomposed:

  attn_in  blocks.{l}.attn.hook_in        the normalised input the attention reads [T, d]
  pattern  blocks.{l}.attn.hook_pattern   A [1, H, T, T], kept whole (trace/attention.py StoredPattern)
  attn_out blocks.{l}.attn.hook_out       the attention write, b_O included [T, d]
  ffn_in   blocks.{l}.mlp.hook_in         the FFN input [T, d]
  ffn_act  blocks.{l}.mlp.out.hook_in     what multiplies W_out: the neuron activations [T, d_mlp]
  ffn_out  blocks.{l}.mlp.out.hook_out    the FFN write [T, d] (not mlp.hook_out: MPT's MLP adds the residual)

Processing (`bridge.enable_compatibility_mode(...)`, HookedTransformer's numerics): `fold_ln` moves
norm gains and biases into the next weights (the norms become pure normalisations: gain 1, bias 0),
which changes no write and no residual; `center_writing_weights` subtracts each writing weight's
mean over d_model, so every residual is centred (different vectors, hence different importances,
still exact); `fold_value_biases` moves b_V into b_O (`b_O + sum_h b_V[h] W_O[h]`, exact because each
pattern row sums to 1): the bias part then carries what the per-(head, source) parts carried;
`center_unembed` shifts every logit of a position by one constant (the logit lens follows it).

Memory: each replayed layer keeps its H x T x T pattern (the bridge hands nothing smaller). Refused:
bridges whose attention reads per-head inputs (use_split_qkv_input, use_attn_in), norms after the
attention or the FFN, mixture-of-experts MLPs, encoder-decoder and multimodal models, and "why a
head attends" (it needs the queries and keys behind the pattern).
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch import nn

from ...errors import UnsupportedArchitectureError
from .base import Adapter, LayerModules

PIP_EXTRA = 'pip install "routelens[transformer-lens]"'
BACKEND = "transformer-lens"


def is_bridge(model: Any) -> bool:
    """Whether `model` is a TransformerLens TransformerBridge (without importing TransformerLens:
    a bridge exists only where it was imported already)."""
    module = sys.modules.get("transformer_lens.model_bridge.transformer_bridge")
    cls = getattr(module, "TransformerBridge", None) if module is not None else None
    return cls is not None and isinstance(model, cls)


def is_hooked_transformer(model: Any) -> bool:
    """A TransformerLens 3 HookedTransformer (removed in 4): refused with what to use instead."""
    return any(c.__name__ == "HookedTransformer" and c.__module__.startswith("transformer_lens")
               for c in type(model).__mro__)


def _nonzero(t: torch.Tensor | None) -> torch.Tensor | None:
    """A bias the bridge reports as zeros where the model has none: None, like a native adapter."""
    return t if t is not None and bool(t.detach().ne(0).any()) else None


class TransformerLensAdapter(Adapter):
    """A TransformerBridge, raw or in compatibility mode (any processing setting)."""

    model_types = ()  # never picked by adapter_for: models/model.py routes bridges here
    family = BACKEND
    uses_routelens_attention = False  # the bridge computes attention itself and hooks its pattern

    def __init__(self, bridge: nn.Module) -> None:
        self.model = bridge
        self.cfg = bridge.cfg
        original = getattr(bridge, "original_model", None)
        self.config = getattr(original, "config", None) or getattr(bridge, "config", None)
        self._specs = None
        self.check_supported()

    # ---- shape facts (the bridge's own config) ---------------------------------------------
    @property
    def n_layers(self) -> int:
        return int(self.cfg.n_layers)

    @property
    def n_heads(self) -> int:
        return int(self.cfg.n_heads)

    @property
    def n_kv_heads(self) -> int:
        return int(getattr(self.cfg, "n_key_value_heads", None) or self.n_heads)

    @property
    def d_model(self) -> int:
        return int(self.cfg.d_model)

    @property
    def head_dim(self) -> int:
        return int(self.cfg.d_head)

    @property
    def vocab_size(self) -> int:
        return int(self.cfg.d_vocab)

    @property
    def context_length(self) -> int | None:
        return int(self.cfg.n_ctx) if getattr(self.cfg, "n_ctx", None) else None

    # ---- what can be decomposed exactly ------------------------------------------------------
    def check_supported(self) -> None:
        cfg, name = self.cfg, getattr(self.cfg, "architecture", None) or type(self.model).__name__
        for flag, why in (("is_multimodal", "a multimodal model"), ("is_audio_model", "an audio model"),
                          ("is_visual_model", "a vision model"), ("is_stateful", "a state-space model"),
                          ("use_split_qkv_input", "its attention reads a separate input per head "
                                                  "(use_split_qkv_input); switch it off"),
                          ("use_attn_in", "its attention reads a separate input per head (use_attn_in); "
                                          "switch it off")):
            if getattr(cfg, flag, False):
                raise UnsupportedArchitectureError(f"routelens cannot trace {name} through TransformerLens: {why}")
        if self.config is None:
            raise UnsupportedArchitectureError(f"the TransformerLens bridge of {name} wraps no transformers model "
                                               "(no config); routelens traces bridges booted from transformers models")
        if getattr(self.config, "is_encoder_decoder", False):
            raise UnsupportedArchitectureError(f"{name} is an encoder-decoder model; routes need a decoder-only LM")
        if "ln_final" not in dict(self.model.named_children()) or "unembed" not in dict(self.model.named_children()):
            raise UnsupportedArchitectureError(
                f"the TransformerLens bridge of {name} has no final norm and unembedding (ln_final, unembed): a "
                "model that normalises after each residual add (post-norm) has no residual stream to decompose")
        blocks = getattr(self.model, "blocks", None)
        if blocks is None or len(blocks) != self.n_layers:
            raise UnsupportedArchitectureError(f"the TransformerLens bridge of {name} has no stack of "
                                               f"{self.n_layers} blocks to trace")
        for index, block in enumerate(blocks):
            parts = dict(block.named_children())
            missing = [p for p in ("attn", "mlp") if p not in parts]
            if missing:
                raise UnsupportedArchitectureError(
                    f"block {index} of {name} has no {' or '.join(missing)} (bridge parts: "
                    f"{', '.join(sorted(parts))}); routelens decomposes attention + MLP blocks")
            if any(p in parts for p in ("ln1_post", "ln2_post")):
                raise UnsupportedArchitectureError(
                    f"{name} normalises its attention or MLP output before the residual add; the "
                    "TransformerLens backend does not linearise such norms (a native adapter does for Gemma 2/3)")
            attn, mlp = block.attn, block.mlp
            if not hasattr(attn, "hook_pattern") or not hasattr(attn, "W_V"):
                raise UnsupportedArchitectureError(f"the attention of block {index} of {name} "
                                                   f"({type(attn).__name__}) exposes no pattern or value weights")
            if "out" not in dict(mlp.named_children()) or "experts" in dict(mlp.named_children()):
                raise UnsupportedArchitectureError(
                    f"the MLP of block {index} of {name} ({type(mlp).__name__}) has no single output "
                    "projection (mixture of experts?); the TransformerLens backend decomposes dense MLPs")
            w_v = attn.W_V
            if w_v is None or tuple(w_v.shape) != (self.n_kv_heads, self.d_model, self.head_dim):
                raise UnsupportedArchitectureError(
                    f"the value weights of block {index} of {name} are not [kv heads, d_model, d_head] "
                    f"({None if w_v is None else tuple(w_v.shape)})")

    # ---- the layer mapping ---------------------------------------------------------------------
    def layers(self) -> list[LayerModules]:
        parallel = bool(getattr(self.cfg, "parallel_attn_mlp", False))
        return [
            LayerModules(block=b, attn=b.attn, ffn=b.mlp, ffn_out=b.mlp.out,
                         parallel=parallel or type(b).__name__ == "ParallelBlockBridge",
                         attn_norm=getattr(b, "ln1", None))
            for b in self.model.blocks
        ]

    def hook_points(self, layer: int) -> list[tuple[str, nn.Module]]:
        b = self.model.blocks[layer]
        return [("attn_in", b.attn.hook_in), ("pattern", b.attn.hook_pattern), ("attn_out", b.attn.hook_out),
                ("ffn_in", b.mlp.hook_in), ("ffn_act", b.mlp.out.hook_in), ("ffn_out", b.mlp.out.hook_out)]

    def forward_logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The bridge's logits [1, T, V] (no BOS added: the ids are the prompt's, no cache)."""
        return self.model(input_ids, return_type="logits", use_cache=False)

    # ---- weights, as the bridge holds them (processed or not) ------------------------------------
    def values(self, layer: int, normed: torch.Tensor) -> torch.Tensor:
        attn = self.model.blocks[layer].attn
        w_v, b_v = attn.W_V, attn.b_V  # [Hkv, d, dh], [Hkv, dh]
        v = torch.einsum("td,hdk->thk", normed.to(w_v.dtype), w_v)
        return v + b_v if b_v is not None else v

    def out_proj(self, layer: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        attn = self.model.blocks[layer].attn
        w_o = attn.W_O  # [H, dh, d]
        return w_o.reshape(self.n_heads * self.head_dim, self.d_model).t(), _nonzero(attn.b_O)

    def ffn_out_proj(self, layer: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        mlp = self.model.blocks[layer].mlp
        return mlp.W_out.t(), _nonzero(mlp.b_out)  # W_out [d_mlp, d] -> [d, d_mlp]

    def final_norm(self) -> nn.Module:
        return self.model.ln_final

    def lm_head(self) -> nn.Module:
        return self.model.unembed

    def lm_head_linear(self, h: torch.Tensor) -> torch.Tensor:
        return self.scale_logits(h.float() @ self.model.W_U.float())  # W_U [d, V], centred or not

    # ---- the bridge's norms -------------------------------------------------------------------------
    def norm_gain(self, norm: nn.Module) -> torch.Tensor | None:
        weight = getattr(norm, "weight", None)
        if weight is None:
            return None
        return weight.float() + 1.0 if getattr(norm, "uses_weight_offset", False) else weight.float()

    def norm_eps(self, norm: nn.Module) -> float:  # type: ignore[override]
        inner = getattr(norm, "original_component", None)
        for module in (inner, norm):
            for name in ("eps", "variance_epsilon", "epsilon"):
                if module is not None and name in dir(module):
                    return float(getattr(module, name))
        return float(getattr(self.cfg, "eps", 1e-5))

    def is_layer_norm(self, norm: nn.Module) -> bool:  # type: ignore[override]
        return not bool(getattr(norm, "uses_rms_norm", False))

    def facts(self) -> dict[str, object]:
        facts = super().facts()
        facts["backend"] = BACKEND
        facts["architecture"] = getattr(self.cfg, "architecture", None)
        facts["processing"] = processing(self.model)
        return facts


def processing(bridge: nn.Module) -> dict[str, bool]:
    """Whether the bridge is in compatibility mode and whether it processed its weights (the bridge
    does not record which steps; every one of them keeps the parts exact)."""
    return {"compatibility_mode": bool(getattr(bridge, "compatibility_mode", False)),
            "weights_processed": bool(getattr(bridge, "_weights_processed", False))}
