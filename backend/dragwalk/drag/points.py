"""Handle/target points and masks: parsing and validation, with errors people can act on.

Points are ``(x, y)`` in model-image pixels, x to the right, y down, pixel centres at
integer coordinates, floats allowed. Every entry point of the drag engine (Python, CLI,
server) funnels points and masks through here, so a bad input fails early with one
clear :class:`PointError` instead of deep inside a forward pass.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from ..models.base import as_hw

Point = tuple[float, float]


class PointError(ValueError):
    """Bad handle/target points or a bad mask; the message says which and why."""


def parse_points(text: str) -> tuple[list[Point], list[Point]]:
    """Parse ``"x,y->x,y;x,y->x,y"`` into ``(handles, targets)``.

    Whitespace is ignored; a trailing ``;`` is allowed. Range checks happen in
    :func:`validate_points`, which needs the image size.
    """
    if not isinstance(text, str) or not text.strip():
        raise PointError('no points given: expected "x,y->x,y;..." (handle -> target pairs)')
    handles: list[Point] = []
    targets: list[Point] = []
    for index, pair in enumerate(p for p in text.replace(" ", "").split(";") if p):
        parts = pair.split("->")
        if len(parts) != 2:
            raise PointError(f'point pair {index + 1} ({pair!r}) is not of the form "x,y->x,y"')
        handles.append(_parse_xy(parts[0], index))
        targets.append(_parse_xy(parts[1], index))
    if not handles:
        raise PointError('no points given: expected "x,y->x,y;..." (handle -> target pairs)')
    return handles, targets


def _parse_xy(text: str, index: int) -> Point:
    coords = text.split(",")
    if len(coords) != 2:
        raise PointError(f"point pair {index + 1}: {text!r} is not two numbers x,y")
    try:
        x, y = float(coords[0]), float(coords[1])
    except ValueError:
        raise PointError(f"point pair {index + 1}: {text!r} is not two numbers x,y") from None
    return x, y


def format_points(handles: Sequence[Point], targets: Sequence[Point]) -> str:
    """Inverse of :func:`parse_points` (for logs and replayable command lines)."""
    return ";".join(f"{h[0]:g},{h[1]:g}->{t[0]:g},{t[1]:g}" for h, t in zip(handles, targets))


def _as_points(points: Any, what: str) -> list[Point]:
    if isinstance(points, Tensor):
        points = points.detach().cpu().tolist()
    elif isinstance(points, np.ndarray):
        points = points.tolist()
    if points is None or isinstance(points, (str, bytes)):
        raise PointError(f"{what} must be a list of (x, y) pairs")
    out: list[Point] = []
    try:
        items = list(points)
    except TypeError:
        raise PointError(f"{what} must be a list of (x, y) pairs") from None
    for p in items:
        try:
            size = len(p)
        except TypeError:
            raise PointError(f"{what} must be a list of (x, y) pairs, got the item {p!r}") from None
        if size != 2:
            raise PointError(f"{what}: each point must have exactly two coordinates (x, y), got {p!r}")
        try:
            out.append((float(p[0]), float(p[1])))
        except (TypeError, ValueError):
            raise PointError(f"{what}: the point {p!r} is not two numbers") from None
    return out


def validate_points(handles: Any, targets: Any, resolution: int | Sequence[int], allow_empty: bool = False
                    ) -> tuple[list[Point], list[Point]]:
    """Check handle/target lists against an image of side ``resolution`` (or ``(height, width)``).

    Refuses empty lists (unless ``allow_empty``: an editor may clear its points), mismatched
    counts, non-finite values and points outside ``[0, width - 1] x [0, height - 1]`` (the
    centres of the first and last pixel).
    """
    hs, ts = _as_points(handles, "handles"), _as_points(targets, "targets")
    if not hs and not (allow_empty and not ts):
        raise PointError("no handle points given: a drag needs at least one handle -> target pair")
    if len(hs) != len(ts):
        raise PointError(f"{len(hs)} handle(s) but {len(ts)} target(s): each handle needs exactly one target")
    height, width = as_hw(resolution)
    for kind, pts in (("handle", hs), ("target", ts)):
        for i, (x, y) in enumerate(pts):
            if not (math.isfinite(x) and math.isfinite(y)):
                raise PointError(f"{kind} {i + 1} is not a finite number: ({x}, {y})")
            if not (0 <= x <= width - 1 and 0 <= y <= height - 1):
                within = (f"x and y must be within 0..{width - 1}" if width == height
                          else f"x must be within 0..{width - 1}, y within 0..{height - 1}")
                raise PointError(f"{kind} {i + 1} ({x:g}, {y:g}) is outside the {width}x{height} "
                                 f"image ({within})")
    return hs, ts


def validate_mask(mask: Any, resolution: int | Sequence[int], device: torch.device | str = "cpu") -> Tensor | None:
    """A mask as a float tensor ``[1, 1, H, W]`` (1 = may change), or ``None`` for no mask.

    Accepts numpy arrays, torch tensors (bool or numeric, ``H x W`` or with leading
    singleton axes) and PIL images (grey levels above half are "may change").
    """
    if mask is None:
        return None
    if hasattr(mask, "convert") and hasattr(mask, "size"):  # PIL image
        mask = np.asarray(mask.convert("L"), dtype=np.float32) / 255.0
    if isinstance(mask, np.ndarray):
        if mask.dtype == object:
            raise PointError("mask must be a numeric or boolean array")
        mask = torch.from_numpy(np.ascontiguousarray(mask))
    if not isinstance(mask, Tensor):
        raise PointError(f"mask must be an array or tensor, got {type(mask).__name__}")
    m = mask.detach().to(torch.float32)
    while m.dim() > 2 and m.shape[0] == 1:
        m = m[0]
    if tuple(m.shape) != as_hw(resolution):
        raise PointError(f"mask has shape {tuple(mask.shape)}, expected {as_hw(resolution)} "
                         "(the model's height and width, 1 = may change)")
    if not torch.isfinite(m).all():
        raise PointError("mask contains NaN or infinite values")
    if m.min() < 0 or m.max() > 1:
        raise PointError("mask values must lie in [0, 1] (1 = may change)")
    return m.to(device)[None, None]
