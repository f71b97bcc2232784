"""Small, reusable bounds on what a client sends: JSON depth, media types, text sizes, request rates.

Routes and message parsers call these helpers instead of checking inline, so every bound has one
place, one error code and one message (docs/DEPLOY.md, "Security model").
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from typing import Any

import pydantic_core

from .errors import ApiError

#: nesting depth at which JSON is refused. pydantic-core's parser stops at this depth with an
#: error (instead of Python's RecursionError), is several times faster than ``json`` and lets
#: other threads run while it parses a large upload.
MAX_JSON_DEPTH = 200


class LimitError(ApiError):
    """Input over a bound or malformed: an :class:`ApiError` (4xx / error event) raised by a helper here."""


def parse_json(data: str | bytes, what: str = "body", allow_nan: bool = False) -> Any:
    """JSON text to Python values, refusing nesting deeper than :data:`MAX_JSON_DEPTH` with a
    :class:`LimitError` (never RecursionError), and NaN/Infinity unless ``allow_nan`` (websocket
    messages keep them, so their validators can name the field: ``invalid_points``)."""
    try:
        return pydantic_core.from_json(data or b"null", allow_inf_nan=allow_nan)
    except ValueError as exc:
        reason = str(exc)
        if "recursion limit" in reason:
            raise LimitError("bad_request", f"{what} is nested deeper than {MAX_JSON_DEPTH} levels") from None
        raise LimitError("bad_request", f"{what} is not valid JSON: {reason}") from None


def json_size(value: Any) -> int:
    """Bytes of ``value`` as compact JSON (for caps on stored records); TypeError/ValueError
    when it is not plain JSON."""
    return len(json.dumps(value, separators=(",", ":"), allow_nan=False))


def require_json(content_type: str | None) -> None:
    """Refuse any body not declared ``application/json`` (a cross-site form can only send
    ``text/plain``, urlencoded or multipart without a preflight)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise LimitError("unsupported_media", "send the body as JSON with Content-Type: application/json")


def bounded_text(value: Any, limit: int, what: str) -> str:
    """``value`` as a string of at most ``limit`` characters, or a LimitError."""
    text = str(value)
    if len(text) > limit:
        raise LimitError("bad_request", f"{what} longer than {limit} characters")
    return text


class RateLimiter:
    """At most ``per_minute`` events per key (client address) in any 60 s, as a token bucket.

    Keys are kept in an LRU of bounded size, so a flood of addresses cannot grow it without end.
    Thread-safe; ``per_minute <= 0`` disables it.
    """

    def __init__(self, per_minute: int, max_keys: int = 10_000) -> None:
        self.per_minute = per_minute
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, key: str, now: float | None = None) -> bool:
        if self.per_minute <= 0:
            return True
        now = time.monotonic() if now is None else now
        rate = self.per_minute / 60.0
        with self._lock:
            tokens, last = self._buckets.pop(key, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - last) * rate)
            allowed = tokens >= 1.0
            self._buckets[key] = (tokens - 1.0 if allowed else tokens, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        return allowed

    def check(self, key: str) -> None:
        if not self.allow(key):
            raise LimitError("rate_limited", f"too many new sessions from this address "
                             f"(at most {self.per_minute} a minute); try again shortly")
