"""Persistent, size-bounded, multi-process-safe storage of traces (see store.py)."""

from .store import TraceStore, default_store

__all__ = ["TraceStore", "default_store"]
