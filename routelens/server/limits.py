"""A bound on request bodies, enforced before the app reads them (an ASGI middleware): a body
over the limit is answered 413 with the JSON error shape, whether it announces its length or not,
and a body that does not arrive whole within `timeout` seconds is answered 408 (a slow sender
cannot hold a connection and its buffer for ever)."""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

import anyio

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodyLimitMiddleware:
    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], max_bytes: int,
                 timeout: float = 30.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def _refuse(self, send: Send, status: int = 413) -> None:
        if status == 408:
            error = {"code": "request_timeout", "message":
                     f"the request body did not arrive within {self.timeout:g} s; send it again at once"}
        else:
            error = {"code": "body_too_large", "message":
                     f"the request body is larger than this server's limit of {self.max_bytes} bytes; send less"}
        body = json.dumps({"error": error}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    announced = int(value)
                except ValueError:
                    announced = 0
                if announced > self.max_bytes:
                    await self._refuse(send)
                    return
        # read the body first (bounded), then hand it to the app: an error raised while the app
        # reads it would be turned into a generic 400 by the framework
        chunks: list[bytes] = []
        seen = 0
        with anyio.move_on_after(self.timeout) as deadline:
            while True:
                message = await receive()
                if message["type"] != "http.request":  # the client left
                    return
                chunk = message.get("body", b"")
                seen += len(chunk)
                if seen > self.max_bytes:
                    await self._refuse(send)
                    return
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
        if deadline.cancelled_caught:
            await self._refuse(send, 408)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # after the body: the disconnect message, when it comes

        await self.app(scope, replay, send)
