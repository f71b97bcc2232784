"""Access control for a local tool that may be exposed (docs/DEPLOY.md, "Security model").

One ASGI middleware, :class:`Guard`, runs before every route:

* **Host allow-list** (DNS rebinding): a page on another domain that resolves to 127.0.0.1 still
  sends its own name as ``Host``; only loopback names, the bound address and ``--allowed-hosts``
  are answered.
* **Token** on every HTTP request (``Authorization: Bearer``, ``?token=``, or the
  ``dragwalk_token`` cookie). A page opened with ``?token=`` is redirected to the same address
  without it, with the cookie set, so the token leaves the address bar, history and Referer.
* **Origin** of writes: a cross-site form or script (any ``Origin`` that is not exactly this
  server's scheme://host[:port] or an ``--allowed-origins`` entry) cannot POST/PUT/PATCH/DELETE.
  Websockets check their Origin the same way in their endpoint (they answer with a close code).
* **Headers** on every response: a Content-Security-Policy (scripts from this server only, no
  framing), ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``.

Token comparisons are constant-time.
"""

from __future__ import annotations

import hmac
import re
from http.cookies import SimpleCookie
from typing import Any, Iterable, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit

TOKEN_COOKIE = "dragwalk_token"
#: what a Host header may look like at all (name or [v6], optional port); nothing that could
#: break out of a header value
_HOST_SYNTAX = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$")
_UNSAFE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
_WILDCARD_BINDS = ("0.0.0.0", "::", "")


def _headers(scope: Mapping[str, Any]) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def presented_tokens(scope: Mapping[str, Any]) -> list[str]:
    """Every token a request carries (header, query, cookie)."""
    headers = _headers(scope)
    found = []
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        found.append(auth[7:].strip())
    found.extend(v for k, v in _query(scope) if k == "token")
    if "cookie" in headers:
        cookie = SimpleCookie()
        try:
            cookie.load(headers["cookie"])
        except Exception:  # noqa: BLE001 - a malformed cookie header carries no token
            pass
        if TOKEN_COOKIE in cookie:
            found.append(cookie[TOKEN_COOKIE].value)
    return found


def _query(scope: Mapping[str, Any]) -> list[tuple[str, str]]:
    return parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)


def _same(presented: str, token: str) -> bool:
    return hmac.compare_digest(presented.encode(), token.encode())


def token_ok(scope: Mapping[str, Any], token: str | None) -> bool:
    """True when no token is configured or the request carries the right one."""
    return not token or any(_same(t, token) for t in presented_tokens(scope))


def token_in_query(scope: Mapping[str, Any], token: str | None) -> bool:
    return bool(token) and any(k == "token" and _same(v, token) for k, v in _query(scope))


def split_host(host: str) -> str | None:
    """The name part of a ``Host`` value (lower case, IPv6 without brackets), None if malformed."""
    match = _HOST_SYNTAX.match(host.strip())
    if not match:
        return None
    return match.group(1).strip("[]").lower().rstrip(".")


class HostPolicy:
    """Which ``Host`` names this server answers: loopback, the bound address, and any extras."""

    def __init__(self, bind: str, extra: Iterable[str] = ()) -> None:
        from .config import LOOPBACK_HOSTS
        extras = [h.strip().lower() for h in extra if h.strip()]
        self.any = "*" in extras
        self.names = {*LOOPBACK_HOSTS, *(split_host(h) or h for h in extras if h != "*")}
        if bind not in _WILDCARD_BINDS:
            self.names.add(split_host(bind) or bind.strip("[]").lower())

    def allows(self, host_header: str | None) -> bool:
        if not host_header:
            return False
        name = split_host(host_header)
        return name is not None and (self.any or name in self.names)


def own_origin(scope: Mapping[str, Any]) -> str:
    """``scheme://host[:port]`` of the address the request was sent to."""
    secure = scope.get("scheme") in ("https", "wss")
    return f"{'https' if secure else 'http'}://{_headers(scope).get('host', '').lower()}"


