"""SeFa, closed-form factorisation (Shen & Zhou, CVPR 2021).

The directions that change the first linear map's output the most are the top
eigenvectors of ``A A^T`` where ``A`` (``[D, out]``) is that map's weight with
unit columns. No sampling and no generator forward: a few milliseconds.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..models.base import Generator
from .base import DirectionSet, edit_space, layer_range, projected_std, signed_rows


def factorize(weight: Tensor) -> tuple[Tensor, Tensor]:
    """Eigenvalues (descending) and eigenvectors (rows) of ``A A^T`` for ``A`` = weight, unit columns.

    ``eigh`` is the symmetric solver; it returns ascending eigenvalues, so we flip them
    (the reference code forgets to sort). Signs follow :func:`~.base.signed_rows` (each row's
    largest component positive), so slider 0 means the same edit on every machine.
    """
    a = weight.double()
    a = a / a.norm(dim=0, keepdim=True).clamp_min(1e-12)
    values, vectors = torch.linalg.eigh(a @ a.T)
    order = torch.argsort(values, descending=True)
    return values[order].float(), signed_rows(vectors[:, order].T).contiguous().float()


def compute(generator: Generator, num: int = 32, layers: Sequence[int] | None = None,
            **_: object) -> DirectionSet:
    """Top ``num`` SeFa directions, for the w+ rows ``layers`` = (start, end) on StyleGAN."""
    rows = layer_range(generator, layers)
    indices = list(range(*rows)) if rows else None
    weight = generator.first_linear_map(indices).detach().cpu()
    values, vectors = factorize(weight)
    num = min(int(num), vectors.shape[0])
    vectors, values = vectors[:num], values[:num]
    space = edit_space(generator)
    return DirectionSet(method="sefa", model=generator.name, space=space, vectors=vectors,
                        scales=projected_std(generator, vectors, space), layers=rows,
                        labels=[f"sefa {i}" for i in range(num)], values=values.tolist(),
                        params={"num": num, "layers": list(rows) if rows else None})
