"""Cooperative cancellation of long computations.

Whoever runs work on someone's behalf (the server, for a request) opens a `scope` with a Token;
the computation calls `check()` at safe points (before each layer of a forward pass, of a route,
of a batch of importances) and stops there with `Interrupted` when the token was cancelled or
its deadline passed. Outside a scope `check()` does nothing, so library users never see it.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator

from .errors import RoutelensError


class Interrupted(RoutelensError):
    """The computation was stopped at a safe point: its time limit passed or its client left."""

    def __init__(self, message: str, *, timed_out: bool) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class Token:
    def __init__(self, time_limit: float | None = None) -> None:
        self.time_limit = time_limit
        self.deadline = time.monotonic() + time_limit if time_limit else None
        self.reason: str | None = None

    def cancel(self, reason: str) -> None:
        self.reason = self.reason or reason

    def check(self) -> None:
        if self.reason is not None:
            raise Interrupted(self.reason, timed_out=False)
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise Interrupted(
                f"the request took longer than this server's limit of {self.time_limit:g} s and was stopped; "
                "try a shorter prompt or a higher threshold", timed_out=True)


_local = threading.local()


@contextmanager
def scope(token: Token) -> Iterator[Token]:
    previous = getattr(_local, "token", None)
    _local.token = token
    try:
        yield token
    finally:
        _local.token = previous


def check() -> None:
    """Stop here if the work this thread does on someone's behalf was cancelled or is overdue."""
    token = getattr(_local, "token", None)
    if token is not None:
        token.check()
