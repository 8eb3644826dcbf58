"""What the server holds: loaded models (loading in the background) and a bounded trace cache.

Tracing registers hooks on the model's modules, so two computations on one model must never
overlap: every use of a model goes through the device's work queue (work.py), one at a time.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ..errors import ForbiddenError, RoutelensError, UnknownModelError
from ..models.loading import load
from ..models.model import Model
from ..trace.trace import Trace
from .config import ServerConfig


class UnknownTraceError(RoutelensError, LookupError):
    """A trace id the server does not hold (never made, or evicted from the cache)."""


@dataclass
class ModelSlot:
    name: str
    state: str = "loading"  # loading | ready | error
    stage: str = "loading"
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    model: Model | None = None
    error: RoutelensError | None = None
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def device(self) -> str:
        """Where the model computes ("cpu", "cuda:0"): work on one device runs one at a time."""
        if self.model is None:
            return "none"
        return str(next(self.model.hf_model.parameters()).device)

    def status(self) -> dict[str, Any]:
        end = self.finished if self.finished is not None else time.monotonic()
        return {
            "model": self.name,
            "state": self.state,
            "stage": self.stage,
            "elapsed": round(end - self.started, 3),
            "message": str(self.error) if self.error else "",
            "facts": self.model.facts() if self.model is not None else None,
        }


class ModelRegistry:
    """Loads models on request, one background thread each; keeps at most `max_loaded`."""

    def __init__(self, config: ServerConfig, max_loaded: int = 2) -> None:
        self.config = config
        self.max_loaded = max_loaded
        self.slots: OrderedDict[str, ModelSlot] = OrderedDict()
        self.lock = threading.Lock()

    def check_allowed(self, name: str) -> None:
        if not isinstance(name, str) or not name.strip():
            raise UnknownModelError("no model named: choose one of the configured models")
        if name not in self.config.model_names() and not self.config.custom_models_allowed:
            raise ForbiddenError(
                f"{name!r} is not one of this server's models ({', '.join(self.config.model_names())}); "
                "this server does not load other models"
            )

    def start(self, name: str) -> ModelSlot:
        """Begin loading `name` unless it is loaded or loading; returns its slot."""
        self.check_allowed(name)
        with self.lock:
            slot = self.slots.get(name)
            if slot is not None and slot.state != "error":
                self.slots.move_to_end(name)
                return slot
            slot = ModelSlot(name=name)
            self.slots[name] = slot
            self._evict()
        threading.Thread(target=self._load, args=(slot,), name=f"load-{name}", daemon=True).start()
        return slot

    def _evict(self) -> None:
        ready = [n for n, s in self.slots.items() if s.state in ("ready", "error")]
        while len(self.slots) > self.max_loaded and ready:
            self.slots.pop(ready.pop(0), None)

    def _load(self, slot: ModelSlot) -> None:
        def progress(stage: str) -> None:
            slot.stage = stage

        try:
            slot.model = load(
                self.config.source_of(slot.name),
                progress=progress,
                trust_remote_code=slot.name in self.config.trust_remote_code,
                allow_pickle=slot.name in self.config.allow_pickle,
            )
            slot.model.source.name = slot.name
            slot.state = slot.stage = "ready"
        except RoutelensError as err:
            slot.error, slot.state = err, "error"
        except Exception as err:  # a broken checkpoint, out of memory, ...: report, keep serving
            slot.error, slot.state = RoutelensError(f"could not load {slot.name!r}: {type(err).__name__}: {err}"), "error"
        finally:
            slot.finished = time.monotonic()
            slot.done.set()

    def status(self, name: str) -> dict[str, Any]:
        slot = self.slots.get(name)
        if slot is None:
            return {"model": name, "state": "absent", "stage": "", "elapsed": 0.0, "message": "", "facts": None}
        return slot.status()

    def get(self, name: str, timeout: float | None = None) -> ModelSlot:
        """The ready slot of `name`, loading it first (waiting up to `timeout`) if needed."""
        slot = self.start(name)
        if not slot.done.wait(timeout):
            raise RoutelensError(f"{name!r} is still loading; try again in a moment")
        if slot.error is not None:
            raise slot.error
        return slot


@dataclass
class TraceEntry:
    trace_id: str
    slot: ModelSlot
    trace: Trace
    predictions: list[list[dict[str, Any]]] = field(default_factory=list)
    nbytes: int = 0  # what the trace holds in memory (estimated from its size)
    created: float = field(default_factory=time.time)


class TraceCache:
    """The most recent traces, least recently used evicted first: at most `max_traces` of them
    and `max_bytes` of memory (the newest one is always kept)."""

    def __init__(self, max_traces: int, max_bytes: int | None = None) -> None:
        self.max_traces = max(1, max_traces)
        self.max_bytes = max_bytes
        self.entries: OrderedDict[str, TraceEntry] = OrderedDict()
        self.lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self.entries.values())

    @staticmethod
    def key(model: str, prompt: str, chat: bool, norm: int) -> str:
        raw = f"{model}\x00{prompt}\x00{int(chat)}\x00{norm}".encode()
        return hashlib.sha256(raw).hexdigest()[:16]

    def get(self, trace_id: str) -> TraceEntry:
        with self.lock:
            entry = self.entries.get(trace_id)
            if entry is None:
                raise UnknownTraceError(f"no trace {trace_id!r} on this server (it may have been evicted); run the prompt again")
            self.entries.move_to_end(trace_id)
            return entry

    def find(self, trace_id: str) -> TraceEntry | None:
        with self.lock:
            return self.entries.get(trace_id)

    def put(self, entry: TraceEntry) -> None:
        with self.lock:
            self.entries[entry.trace_id] = entry
            self.entries.move_to_end(entry.trace_id)
            while len(self.entries) > self.max_traces or (
                self.max_bytes is not None and len(self.entries) > 1 and self.nbytes > self.max_bytes
            ):
                self.entries.popitem(last=False)
