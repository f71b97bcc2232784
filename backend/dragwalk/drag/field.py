"""Displacement fields for warping feature maps (pure functions).

A drag can move content directly: warp an intermediate activation so that what sat
at each handle sits at its target, and let the rest of the network render it.
Warping is *backward sampling*: ``out(v) = F(v - u(v))``, so the field ``u`` is
defined on the output grid and must satisfy ``u(t_i) = t_i - h_i`` at every target.

Two field shapes, both decaying to zero away from the points (so the rest of the
image is untouched) and both exact at the targets:

* ``"rbf"``: Gaussian radial basis interpolation centred on the targets. Solving the
  small ``K x K`` system makes close points with different motions (two mouth
  corners moving apart) hit their targets exactly, where a plain sum of bumps
  would over- or undershoot.
* ``"mls"``: moving least squares, similarity variant (Schaefer, McPhail and Warren,
  SIGGRAPH 2006), weights ``1 / |p_i - v|^(2 alpha)``. Between several points the
  content turns and scales as a whole instead of being smeared, which keeps shapes
  (a mouth, an eye) rigid. MLS is global by nature, so its displacement is faded
  out by the same Gaussian envelope as the RBF field.

The radius ``sigma`` grows with the drag length (a Gaussian bump of amplitude ``d`` has a
largest slope of ``0.61 d / sigma``, and a backward map folds over itself once the
slope reaches 1), and a long drag is composed of sub-steps, each at most half a radius
long, so every step is far from folding and so is their composition
(:func:`displacement_field`). Close points pulled different ways are another matter:
their bumps overlap and the interpolation overshoots (a 9 px drag beside a mouth corner
that stays put moved content by 23 px and folded it). :func:`healthy_field` then narrows
the radius until the field is one-to-one and moves nothing further than asked.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.base import as_hw
from .features import to_grid

FIELD_KINDS = ("rbf", "mls")
#: sigma / longest drag: keeps the field's slope under 0.5, far from folding
SIGMA_PER_LENGTH = 1.25
#: sigma / nearest distance between two handles that move differently: a wider field would
#: drag the face between them along and squeeze it (measured on landmark transfers)
SIGMA_PER_SPACING = 0.6
#: relative motion over distance above which two handles constrain the radius
STRAIN = 1.0
#: longest sub-step of a composed field, in radii
STEP_PER_SIGMA = 0.5
#: most sub-steps a field is composed of
MAX_SUBSTEPS = 16


def field_sigma(handles: Tensor, targets: Tensor, base: float, floor: float = 0.0) -> float:
    """Field radius in image px: ``base``, widened for long drags, narrowed for close handles
    (see the module docstring), never below ``floor`` (a feature cell: anything finer is not
    a field the map can show)."""
    longest = float((targets - handles).norm(dim=1).max()) if handles.numel() else 0.0
    sigma = min(max(float(base), SIGMA_PER_LENGTH * longest), narrowest_sigma(handles, targets))
    return max(sigma, float(floor))


def narrowest_sigma(handles: Tensor, targets: Tensor, floor: float = 0.0) -> float:
    """The widest radius close points allow: 0.6 of the nearest distance between two handles
    that strain the map between them (:func:`_spacing`); infinite when none do."""
    if handles.shape[0] < 2:
        return float("inf")
    return max(SIGMA_PER_SPACING * _spacing(handles, targets - handles), float(floor))


def healthy_field(handles: Tensor, targets: Tensor, size: int | Sequence[int], resolution: int | Sequence[int],
                  sigma: float,
                  kind: str = "rbf", region: Tensor | None = None, floor: float = 0.0) -> tuple[Tensor, float]:
    """The widest field up to ``sigma`` that neither folds (``det(I - grad u) > 0.2``) nor moves
    anything further than 1.1 times the longest drag, narrowing by steps of 0.8 down to
    :func:`narrowest_sigma`. Returns the field and the radius used.

    A wide field moves a whole part and looks natural; only layouts that need it (close points
    pulled different ways) get a narrower one.
    """
    longest = float((targets - handles).norm(dim=1).max()) if handles.numel() else 0.0
    lowest = min(sigma, narrowest_sigma(handles, targets, floor))
    while True:
        u = displacement_field(handles, targets, size, resolution, sigma, kind, region)
        ok = float(u.norm(dim=-1).max()) <= 1.1 * longest + 1e-3
        if ok and min(as_hw(size)) > 2:
            ok = float(jacobian_determinant(u, resolution).min()) > 0.2
        if ok or sigma <= lowest:
            return u, sigma
        sigma = max(0.8 * sigma, lowest)


def _spacing(handles: Tensor, motion: Tensor) -> float:
    """The nearest distance between two handles whose motions differ by more than that distance
    (the map between them must be stretched or squeezed by more than 100 %): only such pairs
    overlap badly. Two mouth corners pulled apart by 4 px, 11 px apart, do not count; a nose
    moved 10 px past a mouth corner 6 px away does. Infinite when no pair does."""
    dist = torch.cdist(handles, handles)
    differ = torch.cdist(motion, motion)
    strained = (differ > STRAIN * dist) & ~torch.eye(len(handles), dtype=torch.bool, device=handles.device)
    if not bool(strained.any()):
        return float("inf")
    return float(dist[strained].min())


def cell_centres(size: int | Sequence[int], resolution: int | Sequence[int],
                 device: torch.device | str = "cpu") -> Tensor:
    """Image-px coordinates ``[h, w, 2]`` (x, y) of the cell centres of a map of side ``size`` or
    ``(h, w)``, on an image of side ``resolution`` or ``(H, W)`` (the same scale on both axes).

    Same convention as :func:`dragwalk.drag.features.to_grid`: pixel centres are integers.
    """
    (h, w), (height, width) = as_hw(size), as_hw(resolution)
    cy = (torch.arange(h, dtype=torch.float32, device=device) + 0.5) * (height / h) - 0.5
    cx = (torch.arange(w, dtype=torch.float32, device=device) + 0.5) * (width / w) - 0.5
    yy, xx = torch.meshgrid(cy, cx, indexing="ij")
    return torch.stack([xx, yy], dim=-1)


def _gauss(d2: Tensor, sigma: float) -> Tensor:
    return torch.exp(-d2 / (2.0 * sigma * sigma))


def rbf_field(points: Tensor, handles: Tensor, targets: Tensor, sigma: float) -> Tensor:
    """Backward displacement ``[..., 2]`` at ``points`` ``[..., 2]``: exact at each target,
    a Gaussian RBF interpolant of the motions in between, zero far away."""
    motion = targets - handles                                       # [K, 2]
    gram = _gauss(torch.cdist(targets, targets).pow(2), sigma)       # [K, K]
    ridge = 1e-4 * torch.eye(len(targets), device=targets.device)
    coef = torch.linalg.solve(gram + ridge, motion)                  # [K, 2]
    flat = points.reshape(-1, 2)
    basis = _gauss(torch.cdist(flat, targets).pow(2), sigma)         # [P, K]
    return (basis @ coef).reshape(points.shape)


def envelope(points: Tensor, centres: Tensor, sigma: float) -> Tensor:
    """1 at every centre, fading to 0 away from all of them: ``1 - prod(1 - g_i)``, ``[...]``."""
    flat = points.reshape(-1, 2)
    g = _gauss(torch.cdist(flat, centres).pow(2), sigma)
    return (1.0 - torch.prod(1.0 - g, dim=1)).reshape(points.shape[:-1])


def mls_similarity(points: Tensor, source: Tensor, dest: Tensor, alpha: float = 1.0) -> Tensor:
    """Moving-least-squares similarity deformation ``f`` with ``f(source_i) = dest_i``, at ``points``.

    Returns the deformed positions ``[..., 2]``. With one control point it is a translation.
    """
    flat = points.reshape(-1, 2)                                     # [P, 2]
    d2 = torch.cdist(flat, source).pow(2)                            # [P, K]
    w = 1.0 / d2.clamp_min(1e-8).pow(alpha)
    exact = d2 < 1e-8
    w = torch.where(exact.any(dim=1, keepdim=True), exact.to(w.dtype), w)
    wsum = w.sum(dim=1, keepdim=True)
    p_star = (w @ source) / wsum                                     # [P, 2]
    q_star = (w @ dest) / wsum
    p_hat = source[None] - p_star[:, None]                           # [P, K, 2]
    q_hat = dest[None] - q_star[:, None]
    mu = (w * p_hat.pow(2).sum(-1)).sum(dim=1).clamp_min(1e-8)       # [P]
    # similarity: the best rotation+scale taking p_hat to q_hat, as a complex number a + ib
    a = (w * (p_hat * q_hat).sum(-1)).sum(dim=1) / mu
    b = (w * (p_hat[..., 0] * q_hat[..., 1] - p_hat[..., 1] * q_hat[..., 0])).sum(dim=1) / mu
    single = torch.tensor(source.shape[0] == 1, device=points.device)
    a = torch.where(single, torch.ones_like(a), a)
    b = torch.where(single, torch.zeros_like(b), b)
    v = flat - p_star
    out = torch.stack([a * v[:, 0] - b * v[:, 1], b * v[:, 0] + a * v[:, 1]], dim=1) + q_star
    return out.reshape(points.shape)


def _step_field(points: Tensor, handles: Tensor, targets: Tensor, sigma: float, kind: str) -> Tensor:
    """Backward displacement of one (sub-)step at ``points`` ``[..., 2]``."""
    if kind == "rbf":
        return rbf_field(points, handles, targets, sigma)
    # backward map: the output at a target reads the input at its handle
    deformed = mls_similarity(points, targets, handles)
    return (points - deformed) * envelope(points, targets, sigma)[..., None]


def displacement_field(handles: Tensor, targets: Tensor, size: int | Sequence[int], resolution: int | Sequence[int],
                       sigma: float, kind: str = "rbf", region: Tensor | None = None,
                       substeps: int | None = None) -> Tensor:
    """Backward displacement in image px on a ``size x size`` (or ``(h, w)``) grid: ``[h, w, 2]``.

    The motion is split into ``substeps`` equal steps (default: each at most half a radius
    long) whose backward maps are composed exactly at the grid points: the output reads the
    last step's map, that position the step before's, and so on back to the first frame.
    ``region`` (``[1, 1, size, size]``, 1 = may change) confines the motion to a painted mask.
    """
    if kind not in FIELD_KINDS:
        raise ValueError(f"unknown field kind {kind!r} (known: {', '.join(FIELD_KINDS)})")
    grid = cell_centres(size, resolution, handles.device)
    motion = targets - handles
    if substeps is None:
        longest = float(motion.norm(dim=1).max()) if handles.numel() else 0.0
        substeps = min(MAX_SUBSTEPS, max(1, math.ceil(longest / (STEP_PER_SIGMA * sigma))))
    read = grid
    for k in range(substeps, 0, -1):       # the last step first: backward maps compose in reverse
        start = handles + motion * ((k - 1) / substeps)
        end = handles + motion * (k / substeps)
        read = read - _step_field(read, start, end, sigma, kind)
    u = grid - read
    if region is not None:
        u = u * region[0, 0, :, :, None]
    return u


def jacobian_determinant(field: Tensor, resolution: int | Sequence[int]) -> Tensor:
    """``det(I - grad u)`` of the backward map ``v - u(v)`` on the grid's inner cells: ``<= 0``
    where the warp folds over itself."""
    step = as_hw(resolution)[0] / field.shape[0]               # cells are square in image px
    dx = (field[1:-1, 2:] - field[1:-1, :-2]) / (2 * step)     # d u / d x  [.., 2]
    dy = (field[2:, 1:-1] - field[:-2, 1:-1]) / (2 * step)     # d u / d y
    return (1 - dx[..., 0]) * (1 - dy[..., 1]) - dy[..., 0] * dx[..., 1]


def warp(features: Tensor, field: Tensor, resolution: int | Sequence[int], mode: str = "bicubic") -> Tensor:
    """``out(v) = features(v - field(v))``; ``features`` is ``[N, C, h, w]``, on an image of side
    ``resolution`` or ``(H, W)``.

    ``field`` is in image px at the map's own cells (see :func:`displacement_field`).
    Outside the image the border is read, so edges never turn black. Bicubic by default:
    a feature map is coarse (2 image px per cell on the default model) and bilinear
    reads between cells blur thin parts such as an eyelid; measured on the default model
    bicubic moved content a little further and lost fewer faces (semantic drags, 6 faces).
    """
    grid = cell_centres(tuple(features.shape[-2:]), resolution, features.device) - field.to(features.device)
    norm = to_grid(grid, resolution)
    norm = norm.to(features.dtype)[None].expand(features.shape[0], -1, -1, -1)
    return F.grid_sample(features, norm, mode=mode, padding_mode="border", align_corners=False)


def warp_all(maps: dict[str, Tensor], field: Tensor, resolution: int | Sequence[int]) -> dict[str, Tensor]:
    """:func:`warp` of every map (all at the field's size), keyed as given: everything the
    network reads after a layer (:meth:`dragwalk.models.base.Generator.carried`) moves together."""
    return {name: warp(value, field, resolution) for name, value in maps.items()}


def largest_slope(field: Tensor, resolution: int | Sequence[int]) -> float:
    """Largest absolute entry of the field's Jacobian (px per px); >= 1 means the warp folds."""
    step = as_hw(resolution)[0] / field.shape[0]
    gx = (field[:, 1:] - field[:, :-1]).abs().amax() / step if field.shape[1] > 1 else field.new_zeros(())
    gy = (field[1:] - field[:-1]).abs().amax() / step if field.shape[0] > 1 else field.new_zeros(())
    return float(torch.maximum(gx, gy))

