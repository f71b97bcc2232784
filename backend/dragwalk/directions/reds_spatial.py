"""REDs over spatial offsets: region directions that are local by construction.

A straight line in the DCGAN's 100-d ``z`` cannot be much more local than ~2.5x the
best global direction: every ``z`` direction moves the whole face. The latents already
carry additive offsets on intermediate activations (the drags' "spatial latent"); an
offset on the cells under a region can only change what those cells reach.

Here the edit variable is ``p = (dz, a)``: optionally the code (``joint``), plus the
coefficients ``a`` of an offset on ``layer`` restricted to the cells under the dilated
region (``offset_basis.support_cells``) and to the layer's top channel components
(``offset_basis.channel_basis``). The image Jacobian ``J = d image / d p`` is taken with
forward-mode products (one per column, batched), the two Gram matrices
``A_c = J^T W J`` and ``A_f = J^T (1 - W) J`` are formed as in ``reds``, and the
generalised eigenproblem ``A_c v = lambda (A_f + realism P) v`` is solved by
``rayleigh.rayleigh_directions``. ``P`` (``realism_prior``) measures how unlike real activations
on the region's cells an offset is: many offsets change nothing outside a region (they tie at
the most local value possible), and the term puts the most plausible of them first.

The result is an ordinary :class:`DirectionSet` in the code's space: ``vectors`` hold the
code part (zero rows for offsets alone), ``extras["offset:<layer>"]`` the offset part
``[K, C, h, w]``; together each direction is a unit vector. ``walks`` adds both parts, so
a walk is a plain latent (code + offsets) that exports, logs and replays like any other.
"""

from __future__ import annotations

import weakref

import torch
from torch import Tensor

from ..models.base import Generator, Latent
from .base import DirectionSet, as_latent_code, edit_space
from . import face_screen
from .rayleigh import rayleigh_directions
from .offset_basis import (OFFSET_KEY, ChannelBasis, auto_layer, cell_boxes, channel_basis, colouring, support_cells,
                           support_precision)


#: most edit variables (support cells x channel components) of one region set: the Jacobian,
#: the Gram matrices and the eigenproblem stay well under a second on the default model
BUDGET = 384
#: default weight of the realism term (``realism_prior``) against the outside's change: measured on
#: tuning faces (seeds 7000+, not the bench's held-out 5000+), ``dragwalk bench directions --regions``
REALISM = 10.0
#: default weight of the edge term (``edge_gram``): chosen on the same tuning faces
EDGES = 1.0


def _renderers(generator: Generator, base: Latent, layer: str):
    """``offset [C, h, w] -> image [3, H, W]`` and ``dz [D] -> image`` at ``base`` (unbatched)."""

    def with_offset(offset: Tensor) -> Tensor:
        offsets = dict(base.offsets)
        offsets[layer] = offsets[layer] + offset[None] if layer in offsets else offset[None]
        return generator.render(base.derive(base.code, offsets))[0]

    def with_code(dz: Tensor) -> Tensor:
        code = base.code + (dz if base.code.dim() == 2 else dz[None, :])
        return generator.render(base.derive(code))[0]

    return with_offset, with_code


def _jvps(fn, primal: Tensor, tangents: Tensor, chunk: int) -> Tensor:
    """``[T, ...]``: ``d fn(primal)[tangent]`` for each tangent (forward mode, batched)."""
    from torch.func import jvp, vmap

    def column(t: Tensor) -> Tensor:
        return jvp(fn, (primal,), (t,))[1]

    with torch.no_grad():
        return vmap(column, chunk_size=chunk)(tangents)


_margins: "weakref.WeakKeyDictionary[Generator, dict[str, int]]" = weakref.WeakKeyDictionary()


