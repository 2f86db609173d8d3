"""Who may talk to the dashboard, and what its responses allow a browser to do.

One ASGI middleware in front of every route (page, API, event stream), so no route can
forget a check:

- **Host**: on a loopback address the ``Host`` header must name a loopback host. A page on
  another site that re-points its own name at 127.0.0.1 (DNS rebinding) would otherwise
  read the API as if it were same-origin.
- **Token** (``--token`` / ``FOREMAN_UI_TOKEN``; required off loopback): every request
  carries it as ``Authorization: Bearer``, ``X-Foreman-Token`` or the cookie. The first
  visit opens ``/?token=...``: the server checks it, sets an ``HttpOnly; SameSite=Strict``
  cookie and redirects to the same address without the token, so it stays out of the
  address bar, history and ``Referer``. ``EventSource`` cannot send headers; it sends the
  cookie.
- **Cross-site requests**: a state-changing request (anything but GET/HEAD) must carry the
  ``X-Foreman-Request`` header and a JSON body, and its ``Origin`` (when sent) must be this
  server. A page on another origin cannot add a custom header without a CORS preflight,
  which this server never grants, and a form cannot send one at all; the strict cookie is
  not even sent cross-site.
- **Headers**: a Content-Security-Policy allowing only this origin's own script and
  style, no framing, no MIME sniffing, no referrer.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "foreman_ui_token"
TOKEN_HEADER = "x-foreman-token"
#: The header every state-changing request must carry (the page's fetch sets it).
REQUEST_HEADER = "x-foreman-request"
#: Shortest token accepted: one that can be guessed protects nothing.
MIN_TOKEN_LENGTH = 16
SAFE_METHODS = {"GET", "HEAD"}
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}

SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine (a name other than
    ``localhost`` is not trusted to resolve to loopback only)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def token_problem(host: str, token: str | None) -> str | None:
    """Why the server must not start with this host and token, or None."""
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        return (
            f"the token is too short ({len(token)} characters): use at least "
            f"{MIN_TOKEN_LENGTH}, e.g. the output of `python -c 'import secrets; "
            "print(secrets.token_urlsafe())'`."
        )
    if token is None and not is_loopback(host):
        return (
            f"refusing to serve on {host} without a token: anyone who can reach it could "
            "read every run and approve tasks. Set --token or FOREMAN_UI_TOKEN, or bind "
            "127.0.0.1."
        )
    return None


class Guard:
    """The checks above, around an ASGI app."""

    def __init__(self, app: ASGIApp, *, token: str | None, loopback_only: bool) -> None:
        self.app = app
        self.token = token
        self.loopback_only = loopback_only
        self.cookie = cookie_name(token) if token else COOKIE

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refusal(scope, headers)
        if refusal is None and self.token is not None:
            refusal = self._first_visit(scope)
        if refusal is not None:
            await refusal(send)
            return
        await self.app(scope, receive, _with_headers(send))

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> Callable | None:
        host = headers.get("host", "")
        if self.loopback_only and _hostname(host) not in LOOPBACK_NAMES:
            return _answer(400, f"Unexpected Host {host!r}: open the dashboard at 127.0.0.1.")
        if self.token is not None and not self._authorised(scope, headers):
            return _answer(
                401, "This dashboard needs its token: open it once with ?token=... (foreman ui)."
            )
        if scope["method"] not in SAFE_METHODS:
            return _cross_site(scope, headers, host)
        return None

    def _authorised(self, scope: Scope, headers: dict[str, str]) -> bool:
        offered = [headers.get(TOKEN_HEADER, "")]
        bearer = headers.get("authorization", "")
        if bearer.lower().startswith("bearer "):
            offered.append(bearer[7:].strip())
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed cookie header is a missing token, not an error
            cookie = SimpleCookie()
        if self.cookie in cookie:
            offered.append(cookie[self.cookie].value)
        if scope["method"] in SAFE_METHODS:
            offered.append(_query(scope).get("token", ""))
        return any(self._matches(value) for value in offered if value)

    def _matches(self, value: str) -> bool:
        assert self.token is not None
        return hmac.compare_digest(value.encode(), self.token.encode())

    def _first_visit(self, scope: Scope) -> Callable | None:
        """A GET carrying ``?token=``: set the cookie, then show the same page without it."""
        query = _query(scope)
        if scope["method"] not in SAFE_METHODS or "token" not in query:
            return None
        rest = urlencode([(k, v) for k, v in parse_qsl(_raw_query(scope)) if k != "token"])
        location = scope["path"] + (f"?{rest}" if rest else "")
        cookie = f"{self.cookie}={self.token}; HttpOnly; SameSite=Strict; Path=/"
        headers = [(b"location", location.encode()), (b"set-cookie", cookie.encode())]
        return _answer(303, "", headers)


def cookie_name(token: str) -> str:
    """The cookie of the server with this token. Cookies are shared by every port of a
    host, so two dashboards on one machine must not overwrite each other's: the name
    carries a digest of the token (never the token itself)."""
    return f"{COOKIE}_{hashlib.sha256(token.encode()).hexdigest()[:12]}"


def _cross_site(scope: Scope, headers: dict[str, str], host: str) -> Callable | None:
    if not headers.get(REQUEST_HEADER):
        return _answer(403, f"A state-changing request needs the {REQUEST_HEADER} header.")
    if not headers.get("content-type", "").startswith("application/json"):
        return _answer(415, "Send the request body as application/json.")
    origin = headers.get("origin")
    if origin is not None and origin.split("://", 1)[-1] != host:
        return _answer(403, f"Cross-site request from {origin!r} refused.")
    if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return _answer(403, "Cross-site request refused.")
    return None


def _hostname(host: str) -> str:
    """``127.0.0.1:8765`` -> ``127.0.0.1``; ``[::1]:8765`` -> ``::1``."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def _raw_query(scope: Scope) -> str:
    return scope.get("query_string", b"").decode("latin-1")


def _query(scope: Scope) -> dict[str, str]:
    return dict(parse_qsl(_raw_query(scope)))


def _answer(status: int, message: str, extra: list[tuple[bytes, bytes]] = ()) -> Callable:
    """A response sent by the guard itself: one JSON line saying why."""
    body = json.dumps({"error": message}).encode() if message else b""

    async def send_it(send: Send) -> None:
        headers = [(b"content-type", b"application/json"), *SECURITY_HEADERS, *extra]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return send_it


def _with_headers(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
        await send(message)

    return sending
