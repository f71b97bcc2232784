"""Pydantic shapes of what the server answers: the session summary, errors, health, models and
methods (docs/PROTOCOL.md). Routes declare them, so ``/openapi.json`` describes every response,
and the websocket events (``events.py``) reuse them, so HTTP and websocket cannot drift apart.

Objects the server builds as plain dicts elsewhere (``SessionDocument.summary``, method details)
allow extra fields: a field added there reaches clients without being dropped here, and the
fields listed are typed and required.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from .errors import HTTP_STATUS

#: every error code the server sends, over HTTP or as a websocket ``error`` event
ErrorCode = Literal[  # type: ignore[valid-type]
    "bad_request", "invalid_message", "invalid_points", "version", "unauthorized", "forbidden",
    "not_found", "busy", "too_large", "unsupported_media", "unavailable", "internal", "expired",
    "rate_limited", "store_unavailable", "store_full", "damaged"]
assert set(ErrorCode.__args__) == set(HTTP_STATUS), "ErrorCode and errors.HTTP_STATUS must list the same codes"

Point = tuple[float, float]


class _Open(BaseModel):
    """A dict the server builds elsewhere: typed where listed, extra fields kept."""

    model_config = ConfigDict(extra="allow")


class ClosedModel(BaseModel):
    """A shape the server owns entirely: unknown fields are errors."""

    model_config = ConfigDict(extra="forbid")


class ErrorDetail(ClosedModel):
    code: ErrorCode = Field(description="what went wrong, for programs (docs/PROTOCOL.md lists them)")
    message: str = Field(description="what went wrong, for people")


class ErrorResponse(ClosedModel):
    """Every HTTP error: ``{"error": {"code", "message"}}``."""

    error: ErrorDetail


class WalkAmount(_Open):
    index: int
    amount: float


class WalkRecord(_Open):
    set: str = Field(description="direction set id")
    walks: list[WalkAmount]


class HistoryEntry(_Open):
    index: int
    kind: str = Field(description="drag, walk, reseed, seed, upload, photo, ...")
    label: str
    walk: Optional[WalkRecord] = Field(default=None, description="only on a walk entry: the set and amounts")


class Points(_Open):
    handles: list[Point]
    targets: list[Point]


class SessionSummary(_Open):
    """A session as the page sees it (``GET /api/sessions/{id}``, the websocket's ``state``)."""

    id: str
    model: str
    resolution: int
    seed: Optional[int]
    truncation: Optional[float]
    space: str
    history: list[HistoryEntry]
    cursor: int
    can_undo: bool
    can_redo: bool
    points: Points
    has_mask: bool
    mask: Optional[str] = Field(description="base64 PNG, white = may change; null without a mask")
    directions: list[str] = Field(description="direction set ids in use")
    busy: Optional[Literal["drag", "invert"]]
    protocol: int


class Exports(_Open):
    mp4: bool


class Health(_Open):
    status: Literal["ok"]
    version: str
    device: str
    sessions: int
    jobs: int
    protocol: int
    exports: Exports


class ModelInfo(_Open):
    name: str
    description: str
    resolution: int
    latent_spaces: list[str]
    default_space: str
    num_ws: Optional[int]


class DragMethodInfo(_Open):
    name: str
    label: str
    warps: bool
    default: bool
    params: dict[str, Any]
    details: dict[str, Any]


class DirectionMethodInfo(_Open):
    name: str
    label: str
    description: str
    needs_mask: bool
    needs_labels: bool
    params: dict[str, Any]
    ranges: dict[str, dict[str, Any]]


class Methods(_Open):
    model: Optional[str] = Field(default=None, description="present when asked with ?model=")
    drag: list[DragMethodInfo]
    directions: list[DirectionMethodInfo]


#: what any route may answer: the Guard's refusals and a failure inside the server
COMMON_ERRORS = ("unauthorized", "forbidden", "internal")


class SetProgress(_Open):
    """One direction set of the start-up precomputation."""

    state: Literal["queued", "running", "paused", "yielded", "ready", "failed", "cancelled"]
    from_disk: Optional[bool] = None
    yielded: Optional[bool] = None
    seconds: Optional[float] = None
    count: Optional[int] = None
    truncated: Optional[bool] = None
    error: Optional[str] = None


class DirectionsReady(_Open):
    """``GET /api/directions/ready``: progress of the start-up precomputation."""

    enabled: bool
    running: Optional[bool] = None
    seconds: Optional[float] = None
    models: Optional[dict[str, dict[str, SetProgress]]] = None


def error_responses(*codes: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each HTTP status its ``codes`` (and :data:`COMMON_ERRORS`) map
    to, with the error shape and the codes listed in the description (so the schema names every
    code a route can send)."""
    by_status: dict[int, list[str]] = {}
    for code in dict.fromkeys((*COMMON_ERRORS, *codes)):
        by_status.setdefault(HTTP_STATUS[code], []).append(code)
    return {status: {"model": ErrorResponse, "description": "error codes: " + ", ".join(sorted(names))}
            for status, names in sorted(by_status.items())}
