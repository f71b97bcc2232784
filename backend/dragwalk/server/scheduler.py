"""One compute worker per device: all torch work runs here, off the event loop, shared fairly.

Work comes as *jobs*: an iterator whose every ``next()`` is one unit of work (one drag step, one
inversion step, or a single call). The worker takes one step of each active job in turn (round
robin), so a long drag never makes another session wait more than one step of each other job.
Each job has a cancel flag checked before every step: stopping, a superseding command or a
vanished client ends a job within one step, and the iterator is closed so its ``finally`` blocks
(e.g. committing what a drag reached) run in the worker.

Results are reported through callbacks the caller supplies; the server's callbacks hop back to the
event loop with ``loop.call_soon_threadsafe``. The worker itself knows nothing about sessions.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

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

    def __init__(self, name: str = "compute") -> None:
        self.name = name
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._ids = itertools.count(1)
        self._closing = False
        self._current: Job | None = None
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
            current = [self._current] if self._current is not None else []
            return current + list(self._queue)

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
                self._current = job
            finished = self._advance(job)
            with self._cond:
                self._current = None
                if not finished:
                    self._queue.append(job)   # to the back: round robin

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
