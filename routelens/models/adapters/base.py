"""What the tracer needs to know about one architecture family, and nothing more.

An adapter maps a `transformers` causal LM onto the residual-stream picture of routes-math.md:
which module of each decoder layer is the attention, which is the FFN, which norms come after
them, how to get each key-value head's value vectors and the output projection's weights.
Everything model-specific lives in the subclasses; the tracer and the route code only see this
interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn


@dataclass
class LayerModules:
    """The modules of one decoder layer the tracer hooks."""

    block: nn.Module
    attn: nn.Module
    ffn: nn.Module
    ffn_out: nn.Module | None  # the FFN's output projection, its input is the neuron activation
    attn_post_norm: nn.Module | None = None  # Gemma 2/3 "sandwich" norm after attention
    ffn_post_norm: nn.Module | None = None
    parallel: bool = False  # attention and FFN both read the block input (Pythia, Phi, GPT-J)
    experts: nn.Module | None = None  # MoE: called as experts(hidden, top_k_index, top_k_weights)
    attn_norm: nn.Module | None = None  # the norm whose output the attention reads (routes section 9)
    write_scale: float | None = None  # a constant each write is multiplied by before the add (Granite)


def linear_weight(module: nn.Module) -> torch.Tensor:
    """Weight as [out, in] for both nn.Linear and GPT-2's Conv1D ([in, out])."""
    if type(module).__name__ == "Conv1D":
        return module.weight.t()
    return module.weight


def linear_bias(module: nn.Module) -> torch.Tensor | None:
    return getattr(module, "bias", None)


