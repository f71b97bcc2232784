"""The image Jacobian with respect to a latent direction space, and its Gram matrices.

REDs (and the curved walks that recompute them) need ``A = J^T W J`` for pixel
weights ``W``: only the ``D x D`` Gram matrices, never eigen-decompositions of
the huge ``J``. ``J`` is computed column by column with forward-mode products
(one per latent dimension, batched with ``vmap``): at ``D = 100`` that costs
about one batch-100 forward of the generator, ~0.1 s for the default model.
Every generator of the package is traceable; one that is not fails here with torch's
error (no silent switch to another method).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.func import jvp, vmap

from ..models.base import Generator, Latent
from .base import add_direction, as_latent_code


def _expand_offsets(latent: Latent, n: int) -> dict[str, Tensor]:
    return {k: v.expand(n, *v.shape[1:]) for k, v in latent.offsets.items()}


def image_jacobian(generator: Generator, latent: Latent, space: str,
                   layers: tuple[int, int] | None = None, chunk: int = 128) -> tuple[Tensor, Tensor]:
    """``(image [3, H, W], J [3*H*W, D])`` of ``render(latent + v)`` at ``v = 0``.

    ``v`` lives in ``space`` (``z`` or ``w``) and is added on the w+ rows ``layers``
    when the latent is w+ (the same rule walks use), so a direction found here is
    exactly what a walk applies.
    """
    base = as_latent_code(generator, latent.detach(), space)
    base = base.derive(base.code[:1], {k: v[:1] for k, v in base.offsets.items()})
    dim = int(base.code.shape[-1])
    zero = torch.zeros(1, dim, device=base.code.device)

    def render(v: Tensor) -> Tensor:
        code = add_direction(base.code.expand(v.shape[0], *base.code.shape[1:]), v if base.code.dim() == 2
                             else v[:, None, :], layers)
        return generator.render(base.derive(code, _expand_offsets(base, v.shape[0])))

    eye = torch.eye(dim, device=zero.device)
    with torch.no_grad():
        image = render(zero)[0]

    def column(t: Tensor) -> Tensor:
        return jvp(render, (zero,), (t[None],))[1][0]

    with torch.no_grad():
        cols = vmap(column, chunk_size=chunk)(eye)  # [D, 3, H, W]
    return image, cols.reshape(dim, -1).T.float().cpu()


def weighted_gram(jacobian: Tensor, weights: Tensor) -> Tensor:
    """``J^T diag(weights) J`` normalised by its Frobenius norm (``[D, D]``, float64)."""
    j = jacobian.double()
    gram = j.T @ (j * weights.double().reshape(-1, 1))
    return gram / gram.norm().clamp_min(1e-30)
