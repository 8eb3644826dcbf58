"""What the server holds: loaded models (loading in the background) and a bounded trace cache.

Tracing registers hooks on the model's modules, so two computations on one model must never
overlap: every use of a model goes through the device's work queue (work.py), one at a time.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import ForbiddenError, RoutelensError, UnknownModelError
from ..models.loading import HUB_ID, load
from ..models.model import Model
from ..trace.estimate import block_timing
from ..trace.trace import Trace
from .config import ServerConfig
from .work import QueueFullError

log = logging.getLogger("routelens.server")


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


class ModelsBusyError(QueueFullError):
    """Every place for a model is taken by one that is loading (or by the default model)."""


class ModelRegistry:
    """Loads models on request, one background thread each, one load at a time in the process
    (models/loading.py); keeps at most `config.max_loaded_models` loaded or loading. The default
    model is never evicted, so no client can take it away from the others; evicting a model also
    drops its cached traces, which would otherwise keep it in memory."""

    def __init__(self, config: ServerConfig, on_evict: Callable[[ModelSlot], None] | None = None,
                 report: Callable[[ModelSlot], None] | None = None) -> None:
        """`report` is told of every stage a load goes through (downloading, converting, loading,
        ready, error): `routelens serve` prints them, so a first start is never silent."""
        self.config = config
        self.report = report
        self.max_loaded = config.max_loaded_models
        self.slots: OrderedDict[str, ModelSlot] = OrderedDict()
        self.lock = threading.Lock()
        self.on_evict = on_evict

    def is_custom(self, name: str) -> bool:
        return name not in self.config.model_names()

    def check_allowed(self, name: str) -> None:
        if not isinstance(name, str) or not name.strip():
            raise UnknownModelError("no model named: choose one of the configured models")
        if not self.is_custom(name):
            return
        offered = ", ".join(self.config.model_names())
        if not self.config.custom_models_allowed:
            close = difflib.get_close_matches(name, self.config.model_names(), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ForbiddenError(f"{name!r} is not one of this server's models ({offered}); {hint}this server does not "
                                 "load other models (its configuration can allow hub models: \"allow_custom_models\": true)")
        if not HUB_ID.fullmatch(name):
            raise ForbiddenError(f"{name!r} is not a Hugging Face hub id (owner/name); this server loads its own models "
                                 f"({offered}) and hub models, never a path typed here: list local models under "
                                 "\"models\" in the server's configuration")

    def start(self, name: str) -> ModelSlot:
        """Begin loading `name` unless it is loaded or loading; returns its slot. Raises
        ModelsBusyError when every place is taken by a model still loading."""
        self.check_allowed(name)
        evicted: list[ModelSlot] = []
        with self.lock:
            slot = self.slots.get(name)
            if slot is not None and slot.state != "error":
                self.slots.move_to_end(name)
                return slot
            self.slots.pop(name, None)
            evicted = self._make_room(evict=not self.is_custom(name))
            slot = ModelSlot(name=name)
            self.slots[name] = slot
        for old in evicted:
            if self.on_evict is not None:
                self.on_evict(old)
        threading.Thread(target=self._load, args=(slot,), name=f"load-{name}", daemon=True).start()
        return slot

    def _make_room(self, evict: bool = True) -> list[ModelSlot]:
        """Inside the lock: drop failed slots, then (when `evict`) the least recently used ready
        model that is not the default, until one more fits; refuse when none can go. A name any
        client may type (a custom hub id) never evicts: it may well fail to load."""
        evicted = [self.slots.pop(n) for n, s in list(self.slots.items()) if s.state == "error"]
        while len(self.slots) >= self.max_loaded:
            ready = [n for n, s in self.slots.items()
                     if evict and s.state == "ready" and n != self.config.default_model]
            if not ready:
                busy = ", ".join(f"{n} ({s.state})" for n, s in self.slots.items())
                raise ModelsBusyError(
                    f"this server keeps at most {self.max_loaded} models in memory and all places are taken ({busy}); "
                    + ("wait until the loading one is ready, then try again" if evict else
                       "a hub model typed here never replaces a loaded one: use one of the server's models, or try "
                       "again when it restarts"), retry_after=10)
            evicted.append(self.slots.pop(ready[0]))
        return evicted

    def _load(self, slot: ModelSlot) -> None:
        def progress(stage: str) -> None:
            slot.stage = stage
            self._report(slot)

        custom = self.is_custom(slot.name)
        try:
            slot.model = load(
                self.config.source_of(slot.name),
                progress=progress,
                trust_remote_code=slot.name in self.config.trust_remote_code,
                allow_pickle=slot.name in self.config.allow_pickle,
                hub_only=custom,
            )
            slot.model.source.name = slot.name
            progress("measuring its speed")  # for the time estimates (trace/estimate.py), off the event loop
            try:
                block_timing(slot.model.adapter)
            except Exception as err:  # an estimate is a help, never a reason to refuse a model
                log.warning("could not measure %r's speed: %s: %s", slot.name, type(err).__name__, err)
            slot.state = slot.stage = "ready"
        except Exception as err:  # a broken checkpoint, out of memory, ...: report, keep serving
            if custom:  # a name any client may type: the answer tells nothing about this machine
                log.warning("loading %r failed: %s: %s", slot.name, type(err).__name__, err)
                slot.error = UnknownModelError(
                    f"could not load {slot.name!r}: it is not a model this server can fetch from the Hugging Face hub; "
                    "check the name (owner/name)")
            elif isinstance(err, RoutelensError):
                slot.error = err
            else:
                slot.error = RoutelensError(f"could not load {slot.name!r}: {type(err).__name__}: {err}")
            slot.state = "error"
        finally:
            slot.finished = time.monotonic()
            self._report(slot)  # before done: whoever waits for the model sees the line written first
            slot.done.set()

    def _report(self, slot: ModelSlot) -> None:
        if self.report is not None:
            try:
                self.report(slot)
            except Exception:  # noqa: BLE001 (a broken terminal must not break a load)
                log.exception("reporting the progress of %r failed", slot.name)
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
    estimate: dict[str, Any] | None = None  # trace/estimate.py's figures, before it ran
    measured: dict[str, Any] | None = None  # peak memory and forward time, measured while it ran
    generation: dict[str, Any] | None = None  # a generated continuation's steps (trace/generation.py)


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
    def key(model: str, prompt: str, chat: bool, norm: int, generation: str = "") -> str:
        raw = f"{model}\x00{prompt}\x00{int(chat)}\x00{norm}{generation}".encode()
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

    def drop_model(self, slot: ModelSlot) -> int:
        """Forget every trace of an evicted model (they hold its weights in memory)."""
        with self.lock:
            doomed = [k for k, e in self.entries.items() if e.slot is slot]
            for k in doomed:
                del self.entries[k]
        return len(doomed)

    def put(self, entry: TraceEntry) -> None:
        with self.lock:
            self.entries[entry.trace_id] = entry
            self.entries.move_to_end(entry.trace_id)
            while len(self.entries) > self.max_traces or (
                self.max_bytes is not None and len(self.entries) > 1 and self.nbytes > self.max_bytes
            ):
                self.entries.popitem(last=False)
