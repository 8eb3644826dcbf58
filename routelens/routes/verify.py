"""Checking a route by knockout (routes-math.md section 10, docs/verify.md).

A route claims that the attention edges it keeps carry the prediction. `verify_route` runs the
model again with every attention edge outside the route removed (trace/knockout.py) and reports
the target token's probability and logit with the route alone, against runs that remove random
attention edges of the same total attention weight.

Units. An attention edge is (layer l, query i, key j), all heads together (the route's unit). Its
weight is sum_h A[h, i, j] of the unedited run, so a layer's edges into query i weigh H together
(one per head: the total is about layers x heads x (target + 1)).
Only queries i <= target count: later positions cannot reach the target. The random baseline
draws unmasked edges (j <= i, inside any sliding window) uniformly without replacement (a seeded
torch.Generator), whole edges, until the removed weight reaches the route's; the last edge may
overshoot, and the weight actually removed is reported.

Memory: one float32 weight and one flag per edge, layers x n (n + 1) / 2 for n = target + 1
positions, read a block of pattern rows at a time; bounded by MAX_EDGES.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import torch

from .. import interrupt
from ..errors import InvalidArgumentError, TooLargeError, UnsupportedArchitectureError
from ..trace.knockout import Knockout, knockout_logits

if TYPE_CHECKING:
    from ..trace.trace import Trace
    from .graph import RouteGraph

MAX_POSITIONS = 1024  # positions up to the target (the prefix each knockout runs)
MAX_EDGES = 1 << 23  # layers x n (n + 1) / 2 edges: 32 MiB of weights, 64 MiB per random permutation
MAX_TRIALS = 50  # random knockouts per report (one forward pass each)
CURVE_THRESHOLDS = (0.01, 0.02, 0.04, 0.08, 0.16)  # the curve's default points
MAX_THRESHOLDS = 16  # points of one curve (each a route graph and 1 + trials forward passes)
ROW_BLOCK_ELEMENTS = 1 << 22  # pattern elements (heads x rows x T) read at once


@dataclass
class VerifyReport:
    """The outcome of one route's knockout check. Probabilities are softmax over the whole
    vocabulary at the target position; logits are the model's raw logits there."""

    pos: int
    token: str
    token_id: int
    threshold: float
    renormalise: bool
    seed: int
    full: dict[str, float]  # {prob, logit}: nothing removed
    route: dict[str, Any]  # {prob, logit, removed_weight, removed_edges, kept_edges}
    random: list[dict[str, Any]] = field(default_factory=list)  # each {prob, logit, removed_weight, removed_edges}
    total_weight: float = 0.0  # weight of every edge that could be removed (about layers x heads x (pos + 1))
    total_edges: int = 0
    foil: str | None = None  # a contrastive route's foil: every measure then has "diff" = logit[token] - logit[foil]
    foil_id: int | None = None

    @property
    def random_mean(self) -> dict[str, float]:
        n = max(1, len(self.random))
        return {k: sum(r[k] for r in self.random) / n for k in self._keys()}

    def _keys(self) -> tuple[str, ...]:
        return ("prob", "logit", "diff") if self.foil_id is not None else ("prob", "logit")

    @property
    def shares(self) -> dict[str, float]:
        """What the route keeps of the full run: route prob / full prob, route logit / full logit
        (NaN when the full value is 0)."""
        return {k: self.route[k] / self.full[k] if self.full[k] != 0 else math.nan for k in self._keys()}

    @property
    def measure(self) -> str:
        """What the route claims to carry: the token's probability ("prob"), or for a contrastive
        route the logit difference to the foil ("diff")."""
        return "diff" if self.foil_id is not None else "prob"

    @property
    def beats_random(self) -> bool:
        """The route keeps more of `measure` than every random knockout of the same weight. A
        logit difference counts in the full run's direction: when the model prefers the foil
        (full diff < 0), keeping the contrast means staying as negative."""
        key = self.measure
        sign = -1.0 if key == "diff" and self.full[key] < 0 else 1.0
        return bool(self.random) and sign * self.route[key] > max(sign * r[key] for r in self.random)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": {"pos": self.pos, "token": self.token, "token_id": self.token_id, "foil": self.foil,
                       "foil_id": self.foil_id},
            "threshold": self.threshold,
            "renormalise": self.renormalise,
            "seed": self.seed,
            "full": dict(self.full),
            "route": dict(self.route),
            "random": [dict(r) for r in self.random],
            "random_mean": self.random_mean,
            "shares": self.shares,
            "measure": self.measure,
            "beats_random": self.beats_random,
            "total_weight": self.total_weight,
            "total_edges": self.total_edges,
        }

    def __repr__(self) -> str:
        """One line at a Python prompt (the dataclass's own repr would print every random run)."""
        return f"<routelens.VerifyReport {self}>"

    def __str__(self) -> str:
        mean, best = self.random_mean, max((r["prob"] for r in self.random), default=math.nan)
        return (f"route at threshold {self.threshold:g} to {self.token!r} at position {self.pos}"
                f"{' (renormalised rows)' if self.renormalise else ''}: full p={self.full['prob']:.4f}, "
                f"route p={self.route['prob']:.4f} ({self.shares['prob']:.1%}) removing "
                f"{self.route['removed_weight']:.2f} of {self.total_weight:.2f} attention weight; random "
                f"mean p={mean['prob']:.4f}, max {best:.4f}; {self._diff_words()}"
                f"{'beats' if self.beats_random else 'does not beat'} random ({self.measure})")

    def _diff_words(self) -> str:
        if self.foil_id is None:
            return ""
        best = max((r["diff"] for r in self.random), default=math.nan)
        return (f"logit difference to {self.foil!r}: full {self.full['diff']:.3f}, route {self.route['diff']:.3f}, "
                f"random mean {self.random_mean['diff']:.3f}, max {best:.3f}; ")


