"""Semantic drags and what a user sees of them (measures for ``dragwalk bench drag --semantic``).

A semantic drag is what people do in a face editor: a smile (mouth corners out and
up), an open mouth, the chin down, the nose turned, brows up, eyes wider. Each moves
a few dlib landmarks by 3-5 px on a 64 px face (scaled with the resolution), with
no mask. What is measured is what the user sees, never what the drag believes:

* ``motion``: the share of the way each handle's image patch travelled to its target,
  found by normalised cross-correlation on the image upscaled to at least 256 px
  (sub-pixel on small models);
* ``landmark_ratio``: dlib's landmark error to the targets after the drag over the
  same error before it (1 = nothing happened, 0 = perfect);
* ``far_change``: mean absolute pixel change (0..255) farther than 14/64 of the image
  side from every handle and target: what an unmasked drag repaints elsewhere;
* ``identity``: dlib face-descriptor distance, ``lost``: dlib finds no face afterwards.

All functions here are plain numpy/torch on images: independent of the drag code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class SemanticDrag:
    """Landmarks (iBUG 68, 0-based) and their motion, in px of a 64 px face."""

    name: str
    landmarks: tuple[int, ...]
    motion: tuple[tuple[float, float], ...]


SEMANTIC_DRAGS: tuple[SemanticDrag, ...] = (
    SemanticDrag("smile", (48, 54), ((-2.0, -2.5), (2.0, -2.5))),
    SemanticDrag("open_mouth", (57,), ((0.0, 4.0),)),
    SemanticDrag("chin_down", (8,), ((0.0, 4.0),)),
    SemanticDrag("nose_turned", (30,), ((3.0, 0.0),)),
    SemanticDrag("brows_up", (19, 24), ((0.0, -3.0), (0.0, -3.0))),
    SemanticDrag("eyes_wider", (37, 44), ((0.0, -3.0), (0.0, -3.0))),
)
#: the 5-point setting: brows up, a smile and the lower lip down at once
FIVE_POINTS = SemanticDrag("five_points", (19, 24, 48, 54, 57),
                           ((0.0, -3.0), (0.0, -3.0), (-2.0, -2.5), (2.0, -2.5), (0.0, 3.0)))
#: far from every point means farther than this share of the image side
FAR_SHARE = 14.0 / 64.0
#: images are upscaled to at least this side before patch matching
MATCH_SIDE = 256


def drag_points(drag: SemanticDrag, landmarks: np.ndarray, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Handles (the landmarks) and targets (moved by the drag's motion scaled to the resolution)."""
    handles = landmarks[list(drag.landmarks)].astype(float)
    targets = handles + np.array(drag.motion, float) * resolution / 64.0
    return handles, np.clip(targets, 0, resolution - 1)


def _grey(image: np.ndarray, scale: int) -> torch.Tensor:
    t = torch.from_numpy(image.astype(np.float32)).mean(dim=2)[None, None]
    if scale > 1:
        t = F.interpolate(t, scale_factor=scale, mode="bicubic", align_corners=False)
    return t


def locate_patch(before: np.ndarray, after: np.ndarray, point: np.ndarray, half: float,
                 search: float) -> np.ndarray:
    """Where the ``before`` patch around ``point`` is in ``after``, searched within ``search`` px.

    Gaussian-weighted normalised cross-correlation (weights of sigma ``half / 2``, so
    the content *under* the point counts most, not the surroundings a local edit
    leaves behind), on grey images upscaled to at least :data:`MATCH_SIDE` (a 64 px
    image is matched to a quarter pixel) and padded by replication (points near the
    border keep a whole patch).
    """
    side = before.shape[0]
    scale = max(1, int(np.ceil(MATCH_SIDE / side)))
    h = max(2, int(round(half * scale)))
    s = int(round(search * scale))
    pad = h + s
    a = F.pad(_grey(before, scale), (pad,) * 4, mode="replicate")
    b = F.pad(_grey(after, scale), (pad,) * 4, mode="replicate")
    c = (np.asarray(point, float) + 0.5) * scale - 0.5 + pad
    cx, cy = int(round(c[0])), int(round(c[1]))
    k = 2 * h + 1
    r = torch.arange(k, dtype=torch.float32) - h
    g = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * (h / 2.0) ** 2))
    g = (g / g.sum())[None, None]
    patch = a[..., cy - h:cy + h + 1, cx - h:cx + h + 1]
    pm = (patch * g).sum()
    pz = (patch - pm) / (((patch - pm) ** 2 * g).sum().sqrt() + 1e-6)
    region = b[..., cy - s - h:cy + s + h + 1, cx - s - h:cx + s + h + 1]
    mean = F.conv2d(region, g)
    var = (F.conv2d(region * region, g) - mean * mean).clamp_min(0)
    score = F.conv2d(region, g * pz) / (var.sqrt() + 1e-6)
    iy, ix = np.unravel_index(int(score.argmax()), tuple(score.shape[-2:]))
    found = np.array([cx - s + ix, cy - s + iy], float) - pad
    return (found + 0.5) / scale - 0.5


def content_motion(before: np.ndarray, after: np.ndarray, handles: np.ndarray, targets: np.ndarray
                   ) -> list[float]:
    """Per pair, the share of the way its image patch travelled (1 = on target, 0 = stayed)."""
    side = before.shape[0]
    half = max(3.0, 3.0 * side / 64.0)
    shares = []
    for h, t in zip(np.asarray(handles, float), np.asarray(targets, float)):
        gap = float(np.linalg.norm(t - h))
        if gap < 1e-6:
            continue
        found = locate_patch(before, after, h, half, gap + half)
        shares.append(1.0 - float(np.linalg.norm(found - t)) / gap)
    return shares


def far_change(before: np.ndarray, after: np.ndarray, handles: np.ndarray, targets: np.ndarray) -> float:
    """Mean absolute change (0..255) of the pixels far from every handle and target."""
    side = before.shape[0]
    yy, xx = np.mgrid[0:side, 0:side]
    grid = np.stack([xx, yy], -1).astype(float)
    points = np.concatenate([np.asarray(handles, float), np.asarray(targets, float)])
    dist = np.linalg.norm(grid[:, :, None, :] - points[None, None], axis=-1).min(axis=2)
    far = dist > FAR_SHARE * side
    if not far.any():
        return float("nan")
    diff = np.abs(after.astype(float) - before.astype(float)).mean(axis=2)
    return float(diff[far].mean())
