"""Exceptions routelens raises for bad input: one type per mistake, each message says what to do."""

from __future__ import annotations


class RoutelensError(Exception):
    """Base class of every error routelens raises on purpose."""


class UnknownModelError(RoutelensError, LookupError):
    """A name that is neither a catalog entry, a local path, nor a loadable hub id."""


class ModelNotFoundError(RoutelensError, FileNotFoundError):
    """A local model path (directory or .gguf file) that does not exist."""


class UnsupportedArchitectureError(RoutelensError, NotImplementedError):
    """A model whose architecture routelens cannot decompose exactly."""


class EmptyPromptError(RoutelensError, ValueError):
    """A prompt with no tokens."""


class PromptTooLongError(RoutelensError, ValueError):
    """A prompt longer than the model's context window."""


class InvalidArgumentError(RoutelensError, ValueError):
    """A position, threshold or other argument out of range."""


class DownloadError(RoutelensError, RuntimeError):
    """A catalog model that could not be fetched or failed its hash check."""


class ForbiddenError(RoutelensError, PermissionError):
    """Something this configuration does not allow (custom models in demo mode, files outside
    the dataset folder, remote code or pickled weights nobody allowed)."""


class TooLargeError(RoutelensError, ValueError):
    """A result that would exceed a size bound set before it is built (edges of a route graph,
    cells of a matrix): the message says which bound and how to stay under it."""


class GraphFileError(RoutelensError, ValueError):
    """A route graph file (or dictionary) that is not a valid routelens.graph/1 document: the
    message names the offending node or edge and says what to do."""


class OutputFileError(RoutelensError, OSError):
    """A file routelens was asked to write that cannot be written there (a folder, a read-only
    place, a full disk); nothing is left behind."""


class NonFiniteError(RoutelensError, FloatingPointError):
    """A forward pass whose residual stream, writes or logits hold NaN or infinity (typically fp16
    overflowing above 65504): not a result, so nothing is traced or stored. `layer` is the first
    block where it appears (None for the model's logits), `pos` the first position there, `part`
    what overflowed ("FFN write", "attention write", "block output", ...)."""

    def __init__(self, message: str, layer: int | None = None, pos: int = -1, part: str = "") -> None:
        super().__init__(message)
        self.layer = layer
        self.pos = pos
        self.part = part

    def __reduce__(self):  # keep the attributes across pickling (worker processes, caches)
        return (type(self), (str(self), self.layer, self.pos, self.part))
