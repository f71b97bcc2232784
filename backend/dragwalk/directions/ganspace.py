"""GANSpace (Harkonen et al., NeurIPS 2020): principal components of sampled latents.

* StyleGAN: PCA of sampled ``w``; a direction is a component, its scale the std along it.
* Models without W (the DCGAN): PCA of a flattened early activation ``y = G1(z)``,
  then least squares from the PCA coordinates back to ``z`` over >= 10k samples;
  the regression rows (normalised) are the z directions. The scale is the z
  distance that moves the coordinate by one std.
"""

from __future__ import annotations

import threading
import weakref
from typing import Iterator, Sequence

import torch
from torch import Tensor

from ..models.base import Generator
from .base import DirectionSet, edit_space, features, layer_range, normalize_rows, sample_space
from .pca import PCA, Source, streamed_pca, tensor_source
from .progress import KeyedLocks, checkpoint

#: samples per chunk of activations: 256 x 8192 floats (8 MB) on the default model
CHUNK = 256
#: components an activation PCA computes however few are asked for: GANSpace's default, so SFVQ's
#: 20 and GANSpace's 80 on the same samples are one PCA (:func:`activation_basis`), whichever runs first
SHARED_COMPONENTS = 80

#: per generator, the last activation PCA: ``{(layer, n, seed, k): (pca, codes)}`` (about 10 MB)
_recent: "weakref.WeakKeyDictionary[Generator, dict[tuple, tuple[PCA, Tensor]]]" = weakref.WeakKeyDictionary()
_recent_lock = threading.Lock()
_key_locks = KeyedLocks()


def pca(data: Tensor, k: int, seed: int = 0) -> PCA:
    """Top ``k`` principal components of rows already in memory (sampled ``w``: small)."""
    return streamed_pca(tensor_source(data), k, seed)


def regress_to_latent(coords: Tensor, codes: Tensor) -> Tensor:
    """Least squares ``B`` ([K, D]) with ``codes ~ coords @ B``: a feature direction's latent image."""
    x = torch.cat([coords, torch.ones(coords.shape[0], 1)], dim=1).double()
    solution = torch.linalg.lstsq(x, codes.double()).solution
    return solution[:-1].float()


def activation_basis(generator: Generator, layer: str, n: int, k: int, seed: int) -> tuple[PCA, Tensor, Tensor]:
    """PCA of ``layer``'s activation over ``n`` sampled ``z`` and its regression to z.

    Returns ``(pca, regression [K, D], codes [N, D])``; shared with SFVQ. Memory is bounded by a
    chunk of activations whatever ``n`` (:mod:`.pca`). At least :data:`SHARED_COMPONENTS` components
    are computed and the first ``k`` returned, and the last PCA of each generator is kept: GANSpace
    and SFVQ at their defaults (same samples, 80 and 20 components) read the activations once, the
    start-up precomputation's SFVQ costs only its curve fit, and a method's result does not depend
    on which of the two ran first (the top ``k`` of the 80 are the exact top ``k`` to the PCA's
    tolerance).
    """
    basis, codes = _shared_pca(generator, layer, int(n), max(int(k), SHARED_COMPONENTS), int(seed))
    if k < basis.components.shape[0]:
        basis = PCA(basis.mean, basis.components[:k], basis.std[:k],
                    basis.coords[:, :k] if basis.coords is not None else None, basis.passes)
    return basis, regress_to_latent(basis.coords, codes), codes


def _shared_pca(generator: Generator, layer: str, n: int, k: int, seed: int) -> tuple[PCA, Tensor]:
    """The PCA for ``(layer, n, seed, k)``: the generator's last one if it matches, else computed
    (one computation per key however many threads ask: the page's request joins the background's)."""
    key = (layer, n, seed, k)
    with _key_locks.hold((id(generator), *key)):
        with _recent_lock:
            hit = _recent.get(generator, {}).get(key)
        if hit is not None:
            return hit
        codes = sample_space(generator, n, seed, "z").cpu()
        result = streamed_pca(activation_source(generator, codes, layer), k, seed), codes
        with _recent_lock:
            _recent[generator] = {key: result}
        return result


def activation_source(generator: Generator, codes: Tensor, layer: str, chunk: int = CHUNK) -> Source:
    """``layer``'s flattened activations of ``codes``, recomputed chunk by chunk on every read:
    the activations of 10k samples (330 MB on the default model) are never held at once."""
    def read() -> Iterator[Tensor]:
        for part in codes.split(chunk):
            checkpoint()                 # a background run pauses for drags or stops here
            yield features(generator, part, layer, batch=chunk)
    return read


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
