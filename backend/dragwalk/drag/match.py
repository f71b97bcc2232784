"""The warp's image match: fit the warped maps so the network renders the moved image.

A feature map is coarser than the image (the default model's 32x32 map is 2 px a cell).
Warping it resamples every cell between its neighbours, so a thin part (a brow, an
eyelid) comes out blurred and short of where the field put it, and the image is not the
first frame moved by the field. The match closes that gap directly: it adds to the warped
maps the offset ``delta`` that brings the rendered image to the first frame warped on the
image's own grid by the same field (:func:`image_target`), minimising

    |render(moved + support * delta) - target|^2 + ridge * |delta|^2

by L-BFGS. ``support`` holds the offset to the cells the field moves (grown by one),
so nothing far from the drag or outside a painted mask can change; the ridge picks the
smallest offset where several render the same image.

On the default model only the last transposed convolution follows the warped map (a
linear layer, then tanh; a cell holds 64 values for the 2 x 2 pixels of 3 colours it
draws), so 20 iterations land on the image-grid warp: on its 12 tuning faces the content
moved 0.878 -> 0.948 of the way (the image-grid warp itself: 0.953), dlib's landmark error
0.59 -> 0.53 of no edit, and the change far from the points stayed at 0.4/255
(docs/ARCHITECTURE.md, "Drag"). After a StyleGAN2's feature layer one to three blocks
render (256 to 1024 px), each iteration a pass through them, and on random weights the
matched warp moved content less far than the feature warp by the patch measure, so the
method's default is off and a model turns it on.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from . import field as fd

#: a cell moved by less than this (image px) is outside the support
MOVED_PX = 0.05


def support(field: Tensor, region: Tensor | None = None) -> Tensor:
    """``[1, 1, h, w]``: 1 on the cells ``field`` (``[h, w, 2]``, image px) moves and one cell
    around them, inside ``region`` (1 = may change, at the field's size) when there is one."""
    moved = (field.norm(dim=-1) > MOVED_PX).to(field.dtype)[None, None]
    grown = F.max_pool2d(moved, 3, 1, 1)
    return grown if region is None else grown * (region > 0).to(grown.dtype)


def image_target(first: Tensor, field: Tensor) -> Tensor:
    """The first frame ``[1, 3, H, W]`` (in [-1, 1]) moved by ``field`` drawn on its own grid."""
    return fd.warp(first, field.to(first.device), tuple(first.shape[-2:])).clamp(-1.0, 1.0)


def matched(render: Callable[[dict[str, Tensor]], Tensor], moved: dict[str, Tensor], target: Tensor,
            where: Tensor, iterations: int, ridge: float = 0.01) -> dict[str, Tensor]:
    """``moved`` plus the offset (on ``where``, ``[1, 1, h, w]``) that brings ``render(maps)`` to
    ``target`` (see the module docstring); ``render`` must be differentiable. Maps of another
    size than ``where`` (none on the models here) are left as they are."""
    if iterations <= 0 or not bool(where.any()):
        return moved
    names = [k for k, v in moved.items() if tuple(v.shape[-2:]) == tuple(where.shape[-2:])]
    deltas = {k: torch.zeros_like(moved[k], dtype=torch.float32, requires_grad=True) for k in names}
    optimiser = torch.optim.LBFGS(list(deltas.values()), lr=1.0, max_iter=iterations, history_size=10,
                                  line_search_fn="strong_wolfe")

    def trial() -> dict[str, Tensor]:
        return {k: v + where.to(v.dtype) * deltas[k].to(v.dtype) if k in deltas else v for k, v in moved.items()}

    def closure() -> Tensor:
        optimiser.zero_grad()
        error = (render(trial()).float() - target).pow(2).sum()
        loss = error + ridge * sum(d.pow(2).sum() for d in deltas.values())
        loss.backward()
        return loss

    with torch.enable_grad():
        optimiser.step(closure)
    with torch.no_grad():
        return {k: v.detach() for k, v in trial().items()}
