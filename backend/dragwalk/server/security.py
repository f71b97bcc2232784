"""Access control for a local tool that may be exposed: token on every request, Origin on websockets.

The token may come as ``Authorization: Bearer``, ``?token=``, or the ``dragwalk_token`` cookie the
server sets when a page is opened with ``?token=`` (so the page's own scripts and images load
without repeating it). Comparisons are constant-time.
"""

from __future__ import annotations

import hmac
from http.cookies import SimpleCookie
from typing import Any, Mapping
from urllib.parse import parse_qs, urlsplit

TOKEN_COOKIE = "dragwalk_token"


def _headers(scope: Mapping[str, Any]) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def presented_tokens(scope: Mapping[str, Any]) -> list[str]:
    """Every token a request carries (header, query, cookie)."""
    headers = _headers(scope)
    found = []
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        found.append(auth[7:].strip())
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    found.extend(query.get("token", []))
    if "cookie" in headers:
        cookie = SimpleCookie()
        try:
            cookie.load(headers["cookie"])
        except Exception:  # noqa: BLE001 - a malformed cookie header carries no token
            pass
        if TOKEN_COOKIE in cookie:
            found.append(cookie[TOKEN_COOKIE].value)
    return found


def token_ok(scope: Mapping[str, Any], token: str | None) -> bool:
    """True when no token is configured or the request carries the right one."""
    if not token:
        return True
    expected = token.encode()
    return any(hmac.compare_digest(t.encode(), expected) for t in presented_tokens(scope))


def token_in_query(scope: Mapping[str, Any], token: str | None) -> bool:
    if not token:
        return False
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return any(hmac.compare_digest(t.encode(), token.encode()) for t in query.get("token", []))


def origin_ok(scope: Mapping[str, Any]) -> bool:
    """A websocket may come from a non-browser client (no Origin) or from the page this server
    served: the Origin's host:port must equal the Host the request was sent to."""
    headers = _headers(scope)
    origin = headers.get("origin")
    if origin is None:
        return True
    host = headers.get("host", "")
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    return parts.netloc.lower() == host.lower()


class TokenMiddleware:
    """ASGI middleware: HTTP requests without the token get 401; websockets are checked in their
    endpoint (they must be accepted before a close code can be sent)."""

    def __init__(self, app: Any, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or token_ok(scope, self.token):
            if scope["type"] == "http" and token_in_query(scope, self.token):
                send = self._with_cookie(send)
            await self.app(scope, receive, send)
            return
        body = b'{"error": {"code": "unauthorized", "message": "missing or wrong access token"}}'
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"),
                                (b"www-authenticate", b"Bearer"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def _with_cookie(self, send: Any) -> Any:
        cookie = f"{TOKEN_COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict".encode()

        async def wrapped(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie)]
            await send(message)
        return wrapped
