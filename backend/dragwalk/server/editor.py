"""What each websocket command does to a live session: the glue between messages, the document,
the compute worker and the pages watching the session.

All methods run on the event loop. Torch work goes to the scheduler (one step at a time) or, for
direction sets that are computed in one long call, to a side thread so they cannot stall the
round robin. Every completed operation is stored before its ``done``/``state`` event goes out.
The families of commands live in their own modules (``ops_drag``, ``ops_walk``, ``ops_photo``);
this class adds the small ones and the dispatch.
"""

from __future__ import annotations

from typing import Any

import torch

from .errors import ApiError
from .frames import KIND_STATE, KIND_WALK
from ..imaging import encode
from .hub import Hub, LiveSession
from .ops_base import _engine, error_event  # noqa: F401  (re-exported for routes and ws)
from .ops_drag import DragCommands
from .ops_photo import InversionCommands
from .ops_walk import DirectionCommands
from ..drag.points import PointError
from ..models.base import Settings
from .session import HistoryError, decode_base64, mask_from_png


def reseed_label(seed: int, truncation: float, space: str, gen: Any, settings: Settings | None = None) -> str:
    """"seed 5", with the truncation, latent space, class and cutoff when they are not the plain
    ones, so two reseeds that differ only there are told apart in the history."""
    parts = [f"seed {seed}"]
    if truncation != 1.0:
        parts.append(f"ψ {truncation:.2f}")
    if space != getattr(gen, "default_space", space):
        parts.append(space)
    if settings is not None and settings.class_index is not None:
        parts.append(f"class {settings.class_index}")
    if settings is not None and settings.truncation_cutoff is not None:
        parts.append(f"cutoff {settings.truncation_cutoff}")
    return " · ".join(parts)


def noise_label(settings: Settings) -> str:
    """The history line of a noise change."""
    if settings.noise_mode == "random":
        return f"noise: random, seed {settings.noise_seed}"
    return f"noise: {settings.noise_mode}"


