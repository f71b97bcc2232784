"""The asyncio client: HTTP (httpx) for sessions, files and history commands, one websocket per
session for drags, previews and progress (docs/PROTOCOL.md).

Frames are acknowledged the moment they arrive, before any callback runs, and the client asks
for the most credits the protocol allows (8), so over a slow link frames keep flowing instead of
waiting a round trip each. A drag's messages (mask, points, start) are sent back to back without
waiting for replies (the server runs them in order), and its result (PNG and latent) is fetched
with two requests in parallel: the whole drag costs the link about two round trips.
"""

from __future__ import annotations

import asyncio
import base64
import io
import itertools
import json
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import httpx

from ..server.frames import unpack_frame
from .errors import ClientError, from_response

PROTOCOL_VERSION = 1
#: frame credits asked for in ``hello`` (the protocol's maximum)
CREDITS = 8
#: ``export(kind, path)``: kind -> the session's file
EXPORTS = {"png": "image.png", "npz": "latent.npz", "json": "latent.json", "npy": "latent.npy",
           "log": "log.json", "gif": "animation.gif", "mp4": "animation.mp4"}
#: events kept for waiters registered after they arrived (see ``AsyncSession._expect``)
_EVENT_LOG = 512
_KEEP = object()

Points = Sequence[tuple[Sequence[float], Sequence[float]]] | str | Mapping[str, Sequence[Sequence[float]]]


@dataclass
class Frame:
    """One binary frame: ``kind`` (0 state, 1 drag step, 2 walk preview, 3 inversion, 4 drag
    preview), ``seq``, ``step`` and the JPEG bytes."""

    kind: int
    seq: int
    step: int
    jpeg: bytes

    def image(self) -> Any:
        from PIL import Image
        return Image.open(io.BytesIO(self.jpeg))


@dataclass
class EditResult:
    """What an edit left: the session's image (PNG bytes) and latent (``.npz`` bytes), the
    session summary, and for a drag its ``done`` event and how many frames were shown."""

    png: bytes
    latent_npz: bytes
    summary: dict[str, Any]
    done: dict[str, Any] | None = None
    frames: int = 0

    @property
    def reason(self) -> str | None:
        return None if self.done is None else self.done.get("reason")

    @property
    def steps(self) -> int | None:
        return None if self.done is None else self.done.get("steps")

    def image(self) -> Any:
        """The image as a PIL image."""
        from PIL import Image
        return Image.open(io.BytesIO(self.png))

    def latent(self) -> Any:
        """The latent as a :class:`dragwalk.Latent` (the same numbers the server holds)."""
        from ..latent_io import load_latent
        return load_latent(self.latent_npz, suffix=".npz")

    def save(self, png: str | Path | None = None, latent: str | Path | None = None) -> None:
        """Write the image and/or the latent (``.npz``)."""
        if png is not None:
            Path(png).write_bytes(self.png)
        if latent is not None:
            Path(latent).write_bytes(self.latent_npz)


def parse_points(points: Points) -> tuple[list[list[float]], list[list[float]]]:
    """Handles and targets from ``[((hx, hy), (tx, ty)), ...]``, ``{"handles", "targets"}`` or the
    CLI's ``"x,y->x,y;..."`` text."""
    if isinstance(points, str):
        from ..drag.points import parse_points as parse_text
        handles, targets = parse_text(points)
    elif isinstance(points, Mapping):
        handles, targets = points["handles"], points["targets"]
    else:
        pairs = list(points)
        handles, targets = [p[0] for p in pairs], [p[1] for p in pairs]
    return [[float(v) for v in p] for p in handles], [[float(v) for v in p] for p in targets]


