"""The long-running work of a session, as step iterators the compute worker advances.

Each function here runs in the worker thread, one ``next()`` per step, and yields plain update
objects; the editor turns them into events and frames on the event loop. Requests that arrive
while a job runs (new points, a new learning rate) are left in a :class:`DragControl` and picked
up between steps, so the job's objects are only ever touched by the worker.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterator, Sequence

import torch

from ..imaging import encode
from ..models.base import Latent


@dataclass
class DragControl:
    """Mailbox between the event loop and a running drag (read by the worker between steps)."""

    points: tuple[list, list] | None = None
    lr: float | None = None
    #: set by the loop: some page has a frame credit (rendering otherwise wastes compute)
    frame_wanted: Callable[[], bool] = lambda: True
    store_every: int = 10
    run: Any = None
    #: step() calls made, and what changed before which call (recorded so a replay can repeat it)
    calls: int = 0
    changes: list[dict] = field(default_factory=list)


#: in-between frames of a warp shown before the first step (0 = none)
TWEEN_FRAMES = 4


@dataclass
class DragUpdate:
    """What one drag step produced.

    ``distances`` is each pair's handle-to-target distance (px), ``idle`` marks pairs that had
    nothing to move when they were set; ``reason`` is the run's own verdict once ``done``
    (``converged``, ``nothing_to_move``, ``tracking_lost``, ``max_steps``), ``None`` before.
    """

    step: int
    handles: list
    targets: list
    remaining: float
    max_remaining: float
    done: bool
    converged: bool
    steps_per_second: float
    produced: float                 # wall-clock time the step finished (time.time())
    jpeg: bytes | None = None
    latent: Latent | None = None    # every ``store_every`` steps, for the store
    reason: str | None = None
    distances: list[float] = field(default_factory=list)
    idle: list[bool] = field(default_factory=list)


class DragSteps:
    """A drag run to its end, as the job the compute worker advances: one ``next()`` per unit
    of work (building the run, each in-between warp frame, each step).

    The worker may also advance several drags at once (:meth:`step_batch`): drags whose
    next unit is a plain step on the same network and layer (:meth:`batch_key`) share one
    forward and backward (:func:`dragwalk.drag.batch.step_together`), each with its own
    optimiser, points and frame. Requests left in the :class:`DragControl` are picked up
    before every step either way.
    """

    def __init__(self, make_run: Callable[[], Any], control: DragControl, jpeg_quality: int = 85):
        self._make_run = make_run
        self.control = control
        self.jpeg_quality = jpeg_quality
        self.run: Any = None
        self._tweens: Iterator[DragUpdate] | None = None
        self._started = 0.0
        self._steps = 0
        self._over = False

    def __iter__(self) -> "DragSteps":
        return self

    def __next__(self) -> DragUpdate:
        if self._over:
            raise StopIteration
        if self.run is None:                     # the first unit builds the run (one forward pass)
            self.run = self._make_run()
            self.control.run = self.run
            self._started = time.perf_counter()
            self._tweens = _tween_updates(self.run, self.control, self._started, self.jpeg_quality)
        if self._tweens is not None:
            update = next(self._tweens, None)
            if update is not None:
                return update
            self._tweens = None
        render = self._prepare()
        with torch.enable_grad():
            result = self.run.step(render=render)
        return self._complete(result)

    def batch_key(self) -> Hashable | None:
        """What this drag's next unit can be batched on, or ``None`` if it is not a plain step."""
        if self._over or self.run is None or self._tweens is not None or self.run.done:
            return None
        from ..drag.batch import batch_key

        return batch_key(self.run)

    @staticmethod
    def step_batch(jobs: Sequence["DragSteps"]) -> list[DragUpdate]:
        """The next step of every drag in ``jobs`` (equal :meth:`batch_key`) in one batched pass."""
        from ..drag.batch import step_together

        renders = [job._prepare() for job in jobs]
        with torch.enable_grad():
            results = step_together([job.run for job in jobs], renders)
        return [job._complete(result) for job, result in zip(jobs, results)]

    def _prepare(self) -> bool:
        """Apply what the page asked for since the last step; whether this step shows a frame."""
        control, run, call = self.control, self.run, self._steps + 1
        if control.points is not None:
            handles, targets = control.points
            control.points = None
            run.set_points(handles, targets)
            control.changes.append({"before_call": call, "handles": handles, "targets": targets})
        if control.lr is not None:
            lr, control.lr = control.lr, None
            run.set_lr(lr)
            control.changes.append({"before_call": call, "lr": lr})
        return bool(control.frame_wanted())

    def _complete(self, result: Any) -> DragUpdate:
        run = self.run
        self._steps += 1
        self.control.calls = self._steps
        image = result.image
        if result.done and image is None:
            image = run.render()
        jpeg = encode(image, "JPEG", self.jpeg_quality) if image is not None else None
        elapsed = time.perf_counter() - self._started
        latent = run.latent if (result.done or self._steps % max(1, self.control.store_every) == 0) else None
        self._over = bool(result.done)
        return DragUpdate(result.step, [list(p) for p in result.handles], [list(p) for p in result.targets],
                          float(result.remaining), float(result.max_remaining), bool(result.done),
                          bool(getattr(result, "converged", False)), self._steps / max(elapsed, 1e-9),
                          time.time(), jpeg, latent,
                          reason=result.reason, distances=[round(d, 3) for d in result.distances],
                          idle=list(result.idle))


