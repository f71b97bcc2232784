"""Websocket messages from the page, validated with pydantic (docs/PROTOCOL.md, version 1).

Every message is a JSON object with a ``type``; the union is discriminated on it, fields are
strict (a string where a number belongs is an error, not a guess) and unknown fields are refused.
``parse_message`` turns any failure into a :class:`MessageError` with a protocol code and a
message naming the problem, so the connection can answer and go on.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from ..models.base import MAX_NOISE_SEED, Settings
from .limits import LimitError, parse_json

MAX_MESSAGE_BYTES = 1024 * 1024
MAX_POINTS = 128

Point = tuple[float, float]
Rid = Union[Annotated[str, Field(max_length=64)], int, None]


class MessageError(ValueError):
    """A message the server cannot act on; ``code`` as in docs/PROTOCOL.md."""

    def __init__(self, code: str, message: str, rid: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.rid = rid


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    rid: Rid = None


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


class GeneratorSettings(BaseModel):
    """Per-session generator settings (``models.base.Settings``), bounded before the model checks
    them (a class below ``c_dim``, a cutoff up to ``num_ws``, a noise mode it offers).

    Where a message *changes* settings, only the fields it names change (``fields_set``)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    class_index: int | None = Field(default=None, ge=0, le=100000)
    noise_mode: Literal["const", "random", "none"] = "const"
    noise_seed: int = Field(default=0, ge=0, le=MAX_NOISE_SEED)
    truncation_cutoff: int | None = Field(default=None, ge=1, le=64)

    def settings(self, base: Settings | None = None) -> Settings:
        """These settings, or ``base`` with the fields this message named changed."""
        if base is None:
            return Settings.from_dict(self.model_dump())
        return base.replace(**{k: getattr(self, k) for k in self.model_fields_set})


class Hello(_Message):
    type: Literal["hello"]
    version: int
    credits: int = Field(default=2, ge=1, le=8)


class Ack(_Message):
    type: Literal["ack"]
    seq: int = Field(ge=0, le=2**32 - 1)


class SetPoints(_Message):
    type: Literal["set_points"]
    handles: list[Point] = Field(max_length=MAX_POINTS)
    targets: list[Point] = Field(max_length=MAX_POINTS)


class SetMask(_Message):
    type: Literal["set_mask"]
    mask: Annotated[str, Field(max_length=MAX_MESSAGE_BYTES)] | None


class StartDrag(_Message):
    type: Literal["start_drag"]
    method: Annotated[str, Field(max_length=64)] | None = None
    params: dict[str, Any] | None = None

    @field_validator("params")
    @classmethod
    def _small(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(value) > 32:
            raise ValueError("too many parameters")
        return value


class PreviewDrag(StartDrag):
    """The image a warping drag method gives the current points before any step (a frame of kind 4)."""

    type: Literal["preview_drag"]  # type: ignore[assignment]


class StopDrag(_Message):
    type: Literal["stop_drag"]


class Cancel(_Message):
    """Cancel the session's long computation: ``op`` names one (``drag``, ``invert``,
    ``directions``), none means whichever runs."""

    type: Literal["cancel"]
    op: Literal["drag", "invert", "directions"] | None = None


class SetLr(_Message):
    type: Literal["set_lr"]
    lr: float = Field(gt=0, le=10)


class ComputeDirections(_Message):
    type: Literal["compute_directions"]
    method: Annotated[str, Field(max_length=64)]
    params: dict[str, Any] | None = None


class WalkItem(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    index: int = Field(ge=0, le=4096)
    amount: float = Field(ge=-1000, le=1000)


class WalkMessage(_Message):
    type: Literal["walk"]
    set: Annotated[str, Field(max_length=128)]
    walks: list[WalkItem] = Field(max_length=64)
    kind: Literal["linear", "density", "curved"] = "linear"
    commit: bool = False


class Reseed(_Message):
    type: Literal["reseed"]
    seed: int = Field(ge=0, le=2**32 - 1)
    truncation: float = Field(default=1.0, ge=0, le=2)
    space: Annotated[str, Field(max_length=8)] | None = None
    #: only show the new image to this page (a frame of kind 2); nothing is stored
    preview: bool = False
    #: class, cutoff (and noise) of the new sample: the fields named change, the rest are the session's
    settings: GeneratorSettings | None = None


class SetNoise(_Message):
    """Render the current image with another noise mode (``random``: maps drawn from ``noise_seed``)."""

    type: Literal["set_noise"]
    noise_mode: Literal["const", "random", "none"]
    noise_seed: int = Field(default=0, ge=0, le=MAX_NOISE_SEED)


class Undo(_Message):
    type: Literal["undo"]


class Redo(_Message):
    type: Literal["redo"]


class Goto(_Message):
    type: Literal["goto"]
    index: int = Field(ge=0, le=100000)


class Frame(_Message):
    type: Literal["frame"]


class Ping(_Message):
    type: Literal["ping"]


Message = Annotated[Union[Hello, Ack, SetPoints, SetMask, StartDrag, PreviewDrag, StopDrag, Cancel, SetLr,
                          ComputeDirections, WalkMessage, Reseed, SetNoise, Undo, Redo, Goto, Frame, Ping],
                    Field(discriminator="type")]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(Message)
TYPES = ("hello", "ack", "set_points", "set_mask", "start_drag", "preview_drag", "stop_drag", "cancel", "set_lr",
         "compute_directions", "walk", "reseed", "set_noise", "undo", "redo", "goto", "frame", "ping")


def parse_message(text: str | bytes, limit: int = MAX_MESSAGE_BYTES) -> Any:
    """A validated message object, or :class:`MessageError`."""
    if len(text) > limit:
        raise MessageError("too_large", f"message larger than {limit} bytes")
    try:
        data = parse_json(text, "message", allow_nan=True)
    except LimitError as exc:
        raise MessageError("invalid_message", exc.message) from None
    if not isinstance(data, dict):
        raise MessageError("invalid_message", "a message must be a JSON object with a 'type'")
    rid = data.get("rid")
    if not (rid is None or isinstance(rid, int) or (isinstance(rid, str) and len(rid) <= 64)):
        rid = None
    kind = data.get("type")
    if not isinstance(kind, str) or kind not in TYPES:
        raise MessageError("invalid_message", f"unknown message type {str(kind)[:40]!r} "
                           f"(known: {', '.join(TYPES)})", rid)
    try:
        return _ADAPTER.validate_json(text if isinstance(text, (str, bytes)) else json.dumps(data))
    except ValidationError as exc:
        raise MessageError("invalid_message", f"{kind}: {describe(exc)}", rid) from None


def describe(exc: ValidationError) -> str:
    """The first few validation problems as ``field: reason``."""
    parts = []
    for err in exc.errors()[:3]:
        loc = [str(p) for p in err.get("loc", ())]
        if loc and loc[0] in TYPES:
            loc = loc[1:]
        parts.append(f"{'.'.join(loc) or 'message'}: {err.get('msg')}")
    return "; ".join(parts)
