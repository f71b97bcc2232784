"""Several drags, one forward and one backward: the steps of many sessions on one model.

On a GPU (and even on a CPU, for a small model) one pass over a batch of 8 latents costs
far less than 8 passes over one. Each :class:`~dragwalk.drag.run.DragRun` keeps its own
variables, optimiser state, points and method; only the generator's work is shared:

1. every run's current latent is stacked along the batch dimension (offsets a run does
   not have are zeros, which add nothing);
2. one pass to the feature layer with autograd (and, when any run shows a frame, one
   inference pass of the rest, as in :meth:`DragRun.step`);
3. each run tracks, checks and computes its loss on its own slice (:meth:`DragRun.advance`);
   runs whose methods allow it (:func:`advance_together`) track and compute their losses as
   one batch, each still on its own slice;
4. one backward of the summed losses: the runs' variables are separate leaves and each
   loss reads only its own slice, so each run receives exactly its own gradient;
5. each run's optimiser steps.

A batched step therefore ends where the same steps run one by one end (to float
rounding: batched convolutions may sum in another order).
"""

from __future__ import annotations

from typing import Hashable, Sequence

import torch
from torch import Tensor

from ..models.base import Latent
from ..runtime import owned
from .run import DragRun, DragStep


def batch_key(run: DragRun) -> Hashable | None:
    """Runs with equal keys can step together: same network, feature layer, precision, latent
    shape and generator settings (a batch renders with one noise mode and class; sessions whose
    settings differ step one after the other instead, each with its own).

    ``None`` for a run whose step computes only the feature cells it reads (:meth:`DragRun.window`,
    StyleGAN2 on the CPU): alone, that is a fraction of the whole-map pass a batch would share
    (at 256 px, 95 ms against some 800 ms per run), so the scheduler steps it alone."""
    if run.window() is not None:
        return None
    latent = run.variables.latent()
    return (id(run.generator), run.feature_layer, run.precision, latent.space, tuple(latent.code.shape[1:]),
            latent.settings)


def stack_latents(latents: Sequence[Latent]) -> Latent:
    """One batch of ``latents`` (each of batch 1); missing offsets become zeros."""
    first = latents[0]
    names: dict[str, Latent] = {}
    for latent in latents:
        if latent.space != first.space:
            raise ValueError(f"cannot batch a {latent.space!r} latent with a {first.space!r} one")
        if latent.settings != first.settings:
            raise ValueError("cannot batch latents whose generator settings differ (class, noise, cutoff)")
        for name in latent.offsets:
            names.setdefault(name, latent)
    offsets = {}
    for name, owner in names.items():
        template = owner.offsets[name]
        offsets[name] = torch.cat([lat.offsets.get(name, torch.zeros_like(template)) for lat in latents])
    return first.derive(torch.cat([lat.code for lat in latents]), offsets)


def advance_together(runs: Sequence[DragRun], latents: Sequence[Latent], raw: Tensor) -> list[Tensor | None]:
    """:meth:`DragRun.advance` of each run on its slice of the batched feature map ``raw``: the
    runs whose methods can (:meth:`DragRun.together_key`) blur, track and compute their losses
    as one batch, each getting the numbers it gets alone; the others one by one.

    Why: a session's tracking and loss are many small operations (about a millisecond on the
    CPU, dozens of kernel launches on a GPU); for 8 sessions that was as long as the batched
    forward pass's largest convolution."""
    # split, not slices: the backward of a split is one concatenation, where each slice's
    # backward fills a zero tensor the size of the whole batch (8 of them for 8 runs)
    parts = raw.split(1)
    groups: dict[Hashable, list[int]] = {}
    for k, run in enumerate(runs):
        key = run.together_key()
        groups.setdefault(("alone", k) if key is None else key, []).append(k)
    out: list[Tensor | None] = [None] * len(runs)
    for members in groups.values():
        if len(members) == 1:
            k = members[0]
            out[k] = runs[k].advance(latents[k], parts[k])
            continue
        group = [runs[k] for k in members]
        method = type(group[0].method)
        features = group[0].blurred(torch.cat([parts[k] for k in members]))
        points = [run.point_tensors() for run in group]
        with torch.no_grad():
            handles = method.track_together([r.method for r in group], features.detach(),
                                            torch.stack([h for h, _ in points]), torch.stack([t for _, t in points]))
        active = [run.tracked(latents[k], handles[j]) for j, (k, run) in enumerate(zip(members, group))]
        moving = [j for j, mask in enumerate(active) if mask is not None]
        if not moving:
            continue
        if len(moving) < len(group):
            features = features.index_select(0, torch.tensor(moving, device=features.device))
        points = [group[j].point_tensors() for j in moving]
        losses = method.loss_together([group[j].method for j in moving], features,
                                      torch.stack([h for h, _ in points]), torch.stack([t for _, t in points]),
                                      [active[j] for j in moving])
        for j, loss in zip(moving, losses):
            out[members[j]] = group[j].with_terms(loss, parts[members[j]])
    return out


def step_together(runs: Sequence[DragRun], render: Sequence[bool] | bool = False) -> list[DragStep]:
    """One step of every run in one batched pass; returns each run's :class:`DragStep`.

    Finished runs only report. All live runs must share :func:`batch_key`; runs that compute
    windows (key ``None``) step one after the other instead.
    """
    renders = [bool(render)] * len(runs) if isinstance(render, bool) else [bool(r) for r in render]
    if len(renders) != len(runs):
        raise ValueError(f"{len(renders)} render flags for {len(runs)} runs")
    live = [i for i, run in enumerate(runs) if not run.done]
    if live:
        keys = {batch_key(runs[i]) for i in live}
        if None in keys:               # windowed runs: each alone is cheaper than a shared whole pass
            return [run.step(render=show) for run, show in zip(runs, renders)]
        if len(keys) > 1:
            raise ValueError("these drags cannot share a batch (different models, feature layers or latents)")
        generator, layer = runs[live[0]].generator, runs[live[0]].feature_layer
        latents = [runs[i].variables.latent() for i in live]
        with runs[live[0]].autocast():
            out = generator.synthesize(stack_latents(latents), layer, stop_at_feature=True)
        advanced = advance_together([runs[i] for i in live], latents, out.features.float())
        losses = [(runs[i], loss) for i, loss in zip(live, advanced) if loss is not None]
        if losses:
            for run, _ in losses:
                run.optimizer.zero_grad(set_to_none=True)
            torch.stack([run.scaled(loss).reshape(()) for run, loss in losses]).sum().backward()
            for run, _ in losses:
                run.apply_gradients()
        if any(renders[i] for i in live) and out.resume is not None:
            # after the backward pass, as in DragRun.step: the frames of the latents the pass saw
            with torch.no_grad(), runs[live[0]].autocast():
                images = owned(out.resume())
            for k, i in enumerate(live):
                if renders[i]:
                    runs[i].keep_frame(images[k:k + 1])
    return [run.report(renders[i]) for i, run in enumerate(runs)]
