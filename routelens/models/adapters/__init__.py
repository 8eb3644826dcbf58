"""One declared family per architecture (families.py); `adapter_for` picks it from the model's config.

Families from other packages join through `register_family` or the "routelens.families" entry point
group (a module-level `Family`, or a list of them): docs/adding-a-model.md.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points

from torch import nn

from ...errors import UnsupportedArchitectureError
from .base import Adapter, LayerModules
from .declare import DeclaredAdapter, Family, Refuse, Values
from .families import FAMILIES

ENTRY_POINT_GROUP = "routelens.families"
_registered: list[Family] = []
_entry_points_loaded = False
log = logging.getLogger(__name__)


def register_family(family: Family) -> Family:
    """Add a family (first match wins: a registered family overrides a built-in one of the same
    model_type). Returns it, so that a module can write `FAMILY = register_family(Family(...))`."""
    if not isinstance(family, Family):
        raise TypeError(f"register_family takes a routelens Family, not {type(family).__name__}")
    _registered[:] = [f for f in _registered if f.name != family.name or f.model_types != family.model_types]
    _registered.insert(0, family)
    return family


def unregister_family(family: Family) -> None:
    if family in _registered:
        _registered.remove(family)


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found = point.load()
        except Exception as exc:  # a broken plug-in must not break routelens; say which one
            log.warning("routelens: could not load the family entry point %s (%s): %s", point.name, point.value, exc)
            continue
        for family in found if isinstance(found, (list, tuple)) else [found]:
            if isinstance(family, Family) and family not in _registered:
                _registered.append(family)


def families() -> list[Family]:
    """Every family routelens knows: registered ones first, then the built-in FAMILIES."""
    _load_entry_points()
    return [*_registered, *FAMILIES]


def family_for(model_type: str | None) -> Family | None:
    return next((f for f in families() if model_type in f.model_types), None)


def supported_model_types() -> list[str]:
    return sorted({t for family in families() for t in family.model_types})


def adapter_for(model: nn.Module) -> Adapter:
    """The adapter for a transformers causal LM, or a clear refusal naming what is missing."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    family = family_for(model_type)
    if family is None:
        raise UnsupportedArchitectureError(
            f"routelens has no exact decomposition for architecture {model_type!r} "
            f"({type(model).__name__}); supported model types: {', '.join(supported_model_types())}. "
            "docs/adding-a-model.md says how to declare a new family"
        )
    return (family.adapter or DeclaredAdapter)(model, family)


__all__ = [
    "Adapter",
    "DeclaredAdapter",
    "FAMILIES",
    "Family",
    "LayerModules",
    "Refuse",
    "Values",
    "adapter_for",
    "families",
    "family_for",
    "register_family",
    "supported_model_types",
    "unregister_family",
]
