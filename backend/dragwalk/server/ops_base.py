"""Shared ground of the session commands: events to the pages, frames of the current image, and
waiting for a running drag to be committed before a command that changes the history."""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

from .errors import INTERNAL_MESSAGE, ApiError
from .frames import KIND_STATE
from .hub import Hub, LiveSession
from .messages import MessageError


def _engine(name: str) -> Any:
    """An engine package, or an ``unavailable`` error while it is not part of this build."""
    try:
        return importlib.import_module(f"dragwalk.{name}")
    except ImportError as exc:
        raise ApiError("unavailable", f"the {name} engine is not available in this build ({exc})") from None


class EditorBase:
    """What every family of commands needs; the families are mixed into :class:`Editor`."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.limits = hub.settings.limits

    def state(self, live: LiveSession, client: Any = None, rid: Any = None) -> None:
        """The session summary to every page; the page whose message (``rid``) caused it gets the
        rid back, so it knows which of its edits the server has applied."""
        event = {"type": "state", "session": live.summary()}
        for target in list(live.clients):
            target.send_event({**event, "rid": rid} if target is client and rid is not None else event)

    async def send_image(self, live: LiveSession, kind: int = KIND_STATE, client: Any = None) -> None:
        jpeg = await self.hub.image(live, "JPEG")
        targets = [client] if client is not None else list(live.clients)
        for target in targets:
            target.offer_frame(kind, 0, jpeg)

    async def settle(self, live: LiveSession) -> None:
        """Stop a running drag (as a superseding command does) and wait until it is committed."""
        job = live.job
        if job is not None and live.busy == "drag":
            job.cancel("cancelled")
        while live.job is not None and live.busy == "drag":
            await asyncio.sleep(0.005)

    def refuse_while_inverting(self, live: LiveSession) -> None:
        if live.busy == "invert":
            raise ApiError("busy", "the photo is still being inverted; wait for its done event")

    async def committed(self, live: LiveSession, frame: bool = True) -> None:
        live.preview_epoch += 1      # a drag preview of the image before this edit is stale
        await self.hub.persist(live)
        self.state(live)
        if frame and live.clients:
            await self.send_image(live)


def error_event(exc: Exception, rid: Any = None) -> dict:
    """The ``error`` event for a refused or failed command (internal errors name no internals)."""
    if isinstance(exc, ApiError):
        event = {"type": "error", "code": exc.code, "message": exc.message}
    elif isinstance(exc, MessageError):
        event = {"type": "error", "code": exc.code, "message": exc.message}
        rid = rid if rid is not None else exc.rid
    else:     # details stay in the server's log (the caller logged them)
        event = {"type": "error", "code": "internal", "message": INTERNAL_MESSAGE}
    if rid is not None:
        event["rid"] = rid
    return event

