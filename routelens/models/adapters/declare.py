"""An architecture family as a declaration: where its modules are, what kind of norm and block it has.

Most decoder-only families differ only in names: the path of the decoder layers, of the attention
and FFN modules, of the value and output projections, whether attention and FFN read one norm in
parallel, which norms follow a write, a constant multiplier on each write. A `Family` says those
things as data; `DeclaredAdapter` turns it into the `Adapter` interface the tracer uses, and checks
it against the model on construction (every declared path exists, shapes agree). Code is needed
only where an architecture really differs (OPT's projection after the final norm, routed experts):
such a family names a subclass of `DeclaredAdapter` in `adapter`.

docs/adding-a-model.md is the guide; tests/test_conformance.py checks every registered family on a
tiny random model (parts rebuild every write, importances equal an independent reference, the
logit lens of the last residual is the model's logits).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import UnsupportedArchitectureError
from .base import Adapter, LayerModules, linear_bias, linear_weight

NormKind = Literal["rms", "layer"]
# How the value rows sit in the module `Values.path` names (rows of its [out, in] weight):
#   "own":       the module is the value projection, rows [Hkv * dh]
#   "qkv":       rows [q (H * dh) | k (Hkv * dh) | v (Hkv * dh)]    (GPT-2, Phi-3, GPT-BigCode)
#   "per_head":  rows per head [q_h | k_h | v_h], h = 0..H-1       (GPT-NeoX, Bloom, Persimmon)
#   "per_group": rows per kv group [q_g,0 .. q_g,r-1 | k_g | v_g]  (Falcon's new decoder architecture)
ValueLayout = Literal["own", "qkv", "per_head", "per_group"]


@dataclass(frozen=True)
class Values:
    """Where the value projection's rows are: a module path (relative to a decoder layer), a layout."""

    path: str
    layout: ValueLayout = "own"


@dataclass(frozen=True)
class Refuse:
    """Refuse a configuration the family cannot decompose exactly: `when(config.<attribute>)`."""

    attribute: str
    when: Callable[[Any], bool]
    message: str


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: a declaration is one object
class Family:
    """One architecture family, declared. Paths are dotted attribute paths: `layers`, `final_norm`
    and `lm_head` from the causal LM; every other one from a decoder layer. A path ending in "?"
    is optional (absent in some layers or some configurations: then None).

    `gqa`: the config's num_key_value_heads is how many key-value heads there are (grouped-query
    attention); False for families whose every head has its own (the attribute may still be set).
    `parallel`: attention and FFN both read the block input (True, False, or the name of a boolean
    config attribute). `write_scale`: the name of a config attribute each attention and FFN write is
    multiplied by before the residual add (Granite's residual_multiplier). `logit_scale` /
    `logit_divisor`: config attributes the logits are multiplied / divided by (Cohere, Granite).
    `norm_eps`: the epsilon of norms that keep none as an attribute (OLMo's fixed 1e-5).
    `text_config`: the attribute of a multimodal config that holds the language model's numbers
    (Gemma 3 checkpoints with a vision tower: routes cover the text decoder).
    `final_softcap`: False where the model class ignores a final_logit_softcapping its config sets
    (transformers 5's Gemma3ForConditionalGeneration does).
    `tiny`: config overrides the conformance kit builds tiny models with, one dict per variant
    (quirks turned on: windows, soft-caps, biases); `tiny_class`: the transformers class to build
    when AutoModelForCausalLM does not map the config to it.
    """

    name: str
    model_types: tuple[str, ...]
    layers: str = "model.layers"
    final_norm: str = "model.norm"
    attn: str = "self_attn"
    attn_norm: str | None = "input_layernorm"
    values: Values = Values("self_attn.v_proj")
    out_proj: str = "self_attn.o_proj"
    ffn: str = "mlp"
    ffn_out: str | None = "mlp.down_proj"
    attn_post_norm: str | None = None
    ffn_post_norm: str | None = None
    experts: str | None = None
    parallel: bool | str = False
    gqa: bool = True
    norm: NormKind = "rms"
    norm_offset: float = 0.0
    norm_eps: float | None = None
    text_config: str | None = None
    final_softcap: bool = True
    write_scale: str | None = None
    logit_scale: str | None = None
    logit_divisor: str | None = None
    lm_head: str | None = None
    refuse: tuple[Refuse, ...] = ()
    tiny: tuple[dict[str, Any], ...] = ({},)
    tiny_class: str | None = None
    adapter: type[DeclaredAdapter] | None = None
    notes: str = ""


def resolve(root: Any, path: str | None) -> Any:
    """The object at a dotted path ("mlp.down_proj", "model.layers"); None for a missing optional
    ("...?") path. Raises UnsupportedArchitectureError for a missing required one."""
    if path is None:
        return None
    optional = path.endswith("?")
    obj = root
    for name in path.rstrip("?").split("."):
        obj = getattr(obj, name, None)
        if obj is None:
            if optional:
                return None
            raise UnsupportedArchitectureError(
                f"{type(root).__name__} has no {path!r}: the model does not match its family's declaration "
                "(a different transformers version, or a variant the family does not cover)"
            )
    return obj


