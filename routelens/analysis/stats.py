"""Statistics of routes over many prompts: for every attention head, FFN block and neuron, how often
it lies on a route and its summed importance, per label (docs/analysis.md).

A route contributes, for each attention edge it keeps, each head's share of the edge's target
node (`edge["heads"]`); for each FFN edge, the FFN block's share; for each FFN node, every neuron's
importance in that node (routes-math.md section 3, per-neuron parts). A component "lies on the
route" when one of those shares is above the route's threshold; `count` counts routes, not edges.
Sums are float64 and merge by addition, so shards computed anywhere (a laptop, Ray workers) add
up to exactly what one pass would give. The prompts where a head mattered most are kept as a
bounded top list per head (merged by value, then prompt index: order-independent).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import torch

TOP_PROMPTS = 5  # prompts kept per head: where it mattered most


@dataclass
class LabelStats:
    """Counts and summed importances of one label's routes. Shapes: heads [L, H], ffn [L], neurons
    [L, N]; prev [L, H] and prev_n: the attention to the previous token summed over positions
    (previous-token heads), sub [L, H] and sub_n the same at positions that continue a word."""

    n_layers: int
    n_heads: int
    n_neurons: int
    routes: int = 0
    prompts: int = 0
    head_count: torch.Tensor = field(init=False)
    head_sum: torch.Tensor = field(init=False)
    ffn_count: torch.Tensor = field(init=False)
    ffn_sum: torch.Tensor = field(init=False)
    neuron_count: torch.Tensor = field(init=False)
    neuron_sum: torch.Tensor = field(init=False)
    prev_sum: torch.Tensor = field(init=False)
    prev_n: torch.Tensor = field(init=False)
    sub_sum: torch.Tensor = field(init=False)
    sub_n: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        L, H, N = self.n_layers, self.n_heads, self.n_neurons
        for name, shape in TENSORS.items():
            size = tuple({"L": L, "H": H, "N": N}[c] for c in shape)
            setattr(self, name, torch.zeros(size, dtype=torch.float64))

    def add(self, other: LabelStats) -> None:
        """Add `other`'s statistics into these (exact: sums of counts and of float64 sums)."""
        self.routes += other.routes
        self.prompts += other.prompts
        for name in TENSORS:
            getattr(self, name).add_(getattr(other, name))

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        out = {f"{prefix}/{name}": getattr(self, name) for name in TENSORS}
        out[f"{prefix}/routes"] = torch.tensor([self.routes, self.prompts], dtype=torch.int64)
        return out

    @classmethod
    def from_tensors(cls, data: dict[str, torch.Tensor], prefix: str) -> LabelStats:
        heads = data[f"{prefix}/head_sum"]
        stats = cls(int(heads.shape[0]), int(heads.shape[1]), int(data[f"{prefix}/neuron_sum"].shape[1]))
        for name in TENSORS:
            setattr(stats, name, data[f"{prefix}/{name}"].to(torch.float64).clone())
        stats.routes, stats.prompts = (int(v) for v in data[f"{prefix}/routes"].tolist())
        return stats


# name -> shape letters (L layers, H heads, N neurons)
TENSORS = {"head_count": "LH", "head_sum": "LH", "ffn_count": "L", "ffn_sum": "L", "neuron_count": "LN",
           "neuron_sum": "LN", "prev_sum": "LH", "prev_n": "LH", "sub_sum": "LH", "sub_n": "LH"}


@dataclass
class Stats:
    """Statistics per label ("" for prompts without one) plus the top prompts per head."""

    n_layers: int
    n_heads: int
    n_neurons: int
    labels: dict[str, LabelStats] = field(default_factory=dict)
    # (layer, head) -> [(importance, prompt index, position)], the largest first, at most TOP_PROMPTS
    top: dict[tuple[int, int], list[tuple[float, int, int]]] = field(default_factory=dict)

    def label(self, name: str) -> LabelStats:
        if name not in self.labels:
            self.labels[name] = LabelStats(self.n_layers, self.n_heads, self.n_neurons)
        return self.labels[name]

    def total(self) -> LabelStats:
        """Every label together."""
        out = LabelStats(self.n_layers, self.n_heads, self.n_neurons)
        for stats in self.labels.values():
            out.add(stats)
        return out

    def add(self, other: Stats) -> None:
        """Merge `other` into these: exact and order-independent (the top lists included)."""
        for name, stats in other.labels.items():
            self.label(name).add(stats)
        for key, rows in other.top.items():
            self.offer(key, rows)

    def offer(self, key: tuple[int, int], rows: Iterable[tuple[float, int, int]]) -> None:
        merged = {(r[1], r[2]): r for r in self.top.get(key, [])}
        for r in rows:
            merged[(r[1], r[2])] = (float(r[0]), int(r[1]), int(r[2]))
        self.top[key] = sorted(merged.values(), key=lambda r: (-r[0], r[1], r[2]))[:TOP_PROMPTS]

    # ---- files ----------------------------------------------------------------------------------
    def tensors(self) -> dict[str, torch.Tensor]:
        """Flat tensors for a safetensors file; labels are indexed (their names go to the metadata)."""
        out: dict[str, torch.Tensor] = {}
        for i, name in enumerate(sorted(self.labels)):
            out.update(self.labels[name].tensors(f"label{i}"))
        keys = sorted(self.top)
        rows = [(k[0], k[1], r[1], r[2], r[0]) for k in keys for r in self.top[k]]
        out["top/index"] = torch.tensor([r[:4] for r in rows], dtype=torch.int64).reshape(-1, 4)
        out["top/value"] = torch.tensor([r[4] for r in rows], dtype=torch.float64)
        return out

    def label_names(self) -> list[str]:
        return sorted(self.labels)

    @classmethod
    def from_tensors(cls, data: dict[str, torch.Tensor], label_names: list[str]) -> Stats:
        first = LabelStats.from_tensors(data, "label0") if label_names else None
        dims = (first.n_layers, first.n_heads, first.n_neurons) if first else (0, 0, 0)
        stats = cls(*dims)
        for i, name in enumerate(label_names):
            stats.labels[name] = LabelStats.from_tensors(data, f"label{i}")
        for (layer, head, prompt, pos), value in zip(data["top/index"].tolist(), data["top/value"].tolist()):
            stats.offer((layer, head), [(value, prompt, pos)])
        return stats

    def to_meta(self) -> dict[str, Any]:
        return {"n_layers": self.n_layers, "n_heads": self.n_heads, "n_neurons": self.n_neurons,
                "labels": self.label_names()}
