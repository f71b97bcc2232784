"""The server's engine room: live sessions, the compute worker, the store, and the loaded models.

HTTP routes and websocket connections ask the hub for a session; the hub keeps recently used
sessions in memory and restores any other from the store on first use (lazy restore), which is
also how a session moves to another server process after its worker died. Every completed
operation is written to the store before the client hears it is done.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import torch

from .. import __version__
from ..device import pick_device
from ..imaging import encode
from ..models import ModelError, list_models, load_model
from ..runtime import Runtime, check_precision, prepare
from ..models.base import Generator, Latent
from .config import Settings, directions_root
from .errors import ApiError, check_session_id
from .limits import LimitError, RateLimiter
from .scheduler import Job, Scheduler
from .session import SessionDocument
from .store import SessionStore, StoreError
from .stores import open_store

log = logging.getLogger("dragwalk.server")
#: seconds between sweeps that delete expired sessions from the store
SWEEP_EVERY = 3600.0


class Client(Protocol):
    """What the hub needs from a connected page (a websocket connection)."""

    def send_event(self, event: dict[str, Any]) -> None: ...
    def offer_frame(self, kind: int, step: int, jpeg: bytes) -> None: ...
    def has_credit(self) -> bool: ...


@dataclass(eq=False)
class LiveSession:
    """A session held in memory: its document plus what only exists while the server runs."""

    doc: SessionDocument
    generator: Generator
    job: Job | None = None
    busy: str | None = None
    clients: set[Client] = field(default_factory=set)
    #: JPEG frames of the last drag, for the animation export (capped)
    animation: list[bytes] = field(default_factory=list)
    #: direction sets computed in this process: set id -> DirectionSet
    sets: dict[str, Any] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    last_used: float = field(default_factory=time.monotonic)
    #: set when the session was deleted; jobs still running must not store it again
    deleted: bool = False
    #: mailbox of the running drag (new points, new lr), None when no drag runs
    drag_control: Any = None
    #: newest walk preview waiting to be rendered, and whether one is rendering
    walk_pending: Any = None
    walk_running: bool = False
    #: newest drag preview waiting to be rendered, whether one is rendering, and a counter that any
    #: newer request or edit moves on (a preview computed for an older state is dropped)
    preview_pending: Any = None
    preview_running: bool = False
    preview_epoch: int = 0
    #: direction sets being found for this session: each an asyncio.Event set by ``cancel``
    finding: set[asyncio.Event] = field(default_factory=set)
    #: one preview strip renders at a time, so slider previews never queue behind a page of strips
    strip_gate: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))
    #: a background store write is in flight / another was asked for meanwhile
    store_busy: bool = False
    store_dirty: bool = False
    #: the payload this process last wrote or read for the session: another worker sharing the
    #: store may have edited it since (scale-out failover), which a differing row reveals
    stored: bytes | None = None

    def frame_wanted(self) -> bool:
        """Whether some page could take a frame now (read by the worker between steps)."""
        try:
            clients = list(self.clients)
        except RuntimeError:        # the loop changed the set while this thread copied it
            return True
        return any(c.has_credit() for c in clients)

    @property
    def id(self) -> str:
        return self.doc.id

    def summary(self) -> dict[str, Any]:
        return self.doc.summary(self.busy)

    def broadcast(self, event: dict[str, Any]) -> None:
        for client in list(self.clients):
            client.send_event(event)

    def broadcast_frame(self, kind: int, step: int, jpeg: bytes) -> None:
        for client in list(self.clients):
            client.offer_frame(kind, step, jpeg)


class Hub:
    """Everything one server process shares between its requests."""

    def __init__(self, settings: Settings, store: SessionStore | None = None) -> None:
        self.settings = settings
        self.device = pick_device(settings.device)
        self.runtime = Runtime(settings.precision, settings.channels_last, settings.compile)
        check_precision(settings.precision, self.device)
        self.store = store if store is not None else open_store(settings.store)
        self.scheduler = Scheduler(str(self.device), batching=settings.batch_drags)
        self.sessions: OrderedDict[str, LiveSession] = OrderedDict()
        self._restoring: dict[str, asyncio.Future[LiveSession]] = {}
        self._store_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dragwalk-store")
        self._generators: dict[str, Generator] = {}
        self.started = time.time()
        self.creations = RateLimiter(settings.limits.create_per_minute)
        self._swept = -SWEEP_EVERY

    # ------------------------------------------------------------ the store, guarded
    async def _stored(self, call: Callable[..., Any], *args: Any) -> Any:
        """Run a store call in the store thread; a refusal (disk full, database gone) is a 503."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._store_pool, call, *args)
        except StoreError as exc:
            log.error("session store failed: %s", exc)
            full = "full" in str(exc).lower()
            raise ApiError("store_full" if full else "store_unavailable",
                           "the session store is full; nothing was saved" if full else
                           "the session store is unavailable; nothing was saved") from None

    @property
    def max_age(self) -> float:
        """Seconds without an edit after which a stored session expires."""
        return self.settings.limits.session_days * 86400.0

    def admit_new_session(self, client: str) -> None:
        """Refuse a new session from ``client`` beyond its rate (429); called before any work."""
        self.creations.check(client)

    async def _make_room(self) -> None:
        """Expire old sessions (at most hourly), then refuse a new one when the store is at its cap."""
        now = time.monotonic()
        if now - self._swept >= SWEEP_EVERY:
            self._swept = now
            gone = await self._stored(self.store.expire, self.max_age)
            if gone:
                log.info("removed %d expired session(s) from the store", gone)
        if await self._stored(self.store.count) >= self.settings.limits.stored_sessions:
            raise LimitError("store_full", f"the server holds its maximum of "
                             f"{self.settings.limits.stored_sessions} sessions; try again later")

    # ------------------------------------------------------------ lifecycle
    async def close(self) -> None:
        for live in list(self.sessions.values()):
            if live.job is not None:
                live.job.cancel("shutdown")
        await asyncio.get_running_loop().run_in_executor(None, self.scheduler.shutdown)
        # let the cancelled jobs commit and store what they reached before the store closes
        deadline = time.monotonic() + 5
        while any(live.job is not None for live in self.sessions.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        self._store_pool.shutdown(wait=True)
        self.store.close()

    def health(self) -> dict[str, Any]:
        from .exports import mp4_available
        return {"status": "ok", "version": __version__, "device": str(self.device),
                "sessions": len(self.sessions), "jobs": len(self.scheduler.active()), "protocol": 1,
                "exports": {"mp4": mp4_available()}}

    # ------------------------------------------------------------ models
    def allowed_models(self) -> list[str]:
        """Model names a client may ask for: the built-ins and the one the server was started with
        (a client never names a file)."""
        names = [m["name"] for m in list_models()]
        if self.settings.model not in names:
            names.insert(0, self.settings.model)
        return names

    async def generator(self, name: str | None = None) -> Generator:
        name = name or self.settings.model
        if name not in self.allowed_models():
            raise ApiError("bad_request", f"unknown model {name!r} (available: {', '.join(self.allowed_models())})")
        if name not in self._generators:
            try:
                self._generators[name] = await self.scheduler.call(
                    lambda: prepare(load_model(name, self.device), self.runtime), name="load-model")
            except ModelError as exc:
                raise ApiError("internal", f"model {name} cannot be loaded: {exc}") from None
        return self._generators[name]

    async def warm_up(self) -> None:
        """Build an optimiser once in the worker: torch imports its compiler stack on the first
        optimiser a process builds (measured: 2-8 s on the 2-core machine), which would otherwise
        delay the first drag anyone starts."""
        def build() -> None:
            torch.optim.Adam([torch.zeros(1, requires_grad=True)])

        await self.scheduler.call(build, name="warm-up")

    async def models(self) -> list[dict[str, Any]]:
        described = {m["name"]: m["description"] for m in list_models()}
        out = []
        for name in self.allowed_models():
            try:
                gen = await self.generator(name)
            except ApiError:
                continue
            out.append({"name": name, "description": described.get(name, name),
                        "resolution": gen.resolution, "height": gen.image_size[0], "width": gen.image_size[1],
                        "latent_spaces": list(gen.latent_spaces),
                        "default_space": gen.default_space, "num_ws": gen.num_ws,
                        "c_dim": gen.c_dim, "noise_modes": list(gen.noise_modes)})
        return out

    # ------------------------------------------------------------ sessions
    def new_id(self) -> str:
        return secrets.token_urlsafe(12)

    async def create(self, model: str | None, seed: int, truncation: float = 1.0,
                     space: str | None = None, settings: Any = None) -> LiveSession:
        """A seeded session; ``settings`` (``messages.GeneratorSettings`` or ``models.Settings``)
        are checked against the model before anything is sampled or stored."""
        gen = await self.generator(model)
        if space is not None and space not in gen.latent_spaces:
            raise ApiError("bad_request", f"model {gen.name} has no latent space {space!r} "
                           f"(it has {', '.join(gen.latent_spaces)})")
        try:
            chosen = gen.check_settings(settings.settings() if hasattr(settings, "settings") else settings)
            latent = await self.scheduler.call(
                lambda: gen.sample(seed, truncation=truncation, space=space, settings=chosen), name="sample")
        except ValueError as exc:
            raise ApiError("bad_request", str(exc)) from None
        record = {"seed": seed, "truncation": truncation, "space": latent.space,
                  "settings": latent.settings.to_dict()}
        doc = SessionDocument.create(self.new_id(), model or self.settings.model, gen.image_size, latent,
                                     "start", f"seed {seed}", record,
                                     max_history=self.settings.limits.history)
        return await self.adopt(doc, gen)

    async def adopt(self, doc: SessionDocument, gen: Generator) -> LiveSession:
        """Store a new document, then hold it in memory (never one the store refused)."""
        await self._make_room()
        live = LiveSession(doc, gen)
        await self.persist(live)
        self._hold(live)
        return live

    async def get(self, session_id: str) -> LiveSession:
        """The live session, restored from the store when this process does not hold it."""
        check_session_id(session_id)
        live = self.sessions.get(session_id)
        if live is not None and self._idle(live) and not await self._still_current(live):
            self.sessions.pop(session_id, None)     # another worker edited it: read it afresh
            live = None
        if live is not None:
            self.sessions.move_to_end(session_id)
            live.last_used = time.monotonic()
            return live
        pending = self._restoring.get(session_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[LiveSession] = asyncio.get_running_loop().create_future()
        self._restoring[session_id] = future
        try:
            live = await self._restore(session_id)
            future.set_result(live)
            return live
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved
            raise
        finally:
            del self._restoring[session_id]

    @staticmethod
    def _idle(live: LiveSession) -> bool:
        """No page, job or pending write: the copy in memory may be behind the shared store."""
        return not live.clients and live.job is None and live.busy is None and not live.store_busy

    async def _still_current(self, live: LiveSession) -> bool:
        """Whether the store still holds what this process last wrote or read for the session."""
        row = await self._stored(self.store.get, live.id)
        return row is not None and row[1] == live.stored

    async def _restore(self, session_id: str) -> LiveSession:
        row = await self._stored(self.store.get, session_id)
        if row is None:
            raise ApiError("not_found", f"no such session (sessions expire after "
                           f"{self.settings.limits.session_days:g} days without an edit)")
        age = await self._stored(self.store.age, session_id)
        if age is not None and age > self.max_age:
            await self._stored(self.store.delete, session_id)
            await self._stored(self.store.delete, self.weights_key(session_id))
            raise ApiError("expired", f"this session expired: it was not edited for "
                           f"{self.settings.limits.session_days:g} days, and has been removed")
        model, payload = row
        try:
            doc = SessionDocument.from_payload(payload)
        except Exception:  # noqa: BLE001 - a damaged row must not take the server (or the store) down
            log.exception("stored session %s cannot be read", session_id)
            raise ApiError("damaged", f"stored session {session_id} is damaged and cannot be opened; "
                           "other sessions are not affected") from None
        doc.max_history = self.settings.limits.history
        gen = await self.generator(model)
        if doc.history[0].record.get("tuned"):
            gen = await self._tuned_generator(session_id, gen)
        live = LiveSession(doc, gen)
        live.stored = payload
        self._hold(live)
        if any(e.record.get("interrupted") for e in doc.history[-1:]):
            await self.persist(live)   # the interrupted drag is now a plain history entry
        return live

    # ------------------------------------------------------------ tuned (PTI) generators
    @staticmethod
    def weights_key(session_id: str) -> str:
        """Store key of a session's tuned weights; the ``~`` keeps it outside the id pattern, so no
        client can ever address it as a session."""
        return f"{session_id}~pti"

    async def persist_weights(self, live: LiveSession) -> None:
        """Store the tuned generator of a PTI session once (a second record beside the session)."""
        from safetensors.torch import save

        state = {k: v.detach().contiguous().cpu() for k, v in live.generator.state_dict().items()}
        data = save(state)
        await self._stored(self.store.put, self.weights_key(live.id), live.doc.model, data)

    async def _tuned_generator(self, session_id: str, base: Generator) -> Generator:
        import copy

        from safetensors.torch import load

        row = await self._stored(self.store.get, self.weights_key(session_id))
        if row is None:
            raise ApiError("internal", f"the tuned generator of session {session_id} is missing from the store")

        def build() -> Generator:
            tuned = copy.deepcopy(base)
            tuned.load_state_dict(load(row[1]))
            return tuned.eval().requires_grad_(False)

        return await self.scheduler.call(build, owner=session_id, name="load-tuned")

    def _hold(self, live: LiveSession) -> None:
        self.sessions[live.id] = live
        self.sessions.move_to_end(live.id)
        # bounded memory: forget idle sessions nobody is connected to (they stay in the store)
        while len(self.sessions) > self.settings.limits.sessions:
            for sid, other in self.sessions.items():
                if not other.clients and other.job is None and other is not live:
                    del self.sessions[sid]
                    break
            else:
                break

    async def delete(self, session_id: str) -> None:
        check_session_id(session_id)
        live = self.sessions.pop(session_id, None)
        if live is None:
            row = await self._stored(self.store.get, session_id)
            if row is None:
                raise ApiError("not_found", "no such session")
        else:
            live.deleted = True
            if live.job is not None:
                live.job.cancel("cancelled")
            live.broadcast({"type": "error", "code": "not_found", "message": "session deleted"})
        await self._stored(self.store.delete, session_id)
        await self._stored(self.store.delete, self.weights_key(session_id))

    async def persist(self, live: LiveSession) -> None:
        """Write the session to the store (in the store thread, in order) and wait for it.

        When the store refuses, the document in memory goes back to what the store holds (the
        last payload written), so the server never shows or serves an edit that was not stored;
        the caller gets a 503 ``ApiError``.
        """
        if live.deleted:
            return
        payload = live.doc.to_payload()
        try:
            await self._stored(self.store.put, live.id, live.doc.model, payload)
        except ApiError:
            if live.stored is not None:
                live.doc = SessionDocument.from_payload(live.stored)
                live.doc.max_history = self.settings.limits.history
            raise
        live.stored = payload

    def persist_soon(self, live: LiveSession) -> None:
        """Queue a store write without waiting (periodic saves of a running drag, new points).

        At most one such write per session is in flight; requests meanwhile are folded into one
        more write when it lands, so a fast drag cannot pile payloads up in the store queue.
        """
        if live.deleted:
            return
        if live.store_busy:
            live.store_dirty = True
            return
        loop = asyncio.get_running_loop()
        try:
            payload = live.doc.to_payload()
            future = self._store_pool.submit(self.store.put, live.id, live.doc.model, payload)
        except RuntimeError:        # shutting down: the final store is done by the closing path
            return
        live.store_busy = True
        future.add_done_callback(lambda f: loop.call_soon_threadsafe(self._stored_soon, live, f, payload))

    def _stored_soon(self, live: LiveSession, future: Any, payload: bytes) -> None:
        live.store_busy = False
        error = future.exception()
        if error is None:
            live.stored = payload
        else:     # the next completed operation stores again (and rolls back if refused again)
            log.error("background store of session %s failed: %s", live.id, error)
            live.broadcast({"type": "error", "code": "store_unavailable",
                            "message": "the session store refused the latest change; it is not saved"})
        if live.store_dirty:
            live.store_dirty = False
            self.persist_soon(live)

    def directions_root(self) -> Path:
        """Where direction sets are cached (computed once per model)."""
        return directions_root()

    # ------------------------------------------------------------ images
    def _render(self, gen: Generator, latent: Latent, fmt: str) -> bytes:
        with torch.no_grad():
            image = gen.render(latent.to(gen.device))
        return encode(image, fmt, self.settings.jpeg_quality)

    async def image(self, live: LiveSession, fmt: str = "PNG", latent: Latent | None = None) -> bytes:
        latent = latent if latent is not None else live.doc.current
        return await self.scheduler.call(lambda: self._render(live.generator, latent, fmt),
                                         owner=live.id, name="render")

    def run_job(self, live: LiveSession, steps: Any, name: str,
                on_step: Callable[[Any], None] | None, on_done: Callable[[str, BaseException | None], None]
                ) -> Job:
        """Start a long job for ``live``; callbacks are delivered on the event loop."""
        loop = asyncio.get_running_loop()

        def step_cb(value: Any) -> None:
            if on_step is not None:
                loop.call_soon_threadsafe(on_step, value)

        def done_cb(reason: str, error: BaseException | None) -> None:
            loop.call_soon_threadsafe(on_done, reason, error)

        job = self.scheduler.submit(steps, owner=live.id, name=name, on_step=step_cb, on_done=done_cb)
        live.job = job
        return job