def mask_b64(mask: Any) -> str:
    """A mask (2-D array, white/true/1 = may change; or a PIL image) as the protocol's base64 PNG."""
    import numpy as np
    from PIL import Image
    if not isinstance(mask, Image.Image):
        array = np.asarray(mask, dtype=np.float32)
        mask = Image.fromarray(((array > 0.5) * 255).astype(np.uint8))
    buffer = io.BytesIO()
    mask.convert("L").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def walk_items(amounts: Mapping[int, float] | Sequence[float]) -> list[dict[str, float]]:
    """``{index: amount}`` or ``[amount for index 0, 1, ...]`` as the protocol's walk list."""
    pairs: Iterable[tuple[int, float]] = amounts.items() if isinstance(amounts, Mapping) else enumerate(amounts)
    return [{"index": int(i), "amount": float(a)} for i, a in pairs]


class _Waiter:
    def __init__(self, predicate: Callable[[dict], bool], rids: set[Any], any_error: bool) -> None:
        self.predicate, self.rids, self.any_error = predicate, rids, any_error
        self.future: asyncio.Future[dict] = asyncio.get_running_loop().create_future()

    def offer(self, event: dict) -> None:
        if self.future.done():
            return
        if event.get("type") == "error" and (event.get("rid") in self.rids or
                                             (self.any_error and event.get("rid") is None)):
            self.future.set_exception(ClientError(str(event.get("code")), str(event.get("message")), event=event))
        elif self.predicate(event):
            self.future.set_result(event)


class AsyncClient:
    """``AsyncClient(url, token)``: a dragwalk server. ``async with`` closes it and its sessions."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 300.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout)
        self.sessions: list[AsyncSession] = []

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        for session in list(self.sessions):
            await session.close()
        await self.http.aclose()

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One HTTP request; a :class:`ClientError` with the server's code when it is refused."""
        try:
            response = await self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ClientError("network", f"cannot reach {self.url}: {exc}") from None
        if response.status_code >= 400:
            raise from_response(response)
        return response

    async def health(self) -> dict[str, Any]:
        return (await self.request("GET", "/api/health")).json()

    async def models(self) -> list[dict[str, Any]]:
        return (await self.request("GET", "/api/models")).json()

    async def methods(self, model: str | None = None) -> dict[str, Any]:
        return (await self.request("GET", "/api/methods", params={"model": model} if model else None)).json()

    async def open_session(self, model: str | None = None, seed: int = 0, truncation: float = 1.0,
                           space: str | None = None) -> "AsyncSession":
        """A new session on ``seed`` (and its websocket)."""
        body: dict[str, Any] = {"seed": seed, "truncation": truncation}
        if model is not None:
            body["model"] = model
        if space is not None:
            body["space"] = space
        summary = (await self.request("POST", "/api/sessions", json=body)).json()
        return await self.attach(summary["id"])

    async def attach(self, session_id: str) -> "AsyncSession":
        """An existing session (opened here, by the page, or restored from the store)."""
        session = AsyncSession(self, session_id)
        await session.connect()
        self.sessions.append(session)
        return session

    async def upload_latent(self, path: str | Path, model: str | None = None) -> "AsyncSession":
        """A session from a latent file (``.npz``/``.json``/``.npy``) or an edit log."""
        path = Path(path)
        data = {"model": model} if model else None
        files = {"file": (path.name, path.read_bytes(), "application/octet-stream")}
        summary = (await self.request("POST", "/api/sessions/upload", files=files, data=data)).json()
        return await self.attach(summary["id"])

    async def upload_photo(self, path: str | Path, pti: bool = True, model: str | None = None,
                           steps: int | None = None, pti_steps: int | None = None,
                           on_progress: Callable[[dict], Any] | None = None,
                           on_frame: Callable[[Frame], Any] | None = None) -> "AsyncSession":
        """A session from a photo, returned once the server has inverted it (progress and frames
        go to the callbacks meanwhile)."""
        path = Path(path)
        fields = {"pti": "true" if pti else "false"}
        fields.update({k: str(v) for k, v in (("model", model), ("steps", steps), ("pti_steps", pti_steps))
                       if v is not None})
        media = {".png": "image/png", ".webp": "image/webp"}.get(path.suffix.lower(), "image/jpeg")
        summary = (await self.request("POST", "/api/sessions/photo", data=fields,
                                      files={"file": (path.name, path.read_bytes(), media)})).json()
        session = AsyncSession(self, summary["id"])
        session.on_progress, session.on_frame = on_progress, on_frame
        first = await session.connect()
        self.sessions.append(session)
        try:
            if first["session"]["busy"] == "invert":
                await session._expect(lambda e: e["type"] == "done" and e.get("op") == "invert",
                                      any_error=True, after=0)
        finally:
            session.on_progress = session.on_frame = None
        return session


