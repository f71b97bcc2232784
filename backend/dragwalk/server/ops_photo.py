"""Photo inversion: an Inversion advanced step by step by the scheduler, its result (and a PTI
session's tuned generator) stored when it ends."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .errors import INTERNAL_MESSAGE
from .frames import KIND_INVERT
from .hub import LiveSession
from .jobs import InvertBox, InvertUpdate, invert_steps
from .ops_base import EditorBase, _engine

log = logging.getLogger("dragwalk.server")


class InversionCommands(EditorBase):
    """Started by ``POST /api/sessions/photo``; progress and frames go to the session's pages."""

    def start_inversion(self, live: LiveSession, target: Any, config: Any) -> None:
        """Invert ``target`` into ``live`` (created with a placeholder start)."""
        inversion = _engine("inversion")
        gen = live.generator
        box = InvertBox()
        live.busy = "invert"
        state = {"steps": 0}

        def on_step(update: InvertUpdate) -> None:
            state["steps"] += 1
            live.broadcast({"type": "progress", "op": "invert", "stage": update.stage, "step": update.step,
                            "total": update.total, "psnr": round(update.psnr, 3), "loss": update.loss})
            if update.jpeg is not None:
                live.broadcast_frame(KIND_INVERT, update.step, update.jpeg)

        def on_done(reason: str, error: BaseException | None) -> None:
            asyncio.ensure_future(self._finish_inversion(live, box, state, reason, error))

        settings = live.doc.history[0].latent.settings      # the placeholder start's (the session's)
        steps = invert_steps(lambda: inversion.Inversion(gen, target, config, settings), box,
                             live.frame_wanted, self.hub.settings.jpeg_quality)
        self.hub.run_job(live, steps, "invert", on_step, on_done)

    async def _finish_inversion(self, live: LiveSession, box: InvertBox, state: dict, reason: str,
                                error: BaseException | None) -> None:
        result = box.result
        if result is None and box.inversion is not None and error is None:
            try:
                result = await self.hub.scheduler.call(box.inversion.result, owner=live.id)
            except Exception as exc:  # noqa: BLE001
                error = exc
        if result is not None:
            entry = live.doc.history[0]
            entry.latent = result.latent.detach().to("cpu")
            entry._blob = None
            entry.record.update(psnr=round(float(result.psnr), 3), tuned=bool(getattr(result, "tuned", False)))
            if getattr(result, "tuned", False):
                live.generator = result.generator
        live.busy = None
        live.job = None
        if not live.deleted:
            if result is not None and getattr(result, "tuned", False):
                await self.hub.persist_weights(live)     # before the session row that says "tuned"
            await self.hub.persist(live)
        if error is not None:
            log.error("inversion of session %s failed", live.id, exc_info=error)
            live.broadcast({"type": "error", "code": "internal", "message": f"inversion failed: {INTERNAL_MESSAGE}"})
        ended = {"finished": "converged", "shutdown": "cancelled"}.get(reason, reason)
        live.broadcast({"type": "done", "op": "invert", "reason": "error" if error else ended,
                        "steps": state["steps"]})
        self.state(live)
        if live.clients:
            await self.send_image(live)
