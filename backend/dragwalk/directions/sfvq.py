"""SFVQ, space-filling vector quantisation (Vali & Backstrom, TMLR 2025).

A codebook ``c_0 .. c_{K-1}`` read in order is a piecewise-linear curve through
the latent data. Training (our code, from the paper's description):

* each step draws one random point on every segment (a "dithered" codebook),
  ``p_i = (1 - r_i) c_i + r_i c_{i+1}``, quantises each sample to its nearest
  such point and minimises the MSE; autograd sends the gradient to both
  endpoints with weights ``(1 - r)`` and ``r``;
* initialisation: samples sorted by norm, split into 4 groups, group means;
* growth by doubling: each point is split in two, a small step apart along the
  curve, until ``2^bits`` points; a few epochs of Adam per level (batch 64).

Where the curve is fitted: sampled ``w`` on StyleGAN (it has structure there).
An isotropic Gaussian ``z`` has none, so for a model without W the curve is
fitted in the PCA coordinates of an early activation (as GANSpace) and a move
along it is mapped back to ``z`` through the least-squares regression
(``extras["to_latent"]``).

Uses: :func:`project` a latent onto the curve ("where on the curve is it"); a
direction is a segment's unit vector; :func:`segment_latents` gives points along a
segment as controllable data augmentation.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..models.base import Generator, Latent
from .base import (DirectionSet, add_direction, as_latent_code, edit_space, features, layer_range, normalize_rows,
                   sample_space)
from .ganspace import activation_basis
from .progress import checkpoint


# --------------------------------------------------------------------- pure maths
def init_codebook(data: Tensor, groups: int = 4) -> Tensor:
    """Means of ``groups`` groups of the samples sorted by norm (the paper's start)."""
    order = data.norm(dim=1).argsort()
    return torch.stack([chunk.mean(0) for chunk in data[order].chunk(groups)])


def double_codebook(codebook: Tensor, gap: float = 0.01) -> Tensor:
    """Split every point in two, ``gap`` apart along the local curve direction."""
    k = codebook.shape[0]
    tangent = torch.zeros_like(codebook)
    tangent[:-1] += codebook[1:] - codebook[:-1]
    tangent[1:] += codebook[1:] - codebook[:-1]
    tangent = normalize_rows(tangent)
    split = torch.stack([codebook - gap / 2 * tangent, codebook + gap / 2 * tangent], dim=1)
    return split.reshape(2 * k, -1)


def dithered_loss(batch: Tensor, codebook: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """MSE of each sample to its nearest random point on every segment."""
    r = torch.rand(codebook.shape[0] - 1, 1, generator=generator)
    points = (1 - r) * codebook[:-1] + r * codebook[1:]
    nearest = torch.cdist(batch, points).argmin(dim=1)
    return (batch - points[nearest]).pow(2).mean()


def segment_projection(points: Tensor, codebook: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Nearest point on the curve for each row: ``(segment [N], t [N] in [0, 1], projected [N, d])``."""
    a, b = codebook[:-1], codebook[1:]                       # [S, d]
    ab = b - a
    t = ((points[:, None, :] - a[None]) * ab[None]).sum(-1) / ab.pow(2).sum(-1).clamp_min(1e-30)[None]
    t = t.clamp(0, 1)                                        # [N, S]
    proj = a[None] + t[..., None] * ab[None]                 # [N, S, d]
    dist = (points[:, None, :] - proj).pow(2).sum(-1)
    seg = dist.argmin(dim=1)
    rows = torch.arange(points.shape[0])
    return seg, t[rows, seg], proj[rows, seg]


def fit_curve(data: Tensor, bits: int = 5, epochs: int = 2, batch: int = 64, lr: float = 1e-2,
              seed: int = 0) -> tuple[Tensor, list[float]]:
    """Fit a ``2^bits``-point SFVQ curve to ``data [N, d]``; returns it and the loss per level.

    The data is scaled to unit RMS during training so one learning rate fits any
    space; the codebook is scaled back. The paper's Adam lr 1e-3 with our short
    schedule (2 epochs a level) left the doubled points barely separated; 1e-2
    fitted better on the default model (final loss 0.56 vs 0.73, unit-RMS data,
    10k samples, 32 points).
    """
    if bits < 2:
        raise ValueError("sfvq needs bits >= 2 (the curve starts with 4 points)")
    gen = torch.Generator().manual_seed(seed)
    mean = data.mean(0)
    scale = (data - mean).pow(2).mean().sqrt().clamp_min(1e-12)
    x = (data - mean) / scale
    codebook = init_codebook(x)
    losses: list[float] = []
    for level in range(2, bits + 1):
        if level > 2:
            codebook = double_codebook(codebook)
        param = torch.nn.Parameter(codebook.clone())
        opt = torch.optim.Adam([param], lr=lr)
        for _ in range(epochs):
            order = torch.randperm(x.shape[0], generator=gen)
            for idx in order.split(batch):
                checkpoint()
                loss = dithered_loss(x[idx], param, gen)
                opt.zero_grad()
                loss.backward()
                opt.step()
        codebook = param.detach()
        with torch.no_grad():
            losses.append(float(dithered_loss(x, codebook, gen)))
    return codebook * scale + mean, losses


# --------------------------------------------------------------------- the method
def compute(generator: Generator, bits: int = 5, samples: int = 10_000, pcs: int = 20,
            layer: str | None = None, epochs: int = 2, lr: float = 1e-2, layers: Sequence[int] | None = None,
            seed: int = 0, **_: object) -> DirectionSet:
    """Fit the curve and return its segment directions (``2^bits - 1`` of them)."""
    space = edit_space(generator)
    rows = layer_range(generator, layers)
    extras: dict[str, Tensor] = {}
    if space == "w":
        data = sample_space(generator, samples, seed, "w").cpu()
        used_layer = None
    else:
        used_layer = layer or generator.layers[0].name
        basis, regression, _ = activation_basis(generator, used_layer, samples, pcs, seed)
        data = basis.coords
        extras.update(to_latent=regression, pca_mean=basis.mean, pca_components=basis.components)
    codebook, losses = fit_curve(data, bits=bits, epochs=epochs, lr=lr, seed=seed)
    steps = codebook[1:] - codebook[:-1]                      # curve units
    if "to_latent" in extras:
        steps = steps @ extras["to_latent"]                   # -> z
    lengths = steps.norm(dim=1)
    extras["codebook"] = codebook
    count = steps.shape[0]
    return DirectionSet(method="sfvq", model=generator.name, space=space, vectors=normalize_rows(steps),
                        scales=lengths, layers=rows, labels=[f"segment {i}" for i in range(count)],
                        values=lengths.tolist(),
                        params={"bits": bits, "samples": samples, "pcs": pcs if used_layer else None,
                                "layer": used_layer, "epochs": epochs, "lr": lr, "seed": seed,
                                "layers": list(rows) if rows else None,
                                "loss_per_level": [round(v, 6) for v in losses]},
                        extras=extras)


def curve_coords(generator: Generator, directions: DirectionSet, latent: Latent) -> Tensor:
    """The latent in the space the curve lives in (``w``, or PCA coordinates of the activation)."""
    code = latent.code
    if "to_latent" not in directions.extras:
        return (code[:, 0] if code.dim() == 3 else code).detach().cpu().float()
    acts = features(generator, code.detach().cpu(), directions.params["layer"], latent.space)
    return (acts - directions.extras["pca_mean"]) @ directions.extras["pca_components"].T


def project(generator: Generator, directions: DirectionSet, latent: Latent) -> tuple[int, float]:
    """Where on the curve ``latent`` sits: ``(segment, t)`` of its nearest curve point."""
    latent = as_latent_code(generator, latent, directions.space)
    seg, t, _ = segment_projection(curve_coords(generator, directions, latent)[:1],
                                   directions.extras["codebook"])
    return int(seg[0]), float(t[0])


def segment_latents(generator: Generator, directions: DirectionSet, segment: int, count: int,
                    base: Latent) -> list[Latent]:
    """``count`` latents along ``segment``, evenly from its start to its end (augmentation).

    Each keeps what the curve does not describe of ``base`` (its residual) and
    replaces its curve position by the point ``c_i + t (c_{i+1} - c_i)``: the
    samples differ only along that segment, which is what makes the augmentation
    controllable.
    """
    segment = directions.check_index(segment)
    if count < 1:
        raise ValueError("count must be at least 1")
    codebook = directions.extras["codebook"]
    base = as_latent_code(generator, base, directions.space)
    here = curve_coords(generator, directions, base)[:1]
    out = []
    for t in torch.linspace(0, 1, count) if count > 1 else torch.tensor([0.5]):
        point = codebook[segment] + float(t) * (codebook[segment + 1] - codebook[segment])
        delta = point - here[0]
        if "to_latent" in directions.extras:
            delta = delta @ directions.extras["to_latent"]
        out.append(base.with_code(add_direction(base.code.detach(), delta, directions.layers)))
    return out
