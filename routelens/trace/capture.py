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
from ..errors import NonFiniteError
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
    capture = Capture(
        token_ids=token_ids.cpu(),
        layers=layers,
        last_logits=out.logits[0, -1].detach(),
        forward_seconds=seconds,
    )
    check_finite(capture, next(model.parameters()).dtype)
    return capture


# What the guard checks in each layer, in the order the block computes it, with the name an error
# uses. A field that is the same tensor as one before it (no post-norm: the write is the output)
# is checked once, under its later name ("FFN write" rather than "FFN output before its post-norm").
_PARTS = (
    ("attn_in", "attention input (normalised residual)"),
    ("pattern", "attention pattern"),
    ("attn_out", "attention output before its post-norm"),
    ("attn_write", "attention write"),
    ("ffn_in", "FFN input (normalised residual)"),
    ("ffn_act", "FFN neuron activations"),
    ("ffn_out", "FFN output before its post-norm"),
    ("ffn_write", "FFN write"),
    ("resid_out", "block output (residual stream)"),
)


def _checked(capture: Capture) -> list[tuple[int | None, str, torch.Tensor]]:
    """(layer, part, tensor) in computation order: embeddings, each block's parts, the logits."""
    out: list[tuple[int | None, str, torch.Tensor]] = []
    if capture.layers:
        out.append((0, "embeddings", capture.layers[0].resid_in))
    for i, layer in enumerate(capture.layers):
        parts = [(name, getattr(layer, key)) for key, name in _PARTS if getattr(layer, key) is not None]
        for k, (name, t) in enumerate(parts):
            if not any(t is later for _, later in parts[k + 1:]):
                out.append((i, name, t))
    out.append((None, "logits", capture.last_logits))
    return out


def _all_finite(t: torch.Tensor) -> torch.Tensor:
    """A 0-d tensor on `t`'s device, True when `t` has no NaN or infinity: an fp32 sum is non-finite
    exactly when an element is (or, for bf16 near its maximum, when the sum overflows: the exact scan
    in `check_finite` then finds nothing). One reduction, no per-element mask, no sync."""
    if not t.is_floating_point():
        return torch.ones((), dtype=torch.bool, device=t.device)
    return torch.isfinite(t.sum(dtype=torch.float32))


def _first_position(t: torch.Tensor, part: str) -> int | None:
    """The first position (row) holding a non-finite value; None when every element is finite."""
    bad = ~torch.isfinite(t)
    if part == "logits":
        return 0 if bool(bad.any()) else None
    if part == "attention pattern":  # [H, T, T]: the query position
        rows = bad.any(dim=2).any(dim=0)
    else:
        rows = bad.reshape(t.shape[0], -1).any(dim=1)
    hits = rows.nonzero()
    return int(hits[0, 0]) if hits.numel() else None


def check_finite(capture: Capture, dtype: torch.dtype) -> None:
    """Raise NonFiniteError at the first layer, part and position where the captured forward pass
    holds NaN or infinity (fp16 overflows above 65504). The happy path costs one reduction per
    captured tensor and a single device sync for the whole model."""
    checked = _checked(capture)
    if not checked:
        return
    device = checked[0][2].device
    flags = torch.stack([_all_finite(t).to(device, non_blocking=True) for _, _, t in checked])
    if bool(flags.all()):
        return
    n = int(capture.token_ids.shape[0])
    for (layer, part, t), ok in zip(checked, flags.tolist()):
        if ok:
            continue
        pos = _first_position(t, part)
        if pos is None:
            continue  # only the sum overflowed (bf16 values near its maximum): all finite
        if part == "logits":
            pos = n - 1
        raise NonFiniteError(non_finite_message(layer, pos, part, t, dtype), layer=layer, pos=pos, part=part)


def non_finite_message(layer: int | None, pos: int, part: str, row: torch.Tensor, dtype: torch.dtype,
                       consequence: str = "so nothing was traced") -> str:
    """The one-line error: where (layer, part, position), what (NaN or infinite), and what to do."""
    if part == "attention pattern":
        row = row[:, pos]
    elif row.dim() > 1:
        row = row[pos]
    kind = "NaN" if bool(torch.isnan(row).any()) else "infinite"
    label = "model's logits" if part == "logits" else part
    where = f"the {label} at position {pos}" if layer is None else f"the {part} of layer {layer} at position {pos}"
    if dtype == torch.float16:
        advice = ("the model overflowed float16 (largest value 65504); "
                  "load it in bf16 or fp32 (dtype=\"bf16\" / \"fp32\", CLI --dtype bf16 / fp32)")
    elif dtype == torch.bfloat16:
        advice = "the model overflowed bfloat16; load it in fp32 (dtype=\"fp32\", CLI --dtype fp32)"
    else:
        advice = f"the model computed it in {str(dtype).replace('torch.', '')}: its weights may be damaged"
    return f"{where} is {kind}, {consequence}: {advice}"


def _keep_last_logits(model: nn.Module) -> dict[str, Any]:
    """Ask for the last position's logits only, when the model supports it (saves T x V memory)."""
    import inspect

    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return {}
    return {"logits_to_keep": 1} if "logits_to_keep" in params else {}