def origin_ok(scope: Mapping[str, Any], allowed: Iterable[str] = ()) -> bool:
    """A request may come from a non-browser client (no Origin) or from a page of this server:
    scheme, host and port must match exactly (or be one of the deployment's ``allowed`` origins)."""
    origin = _headers(scope).get("origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        return False
    normal = f"{parts.scheme}://{parts.netloc}".lower()
    return normal == own_origin(scope) or normal in {a.lower().rstrip("/") for a in allowed}


def content_security_policy(scope: Mapping[str, Any]) -> str:
    """The page's policy: everything from this server only, images also from blob:/data: (frames,
    icon), websockets to this host, never inside a frame."""
    host = _headers(scope).get("host", "")
    sockets = f" ws://{host} wss://{host}" if split_host(host) else ""
    return ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
            f"connect-src 'self'{sockets}; object-src 'none'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'")


def _security_headers(scope: Mapping[str, Any], present: set[bytes]) -> list[tuple[bytes, bytes]]:
    wanted = [(b"content-security-policy", content_security_policy(scope).encode()),
              (b"x-content-type-options", b"nosniff"),
              (b"referrer-policy", b"no-referrer"),
              (b"x-frame-options", b"DENY")]
    return [(k, v) for k, v in wanted if k not in present]


class Guard:
    """ASGI middleware applying the checks of this module (see the module docstring)."""

    def __init__(self, app: Any, token: str | None, hosts: HostPolicy,
                 allowed_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.token = token
        self.hosts = hosts
        self.allowed_origins = tuple(allowed_origins)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if not self.hosts.allows(_headers(scope).get("host")):
            if kind == "websocket":     # closing before accept answers the handshake with 403
                await send({"type": "websocket.close", "code": 1008})
                return
            await _refuse(send, 403, "forbidden", "this server does not answer to that Host name "
                          "(see --allowed-hosts)")
            return
        if kind == "websocket":         # token and Origin: checked in the endpoint (close codes)
            await self.app(scope, receive, send)
            return
        if not token_ok(scope, self.token):
            await _refuse(send, 401, "unauthorized", "missing or wrong access token",
                          [(b"www-authenticate", b"Bearer")])
            return
        if scope["method"] in _UNSAFE_METHODS and not origin_ok(scope, self.allowed_origins):
            await _refuse(send, 403, "forbidden", "request Origin does not match this server")
            return
        if token_in_query(scope, self.token) and scope["method"] == "GET" and _is_page(scope):
            await self._redirect_without_token(scope, send)
            return
        cookie = token_in_query(scope, self.token)
        await self.app(scope, receive, self._decorate(scope, send, cookie))

    def _cookie(self) -> tuple[bytes, bytes]:
        return (b"set-cookie", f"{TOKEN_COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict".encode())

    async def _redirect_without_token(self, scope: dict, send: Any) -> None:
        rest = urlencode([(k, v) for k, v in _query(scope) if k != "token"])
        location = scope.get("path", "/") + (f"?{rest}" if rest else "")
        await send({"type": "http.response.start", "status": 303,
                    "headers": [(b"location", location.encode("latin-1")), self._cookie(),
                                (b"cache-control", b"no-store"), (b"content-length", b"0"),
                                *_security_headers(scope, set())]})
        await send({"type": "http.response.body", "body": b""})

    def _decorate(self, scope: dict, send: Any, cookie: bool) -> Any:
        async def wrapped(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += _security_headers(scope, present)
                if cookie:
                    headers.append(self._cookie())
                message["headers"] = headers
            await send(message)
        return wrapped


def _is_page(scope: Mapping[str, Any]) -> bool:
    """A document navigation (the page itself), not an API call or a download link."""
    path = scope.get("path", "/")
    return not path.startswith(("/api/", "/ws/")) and (path.endswith("/") or path.endswith(".html"))


async def _refuse(send: Any, status: int, code: str, message: str,
                  extra: list[tuple[bytes, bytes]] | None = None) -> None:
    import json
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"x-content-type-options", b"nosniff"), *(extra or [])]})
    await send({"type": "http.response.body", "body": body})