class Editor(DragCommands, DirectionCommands, InversionCommands):
    """Runs commands on sessions. One per server process."""

    def __init__(self, hub: Hub) -> None:
        super().__init__(hub)

    # ------------------------------------------------------------ dispatch
    async def handle(self, live: LiveSession, msg: Any, client: Any = None, http: bool = False) -> dict | None:
        """Run one validated message; returns a direct reply (or None). Raises ApiError/MessageError."""
        kind = msg.type
        if http and kind in ("start_drag", "preview_drag", "stop_drag", "set_lr", "ack", "hello", "frame"):
            raise ApiError("bad_request", f"{kind} is a websocket command (use /ws/sessions/{{id}})")
        handler = getattr(self, f"on_{kind}")
        return await handler(live, msg, client)

    # ------------------------------------------------------------ simple commands
    async def on_ping(self, live: LiveSession, msg: Any, client: Any) -> dict:
        return {"type": "pong"}

    async def on_frame(self, live: LiveSession, msg: Any, client: Any) -> None:
        await self.send_image(live, KIND_STATE, client)

    async def on_set_points(self, live: LiveSession, msg: Any, client: Any) -> None:
        try:
            live.doc.set_points(msg.handles, msg.targets, self.limits.max_points)
        except PointError as exc:
            raise ApiError("invalid_points", str(exc)) from None
        control = getattr(live, "drag_control", None)
        if live.busy == "drag" and control is not None:
            control.points = ([list(p) for p in live.doc.handles], [list(p) for p in live.doc.targets])
        self.hub.persist_soon(live)
        self.state(live, client, msg.rid)

    async def on_set_mask(self, live: LiveSession, msg: Any, client: Any) -> None:
        if msg.mask is None:
            live.doc.set_mask(None)
        else:
            try:
                data = decode_base64(msg.mask, self.limits.message_bytes)
                live.doc.set_mask(mask_from_png(data, live.doc.image_size))
            except ValueError as exc:
                raise ApiError("bad_request", f"mask: {exc}") from None
        self.hub.persist_soon(live)
        self.state(live, client, msg.rid)

    async def on_undo(self, live: LiveSession, msg: Any, client: Any) -> None:
        await self._move(live, lambda: live.doc.undo())

    async def on_redo(self, live: LiveSession, msg: Any, client: Any) -> None:
        await self._move(live, lambda: live.doc.redo())

    async def on_goto(self, live: LiveSession, msg: Any, client: Any) -> None:
        await self._move(live, lambda: live.doc.goto(msg.index))

    async def _move(self, live: LiveSession, move: Any) -> None:
        self.refuse_while_inverting(live)
        async with live.lock:
            await self.settle(live)
            try:
                move()
            except HistoryError as exc:
                raise ApiError("bad_request", str(exc)) from None
            await self.committed(live)

    async def on_reseed(self, live: LiveSession, msg: Any, client: Any) -> None:
        self.refuse_while_inverting(live)
        gen = live.generator
        if msg.space is not None and msg.space not in gen.latent_spaces:
            raise ApiError("bad_request", f"model has no latent space {msg.space!r}")
        base = live.doc.settings
        try:
            settings = gen.check_settings(base if msg.settings is None else msg.settings.settings(base))
        except ValueError as exc:
            raise ApiError("bad_request", f"settings: {exc}") from None

        def sample() -> Any:
            return gen.sample(msg.seed, truncation=msg.truncation, space=msg.space, settings=settings)

        if msg.preview:
            # a truncation slider being moved: the image it would give, to this page only
            def render() -> bytes:
                with torch.no_grad():
                    return encode(gen.render(sample()), "JPEG", self.hub.settings.jpeg_quality)
            jpeg = await self.hub.scheduler.call(render, owner=live.id, name="reseed-preview")
            if client is not None:
                client.offer_frame(KIND_WALK, 0, jpeg)
            return
        async with live.lock:
            await self.settle(live)
            latent = await self.hub.scheduler.call(sample, owner=live.id)
            live.doc.push("reseed", reseed_label(msg.seed, msg.truncation, latent.space, gen, settings), latent,
                          {"seed": msg.seed, "truncation": msg.truncation, "space": latent.space,
                           "settings": settings.to_dict()})
            await self.committed(live)

    async def on_set_noise(self, live: LiveSession, msg: Any, client: Any) -> None:
        """The current image with another noise mode: a history entry with the same code (undo
        puts the old noise back). Checked against the model before anything changes."""
        self.refuse_while_inverting(live)
        async with live.lock:
            await self.settle(live)
            current = live.doc.current
            try:
                settings = live.generator.check_settings(current.settings.replace(
                    noise_mode=msg.noise_mode, noise_seed=msg.noise_seed))
            except ValueError as exc:
                raise ApiError("bad_request", f"noise: {exc}") from None
            live.doc.push("noise", noise_label(settings), current.with_settings(settings),
                          {"noise_mode": settings.noise_mode, "noise_seed": settings.noise_seed})
            await self.committed(live)

    async def on_cancel(self, live: LiveSession, msg: Any, client: Any) -> None:
        """Stop the session's long computation: a drag keeps what it reached (``stopped``), an
        inversion keeps the latent it had fitted so far, directions being found are no longer
        waited for (``done`` with ``cancelled``; a thread cannot be interrupted, so the set still
        lands in the cache when it finishes)."""
        cancelled = False
        if msg.op in (None, "drag", "invert") and live.job is not None and live.busy in ("drag", "invert") \
                and msg.op in (None, live.busy):
            live.job.cancel("stopped" if live.busy == "drag" else "cancelled")
            cancelled = True
        if msg.op in (None, "directions") and live.finding:
            for event in list(live.finding):
                event.set()
            cancelled = True
        if not cancelled:
            raise ApiError("bad_request", f"no {msg.op or 'long computation'} is running")

    # ------------------------------------------------------------ connections
    def detach(self, live: LiveSession, client: Any) -> None:
        """A page went away: when nobody watches the session any more, its running job stops."""
        live.clients.discard(client)
        if not live.clients and live.job is not None:
            live.job.cancel("cancelled")
