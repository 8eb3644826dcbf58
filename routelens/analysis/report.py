"""Reading an analysis back (`rl.load_analysis`) and reporting it: head importance as a layers x
heads heatmap, top neurons per layer, the components whose importance in one label differs most
from the rest, previous-token and subword-merging heads (docs/analysis.md).

Measures, per route (so datasets of any size compare): `mean` = summed importance / routes (a
head's average share of the route's attention edges), `frequency` = routes the component lies on /
routes. Previous-token score of a head: the mean of A[h, i, i-1] over positions i >= 1; its
subword score: the same mean over positions whose token continues a word.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import InvalidArgumentError
from .run import FORMAT, MERGED, META, PROMPTS, read_stats
from .stats import LabelStats, Stats

PREV_MIN = 0.4  # a head is a previous-token head when it gives the previous token this much attention on average
SUB_MIN = 0.4  # a subword-merging head: this much at word-continuing tokens ...
SUB_MARGIN = 0.15  # ... and this much more than at the other positions


@dataclass
class Analysis:
    """A finished analysis: its settings (`meta`), statistics and dataset."""

    folder: Path
    meta: dict[str, Any]
    stats: Stats
    _prompts: dict[int, dict[str, Any]] | None = None  # prompts.jsonl, read on first use

    def __repr__(self) -> str:
        spec = self.meta["spec"]
        return (f"<routelens.Analysis {spec['model']!r}: {self.meta['n_prompts']} prompts of {Path(spec['dataset']).name}, "
                f"labels {self.labels}, routes from {spec['positions']} positions at threshold {spec['threshold']:g}>")

    @property
    def labels(self) -> list[str]:
        return self.stats.label_names()

    def _of(self, label: str | None) -> LabelStats:
        if label is None:
            return self.stats.total()
        if label not in self.stats.labels:
            raise InvalidArgumentError(f"no label {label!r} in this analysis; its labels are {self.labels}")
        return self.stats.labels[label]

    def heads(self, label: str | None = None, measure: str = "mean") -> torch.Tensor:
        """[layers, heads]: mean importance per route, or the frequency of lying on a route."""
        s = self._of(label)
        value = {"mean": s.head_sum, "frequency": s.head_count}.get(measure)
        if value is None:
            raise InvalidArgumentError(f"measure must be 'mean' or 'frequency', not {measure!r}")
        return value / max(1, s.routes)

    def ffn(self, label: str | None = None) -> torch.Tensor:
        s = self._of(label)
        return s.ffn_sum / max(1, s.routes)

    def top_neurons(self, k: int = 5, label: str | None = None) -> list[list[dict[str, Any]]]:
        """Per layer, the k neurons of largest mean importance per route."""
        s = self._of(label)
        mean = s.neuron_sum / max(1, s.routes)
        out = []
        for layer in range(mean.shape[0]):
            values, idx = mean[layer].topk(min(k, mean.shape[1])) if mean.shape[1] else (torch.zeros(0), torch.zeros(0))
            out.append([{"layer": layer, "neuron": int(i), "mean": float(v),
                         "frequency": float(s.neuron_count[layer, int(i)] / max(1, s.routes))}
                        for v, i in zip(values.tolist(), idx.tolist())])
        return out

    def label_differences(self, k: int = 10) -> list[dict[str, Any]]:
        """For each label, the components (heads, FFN blocks, neurons) whose mean importance per
        route in that label differs most from the rest of the dataset's, largest |difference| first."""
        rows = []
        for label in self.labels:
            own, rest = self._of(label), _rest(self.stats, label)
            if rest.routes == 0:
                continue
            for kind, a, b in (("head", own.head_sum, rest.head_sum), ("ffn", own.ffn_sum, rest.ffn_sum),
                               ("neuron", own.neuron_sum, rest.neuron_sum)):
                diff = a / max(1, own.routes) - b / max(1, rest.routes)
                flat = diff.flatten()
                if flat.numel() == 0:
                    continue
                for i in flat.abs().topk(min(k, flat.numel())).indices.tolist():
                    where = _unravel(i, diff.shape)
                    rows.append({"label": label, "kind": kind, "layer": where[0],
                                 "index": where[1] if len(where) > 1 else None, "in_label": float((a / max(1, own.routes)).flatten()[i]),
                                 "rest": float((b / max(1, rest.routes)).flatten()[i]), "difference": float(flat[i])})
        rows.sort(key=lambda r: -abs(r["difference"]))
        return [r for r in rows][: k * max(1, len(self.labels))]

    def previous_token_scores(self) -> torch.Tensor:
        s = self.stats.total()
        return s.prev_sum / s.prev_n.clamp_min(1)

    def previous_token_heads(self, min_score: float = PREV_MIN) -> list[dict[str, Any]]:
        """Heads that attend to the previous token on average at least `min_score`, strongest first."""
        score = self.previous_token_scores()
        heads = [(float(score[l, h]), l, h) for l, h in (score >= min_score).nonzero().tolist()]
        return [{"layer": l, "head": h, "score": v} for v, l, h in sorted(heads, reverse=True)]

    def subword_merging_heads(self, min_score: float = SUB_MIN, margin: float = SUB_MARGIN) -> list[dict[str, Any]]:
        """Heads that attend to the previous token where a token continues a word, clearly more than
        at the other positions (the word's pieces are merged there)."""
        s = self.stats.total()
        sub = s.sub_sum / s.sub_n.clamp_min(1)
        other = (s.prev_sum - s.sub_sum) / (s.prev_n - s.sub_n).clamp_min(1)
        hits = ((sub >= min_score) & (sub - other >= margin)).nonzero().tolist()
        rows = [{"layer": l, "head": h, "score": float(sub[l, h]), "elsewhere": float(other[l, h])} for l, h in hits]
        return sorted(rows, key=lambda r: -r["score"])

    def top_prompts(self, layer: int, head: int) -> list[dict[str, Any]]:
        """The prompts where head (layer, head) mattered most: importance, prompt index, position,
        text and label (kept in the analysis folder's prompts.jsonl: no dataset file is read)."""
        if self._prompts is None:
            path = self.folder / PROMPTS
            if not path.exists():
                raise InvalidArgumentError(f"{str(self.folder)!r} has no {PROMPTS}; run the analysis again to write it")
            rows_of = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
            self._prompts = {int(r["prompt"]): r for r in rows_of}
        out = []
        for value, index, pos in self.stats.top.get((layer, head), []):
            prompt = self._prompts.get(index, {"text": "", "label": ""})
            out.append({"importance": value, "prompt": index, "pos": pos, "text": prompt["text"], "label": prompt["label"]})
        return out

    def summary(self, k: int = 5) -> dict[str, Any]:
        """What the report says, as JSON."""
        return {"meta": self.meta, "previous_token_heads": self.previous_token_heads(),
                "subword_merging_heads": self.subword_merging_heads(), "label_differences": self.label_differences(k),
                "top_neurons": self.top_neurons(k)}


