"""Measuring directions without a human study: locality, orthogonality, |z| along walks.

Shared by the tests and ``dragwalk bench directions`` so both report the same
quantities. Pure functions of tensors, plus two helpers that render a walk.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..models.base import Generator, Latent
from .base import DirectionSet
from .walks import Walk, apply_walks


def locality(change: Tensor, mask: Tensor) -> float:
    """Share of the pixel change inside ``mask``, divided by the mask's area share.

    ``change`` is ``[3, H, W]`` or ``[H, W]`` (signed or absolute). 1.0 means the change
    is spread evenly; ``1 / area`` is the most local value possible.
    """
    c = change.abs()
    if c.dim() == 3:
        c = c.sum(dim=0)
    m = mask.to(c)
    inside = float((c * m).sum()) / max(float(c.sum()), 1e-30)
    return inside / max(float(m.mean()), 1e-30)


def orthogonality(vectors: Tensor) -> float:
    """Largest |cosine| between two different rows (0 = orthogonal set)."""
    v = vectors / vectors.norm(dim=1, keepdim=True).clamp_min(1e-30)
    if v.shape[0] < 2:
        return 0.0
    gram = (v @ v.T).abs()
    gram.fill_diagonal_(0)
    return float(gram.max())


@torch.no_grad()
def walk_change(generator: Generator, latent: Latent, directions: DirectionSet, index: int,
                amount: float, kind: str = "linear", base: Tensor | None = None) -> Tensor:
    """``render(walked) - render(latent)`` as ``[3, H, W]``."""
    if base is None:
        base = generator.render(latent)
    moved = generator.render(apply_walks(generator, latent, [Walk(directions, index, amount, kind)]))
    return (moved - base)[0]


@torch.no_grad()
def matched_amount(generator: Generator, latent: Latent, directions: DirectionSet, index: int,
                   target: float, kind: str = "linear", iters: int = 14,
                   max_amount: float = 64.0) -> float:
    """Slider amount whose mean absolute pixel change equals ``target`` (bisection).

    Comparing directions "at matched overall change" needs this: a direction that
    moves everything a little and one that moves one region a lot cannot be compared
    at the same slider value.
    """
    base = generator.render(latent)

    def size(a: float) -> float:
        return float(walk_change(generator, latent, directions, index, a, kind, base).abs().mean())

    lo, hi = 0.0, 1.0
    while size(hi) < target and hi < max_amount:
        lo, hi = hi, hi * 2
    for _ in range(iters):
        mid = (lo + hi) / 2
        if size(mid) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def latent_norms(codes: Tensor) -> Tensor:
    """|z| of each row of ``[N, D]`` codes (density walks should keep it)."""
    return codes.reshape(codes.shape[0], -1).norm(dim=1)
