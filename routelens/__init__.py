"""routelens: information-flow routes of language models, decomposed exactly."""

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
from .export import load_graph
from .models.loading import load, wrap
from .models.model import Model
from .store import TraceStore

__version__ = "0.1.0"

__all__ = [
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
    "load",
    "load_graph",
    "wrap",
]
