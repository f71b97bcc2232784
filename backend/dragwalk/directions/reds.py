"""Rayleigh EigenDirections, REDs (Balakrishnan et al., ECCV 2022), for a painted region.

Two feature sets of the image at one latent: ``c`` = the pixels inside the region
(to change) and ``f`` = the pixels outside (to hold). With ``A_c = J_c^T J_c`` and
``A_f = J_f^T J_f`` (each normalised by its Frobenius norm) the best local edits
maximise the Rayleigh quotient ``v^T A_c v / v^T A_f v``. Two solvers:

* ``generalized`` (default): the generalised eigenproblem ``A_c v = lambda A_f v``
  solved exactly (Cholesky of a slightly ridged ``A_f``), sorted by quotient;
* ``nullspace``: the reference's robust form: eigen-decompose ``A_f``, drop the top
  eigenvectors holding a ``beta_f`` share of its spectrum (what moves the outside),
  keep the rest ``N``, eigen-decompose ``N^T A_c N`` (``beta_c`` share), return ``N V``.

On the DCGAN's 100-d z the outside's spectrum has a long tail, so the null-space
form keeps directions that still move the outside (measured: about half the
locality of the exact maximiser on a mouth region); hence the default.

Directions depend on the latent they were computed at: a ``curved`` walk
recomputes them along the path (see ``walks``). The whole computation is one
Jacobian (forward-mode, ~0.1 s at D = 100) plus two small eigen-problems.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from ..models.base import Generator, Latent, as_hw
from .base import DirectionSet, edit_space, layer_range, projected_std
from .jacobian import image_jacobian, weighted_gram
from . import reds_spatial
from .rayleigh import generalized_directions, rayleigh_directions  # noqa: F401  (part of this method's API)

#: parameters a curved walk passes on when it recomputes the directions
PARAMS = ("num", "beta_f", "beta_c", "layers", "solver")


def region_weights(mask: Any, resolution: Any) -> Tensor:
    """An ``H x W`` mask (any size, 1 = region) as per-pixel weights in ``[0, 1]`` at ``resolution``
    (a side, or ``(height, width)``)."""
    m = torch.as_tensor(np.asarray(mask, dtype=np.float32))
    if m.dim() == 3 and m.shape[0] == 1:
        m = m[0]
    if m.dim() != 2:
        raise ValueError(f"region mask must be a 2-D H x W array, got shape {tuple(m.shape)}")
    if not torch.isfinite(m).all():
        raise ValueError("region mask contains NaN or infinite values")
    if tuple(m.shape) != as_hw(resolution):
        m = F.interpolate(m[None, None], size=as_hw(resolution), mode="area")[0, 0]
    m = m.clamp(0, 1)
    area = float(m.mean())
    if area <= 0.0 or area >= 1.0:
        raise ValueError("region mask must cover part of the image (it is empty or covers everything)")
    return m


def compute(generator: Generator, latent: Latent | None = None, mask: Any = None, num: int = 8,
            beta_f: float = 0.99, beta_c: float = 0.999, layers: Sequence[int] | None = None,
            solver: str = "generalized", seed: int = 0, offsets: str | None = None,
            joint: bool = False, channels: int = 4, dilate: int = 0, realism: float = reds_spatial.REALISM,
            edges: float = reds_spatial.EDGES, keep_face: bool = False,
            **_: object) -> DirectionSet:
    """REDs for "the pixels inside ``mask``" against "the pixels outside", at ``latent``.

    ``latent`` defaults to ``generator.sample(seed)``. ``layers`` = (start, end) restricts a
    StyleGAN edit to those w+ rows. ``offsets`` names an activation layer (or ``auto``): the
    directions are then spatial offsets on it under the region (``joint``: plus the code),
    see ``reds_spatial``; ``None`` / ``"none"`` keeps the global latent. ``keep_face`` (offsets only)
    keeps the directions after which dlib still finds the face both ways (``face_screen``).
    """
    if mask is None:
        raise ValueError("reds needs a region mask (H x W, 1 = the region to change)")
    if not 0.0 < float(beta_f) < 1.0 or not 0.0 < float(beta_c) <= 1.0:
        raise ValueError("beta_f must be in (0, 1) and beta_c in (0, 1]")
    space = edit_space(generator)
    rows = layer_range(generator, layers)
    if latent is None:
        latent = generator.sample(int(seed))
    weights = region_weights(mask, generator.image_size)
    if offsets not in (None, "none", ""):
        height, width = generator.image_size
        if height != width:
            raise ValueError(f"{generator.name}: region offsets need a square model for now "
                             f"({width}x{height}); use offsets 'none' (REDs over the latent code)")
        return reds_spatial.compute(generator, latent, weights, num, offsets, joint, channels, dilate, seed,
                                    realism, edges, keep_face)
    _, jac = image_jacobian(generator, latent, space, rows)
    pixel_w = weights.reshape(1, -1).expand(3, -1).reshape(-1)  # same weight for r, g, b
    a_c = weighted_gram(jac, pixel_w)
    a_f = weighted_gram(jac, 1.0 - pixel_w)
    dirs, gain, quotient = rayleigh_directions(a_c, a_f, beta_f, beta_c, solver)
    num = max(1, min(int(num), dirs.shape[0]))
    dirs, gain, quotient = dirs[:num], gain[:num], quotient[:num]
    return DirectionSet(method="reds", model=generator.name, space=space, vectors=dirs,
                        scales=projected_std(generator, dirs, space), layers=rows,
                        labels=[f"region {i}" for i in range(num)], values=quotient.tolist(),
                        params={"num": num, "beta_f": float(beta_f), "beta_c": float(beta_c),
                                "solver": solver,
                                "layers": list(rows) if rows else None,
                                "region_area": round(float(weights.mean()), 6),
                                "gain": [float(g) for g in gain]},
                        extras={"mask": weights, **reds_spatial.at_extras(latent)})
