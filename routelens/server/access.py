"""Who may use the API: with an access token configured, every /api request but the health check
must carry it, as `Authorization: Bearer TOKEN`, or the session cookie that `POST /api/login`
(the web app asks for the token once) or `/?token=TOKEN` sets. Tokens are compared in constant
time. The cookie holds a random session id, never the token: browsers send a host's cookies to
every port of it, so another service on this machine may see the cookie, but it only opens this
server while it runs (sessions end with the process, and after `SESSION_SECONDS`).

The built front end (HTML, scripts, styles) holds no data and stays public, so the page can load
and ask for the token. Which hosts and origins may talk to the server at all is decided before
this, in origins.py.
"""

from __future__ import annotations

import hmac
import logging
import ipaddress
import json
import os
import secrets
import socket
import threading
import time
from collections import OrderedDict, deque
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs

from ..errors import RoutelensError

TOKEN_ENV = "ROUTELENS_TOKEN"
TOKEN_FILE_MAX_BYTES = 4096
COOKIE = "routelens_session"
PUBLIC_API = {"/api/health", "/api/login"}
SESSION_SECONDS = 7 * 24 * 3600
MAX_SESSIONS = 1000
MAX_WRONG = 20  # wrong tokens per GUESS_WINDOW_S, from anyone, before guesses are refused unread
GUESS_WINDOW_S = 60.0

log = logging.getLogger("routelens.server")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def is_loopback(host: str) -> bool:
    """True when every address `host` names is a loopback one. "" and "0.0.0.0" bind every
    interface, so they are not; a name is resolved (an /etc/hosts entry may point elsewhere)."""
    host = host.strip().strip("[]")
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a.split("%", 1)[0]).is_loopback for a in addresses)


def check_bind(host: str, token: str | None, insecure: bool) -> None:
    """Refuse to serve beyond this machine without a token, unless told so explicitly."""
    if is_loopback(host) or token or insecure:
        return
    raise RoutelensError(
        f"binding to {host or 'every interface'} lets other machines reach routelens; give an access token in a file "
        f"(--token-file FILE) or ${TOKEN_ENV} (e.g. {secrets.token_urlsafe(16)}; --token TOKEN also works but other "
        "users see it in `ps`), or pass --insecure to serve without one"
    )


def token_matches(given: str | None, token: str) -> bool:
    """Constant-time comparison; text that is not valid Unicode (a lone surrogate) never matches."""
    if not isinstance(given, str):
        return False
    try:
        return hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))
    except UnicodeEncodeError:
        return False


class Sessions:
    """Random session ids handed out at login, valid for `SESSION_SECONDS` while this process
    runs; at most `MAX_SESSIONS` (the oldest go first)."""

    def __init__(self) -> None:
        self._ids: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def new(self) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            self._ids[sid] = time.monotonic() + SESSION_SECONDS
            while len(self._ids) > MAX_SESSIONS:
                self._ids.popitem(last=False)
        return sid

    def valid(self, sid: str | None) -> bool:
        if not sid:
            return False
        with self._lock:
            # constant time per stored id would be needless: ids are 256-bit random, a lookup leaks nothing
            expires = self._ids.get(sid)
            if expires is None:
                return False
            if expires < time.monotonic():
                del self._ids[sid]
                return False
            return True


class Guesses:
    """Counts wrong tokens: past `MAX_WRONG` in `GUESS_WINDOW_S` seconds, every guess (login,
    `?token=`, a Bearer header) is answered 429 without being compared, so a token cannot be
    found by trying thousands a second (valid session cookies keep working)."""

    def __init__(self, max_wrong: int = MAX_WRONG) -> None:
        self.max_wrong = max_wrong
        self._wrong: deque[float] = deque()
        self._lock = threading.Lock()

    def _trim(self, now: float) -> None:
        while self._wrong and now - self._wrong[0] > GUESS_WINDOW_S:
            self._wrong.popleft()

    def wait_s(self) -> int:
        """Seconds until guesses are compared again (0: now)."""
        now = time.monotonic()
        with self._lock:
            self._trim(now)
            if len(self._wrong) < self.max_wrong:
                return 0
            return max(1, int(GUESS_WINDOW_S - (now - self._wrong[0])) + 1)

    def wrong(self, client: Any) -> None:
        with self._lock:
            self._wrong.append(time.monotonic())
        log.warning("a wrong access token was given (from %s)", client[0] if client else "?")


