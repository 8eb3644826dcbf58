"""Which hosts and origins may talk to the server: the one place that decides it.

A local server is reachable by every web page the user opens, so the address alone proves
nothing (the same model as Jupyter's `local_hostnames` / `allow_origin`):

- DNS rebinding: a page on attacker.example re-points its name to 127.0.0.1 and calls the API
  as "same origin". The `Host` header then holds attacker.example. So a `Host` that is a *name*
  must be a loopback name (`localhost`, `*.localhost`), the machine's own name when the server
  is bound beyond loopback, or listed in `allowed_hosts`. A `Host` that is an IP literal cannot
  come from rebinding (rebinding needs a name) and is accepted.
- Cross-site requests: a page elsewhere can send requests to 127.0.0.1 without reading the
  answers (forms, `no-cors` fetches, images), which is enough to start work. An API request
  whose `Origin` is not this server's own (or one listed in `allowed_origins`), or that the
  browser marks `Sec-Fetch-Site: cross-site | same-site` (another port of localhost is
  same-site), is refused; a POST must be `Content-Type: application/json`, which no cross-site
  request can send without a CORS preflight that this server never grants. This holds whatever
  FastAPI version is installed, because it is checked here, before the app runs.

The page itself (`/`, its assets) may be opened from any site (a shared link): it holds no data
and the page asks before it runs anything a link asks for. Every answer carries the headers that
keep it out of frames and stop type sniffing, and the page a Content-Security-Policy.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from typing import Any, Awaitable, Callable, Iterable
from urllib.parse import urlsplit

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

WILDCARD_BINDS = {"0.0.0.0", "::", ""}
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
# the built front end: its own scripts and styles only (Vite's bundle has no inline script); inline
# style attributes are set by the graph code; images of exports are data: and blob: URLs
PAGE_CSP = (b"content-security-policy", (
    b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    b"connect-src 'self'; font-src 'self' data:; object-src 'none'; base-uri 'self'; form-action 'self'; "
    b"frame-ancestors 'none'"))


def host_name(host_header: str) -> str:
    """The name part of a Host header: "Example.org:8000" -> "example.org", "[::1]:80" -> "::1"."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[1:].split("]", 1)[0]
    if h.count(":") == 1:
        h = h.split(":", 1)[0]
    return h.rstrip(".")


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def is_loopback_name(name: str) -> bool:
    """localhost, *.localhost (RFC 6761: always this machine) or a loopback IP literal."""
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _origin_of(value: str) -> str:
    parts = urlsplit(value.strip().lower())
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else value.strip().lower()


class HostPolicy:
    """Decides, per request, whether its `Host` and `Origin` may reach the API.

    `bind_host`: the address the server listens on (its name is accepted as a Host, and a
    wildcard bind adds this machine's names). `allowed_hosts`: more Host names, e.g. a tunnel's
    or reverse proxy's public name; "*" accepts any (then the access token is the only door).
    `allowed_origins`: more origins ("https://lab.example.org") whose pages may call the API.
    """

    def __init__(self, bind_host: str | None = None, allowed_hosts: Iterable[str] = (),
                 allowed_origins: Iterable[str] = ()) -> None:
        self.any_host = "*" in set(allowed_hosts)
        self.hosts = {host_name(h) for h in allowed_hosts if h != "*"}
        bind = host_name(bind_host or "")
        if bind and bind not in WILDCARD_BINDS:
            self.hosts.add(bind)
        if bind_host is not None and (bind in WILDCARD_BINDS or not is_loopback_name(bind)):
            # served beyond this machine (behind its access token): it is reached by its own names too
            for name in (socket.gethostname(), socket.getfqdn()):
                if name:
                    self.hosts.add(host_name(name))
        self.any_origin = "*" in set(allowed_origins)
        self.origins = {_origin_of(o) for o in allowed_origins if o != "*"}

    def host_allowed(self, host_header: str | None) -> bool:
        if self.any_host:
            return True
        if not host_header:
            return False
        name = host_name(host_header)
        return is_ip(name) or is_loopback_name(name) or name in self.hosts

    def origin_allowed(self, origin: str, host_header: str, scheme: str) -> bool:
        """A page's origin may call the API when it is this server's own or a listed one."""
        o = _origin_of(origin)
        if o == "null":
            return False  # sandboxed frames, file:// pages, privacy-redirected requests
        if self.any_origin or o in self.origins:
            return True
        own = {f"{s}://{host_header.strip().lower()}" for s in (scheme, "http", "https")}
        return o in own

    def refusal(self, scope: Scope) -> tuple[int, str, str] | None:
        """(status, code, message) when the request must be refused, else None."""
        headers = _headers(scope)
        host = headers.get("host")
        if not self.host_allowed(host):
            return 403, "forbidden_host", (
                f"this routelens server does not answer requests for host {host!r} (it protects a local server from "
                "DNS rebinding); open it as http://127.0.0.1:PORT/ or http://localhost:PORT/, or add the name to "
                "\"allowed_hosts\" in the server's configuration (for a tunnel or reverse proxy)")
        path: str = scope.get("path", "")
        method = scope.get("method", "GET")
        api = path.startswith("/api/") or path == "/api"
        if not api and method in ("GET", "HEAD"):
            return None  # the page and its assets: open to links from anywhere, they hold no data
        origin = headers.get("origin")
        if origin is not None:
            if not self.origin_allowed(origin, host or "", scope.get("scheme", "http")):
                return 403, "forbidden_origin", (
                    f"requests from pages on {origin} may not use this routelens server; open the web app from the "
                    "server itself, or add that origin to \"allowed_origins\" in the server's configuration")
        elif headers.get("sec-fetch-site") in ("cross-site", "same-site"):
            return 403, "forbidden_origin", (
                "the browser marked this request as coming from another site; routelens's API answers only its own "
                "web app (add the site to \"allowed_origins\" if it should be allowed)")
        if method not in ("GET", "HEAD", "OPTIONS"):
            kind = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if kind != "application/json":
                return 415, "unsupported_media_type", (
                    f"send the request body as JSON with `Content-Type: application/json` (got {kind or 'none'!r})")
        return None


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        key = name.decode("latin-1").lower()
        if key not in out:  # a repeated header: the first one counts (a second Host is not a way in)
            out[key] = value.decode("latin-1")
    return out


class OriginMiddleware:
    """Refuses what `HostPolicy` refuses (JSON error, nothing reaches the app) and adds the
    security headers to every answer. Outermost: it runs before the access token is looked at."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = self.policy.refusal(scope)
        page = not scope.get("path", "").startswith("/api")
        if refused is not None:
            status, code, message = refused
            body = json.dumps({"error": {"code": code, "message": message}}).encode()
            await send({"type": "http.response.start", "status": status, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *SECURITY_HEADERS]})
            await send({"type": "http.response.body", "body": body})
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                have = {name.lower() for name, _ in message.get("headers", [])}
                extra = [h for h in SECURITY_HEADERS if h[0] not in have]
                if page and PAGE_CSP[0] not in have:
                    extra.append(PAGE_CSP)
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
