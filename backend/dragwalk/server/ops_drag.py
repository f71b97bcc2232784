"""Drag commands: start a DragRun as a scheduler job, stream its steps, commit what it reached;
preview what a warping method does before any step."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import torch

from .errors import INTERNAL_MESSAGE, ApiError
from .frames import KIND_DRAG, KIND_DRAG_PREVIEW
from .hub import LiveSession
from .jobs import DragControl, DragPreview, DragUpdate, drag_preview, drag_steps
from .ops_base import EditorBase, _engine, error_event

log = logging.getLogger("dragwalk.server")


class DragCommands(EditorBase):
    """``start_drag``, ``stop_drag``, ``set_lr``, ``preview_drag`` (``set_points`` during a drag is
    in the editor)."""

    async def on_start_drag(self, live: LiveSession, msg: Any, client: Any) -> None:
        self.refuse_while_inverting(live)
        drag = _engine("drag")
        doc = live.doc
        if not doc.handles:
            raise ApiError("invalid_points", "place at least one handle and target before dragging")
        config = self._drag_config(live, drag, msg)
        async with live.lock:
            await self.settle(live)
            self._start_drag(live, drag, config)
        self.state(live)

    def _drag_config(self, live: LiveSession, drag: Any, msg: Any) -> Any:
        """The DragConfig a ``start_drag`` / ``preview_drag`` asks for, checked against the limits."""
        params = dict(msg.params or {})
        config_fields = {"lr", "lambda_mask", "max_steps", "stop_distance", "feature_layer", "mode"}
        method_params = {k: v for k, v in params.items() if k not in config_fields}
        fields = {k: v for k, v in params.items() if k in config_fields}
        if "max_steps" in fields and isinstance(fields["max_steps"], (int, float)) \
                and fields["max_steps"] > self.limits.max_drag_steps:
            raise ApiError("bad_request", f"max_steps must be at most {self.limits.max_drag_steps}")
        if fields.get("feature_layer") is not None and fields["feature_layer"] not in \
                [info.name for info in live.generator.layers]:
            raise ApiError("bad_request", f"unknown feature_layer {fields['feature_layer']!r}")
        if fields.get("mode") is not None and fields["mode"] not in live.generator.drag_modes:
            raise ApiError("bad_request", f"unknown drag mode {fields['mode']!r} "
                           f"(known: {', '.join(live.generator.drag_modes)})")
        try:
            return drag.DragConfig(method=msg.method or drag.DEFAULT_METHOD, params=method_params,
                                   precision=self.hub.runtime.precision, **fields)
        except (ValueError, TypeError) as exc:
            raise ApiError("bad_request", str(exc)) from None

    def _start_drag(self, live: LiveSession, drag: Any, config: Any) -> None:
        doc, gen = live.doc, live.generator
        handles = [list(p) for p in doc.handles]
        targets = [list(p) for p in doc.targets]
        mask = None if doc.mask is None else torch.from_numpy(doc.mask.astype("float32"))
        start = doc.current
        control = DragControl(store_every=self.limits.store_every,
                              frame_wanted=lambda: live.frame_wanted() or len(live.animation) == 0)
        record = {"method": config.method, "params": config.to_dict(), "handles": handles, "targets": targets,
                  "label": drag_label(config.method, handles, targets)}
        if doc.mask is not None:
            record["mask"] = doc.mask_b64()      # base64 PNG: a 64 px mask is ~100 bytes, not 4096 numbers
        state = {"steps": 0, "last": None, "error": None}
        live.preview_epoch += 1          # a preview still being rendered is superseded by the drag
        live.animation = []
        live.drag_control = control
        live.busy = "drag"

        def make_run() -> Any:
            return drag.DragRun(gen, start.to(gen.device), handles, targets, mask, config)

        def on_step(update: DragUpdate) -> None:
            state["steps"] = update.step
            state["last"] = update
            if update.latent is not None and not update.done:
                doc.set_live(update.latent, record)
                self.hub.persist_soon(live)
            if update.jpeg is not None or update.done:
                live.broadcast({"type": "progress", "op": "drag", "step": update.step, "handles": update.handles,
                                "targets": update.targets, "remaining": update.remaining,
                                "max_remaining": update.max_remaining, "distances": update.distances,
                                "idle": update.idle,
                                "steps_per_second": round(update.steps_per_second, 2), "t": update.produced})
            if update.jpeg is not None:
                live.broadcast_frame(KIND_DRAG, update.step, update.jpeg)
                self._keep_frame(live, update.jpeg)

        def on_done(reason: str, error: BaseException | None) -> None:
            asyncio.ensure_future(self._finish_drag(live, control, record, state, reason, error))

        self.hub.run_job(live, drag_steps(make_run, control, self.hub.settings.jpeg_quality), "drag",
                         on_step, on_done)

    def _keep_frame(self, live: LiveSession, jpeg: bytes) -> None:
        live.animation.append(jpeg)
        if len(live.animation) > self.limits.animation_frames:
            live.animation = live.animation[::2]     # bounded: keep every other frame

    async def _finish_drag(self, live: LiveSession, control: DragControl, record: dict, state: dict,
                           reason: str, error: BaseException | None) -> None:
        run = control.run
        last: DragUpdate | None = state["last"]
        if reason == "finished":
            # the run's own verdict: "converged" only when its image check found the content at the
            # targets; the server never upgrades a run that merely stopped moving
            told = last.reason if last is not None else getattr(run, "reason", None)
            reason = told if told in _engine("drag").REASONS else "max_steps"
        elif reason == "shutdown":
            reason = "cancelled"
        elif reason == "error":
            bad = isinstance(error, ValueError)
            if not bad:
                log.error("drag of session %s failed", live.id, exc_info=error)
            live.broadcast({"type": "error", "code": "bad_request" if bad else "internal",
                            "message": f"drag failed: {error if bad else INTERNAL_MESSAGE}"})
        changed = run is not None and state["steps"] > 0
        if changed:
            record = dict(record, steps=state["steps"], calls=control.calls, reason=reason)
            if control.changes:
                record["changes"] = list(control.changes)
            # the image before the drag keeps the points the drag started from (undo puts them
            # back, ready for another try); the drag's entry gets where tracking left the handles
            doc = live.doc
            doc.handles = [tuple(p) for p in record["handles"]]
            doc.targets = [tuple(p) for p in record["targets"]]
            # targets as the person set them (the run's copies went through float32)
            changed_targets = [c["targets"] for c in control.changes if "targets" in c]
            targets = changed_targets[-1] if changed_targets else record["targets"]
            reached = ([list(p) for p in run.handles], [list(p) for p in targets])
            doc.push("drag", record.pop("label"), run.latent, record, points=reached)
        else:
            live.doc.set_live(None)
        live.busy = None
        live.job = None
        live.drag_control = None
        if not live.deleted:
            await self.hub.persist(live)
        done = {"type": "done", "op": "drag", "reason": reason if not error else "error", "steps": state["steps"]}
        if last is not None:
            done.update(distances=last.distances, idle=last.idle)
        arrival = getattr(run, "arrival", None) if run is not None else None
        if arrival is not None and last is not None and len(arrival.arrived) == len(last.distances):
            # per pair: the tracker put the handle on its target, but the image check did not find
            # the handle's content there (the marker is not to be trusted)
            stop = float(getattr(run, "stop_distance", 1.0))
            done["unsure"] = [(not a) and d <= stop for a, d in zip(arrival.arrived, last.distances)]
        live.broadcast(done)
        self.state(live)
        if changed and live.clients and last is not None and last.jpeg is None:
            await self.send_image(live, KIND_DRAG)

    async def on_stop_drag(self, live: LiveSession, msg: Any, client: Any) -> None:
        if live.job is not None and live.busy == "drag":
            live.job.cancel("stopped")
        else:
            raise ApiError("bad_request", "no drag is running")

    async def on_set_lr(self, live: LiveSession, msg: Any, client: Any) -> None:
        control = getattr(live, "drag_control", None)
        if live.busy != "drag" or control is None:
            raise ApiError("bad_request", "no drag is running")
        control.lr = float(msg.lr)

    # ------------------------------------------------------------ instant preview (warping methods)
    async def on_preview_drag(self, live: LiveSession, msg: Any, client: Any) -> None:
        """Render what a warping method's DragRun shows before its first step, for this page only.

        Nothing is stored and the history does not change; only the newest request waits while one
        renders, and a preview whose session changed meanwhile (new points, mask or image, a drag
        started) is dropped: the later edit supersedes it.
        """
        self.refuse_while_inverting(live)
        if live.busy == "drag":
            raise ApiError("busy", "a drag is running: its frames already show where the content goes")
        drag = _engine("drag")
        config = self._drag_config(live, drag, msg)
        method = drag.METHODS[config.method]
        if not method.warps:
            warping = ", ".join(n for n, c in drag.METHODS.items() if c.warps) or "none"
            raise ApiError("bad_request", f"method {config.method!r} moves content only step by step, so it has "
                           f"no instant preview (methods that do: {warping})")
        doc = live.doc
        if not doc.handles:
            raise ApiError("invalid_points", "place at least one handle and its target before asking for a preview")
        live.preview_epoch += 1
        snapshot = {"epoch": live.preview_epoch, "handles": [list(p) for p in doc.handles],
                    "targets": [list(p) for p in doc.targets], "mask": doc.mask, "latent": doc.current,
                    "config": config, "client": client, "rid": msg.rid, "drag": drag}
        live.preview_pending = snapshot
        if not live.preview_running:
            asyncio.ensure_future(self._render_previews(live))

    async def _render_previews(self, live: LiveSession) -> None:
        live.preview_running = True
        try:
            while live.preview_pending is not None:
                job, live.preview_pending = live.preview_pending, None
                if not self._preview_current(live, job):
                    continue               # superseded before it could start: spare the worker
                try:
                    preview = await self._preview(live, job)
                except Exception as exc:  # noqa: BLE001 - every failure becomes an error event
                    if job["client"] is not None:
                        job["client"].send_event(error_event(exc, job["rid"]))
                    continue
                if self._preview_current(live, job):
                    client = job["client"]
                    client.offer_frame(KIND_DRAG_PREVIEW, 0, preview.jpeg)
                    event = {"type": "preview", "op": "drag", "method": job["config"].method,
                             "handles": job["handles"], "targets": job["targets"], "idle": preview.idle,
                             "seconds": round(preview.seconds, 4)}
                    if job["rid"] is not None:
                        event["rid"] = job["rid"]
                    client.send_event(event)
        finally:
            live.preview_running = False

    async def _preview(self, live: LiveSession, job: dict) -> DragPreview:
        gen, drag = live.generator, job["drag"]
        mask = None if job["mask"] is None else torch.from_numpy(job["mask"].astype("float32"))
        latent, config = job["latent"], job["config"]

        def make_run() -> Any:
            return drag.DragRun(gen, latent.to(gen.device), job["handles"], job["targets"], mask, config)

        try:
            return await self.hub.scheduler.call(
                lambda: drag_preview(make_run, self.hub.settings.jpeg_quality),
                owner=live.id, name="drag-preview")
        except drag.PointError as exc:
            raise ApiError("invalid_points", f"preview: {exc}") from None
        except (ValueError, TypeError) as exc:
            raise ApiError("bad_request", f"preview: {exc}") from None

    @staticmethod
    def _preview_current(live: LiveSession, job: dict) -> bool:
        """Whether the session still shows what the preview was made from (else a later edit won)."""
        doc = live.doc
        return (live.preview_epoch == job["epoch"] and live.busy is None and live.job is None
                and not live.deleted and doc.current is job["latent"] and doc.mask is job["mask"]
                and [list(p) for p in doc.handles] == job["handles"]
                and [list(p) for p in doc.targets] == job["targets"])


def drag_label(method: str, handles: list, targets: list) -> str:
    """"drag (warp) · 2 pairs, 6.0 px": the method, how many pairs and how far on average, so
    two drags in the history can be told apart."""
    lengths = [((t[0] - h[0]) ** 2 + (t[1] - h[1]) ** 2) ** 0.5 for h, t in zip(handles, targets)]
    mean = sum(lengths) / len(lengths) if lengths else 0.0
    return f"drag ({method}) · {len(lengths)} pair{'' if len(lengths) == 1 else 's'}, {mean:.1f} px"