class DeclaredAdapter(Adapter):
    """The Adapter of a declared family. Subclass it only for what a declaration cannot say."""

    def __init__(self, model: nn.Module, family: Family) -> None:
        self.declaration = family
        self.family = family.name  # type: ignore[misc]
        self.model_types = family.model_types  # type: ignore[misc]
        self.norm_weight_offset = family.norm_offset  # type: ignore[misc]
        super().__init__(model)
        if family.text_config is not None:
            self.config = getattr(model.config, family.text_config)
            self.check_supported()  # the refusals read the text decoder's config
        self._check_declaration()

    # ---- the declaration, checked -------------------------------------------------------
    def check_supported(self) -> None:
        for rule in self.declaration.refuse:
            if rule.when(getattr(self.config, rule.attribute, None)):
                raise UnsupportedArchitectureError(rule.message)

    def _check_declaration(self) -> None:
        """Every declared module exists and the value / output projections have the shapes the
        declared head counts imply: a wrong declaration fails here, not with wrong numbers."""
        layers = self.layers()
        if len(layers) != self.n_layers:
            raise UnsupportedArchitectureError(
                f"{self.family}: {self.declaration.layers!r} has {len(layers)} layers, the config says {self.n_layers}")
        w_o, _ = self.out_proj(0)
        if tuple(w_o.shape) != (self.d_model, self.n_heads * self.head_dim):
            raise UnsupportedArchitectureError(
                f"{self.family}: output projection {tuple(w_o.shape)} is not "
                f"[d_model={self.d_model}, heads x head_dim={self.n_heads * self.head_dim}]")
        w_v, _ = self.value_weight(0)
        if w_v.shape[0] != self.n_kv_heads * self.head_dim:
            raise UnsupportedArchitectureError(
                f"{self.family}: value rows {w_v.shape[0]} are not kv heads x head_dim = "
                f"{self.n_kv_heads} x {self.head_dim}")

    @property
    def n_kv_heads(self) -> int:
        return super().n_kv_heads if self.declaration.gqa else self.n_heads

    def decoder_layers(self) -> Any:
        return resolve(self.model, self.declaration.layers)

    def is_parallel(self) -> bool:
        parallel = self.declaration.parallel
        if isinstance(parallel, str):
            return bool(getattr(self.config, parallel))
        return parallel

    def write_multiplier(self) -> float | None:
        name = self.declaration.write_scale
        if name is None:
            return None
        value = float(getattr(self.config, name))
        return None if value == 1.0 else value

    def layers(self) -> list[LayerModules]:
        d = self.declaration
        parallel = self.is_parallel()
        scale = self.write_multiplier()
        specs = []
        for layer in self.decoder_layers():
            specs.append(
                LayerModules(
                    block=layer,
                    attn=resolve(layer, d.attn),
                    ffn=resolve(layer, d.ffn),
                    ffn_out=resolve(layer, d.ffn_out),
                    attn_post_norm=resolve(layer, d.attn_post_norm),
                    ffn_post_norm=resolve(layer, d.ffn_post_norm),
                    parallel=parallel,
                    experts=resolve(layer, d.experts),
                    attn_norm=resolve(layer, d.attn_norm),
                    write_scale=scale,
                )
            )
        return specs

    # ---- projections ---------------------------------------------------------------------
    def value_weight(self, layer: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The value projection's weight [Hkv * dh, d_model] and bias, cut out of a fused one."""
        values = self.declaration.values
        module = resolve(self.decoder_layers()[layer], values.path)
        w, b = linear_weight(module), linear_bias(module)
        h, kv, dh = self.n_heads, self.n_kv_heads, self.head_dim
        if values.layout == "own":
            return w, b
        if values.layout == "qkv":
            start = (h + kv) * dh
            return w[start : start + kv * dh], (b[start : start + kv * dh] if b is not None else None)
        if values.layout == "per_head":
            rows = w.view(h, 3, dh, -1)[:, 2].reshape(h * dh, -1)
            return rows, (b.view(h, 3, dh)[:, 2].reshape(h * dh) if b is not None else None)
        if values.layout == "per_group":
            per = h // kv + 2
            rows = w.view(kv, per, dh, -1)[:, -1].reshape(kv * dh, -1)
            return rows, (b.view(kv, per, dh)[:, -1].reshape(kv * dh) if b is not None else None)
        raise ValueError(f"unknown value layout {values.layout!r}")

    def values(self, layer: int, normed: torch.Tensor) -> torch.Tensor:
        w, b = self.value_weight(layer)
        return F.linear(normed, w, b).view(*normed.shape[:-1], self.n_kv_heads, self.head_dim)

    def out_proj(self, layer: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        module = resolve(self.decoder_layers()[layer], self.declaration.out_proj)
        return linear_weight(module), linear_bias(module)

    def final_norm(self) -> nn.Module:
        return resolve(self.model, self.declaration.final_norm)

    def lm_head(self) -> nn.Module:
        if self.declaration.lm_head is not None:
            return resolve(self.model, self.declaration.lm_head)
        return self.model.get_output_embeddings()

    # ---- norms and logits ----------------------------------------------------------------
    def norm_eps(self, norm: nn.Module) -> float:  # type: ignore[override]
        for name in ("eps", "variance_epsilon", "epsilon"):
            if hasattr(norm, name):
                return float(getattr(norm, name))
        if self.declaration.norm_eps is not None:
            return self.declaration.norm_eps
        raise AttributeError(f"cannot find the epsilon of {type(norm).__name__}: declare the family's norm_eps")

    def is_layer_norm(self, norm: nn.Module) -> bool:  # type: ignore[override]
        return self.declaration.norm == "layer" or isinstance(norm, nn.LayerNorm)

    def final_softcap(self) -> float | None:
        return super().final_softcap() if self.declaration.final_softcap else None

    def scale_logits(self, logits: torch.Tensor) -> torch.Tensor:
        d = self.declaration
        if d.logit_scale is not None:
            logits = logits * getattr(self.config, d.logit_scale)
        if d.logit_divisor is not None:
            logits = logits / getattr(self.config, d.logit_divisor)
        return logits