class AsyncSession:
    """One session: its websocket and the editing commands. Made by :class:`AsyncClient`."""

    def __init__(self, client: AsyncClient, session_id: str) -> None:
        self.client = client
        self.id = session_id
        self.summary: dict[str, Any] = {}
        #: called with every frame / progress event while an operation that shows them runs
        self.on_frame: Callable[[Frame], Any] | None = None
        self.on_progress: Callable[[dict], Any] | None = None
        self._ws: Any = None
        self._reader: asyncio.Task | None = None
        self._waiters: set[_Waiter] = set()
        self._log: deque[tuple[int, dict]] = deque(maxlen=_EVENT_LOG)
        self._count = 0
        self._rids = itertools.count(1)
        self._closed: ClientError | None = None

    # ------------------------------------------------------------ connection
    @property
    def ws_url(self) -> str:
        base = self.client.url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        return f"{base}/ws/sessions/{self.id}"

    async def connect(self) -> dict:
        """Open the websocket, say hello; returns the first ``state`` event."""
        import websockets
        headers = {"Authorization": f"Bearer {self.client.token}"} if self.client.token else {}
        try:
            self._ws = await websockets.connect(self.ws_url, additional_headers=headers,
                                                max_size=32 * 1024 * 1024, open_timeout=self.client.timeout)
        except Exception as exc:  # noqa: BLE001 - refused handshake, unreachable host
            raise ClientError("network", f"cannot open the websocket of session {self.id}: {exc}") from None
        self._reader = asyncio.ensure_future(self._read())
        first = await self._expect(lambda e: e["type"] == "state", any_error=True, after=0)
        await self._send(type="hello", version=PROTOCOL_VERSION, credits=CREDITS)
        return first

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        if self in self.client.sessions:
            self.client.sessions.remove(self)

    async def __aenter__(self) -> "AsyncSession":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def _read(self) -> None:
        try:
            async for message in self._ws:
                if isinstance(message, bytes):
                    await self._frame(message)
                else:
                    self._event(json.loads(message))
            self._closed = ClientError("closed", f"the server closed the websocket ({self._ws.close_code})")
        except Exception as exc:  # noqa: BLE001 - the connection broke
            self._closed = ClientError("closed", f"the websocket broke: {exc}")
        self._fail_waiters(self._closed)

    async def _frame(self, data: bytes) -> None:
        kind, seq, step, jpeg = unpack_frame(data)
        await self._ws.send(json.dumps({"type": "ack", "seq": seq}))     # the credit goes back at once
        frame = Frame(kind, seq, step, jpeg)
        self._log_event({"type": "frame", "kind": kind, "seq": seq, "step": step, "frame": frame})
        if self.on_frame is not None:
            try:
                await _maybe_await(self.on_frame(frame))
            except Exception as exc:  # noqa: BLE001 - the caller's callback failed: its call fails
                self._fail_waiters(exc)

    def _event(self, event: dict) -> None:
        if event.get("type") == "state":
            self.summary = event["session"]
        self._log_event(event)
        if event.get("type") == "progress" and self.on_progress is not None:
            try:
                self.on_progress(event)
            except Exception as exc:  # noqa: BLE001
                self._fail_waiters(exc)

    def _fail_waiters(self, exc: BaseException) -> None:
        for waiter in list(self._waiters):
            if not waiter.future.done():
                waiter.future.set_exception(exc)

    def _log_event(self, event: dict) -> None:
        self._count += 1
        self._log.append((self._count, event))
        for waiter in list(self._waiters):
            waiter.offer(event)

    async def _send(self, **message: Any) -> None:
        if self._closed is not None:
            raise self._closed
        await self._ws.send(json.dumps(message))

    def _rid(self) -> str:
        return f"c{next(self._rids)}"

    def _waiter(self, predicate: Callable[[dict], bool], rids: Iterable[Any] = (), any_error: bool = False,
                after: int | None = None) -> _Waiter:
        """A waiter for the first event matching ``predicate`` (an ``error`` with one of ``rids``,
        or with none when ``any_error``, fails it). With ``after``, events already received after
        that count are offered first, so nothing that raced the registration is missed."""
        waiter = _Waiter(predicate, set(rids), any_error)
        if after is not None:
            for n, event in list(self._log):
                if n > after:
                    waiter.offer(event)
        if self._closed is not None and not waiter.future.done():
            waiter.future.set_exception(self._closed)
        self._waiters.add(waiter)
        return waiter

    async def _wait(self, waiter: _Waiter) -> dict:
        try:
            return await asyncio.wait_for(waiter.future, self.client.timeout)
        except asyncio.TimeoutError:
            raise ClientError("timeout", f"no answer from the server in {self.client.timeout} s") from None
        finally:
            self._waiters.discard(waiter)

    async def _expect(self, predicate: Callable[[dict], bool], rids: Iterable[Any] = (), any_error: bool = False,
                      after: int | None = None) -> dict:
        return await self._wait(self._waiter(predicate, rids, any_error, after))

    # ------------------------------------------------------------ HTTP side
    async def command(self, **message: Any) -> dict[str, Any]:
        """One command over HTTP, answered when it is done: ``{"reply", "session"}``."""
        response = await self.client.request("POST", f"/api/sessions/{self.id}/commands", json=message)
        out = response.json()
        self.summary = out["session"]
        return out

    async def fetch(self, kind: str) -> bytes:
        """One of the session's files (:data:`EXPORTS`: png, npz, json, npy, log, gif, mp4)."""
        if kind not in EXPORTS:
            raise ValueError(f"export kind must be one of {', '.join(EXPORTS)}")
        return (await self.client.request("GET", f"/api/sessions/{self.id}/{EXPORTS[kind]}")).content

    async def export(self, kind: str, path: str | Path) -> Path:
        """Write one of the session's files to ``path``."""
        path = Path(path)
        path.write_bytes(await self.fetch(kind))
        return path

    async def result(self, done: dict | None = None, frames: int = 0) -> EditResult:
        """The current image and latent, fetched in parallel."""
        png, latent = await asyncio.gather(self.fetch("png"), self.fetch("npz"))
        return EditResult(png, latent, self.summary, done, frames)

    async def image(self) -> Any:
        from PIL import Image
        return Image.open(io.BytesIO(await self.fetch("png")))

    async def latent(self) -> Any:
        from ..latent_io import load_latent
        return load_latent(await self.fetch("npz"), suffix=".npz")

    async def refresh(self) -> dict[str, Any]:
        self.summary = (await self.client.request("GET", f"/api/sessions/{self.id}")).json()
        return self.summary

    async def delete(self) -> None:
        await self.client.request("DELETE", f"/api/sessions/{self.id}")
        await self.close()

    # ------------------------------------------------------------ editing
    async def drag(self, points: Points, method: str | None = None, params: Mapping[str, Any] | None = None,
                   mask: Any = _KEEP, on_frame: Callable[[Frame], Any] | None = None,
                   on_progress: Callable[[dict], Any] | None = None, **settings: Any) -> EditResult:
        """Drag ``points`` (handle -> target pairs) and return the final image and latent.

        ``params`` and ``settings`` (``max_steps``, ``lr``, ``stop_distance``, ...) are the
        ``start_drag`` parameters; ``mask`` (array or PIL image, white = may change; None clears
        it) replaces the session's mask. Frames go to ``on_frame`` as they arrive. A refused
        command raises :class:`ClientError` with the server's code (``invalid_points``, ...).
        """
        handles, targets = parse_points(points)
        rids = [self._rid() for _ in range(3)]
        done = self._waiter(lambda e: e["type"] == "done" and e.get("op") == "drag", rids, any_error=True)
        shown = 0

        async def show(frame: Frame) -> None:
            nonlocal shown
            if frame.kind == 1:
                shown += 1
            if on_frame is not None:
                await _maybe_await(on_frame(frame))

        self.on_frame, self.on_progress = show, on_progress
        try:
            if mask is not _KEEP:
                await self._send(type="set_mask", mask=None if mask is None else mask_b64(mask), rid=rids[0])
            await self._send(type="set_points", handles=handles, targets=targets, rid=rids[1])
            start: dict[str, Any] = {"type": "start_drag", "rid": rids[2]}
            if method is not None:
                start["method"] = method
            if params or settings:
                start["params"] = {**(params or {}), **settings}
            await self._send(**start)
            event = await self._wait(done)
        finally:
            self.on_frame = self.on_progress = None
            self._waiters.discard(done)
        return await self.result(event, shown)

    async def stop(self) -> None:
        """Stop a running drag (what it reached stays, as one history entry)."""
        await self._send(type="stop_drag")

    async def directions(self, method: str, **params: Any) -> dict[str, Any]:
        """Compute a direction set; returns the ``directions`` event (``set`` is its id)."""
        return (await self.command(type="compute_directions", method=method, params=params))["reply"]

    async def walk(self, set: str | Mapping[str, Any], amounts: Mapping[int, float] | Sequence[float],
                   kind: str = "linear", commit: bool = True) -> Any:
        """Walk along directions of ``set`` (an id or the dict :meth:`directions` returned).

        ``commit=True`` adds a history entry and returns the :class:`EditResult`; ``commit=False``
        returns the preview :class:`Frame` (nothing is stored)."""
        set_id = set["set"] if isinstance(set, Mapping) else set
        message = {"type": "walk", "set": set_id, "walks": walk_items(amounts), "kind": kind}
        if commit:
            await self.command(**message, commit=True)
            return await self.result()
        rid = self._rid()
        mark = self._count
        frame = self._waiter(lambda e: e["type"] == "frame" and e["kind"] == 2, [rid], after=mark)
        await self._send(**message, rid=rid)
        return (await self._wait(frame))["frame"]

    async def reseed(self, seed: int, truncation: float = 1.0, space: str | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"type": "reseed", "seed": seed, "truncation": truncation}
        if space is not None:
            message["space"] = space
        return (await self.command(**message))["session"]

    async def undo(self) -> dict[str, Any]:
        return (await self.command(type="undo"))["session"]

    async def redo(self) -> dict[str, Any]:
        return (await self.command(type="redo"))["session"]

    async def goto(self, index: int) -> dict[str, Any]:
        return (await self.command(type="goto", index=index))["session"]

    async def ping(self) -> float:
        """Seconds a websocket round trip takes."""
        import time
        rid = self._rid()
        started = time.perf_counter()
        waiter = self._waiter(lambda e: e["type"] == "pong" and e.get("rid") == rid, [rid])
        await self._send(type="ping", rid=rid)
        await self._wait(waiter)
        return time.perf_counter() - started


async def _maybe_await(value: Any) -> None:
    if asyncio.iscoroutine(value) or isinstance(value, asyncio.Future):
        await value
