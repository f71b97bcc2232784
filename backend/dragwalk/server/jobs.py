"""The long-running work of a session, as step iterators the compute worker advances.

Each function here runs in the worker thread, one ``next()`` per step, and yields plain update
objects; the editor turns them into events and frames on the event loop. Requests that arrive
while a job runs (new points, a new learning rate) are left in a :class:`DragControl` and picked
up between steps, so the job's objects are only ever touched by the worker.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

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


@dataclass
class DragUpdate:
    """What one drag step produced."""

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


def drag_steps(make_run: Callable[[], Any], control: DragControl, jpeg_quality: int = 85
               ) -> Iterator[DragUpdate]:
    """Run a drag to its end; ``make_run`` builds the DragRun in the worker (it runs a forward)."""
    run = make_run()
    control.run = run
    started = time.perf_counter()
    steps = 0
    with torch.enable_grad():
        while True:
            if control.points is not None:
                handles, targets = control.points
                control.points = None
                run.set_points(handles, targets)
                control.changes.append({"before_call": steps + 1, "handles": handles, "targets": targets})
            if control.lr is not None:
                lr, control.lr = control.lr, None
                run.set_lr(lr)
                control.changes.append({"before_call": steps + 1, "lr": lr})
            render = control.frame_wanted()
            result = run.step(render=render)
            steps += 1
            control.calls = steps
            image = result.image
            if result.done and image is None:
                image = run.render()
            jpeg = encode(image, "JPEG", jpeg_quality) if image is not None else None
            elapsed = time.perf_counter() - started
            latent = run.latent if (result.done or steps % max(1, control.store_every) == 0) else None
            yield DragUpdate(result.step, [list(p) for p in result.handles], [list(p) for p in result.targets],
                             float(result.remaining), float(result.max_remaining), bool(result.done),
                             bool(getattr(result, "converged", False)), steps / max(elapsed, 1e-9),
                             time.time(), jpeg, latent)
            if result.done:
                return


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
