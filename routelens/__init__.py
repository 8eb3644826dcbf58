"""routelens: information-flow routes of language models, decomposed exactly.

Layers, lowest first. A module imports only modules of its own layer or of lower ones, and the
imports form no circle (tests/test_layers.py reads every import and checks both):

  0. base: errors, interrupt, prompts
  1. model knowledge: models.adapters, models.adapters.*, models.tokens, models.catalog
  2. capture and the exact parts of each write: trace.attention, trace.finite, trace.capture, trace.decompose, trace.estimate, trace.knockout, trace.rows
  3. the math over captured tensors: routes.kernels, routes.importance, routes.nodes, routes.vocab, routes.qk, routes.contrast
  4. graph files: export, export.*
  5. route graphs: routes.graph, routes.verify, routes.compare
  6. the traced prompt: trace.trace, trace.contrastive, trace.generation
  7. persistent traces: store, store.*
  8. loaded models: models.model, models.loading
  9. what users call: routelens, __main__, analysis, analysis.*, cli, cli.*, server, server.*
"""

from __future__ import annotations

from .errors import (
    DownloadError,
    EmptyPromptError,
    ForbiddenError,
    GraphFileError,
    InvalidArgumentError,
    ModelNotFoundError,
    NonFiniteError,
    OutputFileError,
    PromptTooLongError,
    RoutelensError,
    TooLargeError,
    UnknownModelError,
    UnsupportedArchitectureError,
)
from .routes.compare import Comparison, compare_routes as compare
from .routes.graph import load_graph
from .analysis.report import Analysis, load_analysis
from .models.loading import load, wrap
from .models.model import Model
from .store import TraceStore

__version__ = "0.1.0"

__all__ = [
    "Comparison",
    "DownloadError",
    "EmptyPromptError",
    "ForbiddenError",
    "GraphFileError",
    "InvalidArgumentError",
    "Model",
    "ModelNotFoundError",
    "NonFiniteError",
    "OutputFileError",
    "PromptTooLongError",
    "RoutelensError",
    "TooLargeError",
    "TraceStore",
    "UnknownModelError",
    "UnsupportedArchitectureError",
    "compare",
    "load",
    "load_graph",
    "load_analysis",
    "Analysis",
    "wrap",
]
