"""Captures and importance rows to and from flat tensor dictionaries (safetensors files).

A capture is its residual stream x[0..L] and last logits (trace/capture.py: everything else is
replayed from them), written once and read back lazily: a tensor is read and its CRC-32 checked the
first time it is used, so a cached trace opens in milliseconds and a corrupted tensor is never
handed out.
"""

from __future__ import annotations

import zlib
from typing import Any, Callable

import torch

from ..trace.capture import Capture
from ..trace.trace import AttentionRow, FfnRow


class CorruptEntryError(Exception):
    """A stored tensor whose bytes do not match the checksum written with it."""


def crc(t: torch.Tensor) -> int:
    t = t.detach().contiguous().cpu()
    return zlib.crc32(t.reshape(-1).view(torch.uint8).numpy()) if t.numel() else 0


def capture_tensors(capture: Capture) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The capture as {name: tensor}: "last_logits" and "resid.<i>" for x[i], i = 0..L (no aliases:
    the format keeps the argument for the index's sake)."""
    tensors: dict[str, torch.Tensor] = {"last_logits": capture.last_logits.detach().cpu().contiguous()}
    for i in range(capture.n_layers + 1):
        tensors[f"resid.{i}"] = capture.resid(i).detach().cpu().contiguous()
    return tensors, {}


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


class _LazyResid:
    """x[0..L] read from the store on first use."""

    def __init__(self, source: LazySource, n_layers: int) -> None:
        self._source = source
        self._n = n_layers + 1

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: int) -> torch.Tensor:
        src = self._source
        if src.fresh is None:
            value = src.get(f"resid.{index}")
            if src.fresh is None:
                if value is None:
                    raise KeyError(f"resid.{index}")
                return value
        return src.fresh.resid(index)


class LazyCapture(Capture):
    """A Capture backed by a LazySource; its adapter is attached by the store (`adapter`)."""

    def __init__(self, source: LazySource, token_ids: list[int], n_layers: int, forward_seconds: float) -> None:
        self._source = source
        super().__init__(None, torch.tensor(token_ids, dtype=torch.long), _LazyResid(source, n_layers),
                         torch.empty(0), forward_seconds=forward_seconds, extra={"stored": True})

    @property
    def last_logits(self) -> torch.Tensor:
        t = self._source.get("last_logits")
        if self._source.fresh is not None:
            return self._source.fresh.last_logits
        return t  # type: ignore[return-value]

    def block_calls(self):  # type: ignore[no-untyped-def]
        if self._source.fresh is not None:
            return self._source.fresh.block_calls()
        return super().block_calls()


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
