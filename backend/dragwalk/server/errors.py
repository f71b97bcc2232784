"""Errors with a protocol code and a human message, shared by HTTP routes and the websocket."""

from __future__ import annotations

import re

#: session ids the server hands out and accepts (docs/PROTOCOL.md)
SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")

HTTP_STATUS = {
    "bad_request": 400, "invalid_message": 400, "invalid_points": 400, "version": 400,
    "unauthorized": 401, "forbidden": 403, "not_found": 404, "busy": 409,
    "too_large": 413, "unsupported_media": 415, "unavailable": 501, "internal": 500,
    "expired": 410, "rate_limited": 429, "store_unavailable": 503, "store_full": 503,
    "damaged": 500,
}


#: what a client hears about a failure inside the server (the details go to the server's log)
INTERNAL_MESSAGE = "internal server error (the server's log has the details)"


class ApiError(Exception):
    """A refusal the client should see as ``{"error": {"code", "message"}}``."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or HTTP_STATUS.get(code, 400)

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}


def check_session_id(session_id: str) -> str:
    """The id itself if well-formed; otherwise a not_found before any lookup."""
    if not isinstance(session_id, str) or not SESSION_ID.match(session_id):
        raise ApiError("not_found", "no such session")
    return session_id
