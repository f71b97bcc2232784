"""DP-LaSE (Li et al., ACM MM 2021): learned directions with density-preserving endpoints.

Split ``G = G2 o G1`` at an early layer. Learn ``Gamma = [g_1 .. g_k]`` so that
moving a Gaussian ``z0`` by ``eps * g_j`` *on its density shell* changes ``G1`` a
lot, the changes of different directions are uncorrelated, and the directions stay
orthonormal:

    loss = -a sum_j |D_j|^2 + b sum_{j != h} (D_j . D_h)^2 + c |Gamma Gamma^T - I|^2,
    D_j = (G1(z0) - G1(z_dp(z0, eps g_j))) / sqrt(F)

with a, b, c = 3, 10, 100, ``eps ~ U(-10, 10)``, batch 16 and rows renormalised each
step. ``D`` is divided by the square root of the feature size ``F`` so the weights do not
depend on the layer's size; at that scale the reference's variation weight ``a = 0.1`` is
too weak to matter: the decorrelation term wins and training *lowered* the variation.
Measured on the default model at ``b0`` (k = 20, 150 iterations, mean squared change of
the layer per feature when 64 held-out z move 3 units on their shell; random orthonormal
directions: 0.0141): a = 0.1: 0.0111, 1: 0.0169, 3: 0.0341, 10: 0.0414, with the rows
orthonormal to 0.0004 / 0.0003 / 0.0014 / 0.0049 (``measures.orthogonality``).
tests/test_directions_oracles.py checks that the variation grows over training and beats
random directions.

Channel-subspace refinement: for each direction, a self-expressive ``C x C``
matrix ``S`` (zero diagonal, ridge closed form) over G1's channels of the change
``D_j``; ``|S| + |S|^T`` is thresholded and spectrally clustered into groups; the
direction keeps the group holding most of its change energy. A walk then edits
only that group's channels (an offset on the layer, see ``walks``).

The reference trains 500k GPU iterations on StyleGAN; on the 64 px DCGAN a
minute on the CPU at ``b0`` (512 x 4 x 4) gives stable directions. A larger
learning rate than the reference's 1e-4 makes up for the short run.

Early stop on convergence (``tol``, default 0.02; 0 runs every one of ``iters``). Every
:data:`CHECK` iterations the objective is evaluated on a fixed probe batch (32 z0 and their eps,
seeded apart from training; :class:`ProbeObjective`): unlike the one-batch training loss it
changes only when Gamma does. Training stops when it improved by less than ``tol`` of its size
over the last :data:`WINDOW` iterations (:func:`converged`). Measured on the default model (k 20,
``b0``, two seeds, 1500-iteration runs saved every 25 iterations): the probe objective gains ~40 %
per 200 iterations at 300, 5 % at 600, 2 % at 850 / 1100 (seed 0 / 1) and then creeps ~0.7 % per
200 to the end. The run stops at 850 / 1100 iterations with 97.5 / 98.1 % of the 1500-iteration
objective and the same held-out variation to 4 % (the measure above: 0.0437 vs 0.0455, 0.0427 vs
0.0424, which even fell after 600 on seed 1). Its directions are 8.8 / 5.4 degrees (mean principal
angle) and 37 / 20 degrees (largest) from the 1500-iteration set of the same seed; at a constant
learning rate they never settle (2.5 degrees largest change per 50 iterations at the end), and the
two seeds' 1500-iteration sets are 45 degrees apart (largest), so the directions a seed gives move
less by stopping than by the seed. ``params["stopped"]`` says why training ended
(``iterations``, ``converged``, ``time_limit``); only a time-limited run is ``truncated``.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
from torch import Tensor

from ..models.base import Generator, Latent, seeded_normal
from .base import DirectionSet, density_endpoint, layer_features, normalize_rows
from .progress import checkpoint

WEIGHTS = (3.0, 10.0, 100.0)  #: a, b, c (see the module docstring for why a = 3)


class _Gram(torch.autograd.Function):
    """``x @ x^T`` per sample for ``x [B, k, F]``, with a one-product backward.

    Autograd sees the same tensor on both sides of the product and pays two ``[B, k, F]``
    products and their sum; the gradient is ``(g + g^T) @ x``, one product."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:           # type: ignore[override]
        ctx.save_for_backward(x)
        return x @ x.transpose(1, 2)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:       # type: ignore[override]
        (x,) = ctx.saved_tensors
        return (grad + grad.transpose(1, 2)) @ x


