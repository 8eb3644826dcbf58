"""Captures and importance rows to and from flat tensor dictionaries (safetensors files).

A capture is written with each storage once (x[l+1] is both layer l's output and layer l+1's
input) and read back lazily: a tensor is read and its CRC-32 checked the first time it is used,
so a cached trace opens in milliseconds and a corrupted tensor is never handed out.
"""

from __future__ import annotations

import zlib
from typing import Any, Callable

import torch

from ..trace.capture import Capture, LayerCapture
from ..trace.trace import AttentionRow, FfnRow

LAYER_FIELDS = ("resid_in", "attn_in", "pattern", "attn_out", "attn_write", "ffn_in", "ffn_act", "ffn_out", "ffn_write", "resid_out")


class CorruptEntryError(Exception):
    """A stored tensor whose bytes do not match the checksum written with it."""


def crc(t: torch.Tensor) -> int:
    t = t.detach().contiguous().cpu()
    return zlib.crc32(t.reshape(-1).view(torch.uint8).numpy()) if t.numel() else 0


def _storage_key(t: torch.Tensor) -> tuple:
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)


def capture_tensors(capture: Capture) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The capture as {name: tensor} with every storage once, and {alias: stored name}."""
    tensors: dict[str, torch.Tensor] = {"last_logits": capture.last_logits.detach().cpu().contiguous()}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for i, layer in enumerate(capture.layers):
        fields: dict[str, torch.Tensor | None] = {f: getattr(layer, f) for f in LAYER_FIELDS}
        if layer.routing is not None:
            fields["routing_index"], fields["routing_weight"] = layer.routing
        for field, t in fields.items():
            if t is None:
                continue
            name = f"{i}.{field}"
            key = _storage_key(t)
            if key in seen:
                aliases[name] = seen[key]
                continue
            seen[key] = name
            tensors[name] = t.detach().cpu().contiguous()
    return tensors, aliases


class LazySource:
    """Reads a stored capture's tensors on first use, checks each one, and recovers from damage.

    `recompute` runs the forward pass again; it is called at most once, the first time a tensor
    fails its check, and from then on every tensor comes from the fresh capture.
    """

    def __init__(self, opener: Callable[[], Any], names: dict[str, int], aliases: dict[str, str], device: torch.device,
                 recompute: Callable[[], Capture], on_corrupt: Callable[[str], None]) -> None:
        self.opener = opener
        self.handle: Any = None
        self.names = names  # stored name -> crc32
        self.aliases = aliases
        self.device = device
        self.recompute = recompute
        self.on_corrupt = on_corrupt
        self.fresh: Capture | None = None
        self.loaded: dict[str, torch.Tensor] = {}

    def get(self, name: str) -> torch.Tensor | None:
        """The stored tensor, or None when absent or after a recovery (then read `fresh`)."""
        if self.fresh is not None:
            return None
        name = self.aliases.get(name, name)
        if name in self.loaded:
            return self.loaded[name]
        if name not in self.names:
            return None
        try:
            if self.handle is None:
                self.handle = self.opener()
            t = self.handle.get_tensor(name)
            if crc(t) != self.names[name]:
                raise CorruptEntryError(f"tensor {name} does not match its checksum")
        except Exception as err:  # a damaged header, a truncated or vanished file, a flipped byte
            self._recover(f"{type(err).__name__}: {err}")
            return None
        # a copy in torch's own (aligned) memory: vectorised reductions round by alignment, and
        # a stored trace must give the very numbers of a fresh one
        t = t.to(self.device, copy=True)
        self.loaded[name] = t
        return t

    def _recover(self, why: str) -> None:
        self.on_corrupt(why)
        self.fresh = self.recompute()


class LazyLayer:
    """A LayerCapture whose tensors are read from the store the first time they are used."""

    def __init__(self, source: LazySource, index: int) -> None:
        self._source = source
        self._index = index

    def __getattr__(self, field: str) -> Any:
        if field.startswith("_") or field not in LAYER_FIELDS + ("routing",):
            raise AttributeError(field)
        src = self._source
        if src.fresh is None:
            if field == "routing":
                index = src.get(f"{self._index}.routing_index")
                value: Any = None if index is None else (index, src.get(f"{self._index}.routing_weight"))
            else:
                value = src.get(f"{self._index}.{field}")
            if src.fresh is None:
                if value is None and field not in ("ffn_act", "routing"):
                    raise AttributeError(field)
                return value
        return getattr(src.fresh.layers[self._index], field)


class LazyCapture(Capture):
    """A Capture backed by a LazySource (same fields; layers are LazyLayer objects)."""

    def __init__(self, source: LazySource, token_ids: list[int], n_layers: int, forward_seconds: float) -> None:
        self._source = source
        self._token_ids = torch.tensor(token_ids, dtype=torch.long)
        self._layers = [LazyLayer(source, i) for i in range(n_layers)]
        self.forward_seconds = forward_seconds
        self.extra = {"stored": True}

    @property  # type: ignore[override]
    def token_ids(self) -> torch.Tensor:
        return self._token_ids

    @property  # type: ignore[override]
    def layers(self) -> list[LayerCapture]:
        if self._source.fresh is not None:
            return self._source.fresh.layers
        return self._layers  # type: ignore[return-value]

    @property  # type: ignore[override]
    def last_logits(self) -> torch.Tensor:
        t = self._source.get("last_logits")
        if self._source.fresh is not None:
            return self._source.fresh.last_logits
        return t  # type: ignore[return-value]


# ---- importance rows ------------------------------------------------------------------------------
Predictions = dict[int, tuple[torch.Tensor, torch.Tensor]]


def rows_tensors(attn: dict[tuple[int, int], AttentionRow], ffn: dict[tuple[int, int], FfnRow],
                 predictions: Predictions | None = None) -> dict[str, torch.Tensor]:
    """Importance rows and top-k predictions as a few tensors: one float64 table per node kind
    (layer, position and the scalar importances, exact), all head rows concatenated, and the
    predictions' ids and probabilities per k."""
    out: dict[str, torch.Tensor] = {}
    for k, (ids, probs) in (predictions or {}).items():
        out[f"pred.{k}.ids"], out[f"pred.{k}.probs"] = ids.contiguous(), probs.contiguous()
    if attn:
        items = sorted(attn.items())
        out["attn.table"] = torch.tensor(
            [[lay, pos, r.resid, r.bias, float("nan") if r.ffn is None else r.ffn, float(r.degenerate)] for (lay, pos), r in items],
            dtype=torch.float64,
        )
        out["attn.heads"] = torch.cat([r.heads.reshape(-1) for _, r in items]).contiguous()
    if ffn:
        out["ffn.table"] = torch.tensor(
            [[lay, pos, r.resid, r.ffn, float(r.degenerate)] for (lay, pos), r in sorted(ffn.items())], dtype=torch.float64
        )
    return out


