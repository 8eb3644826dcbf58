"""Who may use the API: with an access token configured, every /api request but the health check
must carry it, as `Authorization: Bearer TOKEN` or the cookie that `POST /api/login` (the web
app asks for the token once) or `/?token=TOKEN` sets. Tokens are compared in constant time.

The built front end (HTML, scripts, styles) holds no data and stays public, so the page can load
and ask for the token.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import secrets
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs

from ..errors import RoutelensError

TOKEN_ENV = "ROUTELENS_TOKEN"
COOKIE = "routelens_token"
PUBLIC_API = {"/api/health", "/api/login"}

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None, insecure: bool) -> None:
    """Refuse to serve beyond this machine without a token, unless told so explicitly."""
    if is_loopback(host) or token or insecure:
        return
    raise RoutelensError(
        f"binding to {host} lets other machines reach routelens; give an access token (--token TOKEN or "
        f"${TOKEN_ENV}; e.g. --token {secrets.token_urlsafe(16)}) or pass --insecure to serve without one"
    )


def token_matches(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def cookie_header(token: str) -> tuple[bytes, bytes]:
    return b"set-cookie", f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=2592000".encode()


def _cookies(headers: dict[bytes, bytes]) -> dict[str, str]:
    out = {}
    for part in headers.get(b"cookie", b"").decode("latin-1").split(";"):
        name, _, value = part.strip().partition("=")
        if name:
            out[name] = value
    return out


class AccessMiddleware:
    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], token: str) -> None:
        self.app = app
        self.token = token

    async def _send_json(self, send: Send, status: int, body: dict[str, Any],
                         extra: tuple[tuple[bytes, bytes], ...] | list[tuple[bytes, bytes]] = ()) -> None:
        data = json.dumps(body).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *extra]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        headers = dict(scope.get("headers", []))
        if path == "/api/login" and scope.get("method") == "POST":
            await self._login(receive, send)
            return
        if not path.startswith("/api/") or path in PUBLIC_API:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = query.get("token", [None])[0]
            if path == "/" and token_matches(given, self.token):  # a link with ?token= logs the browser in
                await send({"type": "http.response.start", "status": 303,
                            "headers": [(b"location", b"/"), cookie_header(self.token), (b"content-length", b"0")]})
                await send({"type": "http.response.body", "body": b""})
                return
            await self.app(scope, receive, send)
            return
        auth = headers.get(b"authorization", b"").decode("latin-1")
        given = auth[7:].strip() if auth.lower().startswith("bearer ") else _cookies(headers).get(COOKIE)
        if token_matches(given, self.token):
            await self.app(scope, receive, send)
            return
        await self._send_json(send, 401, {"error": {"code": "unauthorized", "message": (
            "this server needs its access token: enter it in the web app, or send `Authorization: Bearer TOKEN`"
            if given is None else "wrong access token: ask whoever runs this server for the right one")}},
            [(b"www-authenticate", b'Bearer realm="routelens"')])

    async def _login(self, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body") or len(body) > 4096:
                break
        try:
            given = json.loads(body or b"{}").get("token")
        except (ValueError, AttributeError, RecursionError):  # not JSON, not an object, nested too deep
            given = None
        if isinstance(given, str) and token_matches(given, self.token):
            await self._send_json(send, 200, {"ok": True}, [cookie_header(self.token)])
        else:
            await self._send_json(send, 401, {"error": {"code": "unauthorized", "message":
                                  "wrong access token: ask whoever runs this server for the right one"}})


def token_from(option: str | None) -> str | None:
    """The access token: the --token option, else $ROUTELENS_TOKEN, else none."""
    token = option or os.environ.get(TOKEN_ENV) or None
    if token is not None and len(token) < 8:
        raise RoutelensError("the access token is too short: use at least 8 characters (e.g. a random one from `openssl rand -hex 16`)")
    return token
