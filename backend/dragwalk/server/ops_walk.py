"""Direction sets and walks: compute a set (in a side thread: it is one long call), preview walks
(only the newest preview waits), commit a walk as a history entry."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from ..imaging import encode
from .errors import ApiError
from .frames import KIND_WALK
from .hub import Hub, LiveSession
from .ops_base import EditorBase, _engine
from .replay import pack_mask

#: direction sets a session keeps in use
MAX_SETS = 16
#: seconds between progress events while a set is being found
PROGRESS_EVERY = 1.0


class DirectionCommands(EditorBase):
    """``compute_directions`` and ``walk``."""

    def __init__(self, hub: Hub) -> None:
        super().__init__(hub)
        self._side = ThreadPoolExecutor(max_workers=2, thread_name_prefix="dragwalk-directions")
        self._cache: Any = None
        #: (model, method) -> seconds the last computation took: the estimate shown next time
        self._took: dict[tuple[str, str], float] = {}

    def direction_cache(self, directions: Any) -> Any:
        """One cache per process: sets are computed once per model, then served from memory/disk."""
        if self._cache is None:
            self._cache = directions.DirectionCache(self.hub.directions_root())
        return self._cache

    async def on_compute_directions(self, live: LiveSession, msg: Any, client: Any) -> dict:
        directions = _engine("directions")
        params = dict(msg.params or {})
        if len(json.dumps(params)) > 4096:
            raise ApiError("bad_request", "direction parameters too large")
        if msg.method not in directions.METHODS:
            known = ", ".join(directions.METHODS)
            raise ApiError("bad_request", f"unknown direction method {msg.method!r} (known: {known})")
        try:    # names and ranges, before any thread is given to it (the inputs are the server's)
            if set(params) & set(directions.methods.INPUTS):
                raise ValueError(f"{', '.join(sorted(set(params) & set(directions.methods.INPUTS)))} "
                                 "cannot be sent (the server supplies the mask and latent)")
            directions.methods.resolved_params(msg.method, params)
        except ValueError as exc:
            raise ApiError("bad_request", f"{msg.method}: {exc}") from None
        gen = live.generator
        call_params = dict(params)
        if msg.method == "reds":
            if live.doc.mask is None:
                raise ApiError("bad_request", "reds needs a painted mask (set_mask first)")
            call_params.update(latent=live.doc.base.to(gen.device),
                               mask=torch.from_numpy(live.doc.mask.astype("float32")))
        started = time.perf_counter()

        def compute() -> Any:
            if msg.method == "reds":
                return directions.compute_directions(gen, msg.method, **call_params)
            return self.direction_cache(directions).get(gen, msg.method, **call_params)

        try:
            dset = await self._wait_for_set(live, client, msg.method, compute, started)
        except (ValueError, TypeError) as exc:
            raise ApiError("bad_request", f"{msg.method}: {exc}") from None
        if dset is None:
            return {"type": "done", "op": "directions", "method": msg.method, "reason": "cancelled",
                    "seconds": round(time.perf_counter() - started, 3)}
        self._took[(live.doc.model, msg.method)] = time.perf_counter() - started
        key = json.dumps({"method": msg.method, "params": params}, sort_keys=True)
        set_id = f"{msg.method}-{hashlib.sha1(key.encode()).hexdigest()[:10]}"
        if msg.method == "reds":
            set_id += f"-{len(live.doc.history)}-{live.doc.cursor}"
        live.sets[set_id] = dset
        live.doc.directions.pop(set_id, None)
        live.doc.directions[set_id] = {"method": msg.method, "params": params}
        while len(live.doc.directions) > MAX_SETS:          # bounded: the oldest set is forgotten
            oldest = next(iter(live.doc.directions))
            live.doc.directions.pop(oldest)
            live.sets.pop(oldest, None)
        self.hub.persist_soon(live)
        summary = dset.to_dict() if hasattr(dset, "to_dict") else {}
        return {"type": "directions", "set": set_id, "method": msg.method,
                "count": int(dset.vectors.shape[0]), "labels": list(summary.get("labels", []) or []),
                "values": summary.get("values"), "scales": [float(s) for s in dset.scales],
                "layers": list(dset.layers) if getattr(dset, "layers", None) else None,
                "walk_kinds": directions.walk_kinds(dset),
                "seconds": round(time.perf_counter() - started, 3)}

    async def _wait_for_set(self, live: LiveSession, client: Any, method: str, compute: Any,
                            started: float) -> Any:
        """Run ``compute`` beside the worker; every second tell the page how long it has run (and
        how long the last run of this method on this model took). None when cancelled."""
        future = asyncio.get_running_loop().run_in_executor(self._side, compute)
        cancelled = asyncio.Event()
        live.finding.add(cancelled)
        waiter = asyncio.ensure_future(cancelled.wait())
        estimate = self._took.get((live.doc.model, method))
        try:
            while True:
                done, _ = await asyncio.wait({future, waiter}, timeout=PROGRESS_EVERY,
                                             return_when=asyncio.FIRST_COMPLETED)
                if future in done:
                    return future.result()
                if waiter in done:
                    return None
                if client is not None:
                    client.send_event({"type": "progress", "op": "directions", "method": method,
                                       "elapsed": round(time.perf_counter() - started, 1),
                                       "estimate": None if estimate is None else round(estimate, 1)})
        finally:
            waiter.cancel()
            live.finding.discard(cancelled)

    async def _direction_set(self, live: LiveSession, set_id: str) -> Any:
        if set_id in live.sets:
            return live.sets[set_id]
        info = live.doc.directions.get(set_id)
        if info is None or info.get("method") == "reds":
            raise ApiError("not_found", f"unknown direction set {set_id!r} (compute_directions first)")
        directions = _engine("directions")
        gen = live.generator
        cache = self.direction_cache(directions)
        dset = await asyncio.get_running_loop().run_in_executor(
            self._side, lambda: cache.get(gen, info["method"], **info["params"]))
        live.sets[set_id] = dset
        return dset

    async def on_walk(self, live: LiveSession, msg: Any, client: Any) -> None:
        self.refuse_while_inverting(live)
        directions = _engine("directions")
        dset = await self._direction_set(live, msg.set)
        try:
            walks = [directions.Walk(dset, w.index, w.amount, msg.kind) for w in msg.walks]
        except (ValueError, IndexError) as exc:
            raise ApiError("bad_request", f"walk: {exc}") from None
        gen = live.generator
        if not msg.commit:
            # previews: only the newest waits; a burst of slider moves renders the last one
            live.walk_pending = (walks, gen)
            live.preview_epoch += 1      # the walk preview replaces any drag preview still rendering
            if getattr(live, "walk_running", False):
                return
            live.walk_running = True
            try:
                while live.walk_pending is not None:
                    walks_now, _ = live.walk_pending
                    live.walk_pending = None
                    base = live.doc.base
                    jpeg = await self.hub.scheduler.call(
                        lambda: self._walk_jpeg(gen, base, walks_now, directions), owner=live.id, name="walk")
                    live.broadcast_frame(KIND_WALK, 0, jpeg)
            finally:
                live.walk_running = False
            return
        from ..directions import reds_spatial

        async with live.lock:
            await self.settle(live)
            base = live.doc.base
            latent = await self.hub.scheduler.call(
                lambda: self._walked(gen, base, walks, directions), owner=live.id, name="walk")
            record = {"set": live.doc.directions.get(msg.set, {"method": dset.method}), "set_id": msg.set,
                      "walks": [{"index": w.index, "amount": w.amount} for w in msg.walks], "walk_kind": msg.kind}
            if dset.method == "reds" and reds_spatial.computed_at(dset, base):
                # computed at the walk's start: a replay recomputes the set there from this mask
                record["region"] = {"mask": pack_mask(dset.extras["mask"].numpy())}
            live.doc.push("walk", walk_label(dset, msg.walks), latent, record)
            await self.committed(live)

    async def strip(self, live: LiveSession, set_id: str, index: int, amount: float, count: int,
                    gone: Any = None) -> bytes | None:
        """``count`` images side by side, direction ``index`` walked from -amount to +amount from
        the current base image: what a slider does, before anyone moves it (as ``--strip``).

        Strips are rendered one image per worker call and one strip at a time per session, so a
        slider preview waits for at most one image; ``gone()`` (the page no longer wants it) is
        checked between images. None when the page went away."""
        directions = _engine("directions")
        dset = await self._direction_set(live, set_id)
        if not 0 <= index < int(dset.vectors.shape[0]):
            raise ApiError("bad_request", f"direction {index} is not in set {set_id!r} ({dset.vectors.shape[0]})")
        gen, base = live.generator, live.doc.base
        amounts = [float(a) for a in np.linspace(-amount, amount, count)]

        def render(a: float) -> Any:
            with torch.no_grad():
                return gen.render(self._walked(gen, base, [directions.Walk(dset, index, a, "linear")], directions))

        frames = []
        async with live.strip_gate:
            for a in amounts:
                if gone is not None and await gone():
                    return None
                try:
                    frames.append(await self.hub.scheduler.call(lambda a=a: render(a), owner=live.id, name="strip"))
                except (ValueError, IndexError) as exc:
                    raise ApiError("bad_request", f"strip: {exc}") from None
        return encode(torch.cat(frames, dim=3), "JPEG", self.hub.settings.jpeg_quality)

    @staticmethod
    def _walked(gen: Any, base: Any, walks: list, directions: Any) -> Any:
        with torch.no_grad():
            return directions.apply_walks(gen, base.to(gen.device), walks)

    def _walk_jpeg(self, gen: Any, base: Any, walks: list, directions: Any) -> bytes:
        latent = self._walked(gen, base, walks, directions)
        with torch.no_grad():
            return encode(gen.render(latent), "JPEG", self.hub.settings.jpeg_quality)


def walk_label(dset: Any, walks: list) -> str:
    """"sefa 1 +2.0, smile -1.5": each direction's name as the page's sliders show it (a set's
    own label, or the method and the direction's number from 1) and amount."""
    labels = list(getattr(dset, "labels", None) or [])

    def name(index: int) -> str:
        label = str(labels[index]) if index < len(labels) and labels[index] else ""
        return label if label and label != f"{dset.method} {index}" else f"{dset.method} {index + 1}"

    parts = [f"{name(w.index)} {w.amount:+.1f}" for w in walks[:3]]
    more = f" (+{len(walks) - 3} more)" if len(walks) > 3 else ""
    return "walk " + ", ".join(parts) + more
