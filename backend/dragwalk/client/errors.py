"""The client's one exception: a refusal or failure the server reported, with its code."""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """An error from the server (``code`` as in docs/PROTOCOL.md: ``bad_request``, ``not_found``,
    ``busy``, ``invalid_points``, ...), or a transport failure (``network``, ``closed``,
    ``timeout``). ``status`` is the HTTP status when there was one."""

    def __init__(self, code: str, message: str, status: int | None = None, event: dict[str, Any] | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.event = event


def from_response(response: Any) -> ClientError:
    """The ClientError an HTTP error response describes (``{"error": {"code", "message"}}``)."""
    try:
        error = response.json()["error"]
        return ClientError(str(error["code"]), str(error["message"]), response.status_code)
    except Exception:  # noqa: BLE001 - not the server's error shape (a proxy's page, ...)
        return ClientError("http", f"HTTP {response.status_code}: {response.text[:200]}", response.status_code)
