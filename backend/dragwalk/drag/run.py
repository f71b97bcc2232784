"""DragRun: one drag as a sequence of cancellable, resumable steps.

One step = one forward to the feature layer (truncated unless a frame is wanted),
point tracking on those features, then one optimiser update. Nothing runs between
steps, so a caller cancels by simply not calling :meth:`DragRun.step` again.

Frames never lag points: the handles a step returns were tracked on the features of
latent k, and the image it returns (when asked) comes from the *same* forward pass of
latent k; the update to latent k+1 happens afterwards and is shown by the next step.
``run.latent`` and ``run.render()`` therefore also describe latent k — the one the
returned handles belong to. A run that stops (done, cancelled, max steps) thus ends
on a latent whose handle positions are known.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
from torch import Tensor

from ..models.base import Generator, Latent
from . import features as fx
from .config import DragConfig
from .method import METHODS, DragMethod, MethodContext
from .points import Point, validate_mask, validate_points


@dataclass
class DragStep:
    """What one step produced.

    ``remaining`` is the mean and ``max_remaining`` the largest handle-to-target
    distance in image px; ``image`` (``[1, 3, H, W]`` in ``[-1, 1]``) is present only
    when the step was asked to render. ``converged`` tells a finished run that reached
    its targets from one that ran out of steps.
    """

    step: int
    handles: list[Point]
    targets: list[Point]
    remaining: float
    max_remaining: float
    done: bool
    image: Tensor | None = None
    converged: bool = False


class DragRun:
    """A drag of ``handles`` to ``targets`` on ``latent``, one :meth:`step` at a time.

    Args:
        generator: any model behind the generator interface.
        latent: start latent (not modified).
        handles, targets: lists of ``(x, y)`` image px; validated (PointError).
        mask: ``H x W`` at model resolution, 1 = may change; numpy, torch or bool.
        config: method and settings (default: :class:`DragConfig()`).
    """

    def __init__(self, generator: Generator, latent: Latent, handles: Sequence[Sequence[float]],
                 targets: Sequence[Sequence[float]], mask: Any = None, config: DragConfig | None = None):
        self.generator = generator
        self.config = config if config is not None else DragConfig()
        res = generator.resolution
        hs, ts = validate_points(handles, targets, res)
        self.device = generator.device
        self.mask = validate_mask(mask, res, self.device)
        method_cls = METHODS[self.config.method]
        self.feature_layer = self.config.feature_layer or generator.default_feature_layer
        info = generator.layer(self.feature_layer)
        self.mode = self.config.mode or generator.drag_modes[0]
        if self.mode not in generator.drag_modes:
            raise ValueError(f"unknown drag mode {self.mode!r} for {generator.name} "
                             f"(known: {', '.join(generator.drag_modes)})")
        self.method: DragMethod = method_cls(MethodContext(res, info.size, self.device), self.config.params)
        self.lr = self.config.lr if self.config.lr is not None else method_cls.lr
        self.lambda_mask = self.config.lambda_mask if self.config.lambda_mask is not None else method_cls.lambda_mask
        self.stop_distance = (self.config.stop_distance if self.config.stop_distance is not None
                              else method_cls.default_stop_distance(res, len(hs)))
        self.variables = generator.drag_variables(latent.to(self.device), self.mode)
        self.optimizer = torch.optim.Adam(self._param_groups(), lr=self.lr)
        self._targets = torch.tensor(ts, dtype=torch.float32, device=self.device)
        self._handles = torch.tensor(hs, dtype=torch.float32, device=self.device)
        self._shown = self.variables.latent().detach()   # latent the handles belong to
        self._image: Tensor | None = None                 # its image, when rendered
        self.step_count = 0
        self._budget_start = 0
        self.converged = False
        self._finished = False
        with torch.no_grad():
            first = generator.synthesize(self._shown, self.feature_layer, stop_at_feature=True).features
        self._keep = None
        # as in DragGAN, a mask that is all "may change" (or all "keep") adds no term
        if self.mask is not None and float(self.mask.max() - self.mask.min()) > 0:
            self._keep = 1.0 - fx.resize_mask(self.mask, first.shape[-1])
        self._reference = first.detach()                  # F0 for the mask term
        self._restart(first)

    def _param_groups(self) -> list[dict[str, Any]]:
        """Vector latents at ``lr``; spatial offsets (4-D) at ``lr * offset_lr``."""
        factor = self.method.values["offset_lr"]
        groups = [{"params": [p], "lr": self.lr * (factor if p.dim() == 4 else 1.0),
                   "factor": factor if p.dim() == 4 else 1.0} for p in self.variables.params]
        return groups

    # ----------------------------------------------------------------- state
    @property
    def handles(self) -> list[Point]:
        return [tuple(map(float, p)) for p in self._handles.tolist()]  # type: ignore[misc]

    @property
    def targets(self) -> list[Point]:
        return [tuple(map(float, p)) for p in self._targets.tolist()]  # type: ignore[misc]

    @property
    def latent(self) -> Latent:
        """The current latent (the one ``handles`` were tracked on), detached."""
        return self._shown.detach()

    @property
    def done(self) -> bool:
        return self._finished

    def distances(self) -> Tensor:
        return (self._targets - self._handles).norm(dim=1)

    def _restart(self, features: Tensor) -> None:
        """Start (or restart after new points) from ``features`` of the shown latent."""
        self.method.start(fx.binomial_blur(features.detach(), int(self.method.values["smooth"])), self._handles)
        self._budget_start = self.step_count
        arrived = self.method.arrived(self._handles, self._targets, self.stop_distance)
        self.converged = bool(arrived.all())
        self._finished = self.converged

    def set_points(self, handles: Sequence[Sequence[float]], targets: Sequence[Sequence[float]]) -> None:
        """Continue the drag from the current latent with new points (same optimiser state).

        The mask keeps pulling towards the features of the drag's first frame; the step
        budget (``max_steps``) starts again.
        """
        hs, ts = validate_points(handles, targets, self.generator.resolution)
        self._handles = torch.tensor(hs, dtype=torch.float32, device=self.device)
        self._targets = torch.tensor(ts, dtype=torch.float32, device=self.device)
        if self.config.stop_distance is None:   # the default depends on the number of points
            self.stop_distance = type(self.method).default_stop_distance(self.generator.resolution, len(hs))
        with torch.no_grad():
            feats = self.generator.synthesize(self._shown, self.feature_layer, stop_at_feature=True).features
        self._restart(feats)

    def set_lr(self, lr: float) -> None:
        """Change the learning rate in place: latent, optimiser moments and points are kept."""
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
            raise ValueError(f"learning rate must be a finite number > 0, got {lr!r}")
        self.lr = float(lr)
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr * group["factor"]

    def render(self) -> Tensor:
        """Image of :attr:`latent` (``[1, 3, H, W]``), consistent with :attr:`handles`."""
        if self._image is None:
            with torch.no_grad():
                self._image = self.generator.render(self._shown).detach()
        return self._image

    # ----------------------------------------------------------------- stepping
    def step(self, render: bool = False) -> DragStep:
        """One optimisation step; on a finished run, only reports the state."""
        if self._finished:
            return self._report(self.render() if render else None)
        self.step_count += 1
        latent = self.variables.latent()
        out = self.generator.synthesize(latent, self.feature_layer, stop_at_feature=not render)
        raw = out.features
        feats = fx.binomial_blur(raw, int(self.method.values["smooth"]))
        with torch.no_grad():
            self._handles = self.method.track(feats.detach(), self._handles, self._targets)
        self._shown = latent.detach()
        self._image = out.image.detach() if out.image is not None else None
        arrived = self.method.arrived(self._handles, self._targets, self.stop_distance)
        if bool(arrived.all()):
            self.converged, self._finished = True, True
        elif self.step_count - self._budget_start >= self.config.max_steps:
            self._finished = True
        else:
            loss = self.method.loss(feats, self._handles, self._targets, ~arrived)
            if self._keep is not None and self.lambda_mask > 0:
                loss = loss + self.lambda_mask * fx.mask_term(raw, self._reference, self._keep)
            decay = self.method.values["offset_decay"]
            if decay > 0:
                spatial = [p for p in self.variables.params if p.dim() == 4]
                if spatial:
                    loss = loss + decay * sum(p.pow(2).mean() for p in spatial)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        return self._report(self._image if render else None)

    def _report(self, image: Tensor | None) -> DragStep:
        dist = self.distances()
        return DragStep(self.step_count, self.handles, self.targets, float(dist.mean()), float(dist.max()),
                        self._finished, image, self.converged)


def drag(generator: Generator, latent: Latent, handles: Sequence[Sequence[float]],
         targets: Sequence[Sequence[float]], mask: Any = None, config: DragConfig | None = None,
         render_every: int = 0) -> Iterator[DragStep]:
    """Run a drag to the end, yielding every step.

    With ``render_every = n > 0`` every n-th step and the last one carry an image.
    The last :class:`DragStep` holds the final points and ``converged``; callers that
    also need the final latent, or want to change points or lr midway, use
    :class:`DragRun` directly (this function is a thin loop over it).
    """
    run = DragRun(generator, latent, handles, targets, mask, config)
    if run.done:
        yield run.step(render=render_every > 0)
        return
    while not run.done:
        want = render_every > 0 and (run.step_count + 1) % render_every == 0
        step = run.step(render=want)
        if step.done and render_every > 0 and step.image is None:
            step.image = run.render()
        yield step
