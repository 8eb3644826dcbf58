"""The endpoints of the dataset view (docs/api.md "Dataset analyses"): the finished analyses this
server was given (`serve --analysis DIR`, `analysis_dirs`), each one's heatmaps and findings, and
the prompts where one head mattered most.

Only the configured folders are read: an analysis is named by its folder's name, looked up among
them, never joined to a path, so no name reaches another folder. An analysis is read once and kept
(its statistics are small: a few [layers, heads] and [layers, neurons] tables); the prompts of a
head come from the folder's own prompts.jsonl: no dataset file is read, wherever the analysis says
its dataset was.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query

from ..errors import InvalidArgumentError, RoutelensError
from .config import ServerConfig


class UnknownAnalysisError(RoutelensError, LookupError):
    """An analysis name this server was not given."""


class Analyses:
    """The configured analyses by name, each loaded on first use."""

    def __init__(self, config: ServerConfig) -> None:
        self.folders = config.analysis_folders()
        self._loaded: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Any:
        folder = self.folders.get(name)
        if folder is None:
            known = ", ".join(repr(n) for n in self.folders) or "none"
            raise UnknownAnalysisError(
                f"no analysis named {name!r} on this server (it has: {known}); GET /api/analyses lists them, and "
                "an operator adds one with `routelens serve --analysis DIR` or \"analysis_dirs\" in the configuration")
        with self._lock:
            if name not in self._loaded:
                from ..analysis.report import load_analysis

                self._loaded[name] = load_analysis(folder)
            return self._loaded[name]

    def summary(self, name: str) -> dict[str, Any]:
        """A line of the list: what the picker shows; `error` says why an analysis cannot be read."""
        try:
            a = self.get(name)
        except RoutelensError as err:
            return {"name": name, "model": None, "n_prompts": 0, "labels": [], "positions": None, "threshold": None,
                    "error": str(err)}
        spec = a.meta["spec"]
        return {"name": name, "model": spec["model"], "n_prompts": a.meta["n_prompts"], "labels": a.labels,
                "positions": spec["positions"], "threshold": spec["threshold"], "norm": spec.get("norm", 1),
                "dataset": Path(spec["dataset"]).name, "error": None}


def matrix(t: Any) -> list[list[float]]:
    return [[float(v) for v in row] for row in t.tolist()]


def details(name: str, a: Any, k: int) -> dict[str, Any]:
    """Everything the dataset view draws of one analysis."""
    return {
        "name": name,
        "meta": a.meta,
        "labels": a.labels,
        "heads": {"all": matrix(a.heads()), "labels": {lab: matrix(a.heads(lab)) for lab in a.labels}},
        "frequency": {"all": matrix(a.heads(measure="frequency")),
                      "labels": {lab: matrix(a.heads(lab, "frequency")) for lab in a.labels}},
        "previous_token": matrix(a.previous_token_scores()),
        "previous_token_heads": a.previous_token_heads(),
        "subword_merging_heads": a.subword_merging_heads(),
        "label_differences": a.label_differences(k),
        "top_neurons": a.top_neurons(k),
    }


def add_analysis_endpoints(app: FastAPI, config: ServerConfig) -> Analyses:
    """Register /api/analyses, /api/analysis/{name} and /api/analysis/{name}/head on `app`."""
    analyses = Analyses(config)

    @app.get("/api/analyses")
    def list_analyses() -> list[dict[str, Any]]:
        """The dataset analyses this server shows (none unless it was given folders)."""
        return [analyses.summary(name) for name in analyses.folders]

    @app.get("/api/analysis/{name}")
    def analysis(name: str, k: int = Query(10, ge=1, le=100)) -> dict[str, Any]:
        """One analysis: head importance per route (mean and frequency, all prompts and per label),
        previous-token scores and heads, subword-merging heads, label differences, top neurons."""
        return details(name, analyses.get(name), k)

    @app.get("/api/analysis/{name}/head")
    def head_prompts(name: str, layer: int, head: int) -> dict[str, Any]:
        """The prompts where head (layer, head) mattered most: importance, prompt index, position,
        text and label."""
        a = analyses.get(name)
        n_layers, n_heads = a.stats.n_layers, a.stats.n_heads
        if not 0 <= layer < n_layers:
            raise InvalidArgumentError(f"layer {layer} is out of range: this analysis has layers 0..{n_layers - 1}")
        if not 0 <= head < n_heads:
            raise InvalidArgumentError(f"head {head} is out of range: this analysis has heads 0..{n_heads - 1}")
        prompts = a.top_prompts(layer, head)
        return {"layer": layer, "head": head, "prompts": prompts}

    return analyses
