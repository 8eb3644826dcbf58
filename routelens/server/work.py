"""Scheduling model work: one computation at a time per device, a bounded queue in front of it,
a time limit per request, cancellation when the client goes away, and out-of-memory turned into
a clear answer with the memory given back.

Every request that touches a model goes through `WorkQueue.run` (in a worker thread); the async
endpoint around it (`compute`) watches the connection and cancels the work's Token when the
client disconnects. Work stops at the next safe point (`routelens.interrupt.check`).
"""

from __future__ import annotations

import gc
import statistics
import threading
import time
from collections import defaultdict, deque
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

import anyio
import torch
from starlette.requests import Request

from .. import interrupt
from ..errors import RoutelensError

T = TypeVar("T")


class QueueFullError(RoutelensError):
    """Too many requests are waiting for this device: come back after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class OutOfMemoryError(RoutelensError, MemoryError):
    """The computation ran out of memory; what it took was given back."""


class MemoryBudgetError(RoutelensError, ValueError):
    """A trace that would need more memory than the server's per-trace budget allows."""


def device_key(device: str | torch.device) -> str:
    """The queue's name for a device: "cpu", "cuda:0" (a bare "cuda" is the current GPU)."""
    d = torch.device(device)
    if d.type == "cuda" and d.index is None:
        return f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cuda:0"
    return str(d)


def is_out_of_memory(err: BaseException) -> bool:
    if isinstance(err, (MemoryError, torch.OutOfMemoryError)):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class WorkQueue:
    """Per device: the running computation plus at most `max_waiting` waiting ones."""

    def __init__(self, max_waiting: int, time_limit: float | None) -> None:
        self.max_waiting = max_waiting
        self.time_limit = time_limit
        self._device_locks: dict[str, threading.Lock] = defaultdict(threading.Lock)
        self._waiting: dict[str, int] = defaultdict(int)
        self._running: dict[str, int] = defaultdict(int)
        self._guard = threading.Lock()
        self._durations: deque[float] = deque(maxlen=32)

    def status(self) -> dict[str, Any]:
        with self._guard:
            return {"waiting": dict(self._waiting), "running": dict(self._running), "max_waiting": self.max_waiting}

    def retry_after(self) -> int:
        """Seconds until a place in the queue is likely free: the typical computation times the queue."""
        typical = statistics.median(self._durations) if self._durations else 1.0
        return max(1, round(typical * (self.max_waiting + 1)))

    @contextmanager
    def waiting(self, device: str) -> Iterator[None]:
        """Count one request as waiting for `device` while inside; refuse (429) when the queue is
        full. Requests waiting for a model that is still loading are counted here too, so no
        more than `max_waiting` requests ever hold on to the server per device."""
        with self._guard:
            if self._waiting[device] >= self.max_waiting:
                raise QueueFullError(
                    f"the server is busy: {self._waiting[device]} requests are already waiting for the model; "
                    f"try again in {self.retry_after()} s", retry_after=self.retry_after())
            self._waiting[device] += 1
        try:
            yield
        finally:
            with self._guard:
                self._waiting[device] -= 1

    def run(self, device: str, fn: Callable[[], T], token: interrupt.Token) -> T:
        """Run `fn` when the device is free (blocking the calling worker thread)."""
        lock = self._device_locks[device]
        with self.waiting(device):
            while not lock.acquire(timeout=0.05):
                token.check()  # cancelled or overdue while still waiting: leave the queue
        start = time.monotonic()
        try:
            with self._guard:
                self._running[device] += 1
            with interrupt.scope(token):
                return fn()
        except Exception as err:
            if is_out_of_memory(err):
                raise OutOfMemoryError(
                    "the computation ran out of memory and was stopped (the memory is freed, the server keeps "
                    "serving); try a shorter prompt, or a higher threshold for a graph") from None
            raise
        finally:
            with self._guard:
                self._running[device] -= 1
            self._durations.append(time.monotonic() - start)
            lock.release()


async def compute(request: Request, queue: WorkQueue, device: str, fn: Callable[[], T]) -> T:
    """Run `fn` through the queue in a worker thread; cancel it if the client disconnects."""
    token = interrupt.Token(queue.time_limit)
    result: list[Any] = []
    error: list[BaseException] = []

    async def work(scope: anyio.CancelScope) -> None:
        try:
            result.append(await anyio.to_thread.run_sync(queue.run, device, fn, token))
        except BaseException as err:  # re-raised below, outside the task group
            error.append(err)
        finally:
            scope.cancel()

    async def watch() -> None:
        while True:
            await anyio.sleep(0.1)
            if await request.is_disconnected():
                token.cancel("the client closed the connection")
                return

    async with anyio.create_task_group() as group:
        group.start_soon(watch)
        group.start_soon(work, group.cancel_scope)
    if error:
        if isinstance(error[0], interrupt.Interrupted) or is_out_of_memory(error[0]):
            free_memory()
        raise error[0]
    return result[0]
