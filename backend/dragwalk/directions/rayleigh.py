"""The Rayleigh-quotient maths behind REDs (pure functions on two Gram matrices).

Shared by :mod:`.reds` (directions in the global latent) and :mod:`.reds_spatial` (directions
over spatial offsets): given ``A_c`` (what moves the region) and ``A_f`` (what moves the rest),
find the directions that maximise ``v^T A_c v / v^T A_f v``; see :mod:`.reds` for the two solvers.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import signed_rows


def _top_share(values: Tensor, share: float) -> int:
    """How many of the descending ``values`` hold ``share`` of their sum."""
    values = values.clamp_min(0)
    cum = values.cumsum(0) / values.sum().clamp_min(1e-30)
    return int((cum < share).sum()) + 1


def generalized_directions(a_c: Tensor, a_f: Tensor, ridge: float = 1e-6) -> Tensor:
    """Rows ``v`` solving ``A_c v = lambda A_f v``, largest ``lambda`` first (unit rows).

    ``A_f`` gets a small ridge (relative to its mean eigenvalue) so it is positive
    definite; then with ``A_f = L L^T`` the problem is the ordinary symmetric
    eigenproblem of ``L^-1 A_c L^-T``.
    """
    a_c, a_f = a_c.double(), a_f.double()
    d = a_f.shape[0]
    b = a_f + ridge * float(a_f.diagonal().mean()) * torch.eye(d, dtype=a_f.dtype)
    chol = torch.linalg.cholesky((b + b.T) / 2)
    inv = torch.linalg.solve_triangular(chol, torch.eye(d, dtype=a_f.dtype), upper=False)
    c = inv @ a_c @ inv.T
    vals, vecs = torch.linalg.eigh((c + c.T) / 2)
    order = torch.argsort(vals, descending=True)
    dirs = (inv.T @ vecs[:, order]).T
    return dirs / dirs.norm(dim=1, keepdim=True).clamp_min(1e-30)


def rayleigh_directions(a_c: Tensor, a_f: Tensor, beta_f: float = 0.99,
                        beta_c: float = 0.999, solver: str = "generalized") -> tuple[Tensor, Tensor, Tensor]:
    """REDs of the pair ``(A_c, A_f)``: ``(directions [K, D], gain [K], quotient [K])``.

    ``gain`` is ``v^T A_c v`` and ``quotient`` is ``v^T A_c v / v^T A_f v``.

    ``solver="generalized"`` (default) solves the generalised eigenproblem exactly;
    rows are sorted by quotient, i.e. by locality. On the 100-d DCGAN z the outside
    pixels' spectrum has a long tail, so the null-space form keeps directions that
    still move the outside; the exact maximiser is about twice as local there.
    ``solver="nullspace"`` is the reference's robust form (``beta_f``, ``beta_c``),
    rows sorted by gain.
    """
    if solver == "generalized":
        dirs = generalized_directions(a_c, a_f)
        return _signed_stats(dirs, a_c, a_f)
    if solver != "nullspace":
        raise ValueError(f"unknown REDs solver {solver!r} (generalized, nullspace)")
    vals_f, vecs_f = torch.linalg.eigh(a_f.double())
    order = torch.argsort(vals_f, descending=True)
    vals_f, vecs_f = vals_f[order], vecs_f[:, order]
    held = min(_top_share(vals_f, beta_f), a_f.shape[0] - 1)
    null = vecs_f[:, held:]                                    # [D, D - held]
    reduced = null.T @ a_c.double() @ null
    vals_c, vecs_c = torch.linalg.eigh((reduced + reduced.T) / 2)
    order = torch.argsort(vals_c, descending=True)
    vals_c, vecs_c = vals_c[order], vecs_c[:, order]
    keep = min(_top_share(vals_c, beta_c), vecs_c.shape[1])
    dirs = (null @ vecs_c[:, :keep]).T                          # [K, D]
    dirs = dirs / dirs.norm(dim=1, keepdim=True).clamp_min(1e-30)
    return _signed_stats(dirs, a_c, a_f)


def _signed_stats(dirs: Tensor, a_c: Tensor, a_f: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Deterministic signs, then gain and quotient of each row."""
    dirs = signed_rows(dirs)
    gain = torch.einsum("kd,de,ke->k", dirs, a_c.double(), dirs)
    hold = torch.einsum("kd,de,ke->k", dirs, a_f.double(), dirs)
    return dirs.float(), gain.float(), (gain / hold.clamp_min(1e-30)).float()
