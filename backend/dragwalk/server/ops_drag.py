"""Drag commands: start a DragRun as a scheduler job, stream its steps, commit what it reached."""

from __future__ import annotations

import asyncio
from typing import Any

import torch

from .errors import ApiError
from .frames import KIND_DRAG
from .hub import LiveSession
from .jobs import DragControl, DragUpdate, drag_steps
from .ops_base import EditorBase, _engine


class DragCommands(EditorBase):
    """``start_drag``, ``stop_drag``, ``set_lr`` (``set_points`` during a drag is in the editor)."""

    async def on_start_drag(self, live: LiveSession, msg: Any, client: Any) -> None:
        self.refuse_while_inverting(live)
        drag = _engine("drag")
        doc = live.doc
        if not doc.handles:
            raise ApiError("invalid_points", "place at least one handle and target before dragging")
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
            config = drag.DragConfig(method=msg.method or drag.DEFAULT_METHOD, params=method_params, **fields)
        except (ValueError, TypeError) as exc:
            raise ApiError("bad_request", str(exc)) from None
        async with live.lock:
            await self.settle(live)
            self._start_drag(live, drag, config)
        self.state(live)

    def _start_drag(self, live: LiveSession, drag: Any, config: Any) -> None:
        doc, gen = live.doc, live.generator
        handles = [list(p) for p in doc.handles]
        targets = [list(p) for p in doc.targets]
        mask = None if doc.mask is None else torch.from_numpy(doc.mask.astype("float32"))
        start = doc.current
        control = DragControl(store_every=self.limits.store_every,
                              frame_wanted=lambda: live.frame_wanted() or len(live.animation) == 0)
        record = {"method": config.method, "params": config.to_dict(), "handles": handles, "targets": targets,
                  "label": f"drag ({config.method})"}
        if doc.mask is not None:
            record["mask"] = doc.mask.astype(int).tolist()
        state = {"steps": 0, "last": None, "error": None}
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
                                "max_remaining": update.max_remaining,
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
            reason = "converged" if (last is not None and last.converged) else "max_steps"
        elif reason == "shutdown":
            reason = "cancelled"
        elif reason == "error":
            live.broadcast({"type": "error", "code": "bad_request" if isinstance(error, ValueError) else "internal",
                            "message": f"drag failed: {error}"})
        changed = run is not None and state["steps"] > 0
        if changed:
            record = dict(record, steps=state["steps"], calls=control.calls, reason=reason)
            if control.changes:
                record["changes"] = list(control.changes)
            live.doc.push("drag", record.pop("label"), run.latent, record)
            live.doc.handles = [tuple(p) for p in run.handles]
        else:
            live.doc.set_live(None)
        live.busy = None
        live.job = None
        live.drag_control = None
        if not live.deleted:
            await self.hub.persist(live)
        live.broadcast({"type": "done", "op": "drag", "reason": reason if not error else "error",
                        "steps": state["steps"]})
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