def _rest(stats: Stats, label: str) -> LabelStats:
    out = LabelStats(stats.n_layers, stats.n_heads, stats.n_neurons)
    for name, s in stats.labels.items():
        if name != label:
            out.add(s)
    return out


def _unravel(i: int, shape: torch.Size) -> list[int]:
    out = []
    for size in reversed(shape):
        out.append(i % size)
        i //= size
    return list(reversed(out))


def load_analysis(folder: str | Path) -> Analysis:
    """A finished analysis from its output folder (`routelens analyze --out DIR`). Raises
    InvalidArgumentError for a folder that holds none, or an unfinished one (run it again to resume)."""
    folder = Path(folder).expanduser()
    meta_path = folder / META
    if not meta_path.exists():
        raise InvalidArgumentError(f"{str(folder)!r} holds no analysis ({META} is missing); run routelens analyze "
                                   "with --out there first")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT:
        raise InvalidArgumentError(f"{str(folder)!r} holds an analysis of format {meta.get('format')!r}; this "
                                   f"routelens reads {FORMAT}: run the analysis again")
    if not meta.get("complete") or not (folder / MERGED).exists():
        raise InvalidArgumentError(f"the analysis in {str(folder)!r} is not finished; run the same routelens analyze "
                                   "command again to resume it")
    return Analysis(folder, meta, read_stats(folder / MERGED))


def write_report(analysis: Analysis, out: str | Path, *, formats: tuple[str, ...] = ("svg", "png")) -> list[Path]:
    """The report's files in `out`: `heads.<fmt>` (mean head importance per route, a panel per
    label and one for all), `previous-token.<fmt>` (each head's mean attention to the previous
    token) and `report.json` (previous-token and subword-merging heads, label differences, top
    neurons). Returns the paths written."""
    from . import heatmap

    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    name = analysis.meta["spec"]["model"]
    panels = [heatmap.Panel("all", analysis.heads())] + [heatmap.Panel(label or "(no label)", analysis.heads(label))
                                                         for label in analysis.labels if len(analysis.labels) > 1]
    prev = [heatmap.Panel("all prompts", analysis.previous_token_scores())]
    written = []
    for fmt in formats:
        written.append(heatmap.write(panels, f"{name}: mean head importance per route", out / f"heads.{fmt}"))
        written.append(heatmap.write(prev, f"{name}: attention to the previous token", out / f"previous-token.{fmt}"))
    path = out / "report.json"
    path.write_text(json.dumps(analysis.summary(), indent=2, ensure_ascii=False))
    return written + [path]
