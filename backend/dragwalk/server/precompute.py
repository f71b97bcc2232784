"""Direction sets computed once per model in the background when the server starts.

GANSpace, SFVQ, DP-LaSE and the labelled methods take seconds to minutes; a person who opens the
directions panel should find them ready. At start-up :class:`Precompute` runs every cacheable
method that needs no mask (with its defaults, the parameters the page sends unless a person
changes them) through the server's one :class:`~dragwalk.directions.DirectionCache`, so the
sets land in memory and on disk, and a later start only reads the files. A page asking for a set
being computed joins that computation (the cache's per-key lock), and never starts a second one.

It must not cost interactive work anything:

* it runs in its own thread at the lowest CPU priority (``nice 19`` for that thread and the
  threads it starts), and between units of work (``directions.progress.checkpoint``) it waits
  while the compute worker has jobs (drags, inversions) or a page computes a direction set
  (``directions.progress.computing``: at nice 19 it would still run on a core the page leaves
  idle, and take Python's lock between its operations);
* :meth:`Precompute.stop` cancels it at the next checkpoint (shutdown);
* ``--no-precompute-directions`` / ``DRAGWALK_PRECOMPUTE_DIRECTIONS=0`` switch it off (the test
  harness does).

A page that asks for the very set the background is computing waits for it while it runs, which
is sooner than starting over, but never for a pause: when the background is paused (for drags, or
for a page's own computation, which may need what the background holds: GANSpace's PCA that SFVQ
shares, the scored faces InterFaceGAN and LSD share) and a page waits for one of its locks, the
background gives the computation up (``yielded``), the page computes it at its own priority, and
the background then reads the result (``directions.progress``).

``GET /api/directions/ready`` shows its progress: per model and method, ``queued``, ``running``,
``paused`` (waiting for the worker), ``yielded`` (a page is computing it), ``ready`` (with the
seconds it took, whether it came from disk, and ``yielded`` when a page computed it), ``failed``
(with the reason) or ``cancelled``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable

from fastapi import APIRouter, Request

from .schemas import DirectionsReady, error_responses

log = logging.getLogger("dragwalk.server")

#: cheap to dear, so the quick sets are ready first; what two methods share is computed once and
#: the second follows the first: SFVQ reads GANSpace's activation PCA (``ganspace.activation_basis``),
#: LSD InterFaceGAN's scored faces (``labelled.scored_samples``), each then costing about a second
ORDER = ("sefa", "ganspace", "sfvq", "interfacegan", "lsd", "dplase")
#: the set whose computation does the work another reads (so the second's own seconds leave it out)
SHARES_WORK_OF = {"sfvq": "ganspace", "lsd": "interfacegan"}
#: parameters the background run overrides: DP-LaSE without its time limit (a run cut short is never
#: stored, and at nice 19 on a busy machine it would be cut short); the limit is not part of the
#: cache key (``directions.cache.BUDGETS``), so the page's default request finds this set
FULL = {"dplase": {"time_limit": None}}
#: seconds between looks at the worker while paused for it
PAUSE_POLL = 0.05


class Cancelled(Exception):
    """Raised at a checkpoint when the precomputation is stopped."""


class Yielded(Exception):
    """Raised at a checkpoint when a page waits for a lock this computation holds (the same set,
    or what two methods share): the page computes it at its own priority instead."""


class Precompute:
    """Compute ``methods`` for each ``(name, generator)`` in the background (see the module doc).

    Args:
        generators: ``[(model name, generator)]`` to compute sets for.
        cache: the server's direction cache (``get(generator, method, **params)``).
        busy: whether interactive work is waiting (the worker has jobs); the computation pauses
            while it says so.
        methods: ``{method: params}``; default: every entry of :data:`ORDER` with its defaults.
        nice: the thread's CPU priority (19, the lowest; tests on a loaded machine pass 0, where
            a nice-19 thread may get no CPU at all).
    """

    def __init__(self, generators: list[tuple[str, Any]], cache: Any, busy: Callable[[], bool],
                 methods: dict[str, dict[str, Any]] | None = None, nice: int = 19) -> None:
        from ..directions import METHODS

        self.generators = generators
        self.cache = cache
        self.busy = busy
        self.nice = nice
        if methods is None:
            methods = {m: dict(FULL.get(m, {})) for m in ORDER
                       if METHODS[m]["cacheable"] and not METHODS[m]["needs_mask"]}
        self.methods = methods
        self.status: dict[str, dict[str, dict[str, Any]]] = {
            name: {m: {"state": "queued"} for m in methods} for name, _ in generators}
        self.started = time.monotonic()
        self.finished: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dragwalk-precompute", daemon=True)

    # ------------------------------------------------------------ control
    def start(self) -> "Precompute":
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> bool:
        """Cancel at the next checkpoint and wait for the thread; whether it ended in time."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every set is done (tests, the bench); whether it finished in time."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def summary(self) -> dict[str, Any]:
        """What ``GET /api/directions/ready`` answers."""
        return {"running": self._thread.is_alive(), "models": {k: {m: dict(v) for m, v in s.items()}
                                                               for k, s in self.status.items()},
                "seconds": round((self.finished or time.monotonic()) - self.started, 3)}

    # ------------------------------------------------------------ the thread
    def _busy(self) -> bool:
        """Interactive work waits: the worker has jobs, or a page computes a direction set."""
        from ..directions.progress import pages_computing

        return bool(self.busy()) or pages_computing() > 0

    def _run(self) -> None:
        from ..directions.progress import hooked, someone_waits

        _set_nice(self.nice)
        current: dict[str, Any] = {}

        def pause_while_busy(holding: bool) -> None:
            # a page waiting for what this holds waits while it runs (no drags: the set is ready
            # sooner than the page could start over), but never for a pause; between two sets
            # nothing is held, and a page waiting for another page's lock is no reason to yield
            if self._stop.is_set():
                raise Cancelled
            if self._busy():
                current["state"] = "paused"
                while self._busy() and not self._stop.is_set() and not (holding and someone_waits()):
                    time.sleep(PAUSE_POLL)
                if self._stop.is_set():
                    raise Cancelled
                if holding and someone_waits():
                    raise Yielded
                current["state"] = "running"

        def checkpoint() -> None:
            pause_while_busy(holding=True)

        try:
            with hooked(checkpoint):
                for name, generator in self.generators:
                    for method, params in self.methods.items():
                        current = self.status[name][method]
                        pause_while_busy(holding=False)
                        self._one(generator, method, params, current)
        except Cancelled:
            for entries in self.status.values():
                for entry in entries.values():
                    if entry["state"] in ("queued", "running", "paused", "yielded"):
                        entry["state"] = "cancelled"
        finally:
            self.finished = time.monotonic()

    def _one(self, generator: Any, method: str, params: dict[str, Any], entry: dict[str, Any]) -> None:
        from ..directions.progress import someone_waits

        began = time.perf_counter()
        on_disk = self.cache.on_disk(generator, method, **params)
        entry.update(state="running", from_disk=on_disk)
        try:
            while True:
                try:
                    dset = self.cache.get(generator, method, **params)
                    break
                except Yielded:
                    # a page waits for what this held: let it take the lock, then read its result
                    # (the cache's lock holds this thread while the page computes)
                    entry.update(state="yielded", yielded=True)
                    while someone_waits() and not self._stop.is_set():
                        time.sleep(PAUSE_POLL)
                    if self._stop.is_set():
                        raise Cancelled from None
                    entry["state"] = "running"
        except Cancelled:
            raise
        except Exception as exc:    # one method failing (no dlib, a model without faces) is not fatal
            log.warning("precomputing %s directions failed: %s", method, exc)
            entry.update(state="failed", error=str(exc)[:200], seconds=round(time.perf_counter() - began, 3))
            return
        entry.update(state="ready", count=len(dset), seconds=round(time.perf_counter() - began, 3),
                     truncated=bool(dset.params.get("truncated", False)))


def _set_nice(nice: int) -> None:
    """``nice`` for the calling thread (Linux: a thread is a task with its own nice value;
    threads it starts inherit it). Elsewhere a no-op: pausing for the worker still applies."""
    if nice <= 0:
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (AttributeError, OSError):
        pass


router = APIRouter(prefix="/api")


@router.get("/directions/ready", response_model=DirectionsReady, response_model_exclude_unset=True,
            responses=error_responses())
async def directions_ready(request: Request) -> dict[str, Any]:
    """Progress of the start-up precomputation (``{"enabled": false}`` when it is off)."""
    precompute = getattr(request.app.state, "precompute", None)
    if precompute is None:
        return {"enabled": False}
    return {"enabled": True, **precompute.summary()}