def footprint_margin(generator: Generator, layer: str, probes: int = 8) -> int:
    """Pixels by which a cell's influence on the image reaches beyond the cell's own box.

    Measured once per (model, layer) by pushing random tangents through the centre cell and
    reading where the image derivative is non-zero (convolutions give exact zeros outside a
    receptive field), plus one pixel of safety: no architecture is assumed.
    """
    cached = _margins.setdefault(generator, {})
    if layer not in cached:
        c, h, w = generator.offset_shape(layer)  # type: ignore[misc]
        px = generator.resolution // h
        base = as_latent_code(generator, generator.sample(0), edit_space(generator))
        with_offset, _ = _renderers(generator, base, layer)
        gen = torch.Generator().manual_seed(0)
        tangents = torch.zeros(probes, c, h, w)
        tangents[:, :, h // 2, w // 2] = torch.randn(probes, c, generator=gen)
        cols = _jvps(with_offset, torch.zeros(c, h, w, device=base.code.device),
                     tangents.to(base.code.device), probes).abs().sum((0, 1)).cpu()
        ys, xs = torch.nonzero(cols > 0, as_tuple=True)
        y0, x0 = (h // 2) * px, (w // 2) * px
        reach = max(int(y0 - ys.min()), int(ys.max() + 1 - y0 - px), int(x0 - xs.min()),
                    int(xs.max() + 1 - x0 - px), 0) if ys.numel() else 0
        cached[layer] = reach + 1
    return cached[layer]


def spatial_jacobian(generator: Generator, base: Latent, layer: str, cells: Tensor, basis: Tensor,
                     joint: bool, chunk: int = 64) -> Tensor:
    """``J [3*H*W, P]`` of the image with respect to ``p = (dz?, a)`` at ``p = 0``.

    ``a`` holds ``k`` channel coefficients per support cell (``p[dim + i * k + j]``: cell ``i``,
    component ``j``). Cells far enough apart share one forward-mode product (``colouring``); the
    summed column is split by each cell's footprint box, which is exact because the image
    derivative is zero outside it (``footprint_margin``). The cost is ``stride^2 * k`` products,
    whatever the region's size.
    """
    c, h, w = generator.offset_shape(layer)  # type: ignore[misc]
    res = generator.resolution
    k = basis.shape[0]
    device = base.code.device
    with_offset, with_code = _renderers(generator, base, layer)
    margin = footprint_margin(generator, layer)
    px = res // h
    stride = -(-(px + 2 * margin) // px)
    groups = colouring(cells, h, stride)
    tangents = torch.zeros(len(groups), k, c, h * w)
    for g, group in enumerate(groups):
        tangents[g][:, :, group] = basis[:, :, None]
    packed = _jvps(with_offset, torch.zeros(c, h, w, device=device),
                   tangents.reshape(-1, c, h, w).to(device), chunk).reshape(len(groups), k, 3, res, res).cpu()
    position = {int(cell): i for i, cell in enumerate(cells)}
    columns = torch.zeros(cells.numel(), k, 3, res, res)
    for g, group in enumerate(groups):
        for cell, (y0, y1, x0, x1) in zip(group.tolist(), cell_boxes(group, h, res, margin).tolist()):
            columns[position[cell], :, :, y0:y1, x0:x1] = packed[g, :, :, y0:y1, x0:x1]
    jac = columns.reshape(cells.numel() * k, -1).T
    if joint:
        dim = int(base.code.shape[-1])
        code_cols = _jvps(with_code, torch.zeros(dim, device=device), torch.eye(dim, device=device), chunk)
        jac = torch.cat([code_cols.reshape(dim, -1).T.cpu(), jac], dim=1)
    return jac.float()


def sparse_gram(jacobian: Tensor, weights: Tensor, chunk: int = 32) -> Tensor:
    """``J^T diag(weights) J / ||.||_F`` (float64) for a ``J`` whose columns are mostly zero.

    Each offset column is non-zero only on its footprint (a few dozen pixels), so row ``c`` of
    the Gram matrix sums over that footprint alone: ``nnz x P`` work instead of the dense
    ``rows x P^2`` (which takes seconds for a large region).
    """
    j = jacobian.double()
    nonzero = (j != 0).T                                          # [P, rows]
    width = max(1, int(nonzero.sum(1).max()))
    present, rows = torch.topk(nonzero.to(torch.int8), width, dim=1)   # [P, width]
    values = j.T.gather(1, rows) * present * weights.double()[rows]
    gram = torch.empty(j.shape[1], j.shape[1], dtype=torch.float64)
    for start in range(0, j.shape[1], chunk):
        part = slice(start, start + chunk)
        gram[part] = torch.einsum("cm,cmp->cp", values[part], j[rows[part]])
    gram = (gram + gram.T) / 2
    return gram / gram.norm().clamp_min(1e-30)


def edge_gram(jacobian: Tensor, weights: Tensor) -> Tensor:
    """``[P, P]`` (float64, unit Frobenius norm): how much an edit changes the edges in and at the region.

    Row ``r`` of ``D J`` is the change of one image gradient (the difference of two neighbouring
    pixels, down or across, per colour) per unit of the edit; each pair is weighted by the larger
    of its two pixels' region weights, so it covers the region's inside and its border. A tone or
    shading change that fades out smoothly costs little; a new edge, blotch or seam costs much:
    those are what the face detector (gradient histograms) and the identity descriptor read, and
    what makes a small in-region change look pasted on.
    """
    height, width = weights.shape
    p = jacobian.shape[-1]
    # a pair touching the region lies within its bounding box grown by one pixel: crop to that
    ys, xs = torch.nonzero(weights > 0, as_tuple=True)
    y0, y1 = max(0, int(ys.min()) - 1), min(height, int(ys.max()) + 2)
    x0, x1 = max(0, int(xs.min()) - 1), min(width, int(xs.max()) + 2)
    j = jacobian.reshape(3, height, width, p)[:, y0:y1, x0:x1]
    weights = weights[y0:y1, x0:x1]
    down, across = (j[:, 1:] - j[:, :-1]).reshape(-1, p), (j[:, :, 1:] - j[:, :, :-1]).reshape(-1, p)
    w_down = torch.maximum(weights[1:], weights[:-1]).reshape(1, -1).expand(3, -1).reshape(-1)
    w_across = torch.maximum(weights[:, 1:], weights[:, :-1]).reshape(1, -1).expand(3, -1).reshape(-1)
    diffs, pair_w = torch.cat([down, across]), torch.cat([w_down, w_across])
    touched = (diffs != 0).any(1) & (pair_w > 0)      # pairs no column moves add nothing
    rows = diffs[touched].double()
    # one dense product: the difference columns' supports overlap more than the pixel columns',
    # where sparse_gram's per-column gathers cost ~10x a BLAS product (1.1 s against 0.1 s for hair)
    gram = (rows * pair_w[touched].double()[:, None]).T @ rows
    gram = (gram + gram.T) / 2
    return gram / gram.norm().clamp_min(1e-30)


def realism_prior(basis: ChannelBasis, cells: Tensor, dim: int) -> Tensor:
    """``[P, P]`` (float64, unit Frobenius norm): how implausible an edit ``p = (dz?, a)`` is.

    The offset part is the Mahalanobis length under real activations on the support
    (``support_precision``); a code part (``joint``) is ``|dz|^2``, ``z`` being whitened already.
    """
    precision = support_precision(basis, cells)
    if dim:
        code = torch.eye(dim, dtype=precision.dtype) / dim ** 0.5
        precision = torch.block_diag(code, precision)
    return precision / precision.norm().clamp_min(1e-30)


def compute(generator: Generator, latent: Latent, weights: Tensor, num: int, layer: str | None,
            joint: bool, channels: int, dilate: int, seed: int = 0, realism: float = REALISM,
            edges: float = EDGES, keep_face: bool = False) -> DirectionSet:
    """REDs for the region ``weights`` (``H x W`` in [0, 1]) over offsets on ``layer`` (± the code).

    Called by ``reds.compute`` when its ``offsets`` parameter names a layer (or ``auto``).
    """
    if not isinstance(joint, bool):
        raise ValueError(f"joint must be true or false, got {joint!r}")
    if not 0 <= int(dilate) <= 4:
        raise ValueError(f"dilate must be in 0..4 cells, got {dilate}")
    realism, edges = float(realism), float(edges)
    if not 0.0 <= realism <= 100.0:
        raise ValueError(f"realism must be in [0, 100], got {realism}")
    if not 0.0 <= edges <= 100.0:
        raise ValueError(f"edges must be in [0, 100], got {edges}")
    if layer in (None, "auto"):
        layer = auto_layer(generator, weights, int(dilate), BUDGET)
    layer = str(layer)
    shape = generator.offset_shape(layer)
    if shape is None:
        raise ValueError(f"{generator.name}: {layer!r} takes no spatial offset")
    if not 1 <= int(channels) <= shape[0]:
        raise ValueError(f"channels must be in 1..{shape[0]} for {layer}, got {channels}")
    cells = support_cells(weights, shape[1], int(dilate))
    if cells.numel() > BUDGET:
        raise ValueError(f"the region covers {cells.numel()} cells of {layer}, more than {BUDGET}: "
                         "paint less or use a coarser layer")
    # the eigenproblem's size is cells x channels: large regions get fewer channel components
    channels = max(1, min(int(channels), BUDGET // cells.numel()))
    space = edit_space(generator)
    base = as_latent_code(generator, latent.detach(), space)
    base = base.derive(base.code[:1], {k: v[:1] for k, v in base.offsets.items()})
    basis = channel_basis(generator, layer, channels, seed=seed)
    jac = spatial_jacobian(generator, base, layer, cells, basis.vectors, bool(joint))
    pixel_w = weights.reshape(1, -1).expand(3, -1).reshape(-1)
    reached = jac.abs().sum(1) > 0          # pixels no column reaches add nothing to either Gram
    rows, row_w = jac[reached], pixel_w[reached]       # the full jac stays for the edge term's neighbours
    a_c, a_f = sparse_gram(rows, row_w), sparse_gram(rows, 1.0 - row_w)
    if float(a_f.diagonal().sum()) <= 0.0:   # nothing reaches outside: every direction is local
        a_f = torch.eye(a_f.shape[0], dtype=a_f.dtype)
    dim = int(base.code.shape[-1]) if joint else 0
    hold = a_f + realism * realism_prior(basis, cells, dim) if realism > 0 else a_f
    if edges > 0:
        hold = hold + edges * edge_gram(jac, weights)
    dirs, gain, quotient = rayleigh_directions(a_c, hold)
    num = max(1, min(int(num), dirs.shape[0]))
    screen: dict[str, object] = {"keep_face": bool(keep_face)}
    if keep_face:
        order, screen = _face_order(generator, base, layer, cells, basis.vectors, dirs, jac, weights, dim, num)
    else:
        order = list(range(num))
    dirs, gain, quotient = dirs[order], gain[order], quotient[order]
    num = len(order)
    k = basis.vectors.shape[0]
    coeffs = dirs[:, dim:].reshape(num, cells.numel(), k)
    # natural step: one unit moves the activations under the region by about one standard
    # deviation of real activations per cell (whitened coordinates: z is whitened already, an
    # offset component is divided by its channel component's std; the norm is spread over the
    # support's cells, hence the sqrt(cells)) -- a slider's few units then give a visible edit
    whitened = torch.cat([dirs[:, :dim], (coeffs / basis.std.clamp_min(1e-6)).reshape(num, -1)], dim=1)
    scales = cells.numel() ** 0.5 / whitened.norm(dim=1).clamp_min(1e-12)
    c, h, w = shape
    offsets = offset_maps(dirs[:, dim:], cells, basis.vectors, shape)
    code_part = dirs[:, :dim] if joint else torch.zeros(num, int(base.code.shape[-1]))
    mode = f"{'joint' if joint else 'offsets'} {layer}"
    return DirectionSet(
        method="reds", model=generator.name, space=space, vectors=code_part, scales=scales,
        labels=[f"region {i} ({mode})" for i in range(num)], values=quotient.tolist(),
        params={"num": num, "offsets": layer, "joint": bool(joint), "channels": int(channels),
                "dilate": int(dilate), "realism": realism, "edges": edges, "solver": "generalized", "cells": int(cells.numel()),
                "region_area": round(float(weights.mean()), 6), "gain": [float(g) for g in gain], **screen},
        extras={"mask": weights, **at_extras(latent), OFFSET_KEY + layer: offsets})


def offset_maps(coeffs: Tensor, cells: Tensor, basis: Tensor, shape: tuple[int, int, int]) -> Tensor:
    """``[K, C, h, w]``: the offsets of coefficient rows ``coeffs [K, cells * k]`` (cell-major)."""
    c, h, w = shape
    out = torch.zeros(coeffs.shape[0], c, h * w)
    out[:, :, cells] = torch.einsum("knj,jc->kcn", coeffs.reshape(coeffs.shape[0], cells.numel(), -1), basis)
    return out.reshape(-1, c, h, w)


def _face_order(generator: Generator, base: Latent, layer: str, cells: Tensor, basis: Tensor, dirs: Tensor,
                jac: Tensor, weights: Tensor, dim: int, num: int) -> tuple[list[int], dict[str, object]]:
    """The ``num`` directions a region set keeps (``face_screen.keep_face``) and what the screen saw."""
    scorer = face_screen.face_scorer()
    if scorer is None:
        return list(range(num)), {"keep_face": True, "face_score": None}
    from ..imaging import to_uint8

    with torch.no_grad():
        base_score = float(scorer(to_uint8(generator.render(base))))
    if not base_score > 0:                 # no face to keep: plain quotient order
        return list(range(num)), {"keep_face": True, "face_score": base_score}
    count = min(dirs.shape[0], face_screen.POOL * num)
    cand = dirs[:count]
    # linearised mean |change| inside the region per unit of each candidate -> its probe step
    change = (jac @ cand.T).reshape(3, -1, count).abs().mean(0)[weights.reshape(-1) > 0].mean(0)
    steps = face_screen.PROBE / change.clamp_min(1e-12)
    maps = offset_maps(cand[:, dim:], cells, basis, generator.offset_shape(layer))  # type: ignore[arg-type]

    def render(indices, signs) -> Tensor:
        t = torch.tensor([s * float(steps[i]) for i, s in zip(indices, signs)])
        code = base.code.expand(len(indices), *base.code.shape[1:]).clone()
        if dim:                            # the code part moves every w+ row alike, as the Jacobian's did
            dz = (t[:, None] * cand[indices, :dim]).to(code)
            code = code + (dz if code.dim() == 2 else dz[:, None, :])
        offsets = {k: v.expand(len(indices), *v.shape[1:]) for k, v in base.offsets.items()}
        step = t[:, None, None, None] * maps[indices]
        offsets[layer] = offsets[layer] + step.to(code.device) if layer in offsets else step.to(code.device)
        with torch.no_grad():
            return generator.render(base.derive(code, offsets)).cpu()

    order, worst = face_screen.keep_face(render, count, num, base_score, scorer)
    kept = sum(1 for w in worst if w > 0)
    return order, {"keep_face": True, "face_score": base_score, "face_probed": sum(1 for w in worst if w == w),
                   "face_kept": kept}


def at_extras(latent: Latent) -> dict[str, Tensor]:
    """The latent a region set was computed at, as ``extras`` (``at`` = code, ``at:<layer>`` = offsets)."""
    out = {"at": latent.code[:1].detach().cpu()}
    out.update({f"at:{k}": v[:1].detach().cpu() for k, v in latent.offsets.items()})
    return out


def computed_at(directions: DirectionSet, latent: Latent) -> bool:
    """Whether ``directions`` (a region set) was computed at exactly ``latent``: then a replay that
    recomputes the set at the walk's start latent gets the same set."""
    at = directions.extras.get("at")
    offsets = {k[3:]: v for k, v in directions.extras.items() if k.startswith("at:")}
    if at is None or latent.code.shape[0] != 1 or set(offsets) != set(latent.offsets):
        return False
    code = latent.code.detach().cpu()
    if at.shape != code.shape:   # a w set computed at a w latent, walked from w+ (or the reverse)
        return False
    return bool(torch.equal(at, code)) and all(torch.equal(offsets[k], latent.offsets[k].detach().cpu())
                                                 for k in offsets)