def cookie_name(scope: Scope) -> str:
    """One cookie per port: two routelens servers on one host do not log each other out."""
    server = scope.get("server") or (None, None)
    return f"{COOKIE}_{server[1]}" if server[1] else COOKIE


def cookie_header(name: str, sid: str) -> tuple[bytes, bytes]:
    return b"set-cookie", f"{name}={sid}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}".encode()


def _cookies(headers: dict[bytes, bytes]) -> dict[str, str]:
    out = {}
    for part in headers.get(b"cookie", b"").decode("latin-1").split(";"):
        name, _, value = part.strip().partition("=")
        if name:
            out[name] = value
    return out


class AccessMiddleware:
    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], token: str,
                 max_wrong: int = MAX_WRONG) -> None:
        self.app = app
        self.token = token
        self.sessions = Sessions()
        self.guesses = Guesses(max_wrong)

    async def _too_many(self, send: Send, wait: int) -> None:
        await self._send_json(send, 429, {"error": {"code": "too_many_attempts", "message": (
            f"too many wrong access tokens were tried in the last minute; wait {wait} s, then give the right one")}},
            [(b"retry-after", str(wait).encode())])

    def _matches(self, given: str, scope: Scope) -> bool:
        if token_matches(given, self.token):
            return True
        self.guesses.wrong(scope.get("client"))
        return False

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
        cookie = cookie_name(scope)
        if path == "/api/login" and scope.get("method") == "POST":
            await self._login(scope, receive, send, cookie)
            return
        if not path.startswith("/api/") or path in PUBLIC_API:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            given = query.get("token", [None])[0]
            if path == "/" and given is not None and (wait := self.guesses.wait_s()):
                await self._too_many(send, wait)
                return
            if path == "/" and given is not None and self._matches(given, scope):  # ?token= logs the browser in
                await send({"type": "http.response.start", "status": 303,
                            "headers": [(b"location", b"/"), cookie_header(cookie, self.sessions.new()),
                                        (b"content-length", b"0")]})
                await send({"type": "http.response.body", "body": b""})
                return
            await self.app(scope, receive, send)
            return
        auth = headers.get(b"authorization", b"").decode("latin-1")
        given = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        session = _cookies(headers).get(cookie)
        if given is None and self.sessions.valid(session):
            await self.app(scope, receive, send)
            return
        if given is not None:
            if wait := self.guesses.wait_s():
                await self._too_many(send, wait)
                return
            if self._matches(given, scope):
                await self.app(scope, receive, send)
                return
        if given is not None:
            message = "wrong access token: ask whoever runs this server for the right one"
        elif session is not None:
            message = "your session with this server has ended (it restarted, or the session expired): enter the access token again"
        else:
            message = "this server needs its access token: enter it in the web app, or send `Authorization: Bearer TOKEN`"
        await self._send_json(send, 401, {"error": {"code": "unauthorized", "message": message}},
                              [(b"www-authenticate", b'Bearer realm="routelens"')])

    async def _login(self, scope: Scope, receive: Receive, send: Send, cookie: str) -> None:
        if wait := self.guesses.wait_s():
            await self._too_many(send, wait)
            return
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
        if isinstance(given, str) and self._matches(given, scope):
            await self._send_json(send, 200, {"ok": True}, [cookie_header(cookie, self.sessions.new())])
        else:
            await self._send_json(send, 401, {"error": {"code": "unauthorized", "message":
                                  "wrong access token: ask whoever runs this server for the right one"}})


def token_from(option: str | None) -> str | None:
    """The access token: the --token option, else $ROUTELENS_TOKEN, else none."""
    token = option or os.environ.get(TOKEN_ENV) or None
    if token is not None and len(token) < 8:
        raise RoutelensError("the access token is too short: use at least 8 characters (e.g. a random one from `openssl rand -hex 16`)")
    return token


def read_token_file(path: str | Path) -> str:
    """The access token on the first line of `path` (surrounding white space removed)."""
    path = Path(path).expanduser()
    try:
        with open(path, "rb") as f:
            head = f.read(TOKEN_FILE_MAX_BYTES)
    except FileNotFoundError:
        raise RoutelensError(f"no such token file: {path}; check the path given to --token-file") from None
    except OSError as err:
        raise RoutelensError(f"cannot read the token file {path}: {err.strerror or err}") from None
    try:
        lines = head.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise RoutelensError(f"the token file {path} is not text; put the token on its first line") from None
    token = lines[0].strip() if lines else ""
    if not token:
        raise RoutelensError(f"the token file {path} has no token on its first line; put the token there")
    return token
