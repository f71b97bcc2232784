"""Walks: turning slider positions into a latent.

A :class:`Walk` is one slider: a direction set, an index into it, an amount (in
units of that direction's ``scale``) and a kind of path:

* ``linear``: ``latent + amount * scale * v`` (on the w+ rows ``layers`` for a
  ``w`` direction applied to a w+ latent);
* ``density``: for a Gaussian ``z``, stay on the iso-density shell
  ``z_dp = |z0| / |z0 + e v| * (z0 + e v)`` (DP-LaSE); a straight line leaves the
  shell where the generator was trained;
* ``curved``: REDs only; the path is split into sub-steps, at each the REDs are
  recomputed at the current latent, the previous direction is projected onto
  their span, renormalised (sign kept) and stepped along.

Several sliders combine: linear steps add, density steps are added and the sum is
put back on the base latent's shell, curved walks follow, and DP-LaSE walks with
channel groups become masked offsets on the layer they were learned at (so only
their group's channels change).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import torch
from torch import Tensor

from ..models.base import Generator, Latent
from . import reds
from .base import DirectionSet, add_direction, as_latent_code, density_endpoint, layer_features
from .offset_basis import offset_parts

KINDS = ("linear", "density", "curved")


@dataclass
class Walk:
    """One slider.

    Args:
        directions: the set the direction comes from.
        index: which direction.
        amount: slider position, in units of ``directions.scales[index]``.
        kind: ``linear``, ``density`` or ``curved``.
        steps: sub-steps of a curved walk (each recomputes the REDs).
        subspace: for DP-LaSE sets with channel groups, restrict the edit to the
            direction's group (the paper's channel-subspace refinement).
    """

    directions: DirectionSet
    index: int
    amount: float
    kind: str = "linear"
    steps: int = 4
    subspace: bool = True

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown walk kind {self.kind!r} (known: {', '.join(KINDS)})")
        self.index = self.directions.check_index(self.index)
        if not math.isfinite(float(self.amount)):
            raise ValueError(f"walk amount must be finite, got {self.amount!r}")
        if self.kind == "density" and self.directions.space != "z":
            raise ValueError("density-preserving walks need a Gaussian z direction, "
                             f"{self.directions.method} directions live in {self.directions.space!r}")
        if self.kind == "curved" and self.directions.method != "reds":
            raise ValueError("curved walks recompute REDs along the path: use a 'reds' direction set")
        if self.kind != "linear" and offset_parts(self.directions.extras):
            raise ValueError(f"{self.kind} walks need a code-only direction; this set also moves "
                             "spatial offsets (walk it linearly, or compute REDs with offsets=none)")

    @property
    def step(self) -> Tensor:
        """The straight-line displacement ``amount * scale * v`` (``[D]``)."""
        d = self.directions
        return float(self.amount) * d.scales[self.index] * d.vectors[self.index]

    @property
    def grouped(self) -> bool:
        return self.subspace and "channel_masks" in self.directions.extras


def walk_kinds(directions: DirectionSet) -> list[str]:
    """The walk kinds ``directions`` accepts (what a page may offer), by the rules of :class:`Walk`."""
    kinds = []
    for kind in KINDS:
        try:
            Walk(directions, 0, 0.0, kind)
        except ValueError:
            continue
        kinds.append(kind)
    return kinds


# --------------------------------------------------------------------- pure maths
def add_offset_steps(latent: Latent, walk: Walk) -> Latent:
    """``latent`` plus the offset part of a linear ``walk`` (``amount * scale * offset``)."""
    parts = offset_parts(walk.directions.extras)
    if not parts:
        return latent
    offsets = dict(latent.offsets)
    factor = float(walk.amount) * float(walk.directions.scales[walk.index])
    for layer, values in parts.items():
        step = (factor * values[walk.index]).to(latent.code)[None]
        offsets[layer] = offsets[layer] + step if layer in offsets else step.expand(latent.batch, *step.shape[1:]).clone()
    return latent.derive(latent.code, offsets)


def project_onto_span(previous: Tensor, basis: Tensor) -> Tensor | None:
    """``previous`` projected on the span of the unit rows ``basis``, renormalised; sign kept."""
    q, _ = torch.linalg.qr(basis.T.double())
    projected = (q @ (q.T @ previous.double())).float()
    norm = projected.norm()
    if norm < 1e-6:
        return None
    projected = projected / norm
    return projected if torch.dot(projected, previous) >= 0 else -projected


# --------------------------------------------------------------------- the latent
def _needs_wplus(walks: list[Walk], generator: Generator) -> bool:
    return any(w.directions.layers is not None and w.directions.layers != (0, generator.num_ws)
               for w in walks)


def _working_latent(generator: Generator, latent: Latent, walks: list[Walk]) -> Latent:
    """The base latent in a space every w walk can be added to (w+ when a layer range is used)."""
    if not walks:
        return latent
    latent = as_latent_code(generator, latent, walks[0].directions.space)
    if latent.space == "w" and _needs_wplus(walks, generator):
        latent = generator.convert(latent, "w+")
    return latent


def _curved(generator: Generator, latent: Latent, walk: Walk) -> Latent:
    d = walk.directions
    v = d.vectors[walk.index].clone()
    steps = max(1, int(walk.steps))
    length = float(walk.amount) * float(d.scales[walk.index]) / steps
    for _ in range(steps):
        current = reds.compute(generator, latent=latent, mask=d.extras["mask"],
                               **{k: val for k, val in d.params.items() if k in reds.PARAMS})
        new = project_onto_span(v, current.vectors)
        if new is not None:
            v = new
        latent = latent.with_code(add_direction(latent.code, length * v, d.layers))
    return latent


def _grouped(generator: Generator, latent: Latent, walk: Walk) -> Latent:
    """A DP-LaSE edit restricted to its channel group: an offset on the layer it was learned at."""
    d = walk.directions
    layer = d.params["layer"]
    mask = d.extras["channel_masks"][walk.index].to(latent.code)
    code = latent.code
    moved = density_endpoint(code, walk.step.to(code)) if walk.kind == "density" else code + walk.step.to(code)
    with torch.no_grad():
        before = layer_features(generator, latent, layer)
        after = layer_features(generator, latent.with_code(moved), layer)
    offset = (after - before) * mask.reshape(1, -1, *([1] * (after.dim() - 2)))
    offsets = dict(latent.offsets)
    offsets[layer] = offsets[layer] + offset if layer in offsets else offset
    return latent.derive(code, offsets)


def apply_walks(generator: Generator, base_latent: Latent, walks: Iterable[Walk]) -> Latent:
    """The latent after all ``walks`` (sliders) from ``base_latent``; the base is not changed."""
    walks = list(walks)
    latent = base_latent
    z_walks = [w for w in walks if w.directions.space == "z"]
    other = [w for w in walks if w.directions.space != "z"]
    if z_walks and latent.space != "z":
        raise ValueError(f"{z_walks[0].directions.method} directions live in z; this latent is "
                         f"{latent.space!r} (sample the image in z to use them)")
    for group in (z_walks, other):
        if not group:
            continue
        latent = _working_latent(generator, latent, group)
        code = latent.code
        for walk in group:
            if walk.kind == "linear" and not walk.grouped:
                code = add_direction(code, walk.step, walk.directions.layers)
        density = [w for w in group if w.kind == "density" and not w.grouped]
        if density:
            total = sum(w.step for w in density)
            code = density_endpoint(code, total.to(code))
        latent = latent.with_code(code)
        for walk in group:
            latent = add_offset_steps(latent, walk)
        for walk in group:
            if walk.kind == "curved":
                latent = _curved(generator, latent, walk)
        for walk in group:
            if walk.grouped:
                latent = _grouped(generator, latent, walk)
    return latent
