"""Where a spatial-offset direction may live: the cells under a region and a channel basis.

Region directions over spatial offsets (``reds_spatial``) add a ``[C, h, w]`` offset to
one intermediate activation. Taking the Jacobian over every cell and channel (``C h w``
columns: 32 768 for the DCGAN's 16x16x128 block) would cost seconds, so the offset is
restricted twice, both without knowing the architecture:

* **support**: only the cells whose footprint (the image pixels the cell covers, its
  side ``resolution / h``) touches the region dilated by ``dilate`` cells. An offset
  elsewhere could only move the outside;
* **channels**: the top ``k`` principal components of the layer's per-cell channel
  vectors over sampled latents. Real activations live near that subspace, so an edit
  in it stays closer to what the network produces (realism), and the Jacobian has
  ``cells * k`` columns instead of ``cells * C``. The basis is computed once per
  (model, layer, k) and kept in memory (~0.1-0.5 s on the default model).

The sampled activations' coefficients in those components are kept too (``[256, k, h, w]``,
4 MB for the default's 4 components on a 32x32 layer): ``support_precision`` turns them into
the realism term of a region's Rayleigh objective.

The component standard deviations give each direction its natural step ("one unit"
moves one standard deviation of real activations, measured in whitened coordinates).
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from ..models.base import Generator

#: latents sampled to estimate a layer's channel covariance
SAMPLES = 256
#: shrinkage of a support's activation covariance towards its diagonal (``support_precision``);
#: 0.5 was chosen with 0.1 on tuning faces (seeds 7000+, never the bench's held-out 5000+)
SHRINK = 0.5
#: prefix of the ``DirectionSet.extras`` key holding a set's offset part (``offset:b2``)
OFFSET_KEY = "offset:"


def offset_parts(extras: dict[str, Tensor]) -> dict[str, Tensor]:
    """``{layer: [K, C, h, w]}``: the offset part of each direction (empty for code-only sets)."""
    return {k[len(OFFSET_KEY):]: v for k, v in extras.items() if k.startswith(OFFSET_KEY)}


@dataclass(frozen=True)
class ChannelBasis:
    """Orthonormal rows ``vectors [k, C]`` (principal channel directions) and their ``std [k]``.

    ``samples [S, k, h, w]``: the centred activations of the sampled latents in those
    components, kept so a region can ask how real activations vary jointly over its cells
    (``support_precision``).
    """

    layer: str
    vectors: Tensor
    std: Tensor
    samples: Tensor


_lock = threading.Lock()
_cache: "weakref.WeakKeyDictionary[Generator, dict[tuple[str, int], ChannelBasis]]" = weakref.WeakKeyDictionary()


@torch.no_grad()
def _compute_basis(generator: Generator, layer: str, k: int, samples: int, seed: int) -> ChannelBasis:
    latent = generator.sample_codes(samples, seed=seed)
    feats = generator.synthesize(latent, feature_layer=layer, stop_at_feature=True).features
    assert feats is not None
    c = int(feats.shape[1])
    x = feats.detach().float().cpu().permute(0, 2, 3, 1).reshape(-1, c).double()
    x = x - x.mean(0, keepdim=True)
    cov = x.T @ x / max(1, x.shape[0] - 1)
    vals, vecs = torch.linalg.eigh(cov)
    order = torch.argsort(vals, descending=True)[: min(k, c)]
    vectors = vecs[:, order].T.contiguous()
    h, w = int(feats.shape[2]), int(feats.shape[3])
    samples = (x @ vectors.T).reshape(-1, h, w, vectors.shape[0]).permute(0, 3, 1, 2)
    return ChannelBasis(layer, vectors.float(), vals[order].clamp_min(0).sqrt().float(), samples.float().contiguous())


def channel_basis(generator: Generator, layer: str, k: int, samples: int = SAMPLES, seed: int = 0) -> ChannelBasis:
    """The top-``k`` channel principal components of ``layer`` (cached per generator)."""
    if generator.offset_shape(layer) is None:
        raise ValueError(f"{generator.name}: {layer!r} takes no spatial offset "
                         f"(known: {', '.join(i.name for i in generator.layers if i.name != 'image')})")
    if not 1 <= int(k):
        raise ValueError(f"channel basis size must be >= 1, got {k}")
    key = (layer, int(k))
    with _lock:
        per_model = _cache.setdefault(generator, {})
        if key not in per_model:
            per_model[key] = _compute_basis(generator, layer, int(k), samples, seed)
        return per_model[key]


def support_cells(weights: Tensor, size: int, dilate: int = 1) -> Tensor:
    """Flat indices (row-major, ``h = w = size``) of the cells whose footprint touches the region.

    ``weights`` is the ``H x W`` region in ``[0, 1]``; a cell covers ``H / size`` pixels a side.
    The cell map is dilated by ``dilate`` cells (a cell's receptive field spills over).
    """
    if weights.shape[-1] % size:
        raise ValueError(f"image side {weights.shape[-1]} is not a multiple of the layer side {size}")
    touched = F.max_pool2d(weights[None, None].float(), weights.shape[-1] // size)[0, 0] > 0
    if dilate > 0:
        touched = F.max_pool2d(touched[None, None].float(), 2 * dilate + 1, 1, dilate)[0, 0] > 0
    cells = torch.nonzero(touched.reshape(-1)).reshape(-1)
    if cells.numel() == 0:
        raise ValueError("the region touches no cell of the offset layer")
    return cells


def cell_boxes(cells: Tensor, size: int, resolution: int, margin: int) -> Tensor:
    """``[n, 4]`` pixel boxes ``(y0, y1, x0, x1)`` (end exclusive) of ``cells`` grown by ``margin``."""
    px = resolution // size
    rows, cols = cells // size, cells % size
    boxes = torch.stack([rows * px - margin, (rows + 1) * px + margin, cols * px - margin, (cols + 1) * px + margin], 1)
    return boxes.clamp(0, resolution)


def colouring(cells: Tensor, size: int, stride: int) -> list[Tensor]:
    """``cells`` grouped so two cells of a group are at least ``stride`` cells apart in a row or column.

    Cells whose footprints cannot overlap share one Jacobian-vector product (Curtis-Powell-Reid
    compression): the summed column is split again by footprint.
    """
    rows, cols = cells // size, cells % size
    colour = (rows % stride) * stride + (cols % stride)
    return [cells[colour == c] for c in torch.unique(colour)]


def auto_layer(generator: Generator, weights: Tensor, dilate: int, budget: int, cell_px: int = 2) -> str:
    """The default offset layer for a region: the finest activation whose cells are at least
    ``cell_px`` pixels and on which the region covers at most ``budget / 2`` cells (two channel
    components each); coarser layers for larger regions.

    Chosen by measurement on the default model (``dragwalk bench directions --regions``): at a
    matched in-region change, 2-px cells (the DCGAN's 32x32 block) are as local as 4-px cells and
    keep the face's identity better (mouth and eyes: descriptor distance ~0.2 against ~0.45).
    """
    candidates = sorted((info for info in generator.layers
                         if info.name != "image" and generator.offset_shape(info.name) is not None
                         and generator.resolution // info.size >= cell_px),
                        key=lambda info: -info.size)
    for info in candidates:
        if support_cells(weights, info.size, dilate).numel() * 2 <= budget:
            return info.name
    raise ValueError(f"{generator.name}: no activation layer fits this region (paint less)")


def support_precision(basis: ChannelBasis, cells: Tensor, shrink: float = SHRINK) -> Tensor:
    """``[n k, n k]`` (float64, unit Frobenius norm): the precision of real activations over ``cells``.

    The variables of a region set are ``k`` channel coefficients on each support cell (index
    ``i * k + j``). ``v^T P v`` is the squared Mahalanobis length of an offset under the
    Gaussian that fits the sampled activations on those cells: it is small for offsets that
    look like the differences between real faces there (smooth across cells, correlated
    channels) and large for the rest. With ``S`` samples and up to 384 variables the sample
    covariance is singular, so it is shrunk towards its diagonal by ``shrink`` (Ledoit-Wolf
    style) before inverting.
    """
    if not 0.0 < shrink <= 1.0:
        raise ValueError(f"shrink must be in (0, 1], got {shrink}")
    s, k = basis.samples.shape[:2]
    x = basis.samples.reshape(s, k, -1)[:, :, cells].permute(0, 2, 1).reshape(s, -1).double()
    x = x - x.mean(0, keepdim=True)
    cov = x.T @ x / max(1, s - 1)
    cov = (1.0 - shrink) * cov + shrink * torch.diag(cov.diagonal().clamp_min(1e-12))
    chol = torch.linalg.cholesky((cov + cov.T) / 2)
    eye = torch.eye(cov.shape[0], dtype=cov.dtype)
    precision = torch.cholesky_solve(eye, chol)
    precision = (precision + precision.T) / 2
    return precision / precision.norm().clamp_min(1e-30)
