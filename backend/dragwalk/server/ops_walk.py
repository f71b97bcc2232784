"""Direction sets and walks: compute a set (in a side thread: it is one long call), preview walks
(only the newest preview waits), commit a walk as a history entry."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from ..imaging import encode
from .errors import ApiError
from .frames import KIND_WALK
from .hub import Hub, LiveSession
from .ops_base import EditorBase, _engine

#: direction sets a session keeps in use
MAX_SETS = 16


class DirectionCommands(EditorBase):
    """``compute_directions`` and ``walk``."""

    def __init__(self, hub: Hub) -> None:
        super().__init__(hub)
        self._side = ThreadPoolExecutor(max_workers=2, thread_name_prefix="dragwalk-directions")
        self._cache: Any = None

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
            dset = await asyncio.get_running_loop().run_in_executor(self._side, compute)
        except (ValueError, TypeError) as exc:
            raise ApiError("bad_request", f"{msg.method}: {exc}") from None
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
                "seconds": round(time.perf_counter() - started, 3)}

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
        async with live.lock:
            await self.settle(live)
            base = live.doc.base
            latent = await self.hub.scheduler.call(
                lambda: self._walked(gen, base, walks, directions), owner=live.id, name="walk")
            record = {"set": live.doc.directions.get(msg.set, {"method": dset.method}),
                      "walks": [{"index": w.index, "amount": w.amount} for w in msg.walks], "walk_kind": msg.kind}
            labels = ", ".join(f"{dset.method}[{w.index}] {w.amount:+.2g}" for w in msg.walks[:3])
            live.doc.push("walk", f"walk {labels}", latent, record)
            await self.committed(live)

    @staticmethod
    def _walked(gen: Any, base: Any, walks: list, directions: Any) -> Any:
        with torch.no_grad():
            return directions.apply_walks(gen, base.to(gen.device), walks)

    def _walk_jpeg(self, gen: Any, base: Any, walks: list, directions: Any) -> bytes:
        latent = self._walked(gen, base, walks, directions)
        with torch.no_grad():
            return encode(gen.render(latent), "JPEG", self.hub.settings.jpeg_quality)
