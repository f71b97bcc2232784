"""Did the content arrive? An image-space check that does not trust the drag's tracker.

A tracker can reach its target while the content stays put (a feature match that
races ahead over a smooth region is the classic failure). So a drag only counts as
converged when the first frame's image patch around each handle is *found* at the
target in the final image: Gaussian-weighted normalised cross-correlation on grey
pixels, upscaled for sub-pixel precision. It reads only the two images, never the
features the method tracked on, and it is the very measure ``dragwalk bench drag
--semantic`` reports as content motion: what the page calls converged is what the
benchmark counts as arrived.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

#: patch half side at 64 px (scaled with the resolution): DragGAN's r1 = 3 px at its scale
PATCH_HALF_64 = 3.0
#: images are upscaled to at least this side before matching (a 64 px image to a quarter pixel)
MATCH_SIDE = 256


@dataclass
class Arrival:
    """Per pair: where the handle's first-frame patch is now, its distance to the target, and
    whether that is within the tolerance. Pairs with nothing to move count as arrived."""

    found: list[tuple[float, float]]
    error: list[float]
    arrived: list[bool]

    @property
    def all_arrived(self) -> bool:
        return all(self.arrived)


def tolerance(gap: float, stop_distance: float, resolution: int) -> float:
    """How close to its target a patch must be found: the stop distance, a pixel at 64 px
    (scaled), or a quarter of the drag, whichever is largest (a 40 px drag may end 10 px
    short of "all the way" and still be where the user asked, at 64 px a pixel is a lot)."""
    return max(stop_distance, resolution / 64.0, 0.25 * gap)


def search_radius(gap: float, tol: float, resolution: int) -> float:
    """How far from the handle the patch is looked for: past the target by the tolerance or a
    patch, whichever is more (a wider search can only find the patch elsewhere: stricter)."""
    return gap + max(tol, PATCH_HALF_64 * resolution / 64.0)


def as_shown(image: Tensor) -> Tensor:
    """A ``[-1, 1]`` image at the 8-bit levels the user gets (frames, PNG exports): the check
    judges what is seen, and agrees with any measure that reads the exported image."""
    return ((image.detach().float().clamp(-1, 1) + 1) * 127.5).round()


def grey(image: Tensor) -> Tensor:
    """``[1, C, H, W]`` (any range) -> ``[1, 1, H, W]`` float grey."""
    return image.detach().float().cpu().mean(dim=1, keepdim=True)


def locate(before: Tensor, after: Tensor, point: Sequence[float], search: float,
           half: float | None = None) -> Tensor:
    """Where ``before``'s patch around ``point`` is in ``after``, searched within ``search`` px.

    ``before``/``after`` are ``[1, 1, H, W]`` grey images. Gaussian-weighted normalised
    cross-correlation (weights of sigma ``half / 2``: the content *under* the point counts
    most, not the surroundings a local edit leaves behind), on images upscaled to at least
    :data:`MATCH_SIDE` and padded by replication (points near the border keep a whole
    patch). Returns ``[2]`` image px.
    """
    side = before.shape[-1]
    return _match(upscaled(before), upscaled(after), side, point, search, half)


def upscaled(image: Tensor) -> Tensor:
    """A ``[1, 1, H, W]`` grey image upscaled (bicubic) to at least :data:`MATCH_SIDE`."""
    scale = max(1, math.ceil(MATCH_SIDE / image.shape[-1]))
    return image if scale == 1 else F.interpolate(image, scale_factor=scale, mode="bicubic", align_corners=False)


def _match(before: Tensor, after: Tensor, side: int, point: Sequence[float], search: float,
           half: float | None) -> Tensor:
    """:func:`locate` on images already :func:`upscaled` from ``side`` px."""
    scale = before.shape[-1] // side
    half = PATCH_HALF_64 * side / 64.0 if half is None else half
    h = max(2, int(round(half * scale)))
    s = int(round(search * scale))
    pad = h + s
    a = F.pad(before, (pad,) * 4, mode="replicate")
    b = F.pad(after, (pad,) * 4, mode="replicate")
    cx = int(round((float(point[0]) + 0.5) * scale - 0.5)) + pad
    cy = int(round((float(point[1]) + 0.5) * scale - 0.5)) + pad
    r = torch.arange(-h, h + 1, dtype=torch.float32)
    w = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * (h / 2.0) ** 2))
    w = (w / w.sum())[None, None]
    patch = a[..., cy - h:cy + h + 1, cx - h:cx + h + 1]
    centred = patch - (patch * w).sum()
    centred = centred / (((centred ** 2) * w).sum().sqrt() + 1e-6)
    region = b[..., cy - s - h:cy + s + h + 1, cx - s - h:cx + s + h + 1]
    mean = F.conv2d(region, w)
    var = (F.conv2d(region * region, w) - mean * mean).clamp_min(0)
    score = (F.conv2d(region, w * centred) / (var.sqrt() + 1e-6))[0, 0]
    iy, ix = divmod(int(score.argmax()), score.shape[1])
    found = torch.tensor([cx - s + ix - pad, cy - s + iy - pad], dtype=torch.float32)
    return (found + 0.5) / scale - 0.5


class ArrivalCheck:
    """The check against one first frame (``[1, 3, H, W]`` in ``[-1, 1]``), read at the 8-bit levels
    the user sees (:func:`as_shown`) and upscaled once for every later image it is asked about."""

    def __init__(self, before: Tensor):
        self.side, self.res = before.shape[-1], max(before.shape[-2:])     # the scale comes from the width
        self.before = upscaled(grey(as_shown(before)))

    def __call__(self, after: Tensor, handles: Tensor, targets: Tensor, stop_distance: float) -> Arrival:
        """Check every pair of ``handles``/``targets`` (``[K, 2]`` px) in ``after``."""
        b = upscaled(grey(as_shown(after)))
        found, error, arrived = [], [], []
        for h, t in zip(handles.detach().cpu(), targets.detach().cpu()):
            gap = float((t - h).norm())
            tol = tolerance(gap, stop_distance, self.res)
            if gap <= stop_distance:
                found.append((float(t[0]), float(t[1])))
                error.append(gap)
                arrived.append(True)
                continue
            where = _match(self.before, b, self.side, h.tolist(), search_radius(gap, tol, self.res), None)
            err = float((where - t).norm())
            found.append((float(where[0]), float(where[1])))
            error.append(err)
            arrived.append(err <= tol)
        return Arrival(found, error, arrived)


def content_arrival(before: Tensor, after: Tensor, handles: Tensor, targets: Tensor,
                    stop_distance: float) -> Arrival:
    """Check every pair: ``before``/``after`` are ``[1, 3, H, W]`` images in ``[-1, 1]``, read at the
    8-bit levels the user sees (:func:`as_shown`); points ``[K, 2]`` px."""
    return ArrivalCheck(before)(after, handles, targets, stop_distance)
