"""One compute worker per device: all torch work runs here, off the event loop, shared fairly.

Work comes as *jobs*: an iterator whose every ``next()`` is one unit of work (one drag step, one
inversion step, or a single call). The worker takes one step of each active job in turn (round
robin), so a long drag never makes another session wait more than one step of each other job.
Each job has a cancel flag checked before every step: stopping, a superseding command or a
vanished client ends a job within one step, and the iterator is closed so its ``finally`` blocks
(e.g. committing what a drag reached) run in the worker.

Results are reported through callbacks the caller supplies; the server's callbacks hop back to the
event loop with ``loop.call_soon_threadsafe``. The worker itself knows nothing about sessions.

Batching: a job whose iterator has ``batch_key()`` (returning a hashable, or ``None`` when its next
unit cannot be shared) and a static ``step_batch(iterators) -> values`` may have its next step run
together with the waiting jobs of equal key (up to :data:`MAX_BATCH`): many sessions dragging on
one model then share each forward and backward pass. Every job in the batch still advances by
exactly one step, and the batch goes to the back of the queue in order, so each round still gives
every job one step.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

#: most jobs whose steps run in one batch
MAX_BATCH = 16

#: callbacks run in the worker thread
StepCallback = Callable[[Any], None]
DoneCallback = Callable[[str, BaseException | None], None]


@dataclass(eq=False)
class Job:
    """A running unit of work: ``steps`` is advanced one ``next()`` at a time by the worker."""

    steps: Iterator[Any]
    owner: str = ""
    name: str = "job"
    on_step: StepCallback | None = None
    on_done: DoneCallback | None = None
    id: int = 0
    steps_done: int = 0
    compute_seconds: float = 0.0
    cancel_reason: str | None = None
    finished: threading.Event = field(default_factory=threading.Event)

    def cancel(self, reason: str = "cancelled") -> None:
        """Ask the worker to stop this job before its next step (thread-safe, idempotent)."""
        if self.cancel_reason is None:
            self.cancel_reason = reason

    @property
    def cancelled(self) -> bool:
        return self.cancel_reason is not None

    @property
    def done(self) -> bool:
        return self.finished.is_set()


class Scheduler:
    """A single worker thread running the steps of all submitted jobs in round-robin order."""

    def __init__(self, name: str = "compute", batching: bool = True) -> None:
        self.name = name
        self.batching = batching
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._ids = itertools.count(1)
        self._closing = False
        self._current: list[Job] = []
        self._thread = threading.Thread(target=self._run, name=f"dragwalk-{name}", daemon=True)
        self._thread.start()
        #: steps run per owner (for fairness figures)
        self.steps_by_owner: dict[str, int] = {}

    # ------------------------------------------------------------ submitting
    def submit(self, steps: Iterator[Any], owner: str = "", name: str = "job",
               on_step: StepCallback | None = None, on_done: DoneCallback | None = None) -> Job:
        job = Job(iter(steps), owner, name, on_step, on_done, next(self._ids))
        with self._cond:
            if self._closing:
                raise RuntimeError("scheduler is shut down")
            self._queue.append(job)
            self._cond.notify()
        return job

    def call_soon(self, fn: Callable[[], Any], owner: str = "", name: str = "call") -> "asyncio.Future[Any]":
        """Run ``fn()`` as a one-step job; an asyncio future (of the running loop) gets its result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        box: list[Any] = []

        def once() -> Iterator[None]:
            box.append(fn())
            yield None

        def finish(reason: str, error: BaseException | None) -> None:
            def settle() -> None:
                if future.done():
                    return
                if error is not None:
                    future.set_exception(error)
                elif box:
                    future.set_result(box[0])
                else:
                    future.set_exception(asyncio.CancelledError(reason))
            loop.call_soon_threadsafe(settle)

        self.submit(once(), owner, name, on_done=finish)
        return future

    async def call(self, fn: Callable[[], Any], owner: str = "", name: str = "call") -> Any:
        return await self.call_soon(fn, owner, name)

    # ------------------------------------------------------------ inspecting
    def active(self) -> list[Job]:
        with self._cond:
            return list(self._current) + list(self._queue)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Cancel every job, let the worker close them, and stop the thread."""
        with self._cond:
            self._closing = True
            for job in self._queue:
                job.cancel("shutdown")
            self._cond.notify()
        self._thread.join(timeout)

    # ------------------------------------------------------------ the worker
    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                job = self._queue.popleft()
                group = [job] + self._batch_mates(job)
                self._current = group
            if len(group) == 1:
                done = [self._advance(job)]
            else:
                done = self._advance_together(group)
            with self._cond:
                self._current = []
                for member, finished in zip(group, done):
                    if not finished:
                        self._queue.append(member)   # to the back: round robin

    def _batch_mates(self, job: Job) -> list[Job]:
        """Waiting jobs whose next step can run with ``job``'s (taken off the queue); call with the lock."""
        key = self._batch_key(job)
        if key is None:
            return []
        mates = [other for other in self._queue if self._batch_key(other) == key][:MAX_BATCH - 1]
        for other in mates:
            self._queue.remove(other)
        return mates

    def _batch_key(self, job: Job) -> Any:
        get = getattr(job.steps, "batch_key", None) if self.batching else None
        if get is None or job.cancelled:
            return None
        try:
            return get()
        except Exception:  # noqa: BLE001 - the job's own next() will report what is wrong
            return None

    def _advance_together(self, group: list[Job]) -> list[bool]:
        """One step of each job in ``group`` in one batch; True for each job that has ended."""
        start = time.perf_counter()
        try:
            values = type(group[0].steps).step_batch([job.steps for job in group])
        except BaseException as exc:  # noqa: BLE001 - reported to every owner in the batch
            return [self._finish(job, "error", exc, close=True) for job in group]
        share = (time.perf_counter() - start) / len(group)
        done = []
        for job, value in zip(group, values):
            job.compute_seconds += share
            done.append(self._delivered(job, value))
        return done

    def _advance(self, job: Job) -> bool:
        """One step of ``job``; True when the job has ended (and was finalised)."""
        if job.cancelled:
            return self._finish(job, job.cancel_reason or "cancelled", None, close=True)
        start = time.perf_counter()
        try:
            value = next(job.steps)
        except StopIteration:
            return self._finish(job, "finished", None)
        except BaseException as exc:  # noqa: BLE001 - reported to the job's owner
            return self._finish(job, "error", exc)
        finally:
            job.compute_seconds += time.perf_counter() - start
        return self._delivered(job, value)

    def _delivered(self, job: Job, value: Any) -> bool:
        """Count a step of ``job`` and hand its ``value`` to the owner; True if that ended the job."""
        job.steps_done += 1
        self.steps_by_owner[job.owner] = self.steps_by_owner.get(job.owner, 0) + 1
        if job.on_step is not None:
            try:
                job.on_step(value)
            except Exception as exc:  # noqa: BLE001
                job.cancel("error")
                return self._finish(job, "error", exc, close=True)
        return False

    @staticmethod
    def _finish(job: Job, reason: str, error: BaseException | None, close: bool = False) -> bool:
        if close:
            close_fn = getattr(job.steps, "close", None)
            if close_fn is not None:
                try:
                    close_fn()
                except Exception as exc:  # noqa: BLE001
                    error = error or exc
        try:
            if job.on_done is not None:
                job.on_done(reason, error)
        finally:
            job.finished.set()
        return True
