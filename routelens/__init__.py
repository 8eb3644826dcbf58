"""routelens: information-flow routes of language models, decomposed exactly."""

from __future__ import annotations

from .errors import (
    DownloadError,
    EmptyPromptError,
    InvalidArgumentError,
    ModelNotFoundError,
    PromptTooLongError,
    RoutelensError,
    UnknownModelError,
    UnsupportedArchitectureError,
)
from .models.loading import load, wrap

__version__ = "0.1.0"

__all__ = [
    "DownloadError",
    "EmptyPromptError",
    "InvalidArgumentError",
    "ModelNotFoundError",
    "PromptTooLongError",
    "RoutelensError",
    "UnknownModelError",
    "UnsupportedArchitectureError",
    "load",
    "wrap",
]