def dplase_loss(deltas: Tensor, gamma: Tensor, weights: tuple[float, float, float] = WEIGHTS) -> Tensor:
    """The DP-LaSE objective for changes ``deltas [B, k, F]`` (per sample, already divided by sqrt(F)).

    Both data terms come from one Gram matrix per sample (``[B, k, k]``, a batched product):
    its diagonal holds each direction's ``|D_j|^2``, the rest the dot products between
    directions. Squaring and summing the changes for the variation, and an einsum that copied
    them into a batch-first layout, made the loss and its backward pass take twice as long
    (32 -> 13-17 ms of a 70-100 ms iteration on 2 threads); the changes now come batch-first."""
    gram = _Gram.apply(deltas)                                            # [B, k, k]
    variation = gram.diagonal(dim1=1, dim2=2).sum(dim=1).mean()
    diagonal = torch.eye(deltas.shape[1], dtype=torch.bool, device=deltas.device)
    correlation = gram.masked_fill(diagonal, 0.0).pow(2).sum(dim=(1, 2)).mean()
    eye = torch.eye(gamma.shape[0], device=gamma.device, dtype=gamma.dtype)
    orthogonality = (gamma @ gamma.T - eye).pow(2).sum()
    a, b, c = weights
    return -a * variation + b * correlation + c * orthogonality


def endpoint_changes(g1: Callable[[Tensor], Tensor], z0: Tensor, eps: Tensor, gamma: Tensor,
                     base: Tensor | None = None) -> Tensor:
    """``D [B, k, F]``: ``(G1(z0_b) - G1(z_dp(z0_b, eps_jb g_j))) / sqrt(F)`` for ``z0 [B, D]``,
    ``eps [k, B, 1]`` and ``Gamma [k, D]`` (``base``: ``G1(z0)`` when already known).

    Batch-first, so the per-sample Gram matrices read the changes contiguous; ``z0`` and the
    endpoints go through ``G1`` in one pass, split (not sliced) after it: the backward of two
    slices filled and added two zero maps of all 336 samples (9 ms of a 55 ms iteration)."""
    batch, k, dim = z0.shape[0], gamma.shape[0], z0.shape[1]
    moved = density_endpoint(z0[:, None], eps.transpose(0, 1) * gamma[None]).reshape(batch * k, dim)
    if base is None:
        base, rest = g1(torch.cat([z0, moved])).split([batch, batch * k])
    else:
        rest = g1(moved)
    return (base[:, None] - rest.view(batch, k, -1)) / rest.shape[-1] ** 0.5


#: iterations between two looks at the probe objective (and two entries of the loss history)
CHECK = 50
#: iterations over which the probe objective must have improved by ``tol`` to go on
WINDOW = 200


class ProbeObjective:
    """The DP-LaSE objective on a fixed batch (its own seed: never a training batch).

    The training loss is a noisy one-batch estimate; this one changes only when ``Gamma`` does,
    so "the objective stopped improving" can be read off it. ``probe`` z0 with one ``eps`` per
    direction and sample, the same form as a training step, without gradients.
    """

    def __init__(self, g1: Callable[[Tensor], Tensor], dim: int, k: int, eps_max: float, seed: int,
                 probe: int = 32) -> None:
        gen = torch.Generator().manual_seed(seed + 104729)
        self.g1 = g1
        self.z0 = torch.randn(probe, dim, generator=gen)
        self.eps = (torch.rand(k, probe, 1, generator=gen) * 2 - 1) * eps_max
        with torch.no_grad():
            self.base = g1(self.z0)

    @torch.no_grad()
    def __call__(self, gamma: Tensor) -> float:
        return float(dplase_loss(endpoint_changes(self.g1, self.z0, self.eps, gamma, self.base), gamma))