def rows_from_tensors(t: dict[str, torch.Tensor], n_heads: int
                      ) -> tuple[dict[tuple[int, int], AttentionRow], dict[tuple[int, int], FfnRow], Predictions]:
    attn: dict[tuple[int, int], AttentionRow] = {}
    ffn: dict[tuple[int, int], FfnRow] = {}
    preds: Predictions = {}
    for name in t:
        if name.startswith("pred.") and name.endswith(".ids"):
            k = name.split(".")[1]
            preds[int(k)] = (t[name].clone(), t[f"pred.{k}.probs"].clone())
    if "attn.table" in t:
        heads = t["attn.heads"]
        sizes = [n_heads * (int(row[1]) + 1) for row in t["attn.table"].tolist()]
        # one aligned allocation per row, as a fresh computation makes: float sums round by alignment
        chunks = [c.clone() for c in heads.split(sizes)]
        for (lay, pos, resid, bias, f, deg), chunk in zip(t["attn.table"].tolist(), chunks):
            attn[(int(lay), int(pos))] = AttentionRow(resid=resid, heads=chunk.view(n_heads, int(pos) + 1), bias=bias,
                                                      ffn=None if f != f else f, degenerate=bool(deg))
    if "ffn.table" in t:
        for lay, pos, resid, f, deg in t["ffn.table"].tolist():
            ffn[(int(lay), int(pos))] = FfnRow(resid=resid, ffn=f, degenerate=bool(deg))
    return attn, ffn, preds
