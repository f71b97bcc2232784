"""LSD quasi-eigenvectors (Toledo-Marin & Glazier, PLOS ONE 2023), our construction.

The paper builds a basis of the latent space that spans it fully and in which one
vector ("quasi-eigenvector") belongs to each labelled feature; expanding a latent
in it (latent spectral decomposition) shows which labels it carries, and moving
weight from one label's vector to another's moves the sample between labels.

Construction used here (written from the paper's description, not its code):

* centre all labelled latents on their overall mean ``m``;
* for each label ``l`` the quasi-eigenvector ``q_l`` is the leading eigenvector of
  the label's second moment about ``m`` (its scatter shrunk toward isotropy, see
  :func:`quasi_eigenvectors`), signed so the label's mean projects positively;
* the ``q_l`` are completed to a basis of the whole space by an orthonormal
  complement (``extras["basis"]``, rows), so every latent has a decomposition;
* the slider for a two-label attribute moves weight from ``q_low`` to ``q_high``:
  the direction ``(q_high - q_low) / |.|``.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from ..models.base import Generator
from .base import DirectionSet, edit_space, layer_range, normalize_rows, projected_std
from .labelled import labelled_sets


def whitening(x: Tensor, ridge: float = 1e-3) -> tuple[Tensor, Tensor, Tensor]:
    """``(mean, W, W^-1)`` with ``(x - mean) @ W`` of identity covariance (symmetric square roots).

    A Gaussian z is already white; w is strongly anisotropic, and without whitening
    the largest spread of the data, not the label, would decide the quasi-eigenvectors.
    """
    x = x.double()
    mean = x.mean(0)
    cov = (x - mean).T @ (x - mean) / max(x.shape[0] - 1, 1)
    cov = cov + ridge * cov.diagonal().mean() * torch.eye(cov.shape[0], dtype=cov.dtype)
    vals, vecs = torch.linalg.eigh(cov)
    root = vals.clamp_min(1e-30).sqrt()
    return mean, (vecs / root) @ vecs.T, (vecs * root) @ vecs.T


def quasi_eigenvectors(groups: Sequence[Tensor], shrink: float = 0.9) -> tuple[Tensor, Tensor, Tensor]:
    """``(q [L, D] unit rows in whitened coordinates, eigenvalues [L], W^-1)`` per label.

    Computed in whitened coordinates (see :func:`whitening`) and mapped back, so a
    row is the latent displacement that moves along the label's vector. ``q_l`` is
    the leading eigenvector of label ``l``'s second moment about the overall mean,
    ``mu_l mu_l^T + S_l``, with the scatter ``S_l`` shrunk by ``shrink`` toward its
    isotropic part: with a few hundred samples in 100+ dimensions the raw scatter's
    noise eigenvalues exceed the label's signal (Marchenko-Pastur), so unshrunk
    vectors point at noise.
    """
    mean, white, unwhite = whitening(torch.cat(list(groups)))
    d = white.shape[0]
    rows, values = [], []
    for g in groups:
        x = (g.double() - mean) @ white
        mu = x.mean(0)
        scatter = (x - mu).T @ (x - mu) / x.shape[0]
        iso = torch.eye(d, dtype=x.dtype) * scatter.diagonal().mean()
        moment = torch.outer(mu, mu) + (1 - shrink) * scatter + shrink * iso
        vals, vecs = torch.linalg.eigh(moment)
        q = vecs[:, -1]
        if float(mu @ q) < 0:
            q = -q
        rows.append(q)
        values.append(vals[-1])
    white_q = torch.stack(rows)
    return white_q.float(), torch.stack(values).float(), unwhite.float()


def complete_basis(vectors: Tensor) -> Tensor:
    """``[D, D]`` rows: ``vectors`` first (as given), then an orthonormal complement."""
    d = vectors.shape[1]
    q, _ = torch.linalg.qr(torch.cat([vectors.T.double(), torch.eye(d, dtype=torch.float64)], dim=1))
    complement = q[:, vectors.shape[0]:d].T
    return torch.cat([vectors.double(), complement]).float()


def decompose(basis: Tensor, codes: Tensor) -> Tensor:
    """Latent spectral decomposition: coefficients ``c`` with ``codes = c @ basis``."""
    return torch.linalg.solve(basis.double().T, codes.double().T).T.float()


def compute(generator: Generator, attribute: str | list[str] = "all", samples: int = 1000, seed: int = 0,
            share: float = 0.25, codes: Any = None, labels: Any = None, shrink: float = 0.9,
            layers: Sequence[int] | None = None, **_: object) -> DirectionSet:
    """One low -> high slider per attribute; ``extras`` hold the quasi-eigenvectors and the basis."""
    space = edit_space(generator)
    rows = layer_range(generator, layers)
    sets = labelled_sets(generator, attribute, samples, seed, share, codes, labels)
    sliders, values, quasi = [], [], []
    for _, neg, pos in sets:
        q, vals, unwhite = quasi_eigenvectors([neg, pos], shrink)  # q[0] low label, q[1] high
        # a move in whitened coordinates is the latent move ``step @ unwhite``
        sliders.append((q[1] - q[0]) @ unwhite)
        values.append(float(vals[1]))
        quasi.extend(normalize_rows(q @ unwhite))
    vectors = normalize_rows(torch.stack(sliders))
    quasi_t = torch.stack(quasi)
    full = int(torch.linalg.matrix_rank(quasi_t.double())) == len(quasi)
    basis = complete_basis(quasi_t if full else normalize_rows(vectors))
    return DirectionSet(method="lsd", model=generator.name, space=space, vectors=vectors,
                        scales=projected_std(generator, vectors, space), layers=rows,
                        labels=[name for name, _, _ in sets], values=values,
                        params={"attribute": attribute if isinstance(attribute, str) else list(attribute),
                                "samples": samples, "seed": seed, "share": share, "shrink": shrink,
                                "tags": codes is not None, "layers": list(rows) if rows else None},
                        extras={"quasi_eigenvectors": quasi_t, "basis": basis})
