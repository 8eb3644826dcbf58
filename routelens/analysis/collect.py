"""One prompt's contribution to the dataset statistics (analysis/stats.py): its routes, and the
attention to the previous token that finds previous-token and subword-merging heads.

Routes: one per target position (`positions="last"`: the last one; `"all"`: every position, each
its own route). From a route graph: each attention edge adds each head's share of the edge's
target node; each FFN edge pair adds the block's share; each FFN node adds every neuron's
importance in its block-output node (`Trace.neuron_shares`). Attention patterns: `A[h, i, i-1]`
summed over positions i >= 1 (previous-token score), and over positions whose token continues a
word (subword-merging score: a token that starts with a letter or digit after one that ends with
one, read from the tokens' own text).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import torch

from ..errors import InvalidArgumentError
from .stats import LabelStats, Stats

if TYPE_CHECKING:
    from ..routes.graph import RouteGraph
    from ..trace.trace import Trace
    from .dataset import Dataset
    from .run import Spec

POSITIONS = ("last", "all")


def target_positions(trace: Trace, positions: str) -> list[int]:
    if positions not in POSITIONS:
        raise InvalidArgumentError(f"positions must be 'last' or 'all', not {positions!r}")
    return [trace.n_positions - 1] if positions == "last" else list(range(trace.n_positions))


def add_route(stats: Stats, into: LabelStats, trace: Trace, graph: RouteGraph, prompt: int) -> None:
    """Add one route graph's components into `into` (one route) and offer its heads to the top lists."""
    threshold = graph.threshold
    head_sum = torch.zeros(stats.n_layers, stats.n_heads, dtype=torch.float64)
    head_on = torch.zeros(stats.n_layers, stats.n_heads, dtype=torch.bool)
    ffn_sum = torch.zeros(stats.n_layers, dtype=torch.float64)
    ffn_nodes: list[tuple[int, int]] = []
    for edge in graph.edges:
        if edge["kind"] == "attn":
            layer = int(edge["source"].split(":")[1])  # x:<l>:<j> -> a node of block l
            for h, share in edge.get("heads", {}).items():
                head_sum[layer, int(h)] += share
                head_on[layer, int(h)] |= share > threshold
        elif edge["kind"] == "ffn" and edge["target"].startswith("f:"):  # count each FFN node once
            _, layer, pos = edge["target"].split(":")
            ffn_sum[int(layer)] += edge["weight"]
            ffn_nodes.append((int(layer), int(pos)))
    into.routes += 1
    into.head_sum += head_sum
    into.head_count += head_on
    into.ffn_sum += ffn_sum
    into.ffn_count += ffn_sum > 0
    neuron_on = torch.zeros(stats.n_layers, stats.n_neurons, dtype=torch.bool)
    for layer, pos in ffn_nodes:
        labels, shares, _ = trace.neuron_shares(layer, pos)
        if len(labels) != stats.n_neurons:  # a mixture of experts: no fixed neuron index (docs/analysis.md)
            continue
        shares = shares.double().cpu()
        into.neuron_sum[layer] += shares
        neuron_on[layer] |= shares > threshold
    into.neuron_count += neuron_on
    target = graph.target.get("pos")
    for layer, head in head_on.nonzero().tolist():
        stats.offer((layer, head), [(float(head_sum[layer, head]), prompt, int(target))])


def add_patterns(into: LabelStats, trace: Trace) -> None:
    """Previous-token and subword-merging scores: A[h, i, i-1] summed (and counted) per head."""
    n = trace.n_positions
    if n < 2:
        return
    texts = trace.model.token_strings(trace.token_ids)
    cont = torch.tensor([_continues(texts[i - 1], texts[i]) for i in range(1, n)], dtype=torch.bool)
    rows = torch.arange(1, n)
    for layer in range(trace.n_layers):
        pattern = trace.capture.layers[layer].pattern_rows(rows).double().cpu()  # [H, n-1, n]
        prev = pattern[:, torch.arange(n - 1), rows - 1]  # [H, n-1]: A[h, i, i-1]
        into.prev_sum[layer] += prev.sum(-1)
        into.prev_n[layer] += n - 1
        into.sub_sum[layer] += prev[:, cont].sum(-1)
        into.sub_n[layer] += int(cont.sum())


def _continues(before: str, token: str) -> bool:
    """`token` continues the word `before` ends: it starts with a letter or digit and `before` ends with one."""
    return bool(token) and bool(before) and token[0].isalnum() and before[-1].isalnum()


def add_prompt(stats: Stats, trace: Trace, prompt: int, label: str, positions: str, threshold: float,
               max_edges: int | None = None) -> None:
    """Everything one traced prompt contributes, under `label`."""
    into = stats.label(label)
    into.prompts += 1
    for pos in target_positions(trace, positions):
        add_route(stats, into, trace, trace.graph(pos, threshold, max_edges=max_edges), prompt)
    add_patterns(into, trace)


def shard_stats(model: Any, dataset: Dataset, spec: Spec, start: int, stop: int,
                on_prompt: Callable[[], None] | None = None) -> Stats:
    """The statistics of prompts start..stop-1 on a loaded `model` (what every executor runs)."""
    adapter = model.adapter
    stats: Stats | None = None
    for prompt in dataset.prompts(start, stop):
        trace = model.trace(prompt.text, norm=spec.norm, store=False)
        if stats is None:
            stats = Stats(trace.n_layers, adapter.n_heads, neuron_count(trace))
        add_prompt(stats, trace, prompt.index, prompt.label, spec.positions, float(spec.threshold))
        if on_prompt is not None:
            on_prompt()
    assert stats is not None
    return stats


def neuron_count(trace: Any) -> int:
    """Neurons of a dense FFN (the first layer's); 0 for a mixture of experts (no fixed index)."""
    labels, _, _ = trace.neuron_shares(0, 0)
    return len(labels) if all(label.isdigit() for label in labels) else 0