class Adapter:
    """Base adapter: subclasses set `model_types` and implement the layer mapping."""

    model_types: ClassVar[tuple[str, ...]] = ()
    family: ClassVar[str] = ""
    # Gemma's RMSNorm multiplies by (1 + weight); others by weight.
    norm_weight_offset: ClassVar[float] = 0.0

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.config = model.config
        self.check_supported()
        self._specs: list[LayerModules] | None = None

    def spec(self, layer: int) -> LayerModules:
        """The modules of one layer (the mapping is built once)."""
        if self._specs is None:
            self._specs = self.layers()
        return self._specs[layer]

    # ---- shape facts -------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return int(self.config.num_hidden_layers)

    @property
    def n_heads(self) -> int:
        return int(self.config.num_attention_heads)

    @property
    def n_kv_heads(self) -> int:
        return int(getattr(self.config, "num_key_value_heads", None) or self.n_heads)

    @property
    def d_model(self) -> int:
        return int(self.config.hidden_size)

    @property
    def head_dim(self) -> int:
        return int(getattr(self.config, "head_dim", None) or self.d_model // self.n_heads)

    @property
    def vocab_size(self) -> int:
        return int(self.lm_head().weight.shape[0])

    @property
    def context_length(self) -> int | None:
        for name in ("max_position_embeddings", "n_positions", "n_ctx"):
            value = getattr(self.config, name, None)
            if value:
                return int(value)
        return None

    # ---- to implement per family -------------------------------------------------------
    def check_supported(self) -> None:
        """Raise UnsupportedArchitectureError for a configuration the family cannot decompose."""

    def layers(self) -> list[LayerModules]:
        raise NotImplementedError

    def values(self, layer: int, normed: torch.Tensor) -> torch.Tensor:
        """Value vectors `W_V n + b_V` per key-value head: [T, n_kv_heads, head_dim]."""
        raise NotImplementedError

    def out_proj(self, layer: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attention output projection `W_O` as [d_model, n_heads * head_dim] and its bias."""
        raise NotImplementedError

    def ffn_out_proj(self, layer: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """FFN output projection as [d_model, d_ffn] and its bias (dense FFNs)."""
        out = self.spec(layer).ffn_out
        assert out is not None
        return linear_weight(out), linear_bias(out)

    def final_norm(self) -> nn.Module:
        raise NotImplementedError

    def lm_head(self) -> nn.Module:
        return self.model.get_output_embeddings()

    # ---- shared behaviour ----------------------------------------------------------------
    def kv_head_of(self, head: int) -> int:
        """The key-value head a query head reads (grouped-query attention)."""
        return head // (self.n_heads // self.n_kv_heads)

    @torch.no_grad()
    def unembed(self, resid: torch.Tensor, *, apply_norm: bool = True) -> torch.Tensor:
        """Logits of residual vectors, exactly as the model computes them after its last block."""
        h = self.final_norm()(resid) if apply_norm else resid
        logits = self.scale_logits(self.lm_head()(h))
        cap = self.final_softcap()
        if cap:
            logits = torch.tanh(logits / cap) * cap
        return logits

    def lm_head_linear(self, h: torch.Tensor) -> torch.Tensor:
        """The unembedding matrix alone (no bias, no soft-cap): the linear map direct effects use."""
        return self.scale_logits(torch.nn.functional.linear(h.float(), self.lm_head().weight.float()))

    def final_softcap(self) -> float | None:
        """The soft-cap `c` of the logits, `c * tanh(logits / c)` (Gemma 2/3), or None."""
        return getattr(self.config, "final_logit_softcapping", None)

    def scale_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """A constant factor some families put on the logits (Cohere's logit_scale, Granite's
        1 / logits_scaling), in the model's own operation; none by default."""
        return logits

    def norm_gain(self, norm: nn.Module) -> torch.Tensor | None:
        weight = getattr(norm, "weight", None)
        if weight is None:
            return None
        return weight.float() + self.norm_weight_offset

    @staticmethod
    def norm_eps(norm: nn.Module) -> float:
        for name in ("eps", "variance_epsilon", "epsilon"):
            if hasattr(norm, name):
                return float(getattr(norm, name))
        raise AttributeError(f"cannot find the epsilon of {type(norm).__name__}")

    @staticmethod
    def is_layer_norm(norm: nn.Module) -> bool:
        return isinstance(norm, nn.LayerNorm)

    def post_norm_scale(self, norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Per-position scale `s` with `norm(x) == s * x`, for an RMSNorm applied after a write.

        routes-math.md section 2: a post-norm is linearised with the scale of the whole write,
        so every part is multiplied by the same `s` and the parts still sum to what was written.
        """
        if self.is_layer_norm(norm):
            raise NotImplementedError("a LayerNorm after a write is not linear; no family uses one")
        xf = x.float()
        inv_rms = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.norm_eps(norm))
        gain = self.norm_gain(norm)
        return inv_rms * gain if gain is not None else inv_rms.expand_as(xf)

    def final_norm_linear(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The final norm's first-order map of a write `z` into residual `y` (section 5)."""
        norm = self.final_norm()
        yf, zf = y.float(), z.float()
        gain = self.norm_gain(norm)
        eps = self.norm_eps(norm)
        if self.is_layer_norm(norm):
            std = torch.sqrt(yf.var(-1, unbiased=False, keepdim=True) + eps)
            out = (zf - zf.mean(-1, keepdim=True)) / std
        else:
            out = zf * torch.rsqrt(yf.pow(2).mean(-1, keepdim=True) + eps)
        return out * gain if gain is not None else out

    def facts(self) -> dict[str, object]:
        n_params = sum(p.numel() for p in self.model.parameters())
        param = next(self.model.parameters())
        return {
            "family": self.family,
            "model_type": self.config.model_type,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "n_kv_heads": self.n_kv_heads,
            "d_model": self.d_model,
            "head_dim": self.head_dim,
            "vocab": self.vocab_size,
            "parameters": n_params,
            "context_length": self.context_length,
            "device": str(param.device),
            "dtype": str(param.dtype).replace("torch.", ""),
            "parallel_blocks": any(spec.parallel for spec in self.layers()),
        }

    # ---- backends that are not transformers modules (TransformerLens) ----
    # trace/capture.py runs a transformers causal LM with trace/attention.py's "routelens" attention
    # and hooks the LayerModules of each layer. A backend that runs the model its own way and
    # computes attention itself (adapters/transformer_lens.py) says so here; the defaults are the
    # transformers behaviour, unchanged.
    uses_routelens_attention: ClassVar[bool] = True  # switch the model to the "routelens" attention
    # the model loop reads `block(...)[0]` (GPT-Neo, Bloom, Falcon): the identity pass answers a tuple
    block_returns_tuple: ClassVar[bool] = False

    def forward_logits(self, input_ids: torch.Tensor) -> torch.Tensor | None:
        """Run the whole model on `input_ids` [1, T] without a cache: its logits [1, T', V] (T' = T,
        or 1 for the last position only). None (the default): capture.py runs it as a transformers
        causal LM."""
        return None

    def hook_points(self, layer: int) -> list[tuple[str, nn.Module]] | None:
        """(part, module) pairs whose forward output is that part of layer `layer`, in computation
        order: "attn_in", "pattern" (the attention pattern [1, H, T, T]), "attn_out", "attn_write",
        "ffn_in", "ffn_act", "ffn_out", "ffn_write". None (the default): capture.py hooks the
        modules of `spec(layer)` and reads the pattern from the routelens attention."""
        return None
