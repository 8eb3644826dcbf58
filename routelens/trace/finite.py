"""Non-finite values in a forward pass: flagged cheaply while it runs, located exactly after.

Each hook of trace/capture.py reduces the part it sees to one flag (no per-element mask, no device
sync); only when a flag is down is the layer at fault replayed and scanned for the first position
holding NaN or infinity. The error names the layer, the part and the position, and what to do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..errors import NonFiniteError
from . import attention

if TYPE_CHECKING:
    from .capture import Capture


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


_NAMES = dict(_PARTS)


def _part_name(spec: Any, key: str) -> str:
    """The name of a flagged part; an output that is also the write (no post-norm) is the write."""
    if key == "attn_out" and spec.attn_post_norm is None:
        key = "attn_write"
    if key == "ffn_out" and spec.ffn_post_norm is None:
        key = "ffn_write"
    return _NAMES[key]


def all_finite(t: torch.Tensor) -> torch.Tensor:
    """A 0-d tensor on `t`'s device, True when `t` has no NaN or infinity: an fp32 sum is non-finite
    exactly when an element is (or, for bf16 near its maximum, when the sum overflows: the exact scan
    in `raise_first_non_finite` then finds nothing). One reduction, no per-element mask, no sync."""
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


def raise_first_non_finite(capture: Capture, flags: list[tuple[int, str, torch.Tensor]], dtype: torch.dtype) -> None:
    """Raise NonFiniteError at the first layer, part and position where the forward pass held NaN
    or infinity (fp16 overflows above 65504). The happy path costs one reduction per part, taken
    in the hooks, and a single device sync for the whole model; the layer at fault is replayed to
    find the position."""
    if not flags:
        return
    device = flags[0][2].device
    ok = torch.stack([f.to(device, non_blocking=True) for _, _, f in flags])
    if bool(ok.all()):
        return
    for (layer, key, _), good in zip(flags, ok.tolist()):
        if good or (key == "resid_in" and layer > 0):  # x[l] was flagged as layer l-1's output
            continue
        if key == "logits":
            t, name, at = capture.last_logits, "logits", None
        elif key == "resid_in":
            t, name, at = capture.resid(0), "embeddings", 0
        elif key == "resid_out":
            t, name, at = capture.resid(layer + 1), _NAMES["resid_out"], layer
        else:
            assert capture.adapter is not None
            replayed = capture.layers[layer]
            name, at = _part_name(capture.adapter.spec(layer), key), layer
            t = _first_bad_rows(replayed.attention) if key == "pattern" else getattr(replayed, key)
        pos = _first_position(t, name)
        if pos is None:
            continue  # only the sum overflowed (bf16 values near its maximum): all finite
        if key == "logits":
            pos = int(capture.token_ids.shape[0]) - 1
        raise NonFiniteError(non_finite_message(at if key != "logits" else None, pos, name, t, dtype),
                             layer=at if key != "logits" else None, pos=pos, part=name)


def _first_bad_rows(call: attention.AttentionCall) -> torch.Tensor:
    """The pattern's rows [H, k, T] from position 0 up to the first block holding a non-finite value."""
    n = call.n_positions
    rows = []
    for part in torch.arange(n).split(attention.block_rows(call.query.shape[1], n)):
        rows.append(call.pattern_rows(part).float().cpu())
        if not bool(torch.isfinite(rows[-1]).all()):
            break
    return torch.cat(rows, dim=1)


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
