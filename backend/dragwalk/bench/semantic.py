"""Semantic drags and what a user sees of them (measures for ``dragwalk bench drag --semantic``).

A semantic drag is what people do in a face editor: a smile (mouth corners out and
up), an open mouth, the chin down, the nose turned, brows up, eyes wider. Each moves
a few dlib landmarks by 3-5 px on a 64 px face (scaled with the resolution), with
no mask. What is measured is what the user sees, never what the drag believes:

* ``motion``: the share of the way each handle's image patch travelled to its target,
  found by Gaussian-weighted normalised cross-correlation on the image upscaled to at
  least 256 px (:func:`dragwalk.drag.verify.locate`, the same check behind "converged");
* ``landmark_ratio``: dlib's landmark error to the targets after the drag over the
  same error before it (1 = nothing happened, 0 = perfect);
* ``far_change``: mean absolute pixel change (0..255) farther than 14/64 of the image
  side from every handle and target: what an unmasked drag repaints elsewhere;
* ``identity``: dlib face-descriptor distance, ``lost``: dlib finds no face afterwards.

All of these read images only, never a drag's features or tracker.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class SemanticDrag:
    """Landmarks (iBUG 68, 0-based) and their motion, in px of a 64 px face."""

    name: str
    landmarks: tuple[int, ...]
    motion: tuple[tuple[float, float], ...]


#: the chin's landmark (iBUG 8)
CHIN = 8
SEMANTIC_DRAGS: tuple[SemanticDrag, ...] = (
    SemanticDrag("smile", (48, 54), ((-2.0, -2.5), (2.0, -2.5))),
    SemanticDrag("open_mouth", (57,), ((0.0, 4.0),)),
    SemanticDrag("chin_down", (CHIN,), ((0.0, 4.0),)),
    SemanticDrag("nose_turned", (30,), ((3.0, 0.0),)),
    SemanticDrag("brows_up", (19, 24), ((0.0, -3.0), (0.0, -3.0))),
    SemanticDrag("eyes_wider", (37, 44), ((0.0, -3.0), (0.0, -3.0))),
)
#: the 5-point setting: brows up, a smile and the lower lip down at once
FIVE_POINTS = SemanticDrag("five_points", (19, 24, 48, 54, 57),
                           ((0.0, -3.0), (0.0, -3.0), (-2.0, -2.5), (2.0, -2.5), (0.0, 3.0)))
#: far from every point means farther than this share of the image side
FAR_SHARE = 14.0 / 64.0


def drag_points(drag: SemanticDrag, landmarks: np.ndarray, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Handles (the landmarks) and targets (moved by the drag's motion scaled to the resolution)."""
    handles = landmarks[list(drag.landmarks)].astype(float)
    targets = handles + np.array(drag.motion, float) * resolution / 64.0
    return handles, np.clip(targets, 0, resolution - 1)


def locate_patch(before: np.ndarray, after: np.ndarray, point: np.ndarray, half: float | None,
                 search: float) -> np.ndarray:
    """Where the ``before`` patch around ``point`` is in ``after`` (``H x W x 3`` uint8 images),
    searched within ``search`` px: the drag engine's image-space check
    (:func:`dragwalk.drag.verify.locate`), which reads nothing but the two images."""
    from ..drag.verify import locate

    def grey(image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(image.astype(np.float32)).mean(dim=2)[None, None]

    return locate(grey(before), grey(after), [float(point[0]), float(point[1])], search, half).numpy()


def content_motion(before: np.ndarray, after: np.ndarray, handles: np.ndarray, targets: np.ndarray
                   ) -> list[float]:
    """Per pair, the share of the way its image patch travelled (1 = on target, 0 = stayed)."""
    from ..drag.verify import search_radius, tolerance

    side = before.shape[0]
    shares = []
    for h, t in zip(np.asarray(handles, float), np.asarray(targets, float)):
        gap = float(np.linalg.norm(t - h))
        if gap < 1e-6:
            continue
        found = locate_patch(before, after, h, None, search_radius(gap, tolerance(gap, 0.0, side), side))
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
