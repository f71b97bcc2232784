"""Reading feature maps at fractional image positions (pure functions).

Feature maps are coarser than the image (the DCGAN's ``b3`` is 32x32 for a 64 px
image). Instead of upsampling the whole map to image size as DragGAN does, points
are mapped to the map's own grid and read with bilinear ``grid_sample``: the same
values up to the interpolation kernel, at a fraction of the memory and time, and
for any position (sub-pixel tracking needs fractional reads anyway).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.base import as_hw


def to_grid(points: Tensor, resolution: int | Sequence[int]) -> Tensor:
    """Image pixel coordinates ``[..., 2]`` (x, y) -> ``grid_sample`` coordinates in ``[-1, 1]``,
    on an image of side ``resolution`` or ``(height, width)``.

    Pixel centres sit at integer coordinates, so pixel ``i`` spans ``[i - 0.5, i + 0.5]``;
    with ``align_corners=False`` this is the same physical point on every map size.
    """
    height, width = as_hw(resolution)
    if height == width:
        return (points + 0.5) * (2.0 / width) - 1.0
    scale = torch.tensor([2.0 / width, 2.0 / height], dtype=points.dtype, device=points.device)
    return (points + 0.5) * scale - 1.0


def sample(features: Tensor, points: Tensor, resolution: int | Sequence[int]) -> Tensor:
    """Bilinear feature vectors at ``points`` (``[..., 2]`` image px) -> ``[..., C]``.

    ``features`` is ``[1, C, h, w]``; positions outside the image read the border.
    """
    return sample_each(features, points[None], resolution)[0]


def sample_each(features: Tensor, points: Tensor, resolution: int | Sequence[int]) -> Tensor:
    """:func:`sample` of several maps at once: ``features`` ``[B, C, h, w]``, ``points``
    ``[B, ..., 2]`` (map ``b`` read at ``points[b]``) -> ``[B, ..., C]``. Each map's reads are the
    ones :func:`sample` makes on it alone (sessions' drags stepped together, :mod:`.batch`)."""
    batch, shape = points.shape[0], points.shape[1:-1]
    grid = to_grid(points.reshape(batch, 1, -1, 2).to(features.dtype), resolution)
    out = F.grid_sample(features, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[:, :, 0].transpose(1, 2).reshape(batch, *shape, features.shape[1])


def box_around(points: Tensor, reach: float) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)``: the bounding box of ``points`` (``[K, 2]`` image px) grown by ``reach``
    px each way (what a method reads around its points, :meth:`DragMethod.reads`)."""
    x0, y0 = points.min(dim=0).values.tolist()
    x1, y1 = points.max(dim=0).values.tolist()
    return x0 - reach, y0 - reach, x1 + reach, y1 + reach


def disc_offsets(radius: float, spacing: float = 1.0, device: torch.device | str = "cpu") -> Tensor:
    """Integer-lattice offsets (times ``spacing``) within a disc of ``radius`` image px: ``[M, 2]``.

    Always contains the centre, so a zero radius means "the point itself".
    """
    n = int(math.floor(radius / spacing))
    r = torch.arange(-n, n + 1, dtype=torch.float32, device=device) * spacing
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    offsets = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)
    keep = offsets.norm(dim=1) <= radius + 1e-6
    return offsets[keep]


def square_offsets(radius: float, spacing: float = 1.0, device: torch.device | str = "cpu") -> tuple[Tensor, int]:
    """Offsets on a ``(2n+1) x (2n+1)`` square lattice, row-major (y then x), and ``n``."""
    n = max(1, int(math.floor(radius / spacing)))
    r = torch.arange(-n, n + 1, dtype=torch.float32, device=device) * spacing
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1), n


def subpixel_argmin(costs: Tensor, n: int, spacing: float) -> Tensor:
    """Best offset in a square window of costs ``[K, (2n+1)^2]``, refined to sub-lattice precision.

    A parabola through the minimum and its two neighbours along x and along y gives
    a fractional offset (clamped to half a lattice step); at the window border the
    integer position is kept. Returns ``[K, 2]`` offsets in image px.
    """
    side = 2 * n + 1
    grid = costs.reshape(-1, side, side)
    index = grid.reshape(grid.shape[0], -1).argmin(dim=1)
    iy, ix = index // side, index % side
    k = torch.arange(grid.shape[0], device=costs.device)

    def refine(c0: Tensor, cm: Tensor, cp: Tensor) -> Tensor:
        denom = cm - 2 * c0 + cp
        frac = torch.where(denom > 1e-12, 0.5 * (cm - cp) / denom.clamp_min(1e-12), torch.zeros_like(c0))
        return frac.clamp(-0.5, 0.5)

    c0 = grid[k, iy, ix]
    inner_x = (ix > 0) & (ix < side - 1)
    inner_y = (iy > 0) & (iy < side - 1)
    fx = refine(c0, grid[k, iy, (ix - 1).clamp(min=0)], grid[k, iy, (ix + 1).clamp(max=side - 1)])
    fy = refine(c0, grid[k, (iy - 1).clamp(min=0), ix], grid[k, (iy + 1).clamp(max=side - 1), ix])
    fx = torch.where(inner_x, fx, torch.zeros_like(fx))
    fy = torch.where(inner_y, fy, torch.zeros_like(fy))
    ox = (ix.to(costs.dtype) - n + fx) * spacing
    oy = (iy.to(costs.dtype) - n + fy) * spacing
    return torch.stack([ox, oy], dim=1)


def mask_term(features: Tensor, reference: Tensor, keep: Tensor) -> Tensor:
    """Mean L1 change of ``features`` from ``reference`` where ``keep`` (``[1,1,h,w]``, 1 = keep) is set.

    ``keep`` must already be at the feature map's size (see :func:`resize_mask`).
    """
    return ((features - reference).abs() * keep).mean()


def resize_mask(mask: Tensor, size: int | Sequence[int]) -> Tensor:
    """A ``[1, 1, H, W]`` image-resolution mask resized to a feature map of side ``size`` or
    ``(h, w)`` (area average)."""
    hw = as_hw(size)
    if tuple(mask.shape[-2:]) == hw:
        return mask
    shrink = mask.shape[-1] > hw[1]
    return F.interpolate(mask, size=hw, mode="area" if shrink else "bilinear",
                         align_corners=None if shrink else False)


def binomial_blur(features: Tensor, passes: int = 1) -> Tensor:
    """Separable [1, 2, 1] / 4 low-pass, ``passes`` times (replicate padding).

    Why: stride-2 transposed convolutions leave a strong checkerboard in their
    activations. On the DCGAN's 32x32 ``b3`` the feature distance between a patch
    and the same patch shifted by 4 px is *smaller* than for a 2 px shift, so
    nearest-neighbour tracking jumps by whole periods and motion supervision can
    lower its loss without moving anything. [1, 2, 1] is exactly zero at that
    period-2 frequency; after one pass the distance grows monotonically with
    the shift (measured: 0.09, 0.17, 0.35, 0.49, 0.64 at 0.5, 1, 2, 3, 4 px
    relative to 8 px, versus 0.70, 0.45, 1.71, 1.53, 0.75 raw).
    """
    if passes <= 0:
        return features
    channels = features.shape[1]
    taps = torch.tensor([0.25, 0.5, 0.25], dtype=features.dtype, device=features.device)
    # one 3x3 pass: replicate padding on both axes at once is the same as padding each axis
    # before its 1-D pass, and one convolution costs half of two (with their backward passes)
    kernel = torch.outer(taps, taps).view(1, 1, 3, 3).expand(channels, 1, 3, 3)
    out = features
    for _ in range(passes):
        out = F.conv2d(F.pad(out, (1, 1, 1, 1), mode="replicate"), kernel, groups=channels)
    return out
