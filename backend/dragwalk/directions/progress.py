"""A checkpoint the long direction computations call between units of work, and the locks
they share.

A method's loops (chunks of activations, SFVQ batches, DP-LaSE iterations) call
:func:`checkpoint`. By default it does nothing. A caller that runs a computation in the
background (the server's start-up precomputation, ``server/precompute.py``) installs a hook for
its own thread with :func:`hooked`: the hook can pause the computation while interactive work
runs, and raise to cancel it at shutdown. The hook is per thread, so a computation a page asked
for, in another thread, is never slowed or stopped by it.

A page can still need what the background is computing: the same set (the cache's per-key
lock), GANSpace's activation PCA that SFVQ shares, the scored faces InterFaceGAN and LSD share.
Waiting for a background computation paused for drags would make the page wait for the drags
to end. So those locks are taken with :func:`acquire`, which counts a thread as waiting while it
is blocked, and a background hook asks :func:`someone_waits` at its checkpoints: when a page waits
for a paused computation, the background gives it up (its locks are released as the exception
unwinds), the page computes at its own priority, and the background takes the result from the
cache after.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Hashable, Iterator

_local = threading.local()
_waiting_lock = threading.Lock()
_waiting = 0
_computing = 0


def checkpoint() -> None:
    """Let this thread's hook pause or cancel the computation (no-op without one)."""
    hook: Callable[[], None] | None = getattr(_local, "hook", None)
    if hook is not None:
        hook()


@contextmanager
def hooked(hook: Callable[[], None]) -> Iterator[None]:
    """Install ``hook`` as this thread's checkpoint for the block."""
    previous = getattr(_local, "hook", None)
    _local.hook = hook
    try:
        yield
    finally:
        _local.hook = previous


def in_background() -> bool:
    """Whether this thread runs under a hook (a background computation)."""
    return getattr(_local, "hook", None) is not None


@contextmanager
def acquire(lock: threading.Lock) -> Iterator[None]:
    """Hold ``lock`` for the block. A thread without a hook (a page's request) that has to wait
    for it counts as waiting meanwhile (:func:`someone_waits`), so a background holder steps aside."""
    global _waiting
    if not lock.acquire(blocking=False):
        counted = not in_background()
        if counted:
            with _waiting_lock:
                _waiting += 1
        try:
            lock.acquire()
        finally:
            if counted:
                with _waiting_lock:
                    _waiting -= 1
    try:
        yield
    finally:
        lock.release()


class KeyedLocks:
    """One lock per key (a cache key, a file), made on first use and taken with :func:`acquire`:
    one computation per key however many threads ask, and a page that waits on a key the
    background holds counts as waiting. The locks are never removed (a few per model)."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()

    @contextmanager
    def hold(self, key: Hashable) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with acquire(lock):
            yield


def someone_waits() -> int:
    """How many foreground threads are blocked on a lock taken with :func:`acquire`."""
    return _waiting


@contextmanager
def computing() -> Iterator[None]:
    """Mark the block as a computation a page waits for (no-op under a hook). The background
    search pauses while one runs (:func:`pages_computing`), so the page has the cores to itself:
    at nice 19 the search still runs on a core the page leaves idle and takes Python's lock
    between its operations."""
    global _computing
    if in_background():
        yield
        return
    with _waiting_lock:
        _computing += 1
    try:
        yield
    finally:
        with _waiting_lock:
            _computing -= 1


def pages_computing() -> int:
    """How many page computations (:func:`computing`) run now."""
    return _computing