def drag_steps(make_run: Callable[[], Any], control: DragControl, jpeg_quality: int = 85) -> DragSteps:
    """Run a drag to its end; ``make_run`` builds the DragRun in the worker (it runs a forward)."""
    return DragSteps(make_run, control, jpeg_quality)


def _tween_updates(run: Any, control: DragControl, started: float, jpeg_quality: int) -> Iterator[DragUpdate]:
    """A warping method moved the content when the run was built: show it growing in a few
    frames (step 0, markers on their way) before the first step, for the page and the GIF."""
    if not control.frame_wanted():
        return
    images = run.tween(TWEEN_FRAMES)
    origin = run.origin_handles
    for k, image in enumerate(images, start=1):
        share = k / (len(images) + 1)
        handles = [[h[0] + share * (t[0] - h[0]), h[1] + share * (t[1] - h[1])] for h, t in zip(origin, run.targets)]
        dist = [((t[0] - h[0]) ** 2 + (t[1] - h[1]) ** 2) ** 0.5 for h, t in zip(handles, run.targets)]
        yield DragUpdate(0, handles, [list(t) for t in run.targets], sum(dist) / len(dist), max(dist), False, False,
                         0.0, time.time(), encode(image, "JPEG", jpeg_quality), None, None, dist, run.idle)


@dataclass
class DragPreview:
    """A drag's instant result (warping methods): the image right after construction."""

    jpeg: bytes
    idle: list[bool]                # pairs already within the run's stop distance
    seconds: float


def drag_preview(make_run: Callable[[], Any], jpeg_quality: int = 85) -> DragPreview:
    """Build the DragRun (a warping method moves the content while it is built) and encode the
    image it shows before its first step; the run is then dropped, nothing is stored."""
    started = time.perf_counter()
    with torch.no_grad():
        run = make_run()
        jpeg = encode(run.render(), "JPEG", jpeg_quality)
    return DragPreview(jpeg, run.idle, time.perf_counter() - started)


@dataclass
class InvertUpdate:
    stage: str
    step: int
    total: int
    loss: float
    psnr: float
    jpeg: bytes | None
    done: bool


@dataclass
class InvertBox:
    """Holds the inversion so the loop can read its result when the job has finished."""

    inversion: Any = None
    result: Any = None
    extra: dict = field(default_factory=dict)


def invert_steps(make_inversion: Callable[[], Any], box: InvertBox, frame_wanted: Callable[[], bool],
                 jpeg_quality: int = 85) -> Iterator[InvertUpdate]:
    inversion = make_inversion()
    box.inversion = inversion
    with torch.enable_grad():
        while not inversion.done:
            render = frame_wanted()
            progress = inversion.step(render=render)
            image = getattr(progress, "image", None)
            jpeg = encode(image, "JPEG", jpeg_quality) if image is not None else None
            yield InvertUpdate(str(progress.stage), int(progress.step), int(progress.total),
                               float(progress.loss), float(progress.psnr), jpeg, bool(inversion.done))
    box.result = inversion.result()
