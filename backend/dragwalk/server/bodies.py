"""Request bodies read under a size cap before FastAPI sees them (docs/DEPLOY.md, "Security model").

Routes declare their bodies the FastAPI way (a pydantic model, ``UploadFile`` and ``Form``
fields), so ``/openapi.json`` describes them. :class:`BoundedRoute` runs first for a route marked
with :func:`body`: it refuses a declared ``Content-Length`` over the route's limit at once, counts
the streamed bytes (413 ``too_large`` as soon as they pass it), checks the media type (415
``unsupported_media``), and parses the body itself:

* JSON with the depth bound and NaN refusal of :func:`limits.parse_json` (never ``json.loads``,
  whose RecursionError would be a 500);
* multipart on a thread with its own event loop, fed in small pieces, so 20 MB of form parsing
  never stalls the server's loop.

The parsed result is left on the request, where FastAPI's own body handling finds it, so pydantic
then validates the fields as declared.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Literal

from fastapi import Request
from fastapi.routing import APIRoute

from .config import Limits
from .errors import ApiError
from .limits import parse_json, require_json

BodyKind = Literal["json", "raw-json", "form"]
#: bytes handed to the multipart parser at a time
_FORM_CHUNK = 64 * 1024


def body(kind: BodyKind, limit: Callable[[Limits], int]) -> Callable[[Any], Any]:
    """Mark an endpoint: its body is ``kind`` (``raw-json``: bytes checked but left unparsed, for
    messages that parse themselves) of at most ``limit(settings.limits)`` bytes."""
    def mark(endpoint: Any) -> Any:
        endpoint.__dragwalk_body__ = (kind, limit)
        return endpoint
    return mark


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing more than ``limit`` bytes (declared or streamed) with ``too_large``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError("too_large", f"request body larger than {limit} bytes")
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > limit:
            raise ApiError("too_large", f"request body larger than {limit} bytes")
    return bytes(chunks)


async def parse_form(request: Request, data: bytes) -> Any:
    """A multipart body (already read) parsed on a thread: at most one file and 8 fields."""
    pieces = [data[i:i + _FORM_CHUNK] for i in range(0, len(data), _FORM_CHUNK)] or [b""]

    async def receive() -> dict:
        # small pieces: the parser's Python work is split, so the GIL changes hands between them
        if not pieces:
            return {"type": "http.disconnect"}
        return {"type": "http.request", "body": pieces.pop(0), "more_body": bool(pieces)}

    async def parse() -> Any:
        return await Request(request.scope, receive).form(max_files=1, max_fields=8)

    try:
        return await asyncio.get_running_loop().run_in_executor(None, asyncio.run, parse())
    except Exception as exc:  # noqa: BLE001 - a malformed multipart body
        raise ApiError("bad_request", f"cannot read the form: {exc}") from None


class BoundedRoute(APIRoute):
    """An APIRoute that reads a marked endpoint's body under its cap before FastAPI does."""

    def get_route_handler(self) -> Callable[[Request], Any]:
        handler = super().get_route_handler()
        spec = getattr(self.endpoint, "__dragwalk_body__", None)
        if spec is None:
            return handler
        kind, limit_of = spec

        async def bounded(request: Request) -> Any:
            limit = limit_of(request.app.state.settings.limits)
            if kind == "form":
                if not request.headers.get("content-type", "").startswith("multipart/form-data"):
                    raise ApiError("unsupported_media", "expected multipart/form-data with a 'file' field")
                request._form = await parse_form(request, await read_body(request, limit))
            else:
                request._body = await read_body(request, limit)
                require_json(request.headers.get("content-type"))
                if kind == "json":
                    request._json = parse_json(request._body, "body")
            return await handler(request)

        return bounded
