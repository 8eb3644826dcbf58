"""One adapter per architecture family; `adapter_for` picks it from the model's config."""

from __future__ import annotations

from torch import nn

from ...errors import UnsupportedArchitectureError
from .base import Adapter, LayerModules
from .decoder import GemmaAdapter, LlamaAdapter
from .gpt2 import GPT2Adapter
from .gptj import GPTJAdapter
from .moe import MoEAdapter
from .neox import NeoXAdapter
from .opt import OPTAdapter
from .phi import PhiAdapter

ADAPTERS: tuple[type[Adapter], ...] = (
    LlamaAdapter,
    GemmaAdapter,
    GPT2Adapter,
    OPTAdapter,
    NeoXAdapter,
    PhiAdapter,
    GPTJAdapter,
    MoEAdapter,
)


def supported_model_types() -> list[str]:
    return sorted(t for cls in ADAPTERS for t in cls.model_types)


def adapter_for(model: nn.Module) -> Adapter:
    """The adapter for a transformers causal LM, or a clear refusal naming what is missing."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    for cls in ADAPTERS:
        if model_type in cls.model_types:
            return cls(model)
    raise UnsupportedArchitectureError(
        f"routelens has no exact decomposition for architecture {model_type!r} "
        f"({type(model).__name__}); supported model types: {', '.join(supported_model_types())}"
    )


__all__ = ["ADAPTERS", "Adapter", "LayerModules", "adapter_for", "supported_model_types"]
