"""One forward pass with hooks that keep exactly what the decomposition needs.

Per layer: the residual entering and leaving the block, the attention's normalised input, its
pattern `A` (read from the model's own eager computation, so masks, sliding windows and
soft-capping are whatever the model did), its output before and after any post-norm, the FFN's
input, neuron activations (input of the output projection) and output before and after any
post-norm. Nothing of shape T x T x d is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .. import interrupt
from ..models.adapters.base import Adapter


@dataclass
class LayerCapture:
    resid_in: torch.Tensor  # x[l]          [T, d]
    attn_in: torch.Tensor  # n[l]          [T, d]
    pattern: torch.Tensor  # A             [H, T, T]
    attn_out: torch.Tensor  # o before post-norm [T, d]
    attn_write: torch.Tensor  # a = post_norm(o) or o [T, d]
    ffn_in: torch.Tensor  # FFN input     [T, d]
    ffn_act: torch.Tensor | None  # neuron activations [T, d_ffn] (dense FFNs)
    ffn_out: torch.Tensor  # f before post-norm [T, d]
    ffn_write: torch.Tensor  # f = post_norm(f) or f [T, d]
    resid_out: torch.Tensor  # x[l+1]        [T, d]
    routing: tuple[torch.Tensor, torch.Tensor] | None = None  # MoE (expert index, weight) [T, k]


@dataclass
class Capture:
    token_ids: torch.Tensor  # [T]
    layers: list[LayerCapture]
    last_logits: torch.Tensor  # the model's own logits at the last position [V]
    forward_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _first(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


def _hidden_arg(args: tuple, kwargs: dict) -> torch.Tensor:
    if args:
        return args[0]
    return kwargs["hidden_states"]


def _flat(t: torch.Tensor, width: int | None = None) -> torch.Tensor:
    """Drop the batch dimension (batch is always 1); OPT reshapes to [B*T, d] inside its FFN."""
    t = t.detach()
    if t.dim() == 3:
        assert t.shape[0] == 1
        t = t[0]
    return t


def run_with_capture(adapter: Adapter, token_ids: torch.Tensor) -> Capture:
    """Run the model once on `token_ids` ([T]) and return what every layer read and wrote."""
    import time

    model = adapter.model
    specs = adapter.layers()
    store: list[dict[str, torch.Tensor]] = [{} for _ in specs]
    handles: list[Any] = []

    def keep_input(i: int, key: str):
        def hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
            if key == "resid_in":
                interrupt.check()  # a safe point before each block: a cancelled request stops here
            store[i][key] = _flat(_hidden_arg(args, kwargs))

        return hook

    def keep_output(i: int, key: str):
        def hook(_module: nn.Module, _args: tuple, output: Any) -> None:
            store[i][key] = _flat(_first(output))

        return hook

    def keep_attention(i: int):
        def hook(_module: nn.Module, _args: tuple, output: Any) -> None:
            if not isinstance(output, (tuple, list)) or len(output) < 2 or output[1] is None:
                raise RuntimeError(
                    "the attention module returned no attention weights; routelens runs models "
                    "with attn_implementation='eager' to read them"
                )
            store[i]["attn_out"] = _flat(output[0])
            store[i]["pattern"] = output[1].detach()[0]

        return hook

    def keep_routing(i: int):
        def hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
            index = args[1] if len(args) > 1 else kwargs["top_k_index"]
            weight = args[2] if len(args) > 2 else kwargs["top_k_weights"]
            store[i]["routing"] = (index.detach(), weight.detach())

        return hook

    for i, spec in enumerate(specs):
        handles.append(spec.block.register_forward_pre_hook(keep_input(i, "resid_in"), with_kwargs=True))
        handles.append(spec.block.register_forward_hook(keep_output(i, "resid_out")))
        handles.append(spec.attn.register_forward_pre_hook(keep_input(i, "attn_in"), with_kwargs=True))
        handles.append(spec.attn.register_forward_hook(keep_attention(i)))
        handles.append(spec.ffn.register_forward_pre_hook(keep_input(i, "ffn_in"), with_kwargs=True))
        if spec.ffn_out is not None:
            handles.append(spec.ffn_out.register_forward_pre_hook(keep_input(i, "ffn_act"), with_kwargs=True))
            handles.append(spec.ffn_out.register_forward_hook(keep_output(i, "ffn_out")))
        else:
            handles.append(spec.ffn.register_forward_hook(keep_output(i, "ffn_out")))
        if spec.experts is not None:
            handles.append(spec.experts.register_forward_pre_hook(keep_routing(i), with_kwargs=True))
        if spec.attn_post_norm is not None:
            handles.append(spec.attn_post_norm.register_forward_hook(keep_output(i, "attn_write")))
        if spec.ffn_post_norm is not None:
            handles.append(spec.ffn_post_norm.register_forward_hook(keep_output(i, "ffn_write")))

    device = next(model.parameters()).device
    ids = token_ids.to(device)[None]
    try:
        start = time.perf_counter()
        with torch.inference_mode():
            out = model(input_ids=ids, use_cache=False, **_keep_last_logits(model))
        seconds = time.perf_counter() - start
    finally:
        for handle in handles:
            handle.remove()

    layers = []
    for i, s in enumerate(store):
        layers.append(
            LayerCapture(
                resid_in=s["resid_in"],
                attn_in=s["attn_in"],
                pattern=s["pattern"],
                attn_out=s["attn_out"],
                attn_write=s.get("attn_write", s["attn_out"]),
                ffn_in=s["ffn_in"],
                ffn_act=s.get("ffn_act"),
                ffn_out=s["ffn_out"],
                ffn_write=s.get("ffn_write", s["ffn_out"]),
                resid_out=s["resid_out"],
                routing=s.get("routing"),
            )
        )
    return Capture(
        token_ids=token_ids.cpu(),
        layers=layers,
        last_logits=out.logits[0, -1].detach(),
        forward_seconds=seconds,
    )


def _keep_last_logits(model: nn.Module) -> dict[str, Any]:
    """Ask for the last position's logits only, when the model supports it (saves T x V memory)."""
    import inspect

    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return {}
    return {"logits_to_keep": 1} if "logits_to_keep" in params else {}
