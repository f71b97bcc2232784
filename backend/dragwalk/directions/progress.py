"""A checkpoint the long direction computations call between units of work.

A method's loops (chunks of activations, SFVQ batches, DP-LaSE iterations) call
:func:`checkpoint`. By default it does nothing. A caller that runs a computation in the
background (the server's start-up precomputation, ``server/precompute.py``) installs a hook for
its own thread with :func:`hooked`: the hook can pause the computation while interactive work
runs, and raise to cancel it at shutdown. The hook is per thread, so a computation a page asked
for, in another thread, is never slowed or stopped by it.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator

_local = threading.local()


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