def converged(values: list[float], tol: float, window: int = WINDOW // CHECK) -> bool:
    """Whether the last of ``values`` (the probe objective every :data:`CHECK` iterations, lower
    is better) improved on the one ``window`` entries before by less than ``tol`` of its size."""
    if tol <= 0 or len(values) <= window:
        return False
    now, before = values[-1], values[-1 - window]
    return before - now < tol * abs(now)


def train_gamma(g1: Callable[[Tensor], Tensor], dim: int, k: int = 20, iters: int = 1500,
                batch: int = 16, lr: float = 3e-3, eps_max: float = 10.0, seed: int = 0,
                time_limit: float | None = None, tol: float = 0.0) -> tuple[Tensor, list[float], int, str]:
    """Learn ``Gamma [k, dim]``; returns it, the loss history (one value per :data:`CHECK`
    iterations), the number of iterations run and why training stopped: ``"iterations"`` (all
    ``iters`` ran), ``"converged"`` (with ``tol > 0``: the probe objective improved by less than
    ``tol`` of its size over the last :data:`WINDOW` iterations, see :func:`converged`) or
    ``"time_limit"`` (``time_limit`` seconds ran out)."""
    gen = torch.Generator().manual_seed(seed)
    init = torch.linalg.qr(torch.randn(dim, k, generator=gen))[0].T.contiguous()
    gamma = torch.nn.Parameter(init)
    opt = torch.optim.Adam([gamma], lr=lr)
    probe = ProbeObjective(g1, dim, k, eps_max, seed) if tol > 0 else None
    probed: list[float] = []
    history: list[float] = []
    start = time.perf_counter()
    done, reason = 0, "iterations"
    for it in range(iters):
        checkpoint()                     # a background run pauses for drags or stops here
        z0 = torch.randn(batch, dim, generator=gen)
        eps = (torch.rand(k, batch, 1, generator=gen) * 2 - 1) * eps_max
        loss = dplase_loss(endpoint_changes(g1, z0, eps, gamma), gamma)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            gamma.copy_(normalize_rows(gamma))
        if it % CHECK == 0:
            history.append(float(loss.detach()))
        done = it + 1
        if probe is not None and done % CHECK == 0:
            probed.append(probe(gamma.detach()))
            if converged(probed, tol):
                reason = "converged"
                break
        if time_limit is not None and time.perf_counter() - start > time_limit:
            reason = "time_limit" if done < iters else "iterations"
            break
    return gamma.detach().clone(), history, done, reason


def self_expressive(x: Tensor, ridge: float = 1e-2) -> Tensor:
    """``S [C, C]`` with zero diagonal minimising ``|X - X S|^2 + ridge |S|^2`` for ``X [M, C]``.

    Closed form of the zero-diagonal ridge problem: with ``P = (X^T X + r I)^-1``,
    ``S = I - P diag(1 / diag(P))``.
    """
    gram = x.T.double() @ x.double()
    gram = gram / gram.diagonal().mean().clamp_min(1e-12)
    p = torch.linalg.inv(gram + ridge * torch.eye(gram.shape[0], dtype=gram.dtype))
    s = -p / p.diagonal()[None, :]
    s.fill_diagonal_(0.0)
    return s.float()


def kmeans(points: Tensor, k: int, iters: int = 50, restarts: int = 4, seed: int = 0) -> Tensor:
    """Cluster labels ``[N]``: Lloyd's algorithm, k-means++ seeding, best of ``restarts``."""
    gen = torch.Generator().manual_seed(seed)
    best, best_cost = None, float("inf")
    n = points.shape[0]
    for _ in range(restarts):
        centres = points[torch.randint(n, (1,), generator=gen)]
        for _ in range(1, k):
            d2 = torch.cdist(points, centres).min(dim=1).values.pow(2)
            probs = d2 / d2.sum() if d2.sum() > 0 else torch.full((n,), 1.0 / n)
            centres = torch.cat([centres, points[torch.multinomial(probs, 1, generator=gen)]])
        for _ in range(iters):
            labels = torch.cdist(points, centres).argmin(dim=1)
            new = torch.stack([points[labels == c].mean(0) if (labels == c).any() else centres[c]
                               for c in range(k)])
            if torch.allclose(new, centres):
                break
            centres = new
        cost = float(torch.cdist(points, centres).min(dim=1).values.pow(2).sum())
        if cost < best_cost:
            best, best_cost = labels, cost
    assert best is not None
    return best


def spectral_groups(affinity: Tensor, groups: int = 6, seed: int = 0) -> Tensor:
    """Spectral clustering (normalised Laplacian, row-normalised embedding, k-means) -> labels ``[C]``."""
    w = affinity.double()
    degree = w.sum(dim=1).clamp_min(1e-12)
    inv_sqrt = degree.rsqrt()
    laplacian = torch.eye(w.shape[0], dtype=w.dtype) - inv_sqrt[:, None] * w * inv_sqrt[None, :]
    _, vectors = torch.linalg.eigh(laplacian)
    embedding = normalize_rows(vectors[:, :groups].float())
    return kmeans(embedding, groups, seed=seed)


def threshold(s: Tensor, keep: float = 0.9) -> Tensor:
    """Symmetric affinity from ``S``: per column, keep the largest entries holding ``keep`` of its mass."""
    a = s.abs()
    values, order = a.sort(dim=0, descending=True)
    cum = values.cumsum(dim=0) / values.sum(dim=0, keepdim=True).clamp_min(1e-12)
    kept_sorted = (cum - values / values.sum(dim=0, keepdim=True).clamp_min(1e-12)) < keep
    kept = torch.zeros_like(a, dtype=torch.bool).scatter(0, order, kept_sorted)
    a = a * kept
    return (a + a.T) / 2


def channel_groups(deltas: Tensor, groups: int = 6, seed: int = 0) -> tuple[Tensor, float]:
    """For one direction's changes ``[B, C, h, w]``: the channel mask of its main group and its energy share."""
    c = deltas.shape[1]
    x = deltas.permute(0, 2, 3, 1).reshape(-1, c)
    s = self_expressive(x)
    labels = spectral_groups(threshold(s), groups, seed)
    energy = x.pow(2).sum(dim=0)
    per_group = torch.zeros(groups).index_add_(0, labels, energy)
    main = int(per_group.argmax())
    return (labels == main).float(), float(per_group[main] / energy.sum().clamp_min(1e-12))


def _g1(generator: Generator, layer: str) -> Callable[[Tensor], Tensor]:
    def g1(z: Tensor) -> Tensor:
        return layer_features(generator, Latent("z", z.to(generator.device)), layer).flatten(1).cpu()
    return g1


def compute(generator: Generator, k: int = 20, layer: str | None = None, iters: int = 1500,
            batch: int = 16, lr: float = 3e-3, eps_max: float = 10.0, groups: int = 6,
            refine: bool = True, seed: int = 0, time_limit: float | None = 240.0,
            tol: float = 0.02, **_: object) -> DirectionSet:
    """Train ``k`` DP-LaSE directions in ``z`` at ``layer`` (default: the first block).

    Training stops after ``iters`` iterations or ``time_limit`` seconds, whichever comes
    first (on a busy 2-core machine an iteration took 60 ms to 1.5 s), so a first use
    never blocks for more than a few minutes; ``params["iterations"]`` says how many ran.
    """
    if "z" not in generator.latent_spaces:
        raise ValueError(f"{generator.name}: DP-LaSE needs a Gaussian z latent space")
    layer = layer or generator.layers[0].name
    info = generator.layer(layer)
    g1 = _g1(generator, layer)
    started = time.perf_counter()
    z_dim = int(generator.sample(0, space="z").code.shape[-1])  # z may differ from w in size
    with torch.enable_grad():
        gamma, history, done, stopped = train_gamma(g1, z_dim, k, iters, batch, lr, eps_max, seed,
                                                    time_limit, tol)
    train_s = time.perf_counter() - started
    extras: dict[str, Tensor] = {}
    shares: list[float] = []
    with torch.no_grad():
        z0 = seeded_normal(seed + 1, (32, z_dim))
        base = g1(z0)
        change = []
        for j in range(k):
            moved = density_endpoint(z0, 3.0 * gamma[j])
            delta = (g1(moved) - base).reshape(32, info.channels, info.size, info.size)
            change.append(float(delta.pow(2).mean()))
            if refine:
                mask, share = channel_groups(delta, groups, seed)
                extras.setdefault("_masks", []).append(mask)  # type: ignore[arg-type]
                shares.append(share)
    if refine:
        extras = {"channel_masks": torch.stack(extras.pop("_masks"))}  # type: ignore[arg-type]
    # strongest first, so slider 0 is the most visible one
    order = torch.argsort(torch.tensor(change), descending=True)
    gamma = gamma[order]
    if refine:
        extras["channel_masks"] = extras["channel_masks"][order]
        shares = [shares[i] for i in order.tolist()]
    return DirectionSet(method="dplase", model=generator.name, space="z", vectors=gamma,
                        scales=torch.ones(k), labels=[f"dp-lase {i}" for i in range(k)],
                        values=[change[i] for i in order.tolist()],
                        params={"k": k, "layer": layer, "iters": iters, "batch": batch, "lr": lr,
                                "eps_max": eps_max, "groups": groups, "refine": refine, "seed": seed,
                                "tol": tol, "iterations": done, "stopped": stopped,
                                "truncated": stopped == "time_limit", "train_seconds": round(train_s, 2),
                                "group_energy_share": shares,
                                "loss_history": history[-5:]},
                        extras=extras)
