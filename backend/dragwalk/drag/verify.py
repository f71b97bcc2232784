"""Did the content arrive? An image-space check that does not trust the drag's tracker.

A tracker can reach its target while the content stays put (a feature match that
races ahead over a smooth region is the classic failure). So a drag only counts as
converged when the first frame's image patch around each handle is *found* at the
target in the final image: Gaussian-weighted normalised cross-correlation on grey
pixels, refined to sub-pixel precision by a parabola fit. It reads only the two
images, never the features the method tracked on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

#: patch half side at 64 px (scaled with the resolution): DragGAN's r1 = 3 px at its scale
PATCH_HALF_64 = 3.0


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


def _grey(image: Tensor) -> Tensor:
    return image.detach().float().mean(dim=1, keepdim=True)   # [1, 1, H, W]


def locate(before: Tensor, after: Tensor, point: Tensor, search: float) -> Tensor:
    """Sub-pixel position in ``after`` of ``before``'s patch around ``point`` (``[2]`` px)."""
    res = before.shape[-1]
    h = max(2, int(round(PATCH_HALF_64 * res / 64.0)))
    s = max(1, int(round(search)))
    pad = h + s + 1
    a = F.pad(_grey(before), (pad,) * 4, mode="replicate")
    b = F.pad(_grey(after), (pad,) * 4, mode="replicate")
    cx, cy = int(round(float(point[0]))) + pad, int(round(float(point[1]))) + pad
    r = torch.arange(-h, h + 1, dtype=torch.float32, device=a.device)
    w = torch.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * (h / 2.0) ** 2))
    w = (w / w.sum())[None, None]
    patch = a[..., cy - h:cy + h + 1, cx - h:cx + h + 1]
    centred = patch - (patch * w).sum()
    centred = centred / (((centred ** 2) * w).sum().sqrt() + 1e-6)
    region = b[..., cy - s - h - 1:cy + s + h + 2, cx - s - h - 1:cx + s + h + 2]
    mean = F.conv2d(region, w)
    var = (F.conv2d(region * region, w) - mean * mean).clamp_min(0)
    score = (F.conv2d(region, w * centred) / (var.sqrt() + 1e-6))[0, 0]   # [2s+3, 2s+3]
    inner = score[1:-1, 1:-1]
    iy, ix = divmod(int(inner.argmax()), inner.shape[1])
    iy, ix = iy + 1, ix + 1

    def vertex(cm: Tensor, c0: Tensor, cp: Tensor) -> float:
        denom = float(cm - 2 * c0 + cp)
        return 0.0 if denom >= -1e-9 else max(-0.5, min(0.5, 0.5 * float(cm - cp) / denom))

    fx = vertex(score[iy, ix - 1], score[iy, ix], score[iy, ix + 1])
    fy = vertex(score[iy - 1, ix], score[iy, ix], score[iy + 1, ix])
    x = cx - pad + (ix - s - 1) + fx
    y = cy - pad + (iy - s - 1) + fy
    return torch.tensor([x, y], dtype=torch.float32)


def content_arrival(before: Tensor, after: Tensor, handles: Tensor, targets: Tensor,
                    stop_distance: float) -> Arrival:
    """Check every pair: ``before``/``after`` are ``[1, 3, H, W]`` images, points ``[K, 2]`` px."""
    res = before.shape[-1]
    found, error, arrived = [], [], []
    for h, t in zip(handles.detach().cpu(), targets.detach().cpu()):
        gap = float((t - h).norm())
        tol = tolerance(gap, stop_distance, res)
        if gap <= stop_distance:
            found.append((float(t[0]), float(t[1])))
            error.append(gap)
            arrived.append(True)
            continue
        where = locate(before.cpu(), after.cpu(), h, gap + tol)
        err = float((where - t).norm())
        found.append((float(where[0]), float(where[1])))
        error.append(err)
        arrived.append(err <= tol)
    return Arrival(found, error, arrived)
