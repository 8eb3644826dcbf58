"""Running the app on uvicorn with the connection limits a server on a shared machine needs.

uvicorn has no timeout for a request's headers: a client that opens a connection and sends a
byte now and then holds it for ever (slowloris), and a thousand of them exhaust the process.
`TimedH11Protocol` closes a connection whose request headers are not complete within
`header_timeout` seconds of its first byte (or of the connection); idle keep-alive connections
close after `keep_alive` seconds (uvicorn's own timer). The body has its own deadline in the
body-limit middleware (limits.py). Repeated warnings (one per bad connection) are logged once per
`LOG_EVERY_S` with a count, so a flood cannot fill the disk with log lines.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import time
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..errors import RoutelensError

HEADER_TIMEOUT_S = 10.0
KEEP_ALIVE_S = 5
LOG_EVERY_S = 10.0
MAX_CONNECTIONS = 4096  # each may hold a body of up to max_body_bytes for body_timeout_s: 4 GB at worst


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's headers."""

    header_timeout: float = HEADER_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm()

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_overdue)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_overdue(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()  # nothing was answered: the request never arrived whole

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:
            self._arm()  # still (or again, on a kept-alive connection) waiting for whole headers
        else:
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


class OncePerInterval(logging.Filter):
    """Lets a given message through once per `interval` seconds, with how many were dropped."""

    def __init__(self, interval: float = LOG_EVERY_S) -> None:
        super().__init__()
        self.interval = interval
        self.seen: dict[str, tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = f"{record.name}:{record.levelno}:{record.msg}"
        now = time.monotonic()
        last, dropped = self.seen.get(key, (float("-inf"), 0))
        if now - last < self.interval:
            self.seen[key] = (last, dropped + 1)
            return False
        if len(self.seen) > 1000:
            self.seen.clear()
        self.seen[key] = (now, 0)
        if dropped:
            record.msg = f"{record.msg} (and {dropped} more like it in the last {self.interval:g} s)"
        return True


def max_connections() -> int:
    """Connections served at once (more are answered 503 at once): raise this process's limit on
    open files to its hard limit, then keep a quarter of it for files, models and the store."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = hard if hard != resource.RLIM_INFINITY else 65536
        if soft != resource.RLIM_INFINITY and soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
    except (ImportError, ValueError, OSError):
        return 768
    limit = 65536 if soft == resource.RLIM_INFINITY else soft
    return max(64, min(MAX_CONNECTIONS, limit * 3 // 4))


def uvicorn_config(app: Any, host: str, port: int, *, header_timeout: float = HEADER_TIMEOUT_S,
                   sock: socket.socket | None = None) -> Any:
    """The uvicorn configuration `routelens serve` runs with (also used by tests and benchmarks)."""
    import uvicorn

    protocol = type("TimedH11", (TimedH11Protocol,), {"header_timeout": header_timeout})
    config = uvicorn.Config(app, host=host, port=port, http=protocol, log_level="warning",
                            timeout_keep_alive=KEEP_ALIVE_S, server_header=False,
                            limit_concurrency=max_connections())
    # asyncio logs a failed accept() per attempt when descriptors run out: throttled like the rest
    for name in ("uvicorn.error", "uvicorn.access", "uvicorn", "asyncio", "routelens"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, OncePerInterval) for f in logger.filters):
            logger.addFilter(OncePerInterval())
    return config


def serve(app: Any, config: Any, host: str, port: int, sockets: list[socket.socket]) -> None:
    """Run `app` on already bound `sockets` until interrupted (`routelens serve`)."""
    import uvicorn

    uvicorn.Server(uvicorn_config(app, host, port, header_timeout=config.header_timeout_s)).run(sockets=sockets)


def bind_port(host: str, port: int) -> list[socket.socket]:
    """Bind the listening sockets now (uvicorn is handed them), so a port in use or an address not
    of this machine is said in one line before anything says the server is up."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as err:
        raise RoutelensError(f"cannot listen on {host!r}: {getattr(err, 'strerror', None) or err}; "
                             "give an address or name of this machine with --host (e.g. 127.0.0.1)") from None
    sockets: list[socket.socket] = []
    seen = set()
    try:
        for family, socktype, proto, _name, addr in infos:
            if (family, addr[:2]) in seen:
                continue
            seen.add((family, addr[:2]))
            sock = socket.socket(family, socktype, proto)
            sockets.append(sock)
            if os.name != "nt":  # a port in TIME_WAIT is reused; one another process listens on is not
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == getattr(socket, "AF_INET6", None) and hasattr(socket, "IPV6_V6ONLY"):
                try:  # as asyncio does: an IPv6 socket beside the IPv4 one, not over it
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                except OSError:
                    pass
            try:
                sock.bind(addr)
            except OSError as err:
                if err.errno == errno.EADDRNOTAVAIL and len(infos) > 1:  # e.g. ::1 where IPv6 is off
                    sockets.pop().close()
                    continue
                raise
        if not sockets:
            raise OSError(errno.EADDRNOTAVAIL, os.strerror(errno.EADDRNOTAVAIL))
    except OSError as err:
        for sock in sockets:
            sock.close()
        if err.errno == errno.EADDRINUSE:
            raise RoutelensError(f"port {port} is in use: pick another with --port") from None
        if err.errno == errno.EACCES:
            raise RoutelensError(f"port {port} needs special privileges on this machine: pick one above 1023 with --port") from None
        if err.errno == errno.EADDRNOTAVAIL:
            raise RoutelensError(f"{host} is not an address of this machine: pick another with --host") from None
        raise RoutelensError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    return sockets
