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
from typing import Any, Hashable, Iterator, Sequence

import torch
from torch import Tensor

from ..models.base import Generator, Latent
from ..models.window import Window, feature_window
from ..runtime import autocast, check_precision, grad_scaler, owned
from . import features as fx
from . import field as fd
from . import match
from .config import DragConfig
from .method import METHODS, DragMethod, MethodContext, model_defaults
from .points import Point, validate_mask, validate_points
from .verify import Arrival, ArrivalCheck

#: devices with PyTorch's fused Adam kernel for float tensors
FUSED_ADAM_DEVICES = ("cpu", "cuda")
#: why a run ended (``DragStep.reason``); ``None`` while it runs
REASONS = ("converged", "nothing_to_move", "tracking_lost", "max_steps")


@dataclass
class DragStep:
    """What one step produced.

    ``remaining`` is the mean and ``max_remaining`` the largest handle-to-target
    distance in image px, ``distances`` the distance of each pair; ``idle`` marks pairs
    that were within the stop distance when they were set ("nothing to move").
    ``image`` (``[1, 3, H, W]`` in ``[-1, 1]``) is present only when the step was asked
    to render. A finished step says why in ``reason`` (one of :data:`REASONS`);
    ``converged`` is true only when an image-space check (:mod:`.verify`) found every
    handle's first-frame content at its target, whatever the tracker believes.
    """

    step: int
    handles: list[Point]
    targets: list[Point]
    remaining: float
    max_remaining: float
    done: bool
    image: Tensor | None = None
    converged: bool = False
    reason: str | None = None
    distances: list[float] | None = None
    idle: list[bool] | None = None


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
        hs, ts = validate_points(handles, targets, generator.image_size)
        self.device = generator.device
        self.precision = check_precision(self.config.precision, self.device)
        self.scaler = grad_scaler(self.device, self.precision)
        self.mask = validate_mask(mask, generator.image_size, self.device)
        method_cls = METHODS[self.config.method]
        self.feature_layer = self.config.feature_layer or generator.default_feature_layer
        context = MethodContext.at_layer(generator, self.feature_layer, self.device)
        self.mode = self.config.mode or generator.drag_modes[0]
        if self.mode not in generator.drag_modes:
            raise ValueError(f"unknown drag mode {self.mode!r} for {generator.name} "
                             f"(known: {', '.join(generator.drag_modes)})")
        tuned = model_defaults(generator, method_cls.name)
        self.method: DragMethod = method_cls(context, self.config.params, tuned)
        self.lr = self.config.lr if self.config.lr is not None else float(tuned.get("lr", method_cls.lr))
        self.lambda_mask = (self.config.lambda_mask if self.config.lambda_mask is not None
                            else float(tuned.get("lambda_mask", method_cls.lambda_mask)))
        self.stop_distance = (self.config.stop_distance if self.config.stop_distance is not None
                              else method_cls.default_stop_distance(res, len(hs)))
        self._targets = torch.tensor(ts, dtype=torch.float32, device=self.device)
        self._handles = torch.tensor(hs, dtype=torch.float32, device=self.device)
        self.step_count = 0
        self._budget_start = 0
        self.converged = False
        self.reason: str | None = None
        self._finished = False
        self.arrival: Arrival | None = None
        self._warp: tuple[Latent, Tensor, Tensor] | None = None   # the last warp: latent, features, field
        start = latent.to(self.device).detach()
        with torch.no_grad(), self.autocast():   # one pass: the first frame's features and image
            out = generator.synthesize(start, self.feature_layer)
        first = owned(out.features)
        self._keep = None
        # as in DragGAN, a mask that is all "may change" (or all "keep") adds no term
        if self.mask is not None and float(self.mask.max() - self.mask.min()) > 0:
            self._keep = 1.0 - fx.resize_mask(self.mask, tuple(first.shape[-2:]))
        self._reference = first.detach()                  # F0 for the mask term
        self._move_to(start)
        self._begin(first, owned(out.image))

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

    def point_tensors(self) -> tuple[Tensor, Tensor]:
        """The handles and targets as ``[K, 2]`` tensors, on the run's device (read, not changed)."""
        return self._handles, self._targets

    @property
    def latent(self) -> Latent:
        """The current latent (the one ``handles`` were tracked on), detached."""
        return self._shown.detach()

    @property
    def done(self) -> bool:
        return self._finished

    def distances(self) -> Tensor:
        return (self._targets - self._handles).norm(dim=1)

    @property
    def origin_handles(self) -> list[Point]:
        """Where the current points' handles were set (before any warp or tracking)."""
        return [tuple(map(float, p)) for p in self._origin_handles.tolist()]  # type: ignore[misc]

    @property
    def idle(self) -> list[bool]:
        """Pairs that were within the stop distance when set: nothing to move."""
        return [bool(i) for i in self._idle.tolist()]

    @property
    def origin_image(self) -> Tensor:
        """The image the current points were set on (before any warp): an animation's first frame."""
        return self._origin_image

    def tween(self, frames: int) -> list[Tensor]:
        """For a warping method, images of the last warp at ``1/frames .. (frames-1)/frames`` of its
        strength: the in-between frames of a drag animation. Empty for other methods."""
        if self._warp is None or frames < 2:
            return []
        latent, features, field = self._warp
        out = []
        for k in range(1, frames):
            with torch.no_grad():
                out.append(self.generator.render(self._warped(latent, features, field, k / frames)).detach())
        return out

    def _warped(self, latent: Latent, features: Tensor, field: Tensor | None = None,
                strength: float = 1.0) -> Latent:
        """``latent`` (whose feature-layer activation is ``features``) with that layer warped so
        each handle's content sits at its target (``strength`` of the way along ``field``, when
        given: an animation's in-between frame).

        Everything the network reads after that layer (:meth:`Generator.carried`) is
        warped with the method's field, then matched to the image (:meth:`_matched`); the
        differences become additive offsets.
        """
        with torch.no_grad():
            carried = self.generator.carried(latent, self.feature_layer, features)
            if field is None:
                field, moved = self._corrected_field(latent, carried)
                self._warp = (latent, features, field)
            else:
                field = field * strength
                moved = fd.warp_all(carried, field, self.generator.image_size)
        return latent.rerouted(carried, self._matched(latent, moved, field, strength))

    def _matched(self, latent: Latent, moved: dict[str, Tensor], field: Tensor,
                 strength: float) -> dict[str, Tensor]:
        """``moved`` fitted so the rendered image is the first frame moved by the method's field
        on the image grid (:mod:`.match`; the method parameter ``match`` bounds the iterations,
        0 = as warped)."""
        iterations = int(self.method.values.get("match", 0))
        if iterations == 0:
            return moved
        keep = None if self._keep is None else 1.0 - self.mask
        image_field = self.method.field(self._origin_handles, self._targets, keep, size=self.generator.image_size)
        target = match.image_target(self._origin_image, image_field * strength)
        where = match.support(field, None if self._keep is None else 1.0 - self._keep)

        def render(maps: dict[str, Tensor]) -> Tensor:
            with self.autocast():
                return self.generator.render_carried(latent, self.feature_layer, maps)

        return match.matched(render, moved, target, where, iterations)

    def _corrected_field(self, latent: Latent, carried: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """The method's field, corrected against the rendered image, and ``carried`` warped by it.

        The network renders a warped feature map with its own judgement: a thin, faint part
        (a brow on a 64 px face) comes out short of where the field put it. So the warp is
        closed-loop: render, find each handle's first-frame patch in the image with the
        same check that decides "converged" (:class:`.verify.ArrivalCheck`), aim the
        field past the target by the shortfall (never more than twice the drag), and keep
        the field whose image is closest. ``correct`` (a method parameter) bounds the
        extra renders; 0 is the open-loop warp.
        """
        aim = self._targets
        field = self.method.field(self._handles, aim, self._keep)
        moved = fd.warp_all(carried, field, self.generator.image_size)
        rounds = int(self.method.values.get("correct", 0))
        if rounds == 0:
            return field, moved
        gap = (self._targets - self._handles).norm(dim=1, keepdim=True)
        best, best_error = (field, moved), math.inf
        for k in range(rounds + 1):
            if k:
                field = self.method.field(self._handles, aim, self._keep)
                moved = fd.warp_all(carried, field, self.generator.image_size)
            with self.autocast():
                image = self.generator.render_carried(latent, self.feature_layer, moved)
            found = torch.tensor(self._check(image, self._origin_handles, self._targets, 0.0).found,
                                 device=aim.device)
            error = float((found - self._targets).norm(dim=1).mean())
            if error < best_error - 1e-3:
                best, best_error = (field, moved), error
            elif k:
                break               # no better than the best: more rounds would only wander
            reach = aim + (self._targets - found) - self._handles
            aim = self._handles + reach * (2.0 * gap / reach.norm(dim=1, keepdim=True).clamp_min(1e-6)).clamp(max=1.0)
        return best

    def _begin(self, features: Tensor, image: Tensor) -> None:
        """Take the current points from the shown latent, whose feature-layer activation is
        ``features`` and whose image (the one the user set the points on) is ``image``.

        A warping method moves the content here, and the handles go where the warp put them;
        its first step tracks what it did.
        """
        self._origin_image = image
        self._check = ArrivalCheck(image)
        self._origin_handles = self._handles.clone()
        self._idle = self.distances() <= self.stop_distance
        warps = self.method.warps and not bool(self._idle.all())
        if warps:
            self._move_to(self._warped(self._shown, features))
        self._restart(features)
        if warps:
            self._handles = self._targets.clone()

    def _restart(self, features: Tensor) -> None:
        """Start (or restart after new points) from ``features`` of the points' first frame."""
        self.method.start(fx.binomial_blur(features.detach(), int(self.method.values["smooth"])), self._handles)
        self._budget_start = self.step_count
        self.converged = False
        self.reason = None
        self.arrival = None
        self._finished = False
        if bool(self._idle.all()):
            self._finish("nothing_to_move", tracker_arrived=True)

    def _budget(self) -> int:
        wanted = self.method.step_budget()
        return self.config.max_steps if wanted is None else min(self.config.max_steps, wanted)

    def _finish(self, why: str, tracker_arrived: bool) -> None:
        """End the run; converged only if the content is found at the targets in the image."""
        self._finished = True
        self.arrival = self._check(self.render(), self._origin_handles, self._targets, self.stop_distance)
        self.converged = self.arrival.all_arrived
        if why == "nothing_to_move":
            self.reason = why
        elif self.converged:
            self.reason = "converged"
        else:
            self.reason = "tracking_lost" if tracker_arrived else "max_steps"

    def set_points(self, handles: Sequence[Sequence[float]], targets: Sequence[Sequence[float]]) -> None:
        """Continue the drag from the current latent with new points (same optimiser state).

        The mask keeps pulling towards the features of the drag's first frame; the step
        budget (``max_steps``) starts again.
        """
        hs, ts = validate_points(handles, targets, self.generator.image_size)
        self._handles = torch.tensor(hs, dtype=torch.float32, device=self.device)
        self._targets = torch.tensor(ts, dtype=torch.float32, device=self.device)
        if self.config.stop_distance is None:   # the default depends on the number of points
            self.stop_distance = type(self.method).default_stop_distance(self.generator.resolution, len(hs))
        with torch.no_grad(), self.autocast():
            feats = self.generator.synthesize(self._shown, self.feature_layer, stop_at_feature=True).features
        self._begin(owned(feats), self.render())

    def _move_to(self, latent: Latent) -> None:
        """Optimise from ``latent`` (the start, or a warp): new variables and optimiser at the run's lr."""
        self.variables = self.generator.drag_variables(latent, self.mode)
        # the fused kernel: one pass over each tensor instead of a dozen element-wise ops (a DCGAN
        # drag's update: 0.21 -> 0.11 ms on CPU); the same update rule
        self.optimizer = torch.optim.Adam(self._param_groups(), lr=self.lr,
                                          fused=self.device.type in FUSED_ADAM_DEVICES or None)
        self._shown = self.variables.latent().detach()   # latent the handles belong to
        self._image: Tensor | None = None                 # its image, when rendered

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
            with torch.no_grad(), self.autocast():
                self._image = owned(self.generator.render(self._shown))
        return self._image

    def autocast(self):
        """The context this run's forward passes run in (:mod:`dragwalk.runtime`)."""
        return autocast(self.device, self.precision)

    def apply_gradients(self, loss: Tensor | None = None) -> None:
        """Backpropagate ``loss`` (unless the caller already did, through :meth:`scaled`) and
        take the optimiser step; fp16 gradients are unscaled first and a step with an
        overflow is skipped."""
        if loss is not None:
            self.scaled(loss).backward()
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()

    def scaled(self, loss: Tensor) -> Tensor:
        """``loss`` as it is backpropagated: times the gradient scaler's factor in fp16."""
        return loss if self.scaler is None else self.scaler.scale(loss)

    # ----------------------------------------------------------------- stepping
    def step(self, render: bool = False) -> DragStep:
        """One optimisation step; on a finished run, only reports the state."""
        if self._finished:
            return self.report(render)
        latent = self.variables.latent()
        # autograd covers the layers up to the features only, and there only what the step reads
        with self.autocast():
            out = self.generator.synthesize_window(latent, self.feature_layer, self.window())
        loss = self.advance(latent, out.features.float())
        if loss is not None:
            self.optimizer.zero_grad(set_to_none=True)
            self.apply_gradients(loss)
        resume, out, loss = out.resume, None, None
        if render and resume is not None:
            # a frame is one inference pass of the rest, run once the backward pass has freed
            # the graph and the feature map is let go (so the two never hold memory at once),
            # from the state the pass saw
            with torch.no_grad(), self.autocast():
                self.keep_frame(owned(resume()))
        return self.report(render)

    def window(self) -> Window | None:
        """The feature cells this step reads (tracking, then the loss), or ``None`` for all of them.

        All of them for models that compute whole maps anyway, when the mask term reads the
        whole map, when the method cannot say (:meth:`DragMethod.reads`), and on accelerators,
        whose steps at editor sizes are bound by kernel launches rather than arithmetic (windows
        add launches; not measured on a GPU).
        The margin holds the feature blur's reach and a cell for rounding at the box's edge."""
        if (not self.generator.computes_windows or self.device.type != "cpu"
                or (self._keep is not None and self.lambda_mask > 0)):
            return None
        box = self.method.reads(self._handles, self._targets)
        if box is None:
            return None
        return feature_window(box, self.generator.image_size, self.method.ctx.feature_hw,
                              margin=int(self.method.values["smooth"]) + 1)

    def keep_frame(self, image: Tensor) -> None:
        """``image`` is the frame of the latent this step tracked on (:attr:`latent`), rendered by
        the pass's ``resume``; a run that ended in this step may have rendered it already."""
        if self._image is None:
            self._image = image

    def advance(self, latent: Latent, raw: Tensor) -> Tensor | None:
        """A step's work between the forward pass and the backward: track the handles on ``raw``
        (the feature map of ``latent``, with its graph), check arrival and the step budget, and
        return the loss to minimise, or ``None`` when the run has ended.
        :func:`~dragwalk.drag.batch.advance_together` calls this, or its parts (:meth:`blurred`,
        :meth:`tracked`, :meth:`with_terms`) around one batched tracking and loss, for several
        runs after one batched forward pass."""
        feats = self.blurred(raw)
        with torch.no_grad():
            handles = self.method.track(feats.detach(), self._handles, self._targets)
        active = self.tracked(latent, handles)
        if active is None:
            return None
        return self.with_terms(self.method.loss(feats, self._handles, self._targets, active), raw)

    def blurred(self, raw: Tensor) -> Tensor:
        """The feature map the method reads: ``raw`` low-passed ``smooth`` times."""
        return fx.binomial_blur(raw, int(self.method.values["smooth"]))

    def together_key(self) -> Hashable | None:
        """Runs with equal keys can track and compute their losses as one batch
        (:func:`~dragwalk.drag.batch.advance_together`): their methods say so, with as many
        points and the same blur. ``None``: this run advances alone."""
        key = self.method.together_key()
        return None if key is None else (key, tuple(self._handles.shape), self.method.values["smooth"])

    def tracked(self, latent: Latent, handles: Tensor) -> Tensor | None:
        """Count the step, take the tracked ``handles`` (on ``latent``'s features), check arrival and
        the step budget: the ``[K]`` mask of handles still to move, or ``None`` if the run ended."""
        self.step_count += 1
        self._handles = handles
        self._shown = latent.detach()
        self._image = None
        arrived = self.method.arrived(self._handles, self._targets, self.stop_distance) | self._idle
        if bool(arrived.all()):
            self._finish("arrived", tracker_arrived=True)
            return None
        if self.step_count - self._budget_start >= self._budget():
            self._finish("max_steps", tracker_arrived=False)
            return None
        return ~arrived

    def with_terms(self, loss: Tensor, raw: Tensor) -> Tensor:
        """The method's ``loss`` plus the run's own terms: the mask (on the unblurred map ``raw``)
        and the spatial offsets' decay."""
        if self._keep is not None and self.lambda_mask > 0:
            loss = loss + self.lambda_mask * fx.mask_term(raw, self._reference, self._keep)
        decay = self.method.values["offset_decay"]
        if decay > 0:
            spatial = [p for p in self.variables.params if p.dim() == 4]
            if spatial:
                loss = loss + decay * sum(p.pow(2).mean() for p in spatial)
        return loss

    def report(self, render: bool = False) -> DragStep:
        """The state after the last step (with the frame when ``render``)."""
        return self._report(self.render() if render else None)

    def _report(self, image: Tensor | None) -> DragStep:
        # one read from the device for the whole report: on a GPU each read waits for the queue
        rows = torch.cat([self._handles, self._targets, self.distances()[:, None],
                          self._idle[:, None].to(self._handles.dtype)], dim=1).tolist()
        handles = [(r[0], r[1]) for r in rows]
        targets = [(r[2], r[3]) for r in rows]
        dist = [r[4] for r in rows]
        return DragStep(self.step_count, handles, targets, sum(dist) / len(dist), max(dist),
                        self._finished, image, self.converged, self.reason if self._finished else None,
                        dist, [bool(r[5]) for r in rows])


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
