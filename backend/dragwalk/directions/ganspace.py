"""GANSpace (Harkonen et al., NeurIPS 2020): principal components of sampled latents.

* StyleGAN: PCA of sampled ``w``; a direction is a component, its scale the std along it.
* Models without W (the DCGAN): PCA of a flattened early activation ``y = G1(z)``,
  then least squares from the PCA coordinates back to ``z`` over >= 10k samples;
  the regression rows (normalised) are the z directions. The scale is the z
  distance that moves the coordinate by one std.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from ..models.base import Generator
from .base import DirectionSet, edit_space, features, layer_range, normalize_rows, sample_space


@dataclass
class PCA:
    """``mean [F]``, ``components [K, F]`` (unit rows), ``std [K]``, ``coords [N, K]``."""

    mean: Tensor
    components: Tensor
    std: Tensor
    coords: Tensor


def pca(data: Tensor, k: int, seed: int = 0) -> PCA:
    """Top ``k`` principal components; randomized SVD when the feature dimension is large."""
    mean = data.mean(dim=0)
    centered = data - mean
    k = min(k, *centered.shape)
    if centered.shape[1] <= 2048:
        _, s, vh = torch.linalg.svd(centered, full_matrices=False)
        s, v = s[:k], vh[:k].T
    else:
        torch.manual_seed(seed)  # randomized SVD: same answer every run
        _, s, v = torch.svd_lowrank(centered, q=k + 16, niter=3)
        s, v = s[:k], v[:, :k]
    coords = centered @ v
    # fix each component's sign so the result does not flip between runs
    signs = torch.sign(v.sum(dim=0) + 1e-12)
    v, coords = v * signs, coords * signs
    std = s / max(data.shape[0] - 1, 1) ** 0.5
    return PCA(mean, v.T.contiguous(), std, coords)


def regress_to_latent(coords: Tensor, codes: Tensor) -> Tensor:
    """Least squares ``B`` ([K, D]) with ``codes ~ coords @ B``: a feature direction's latent image."""
    x = torch.cat([coords, torch.ones(coords.shape[0], 1)], dim=1).double()
    solution = torch.linalg.lstsq(x, codes.double()).solution
    return solution[:-1].float()


def activation_basis(generator: Generator, layer: str, n: int, k: int, seed: int) -> tuple[PCA, Tensor, Tensor]:
    """PCA of ``layer``'s activation over ``n`` sampled ``z`` and its regression to z.

    Returns ``(pca, regression [K, D], codes [N, D])``; shared with SFVQ.
    """
    codes = sample_space(generator, n, seed, "z").cpu()
    acts = features(generator, codes, layer)
    basis = pca(acts, k, seed)
    del acts
    return basis, regress_to_latent(basis.coords, codes), codes


def compute(generator: Generator, num: int = 80, samples: int = 10_000, layer: str | None = None,
            layers: Sequence[int] | None = None, seed: int = 0, **_: object) -> DirectionSet:
    """GANSpace directions: ``num`` components from ``samples`` samples."""
    space = edit_space(generator)
    rows = layer_range(generator, layers)
    if space == "w":
        codes = sample_space(generator, samples, seed, "w").cpu()
        basis = pca(codes, num, seed)
        vectors, scales = basis.components, basis.std
        used_layer = None
    else:
        used_layer = layer or generator.layers[0].name
        basis, regression, _ = activation_basis(generator, used_layer, samples, num, seed)
        # one std along component c in feature space <- regression[c] * std_c in z
        vectors = normalize_rows(regression)
        scales = regression.norm(dim=1) * basis.std
    k = vectors.shape[0]
    return DirectionSet(method="ganspace", model=generator.name, space=space, vectors=vectors,
                        scales=scales, layers=rows, labels=[f"pc {i}" for i in range(k)],
                        values=(basis.std ** 2).tolist(),
                        params={"num": k, "samples": samples, "layer": used_layer, "seed": seed,
                                "layers": list(rows) if rows else None})