@dataclass
class EdgeTable:
    """The head-summed weight of every edge (l, i, j), j <= i < n, of the unedited run, and whether
    the model's mask lets it exist. Flat index l * P + i (i + 1) / 2 + j, P = n (n + 1) / 2."""

    n_layers: int
    n: int
    weights: torch.Tensor  # [L * P] float32
    valid: torch.Tensor  # [L * P] bool

    @property
    def per_layer(self) -> int:
        return self.n * (self.n + 1) // 2

    def index(self, layer: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        return layer * self.per_layer + i * (i + 1) // 2 + j

    def unravel(self, flat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(layer, i, j) of flat indices (long tensors)."""
        layer, k = flat // self.per_layer, flat % self.per_layer
        i = ((torch.sqrt(8.0 * k.double() + 1.0) - 1.0) / 2.0).floor().long()
        i = i + ((i + 1) * (i + 2) // 2 <= k).long() - (i * (i + 1) // 2 > k).long()  # float rounding
        return layer, i, k - i * (i + 1) // 2


def edge_table(trace: Trace, n: int) -> EdgeTable:
    """Read every layer's pattern rows 0..n-1 a block at a time (module docstring)."""
    n_layers = trace.n_layers
    weights, valid = [], []
    for layer in range(n_layers):
        interrupt.check()  # a safe point per layer
        call = trace.capture.layers[layer].attention
        heads = int(call.query.shape[1])
        step = max(1, ROW_BLOCK_ELEMENTS // max(1, heads * call.n_positions))
        for start in range(0, n, step):
            stop = min(n, start + step)
            rows = call.pattern_rows(list(range(start, stop)))  # [H, r, T]
            w = rows.float().sum(0)[:, :n].cpu()
            i = torch.arange(start, stop)[:, None]
            tril = torch.arange(n)[None, :] <= i
            weights.append(w[tril])
            valid.append(_allowed(call, start, stop, n)[tril])
    return EdgeTable(n_layers, n, torch.cat(weights), torch.cat(valid))


def _allowed(call: Any, start: int, stop: int, n: int) -> torch.Tensor:
    """Whether the model's mask lets query rows start..stop-1 read keys 0..n-1: [r, n] bool."""
    causal = torch.arange(n)[None, :] <= torch.arange(start, stop)[:, None]
    mask = call.mask
    if mask is None:
        return causal
    m = (mask[0, 0] if mask.dim() == 4 else mask)[start:stop, :n].cpu()
    allowed = m if m.dtype == torch.bool else m > torch.finfo(m.dtype).min / 2
    return causal & allowed


def route_pairs(graph: RouteGraph) -> dict[int, list[tuple[int, int]]]:
    """The attention edges of a route graph: layer -> [(query i, key j)], from "x:l:j" -> "a:l:i"
    (sequential block) or -> "x:l+1:i" (parallel block)."""
    kept: dict[int, list[tuple[int, int]]] = {}
    for edge in graph.edges:
        if edge["kind"] != "attn":
            continue
        _, layer, j = edge["source"].split(":")
        i = edge["target"].split(":")[2]
        kept.setdefault(int(layer), []).append((int(i), int(j)))
    return kept


@dataclass
class _Setup:
    """What every report of one target shares: the edge table and the unedited logits."""

    pos: int
    table: EdgeTable
    full: torch.Tensor  # [V] float32
    token_id: int
    token: str
    foil_id: int | None = None
    foil: str | None = None


def _check_options(renormalise: Any, trials: Any, seed: Any) -> None:
    if not isinstance(renormalise, bool):
        raise InvalidArgumentError(f"renormalise must be True or False, not {renormalise!r}")
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise InvalidArgumentError(f"trials must be a whole number of random knockouts, at least 1, not {trials!r}")
    if trials > MAX_TRIALS:
        raise TooLargeError(f"{trials} random knockouts asked for; at most {MAX_TRIALS} run per report "
                            "(each is a forward pass): ask for fewer trials")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InvalidArgumentError(f"seed must be an integer, not {seed!r}")


def check_size(n_layers: int, pos: int) -> None:
    """Raise TooLargeError when a check at position `pos` of a model of `n_layers` layers is past
    MAX_POSITIONS / MAX_EDGES: callable before anything is traced (the CLI does)."""
    n = pos + 1
    edges = n_layers * n * (n + 1) // 2
    if n > MAX_POSITIONS or edges > MAX_EDGES:
        most = max(p for p in range(1, MAX_POSITIONS + 1) if n_layers * p * (p + 1) // 2 <= MAX_EDGES)
        raise TooLargeError(
            f"checking a route at position {pos} weighs {edges} attention edges over {n} positions; the bound is "
            f"{MAX_POSITIONS} positions and {MAX_EDGES} edges (for this model: positions up to {most - 1}); "
            "pick an earlier target position or a shorter prompt")


def _setup(trace: Trace, pos: int, token: int | str | None, foil: int | str | None = None) -> _Setup:
    if not trace.adapter.uses_routelens_attention:
        raise UnsupportedArchitectureError(
            "checking a route by knockout edits attention weights inside routelens's own attention, and this "
            "backend (TransformerLens) computes attention itself; load the model with rl.load or rl.wrap of the "
            "transformers model to check routes")
    check_size(trace.n_layers, pos)
    full = knockout_logits(trace.adapter, trace.capture.token_ids, Knockout.removing({}), pos)
    token_id = int(full.argmax()) if token is None else trace.token_id(token, pos=pos)
    foil_id = None if foil is None else trace.token_id(foil, pos=pos, role="foil")
    names = trace.model.token_strings([token_id] + ([foil_id] if foil_id is not None else []))
    return _Setup(pos, edge_table(trace, pos + 1), full, token_id, names[0], foil_id,
                  names[1] if foil_id is not None else None)


def _measure(logits: torch.Tensor, setup: _Setup) -> dict[str, float]:
    logits = logits.double()
    out = {"prob": float(logits.softmax(-1)[setup.token_id]), "logit": float(logits[setup.token_id])}
    if setup.foil_id is not None:
        out["diff"] = out["logit"] - float(logits[setup.foil_id])
    return out


def _report(trace: Trace, graph: RouteGraph, setup: _Setup, renormalise: bool, trials: int, seed: int) -> VerifyReport:
    table, pos = setup.table, setup.pos
    if (graph.target.get("pos") != pos or list(graph.tokens) != list(trace.tokens)
            or graph.model.get("name") != trace.model.name):
        raise InvalidArgumentError("the route graph is not this trace's route from one target position; "
                                   "build it with trace.graph(target, threshold)")
    kept = route_pairs(graph)
    lij = torch.tensor([(l, i, j) for l, pairs in kept.items() for i, j in pairs], dtype=torch.long).reshape(-1, 3)
    kept_flat = table.index(lij[:, 0], lij[:, 1], lij[:, 2])
    valid_w = table.weights.double() * table.valid
    total = float(valid_w.sum())
    n_valid = int(table.valid.sum())
    removed = total - float(valid_w[kept_flat].sum())
    route_logits = knockout_logits(trace.adapter, trace.capture.token_ids,
                                   Knockout.keeping(kept, renormalise=renormalise), pos)
    route = {**_measure(route_logits, setup), "removed_weight": removed,
             "removed_edges": n_valid - int(table.valid[kept_flat].sum()), "kept_edges": int(kept_flat.numel())}
    gen = torch.Generator().manual_seed(seed)
    baseline = []
    for _ in range(trials):
        picked, weight = _random_edges(table, removed, gen)
        layer, i, j = table.unravel(picked)
        removal = {int(l): torch.stack([i[layer == l], j[layer == l]], 1) for l in layer.unique().tolist()}
        logits = knockout_logits(trace.adapter, trace.capture.token_ids,
                                 Knockout.removing(removal, renormalise=renormalise), pos)
        baseline.append({**_measure(logits, setup), "removed_weight": weight,
                       "removed_edges": int(picked.numel())})
    return VerifyReport(pos=pos, token=setup.token, token_id=setup.token_id, threshold=float(graph.threshold),
                        renormalise=renormalise, seed=seed, full=_measure(setup.full, setup),
                        route=route, random=baseline, total_weight=total, total_edges=n_valid,
                        foil=setup.foil, foil_id=setup.foil_id)


def _random_edges(table: EdgeTable, weight: float, gen: torch.Generator) -> tuple[torch.Tensor, float]:
    """Unmasked edges in a uniformly random order, whole, until their weight reaches `weight`:
    (flat indices, weight removed)."""
    if weight <= 0:
        return torch.zeros(0, dtype=torch.long), 0.0
    order = torch.randperm(table.weights.numel(), generator=gen)
    order = order[table.valid[order]]
    cum = table.weights[order].double().cumsum(0)
    count = min(int(torch.searchsorted(cum, torch.tensor([weight], dtype=torch.float64))[0]) + 1, order.numel())
    return order[:count], float(cum[count - 1]) if count else 0.0


def verify_route(trace: Trace, graph: RouteGraph, *, token: int | str | None = None, renormalise: bool = False,
                 trials: int = 5, seed: int = 0) -> VerifyReport:
    """Check `graph` (a route of `trace` from one target position) by knockout (module docstring).

    token: the token whose probability is reported (id, one-token string; None: the graph's own
    target token, else the top prediction of the unedited run). A contrastive graph's foil is
    measured too: each measure then has "diff" = logit[token] - logit[foil]. renormalise: divide each edited row by its new sum. trials: random
    knockouts (1..MAX_TRIALS), drawn with torch.Generator().manual_seed(seed).
    Raises InvalidArgumentError (bad options, a graph of several targets or of another trace),
    TooLargeError (past MAX_POSITIONS / MAX_EDGES / MAX_TRIALS), UnsupportedArchitectureError
    (a backend that computes attention itself)."""
    _check_options(renormalise, trials, seed)
    pos = graph.target.get("pos")
    if not isinstance(pos, int):
        raise InvalidArgumentError("a route is checked from one target position; build the graph with a single "
                                   "target (trace.graph(target=-1))")
    if token is None:
        token = graph.target.get("token_id")
    setup = _setup(trace, trace.position(pos), token, graph.target.get("foil_id"))
    return _report(trace, graph, setup, renormalise, trials, seed)


def verify_curve(trace: Trace, target: int, thresholds: Sequence[float], *, token: int | str | None = None,
                 foil: int | str | None = None, renormalise: bool = False, trials: int = 5,
                 seed: int = 0) -> list[VerifyReport]:
    """`verify_route` of the route from `target` at each threshold (1..MAX_THRESHOLDS of them):
    one report per threshold, in order; the edge weights and the unedited run are computed once,
    and each threshold's random trials use the same seed (each report equals verify_route's)."""
    _check_options(renormalise, trials, seed)
    thresholds = list(thresholds)
    if not 1 <= len(thresholds) <= MAX_THRESHOLDS:
        raise InvalidArgumentError(f"a curve takes 1 to {MAX_THRESHOLDS} thresholds, not {len(thresholds)}")
    for t in thresholds:
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 <= float(t) <= 1.0:
            raise InvalidArgumentError(f"threshold must be a number between 0 and 1, not {t!r}")
    setup = _setup(trace, trace.position(target), token, foil)
    return [_report(trace, trace.graph(target=setup.pos, threshold=float(t), token=setup.token_id,
                                       foil=setup.foil_id), setup, renormalise, trials, seed)
            for t in thresholds]
