"""Server -> client websocket events (docs/PROTOCOL.md), as pydantic models.

The server builds its events as plain dicts where they happen (ops_*.py, ws.py); these models
are their contract: ``docs/protocol.schema.json`` is generated from them (``protocol_schema.py``),
tests validate every event the server sends against that file, and ``dragwalk.client`` parses
what it receives with :func:`parse_event`. Events are closed (unknown fields are schema errors),
except the session summary, which other parts of the server may extend.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from .messages import Rid
from .schemas import ErrorCode, Point, SessionSummary

DragReason = Literal["converged", "nothing_to_move", "tracking_lost", "max_steps", "stopped", "cancelled", "error"]


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rid: Rid = Field(default=None, description="the rid of the client message that caused this event")


class State(_Event):
    type: Literal["state"]
    session: SessionSummary


class DragProgress(_Event):
    type: Literal["progress"]
    op: Literal["drag"]
    step: int
    handles: list[Point]
    targets: list[Point]
    remaining: float
    max_remaining: float
    distances: list[float] = Field(description="each pair's handle-to-target distance, px")
    idle: list[bool] = Field(description="per pair: within the stop distance when set")
    steps_per_second: float
    t: float = Field(description="server wall-clock seconds when the step was produced")


class InvertProgress(_Event):
    type: Literal["progress"]
    op: Literal["invert"]
    stage: str
    step: int
    total: int
    psnr: float
    loss: float


class DirectionsProgress(_Event):
    type: Literal["progress"]
    op: Literal["directions"]
    method: str
    elapsed: float
    estimate: Optional[float]


Progress = Annotated[Union[DragProgress, InvertProgress, DirectionsProgress], Field(discriminator="op")]


class DragDone(_Event):
    type: Literal["done"]
    op: Literal["drag"]
    reason: DragReason
    steps: int
    distances: Optional[list[float]] = None
    idle: Optional[list[bool]] = None
    unsure: Optional[list[bool]] = Field(default=None, description="per pair: the tracker put the handle "
                                         "on its target but the image check did not find its content there")


class InvertDone(_Event):
    type: Literal["done"]
    op: Literal["invert"]
    reason: Literal["converged", "cancelled", "error", "stopped"]
    steps: int


class DirectionsDone(_Event):
    type: Literal["done"]
    op: Literal["directions"]
    method: str
    reason: Literal["cancelled"]
    seconds: float


Done = Annotated[Union[DragDone, InvertDone, DirectionsDone], Field(discriminator="op")]


class Preview(_Event):
    type: Literal["preview"]
    op: Literal["drag"]
    method: str
    handles: list[Point]
    targets: list[Point]
    idle: list[bool]
    seconds: float


class Directions(_Event):
    type: Literal["directions"]
    set: str = Field(description="the set id to use in walk")
    method: str
    count: int
    labels: list[str]
    values: Optional[list[Any]]
    scales: list[float]
    layers: Optional[list[Any]]
    walk_kinds: list[Literal["linear", "density", "curved"]]
    seconds: float


class Error(_Event):
    type: Literal["error"]
    code: ErrorCode
    message: str


class Pong(_Event):
    type: Literal["pong"]


#: not discriminated on ``type`` at the top (progress and done are unions on ``op`` themselves, and
#: OpenAPI's discriminator mapping cannot name a nested union); each member's ``type`` is a constant
ServerEvent = Union[State, Progress, Done, Preview, Directions, Error, Pong]
EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(ServerEvent)
#: every ``type`` the server sends
EVENT_TYPES = ("state", "progress", "done", "preview", "directions", "error", "pong")


def parse_event(data: dict[str, Any]) -> Any:
    """A received event as its model (pydantic ValidationError when it breaks the contract)."""
    return EVENT_ADAPTER.validate_python(data)
