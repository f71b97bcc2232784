"""The websocket endpoint ``/ws/sessions/{id}``: one connection per open page.

A connection checks the token and the Origin, attaches to the live session (restoring it from the
store if needed), then reads messages and answers each one; a malformed or refused message gets an
``error`` event and the connection goes on. One writer task per connection sends everything in
order: JSON events as they come, frames only as the credit gate allows.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from .editor import Editor, error_event
from .errors import ApiError
from .frames import CreditGate
from .messages import MessageError, parse_message
from .security import origin_ok, token_ok

router = APIRouter()
log = logging.getLogger("dragwalk.server.ws")

CLOSE_UNAUTHORIZED, CLOSE_FORBIDDEN, CLOSE_NOT_FOUND = 4401, 4403, 4404
PROTOCOL_VERSION = 1
#: queued messages after which a connection that does not read is closed
MAX_OUTBOX = 2000


class Connection:
    """One page's websocket: an ordered outbox and a credit gate for frames.

    The outbox is bounded by count and by bytes (``max_bytes``): a page that stops reading is
    closed (1008) before what is queued for it can grow the server.
    """

    def __init__(self, websocket: WebSocket, max_bytes: int = 32 * 1024 * 1024) -> None:
        self.websocket = websocket
        self.gate = CreditGate()
        self.outbox: asyncio.Queue[Any] = asyncio.Queue()
        self.queued_bytes = 0
        self.max_bytes = max_bytes
        self.closed = False
        self.writer = asyncio.ensure_future(self._write())

    def _enqueue(self, item: str | bytes) -> None:
        """Queue ``item``, or drop a page that let more than ``max_bytes`` pile up."""
        if self.closed:
            return
        size = len(item)
        if self.outbox.qsize() > MAX_OUTBOX or self.queued_bytes + size > self.max_bytes:
            self.closed = True
            while not self.outbox.empty():          # free what it never read
                self.outbox.get_nowait()
            self.queued_bytes = 0
            asyncio.ensure_future(self.websocket.close(code=1008, reason="client too slow"))
            return
        self.queued_bytes += size
        self.outbox.put_nowait(item)

    def has_credit(self) -> bool:
        return not self.closed and self.gate.credits > 0

    def send_event(self, event: dict[str, Any]) -> None:
        if not self.closed:
            self._enqueue(json.dumps(event))

    def offer_frame(self, kind: int, step: int, jpeg: bytes) -> None:
        if not self.closed:
            frame = self.gate.offer(kind, step, jpeg)
            if frame is not None:
                self._enqueue(frame)

    def ack(self, seq: int) -> None:
        frame = self.gate.ack(seq)
        if frame is not None and not self.closed:
            self._enqueue(frame)

    async def _write(self) -> None:
        try:
            while True:
                item = await self.outbox.get()
                if item is None:
                    return
                self.queued_bytes -= len(item)
                if isinstance(item, bytes):
                    await self.websocket.send_bytes(item)
                else:
                    await self.websocket.send_text(item)
        except Exception:  # noqa: BLE001 - the page went away; the reader notices too
            self.closed = True

    async def close(self) -> None:
        self.closed = True
        self.outbox.put_nowait(None)
        try:
            await asyncio.wait_for(self.writer, 2)
        except (asyncio.TimeoutError, Exception):  # noqa: BLE001
            self.writer.cancel()


async def _refuse(websocket: WebSocket, code: int, error: str, message: str) -> None:
    await websocket.accept()
    await websocket.send_text(json.dumps({"type": "error", "code": error, "message": message}))
    await websocket.close(code=code, reason=message[:120])


@router.websocket("/ws/sessions/{session_id}")
async def session_socket(websocket: WebSocket, session_id: str) -> None:
    hub = websocket.app.state.hub
    editor: Editor = websocket.app.state.editor
    if not token_ok(websocket.scope, hub.settings.token):
        await _refuse(websocket, CLOSE_UNAUTHORIZED, "unauthorized", "missing or wrong access token")
        return
    if not origin_ok(websocket.scope, hub.settings.allowed_origins):
        await _refuse(websocket, CLOSE_FORBIDDEN, "forbidden", "websocket Origin does not match this server")
        return
    try:
        live = await hub.get(session_id)
    except ApiError as exc:
        await _refuse(websocket, CLOSE_NOT_FOUND if exc.code == "not_found" else 4400, exc.code, exc.message)
        return
    await websocket.accept()
    conn = Connection(websocket, hub.settings.limits.outbox_bytes)
    live.clients.add(conn)
    conn.send_event({"type": "state", "session": live.summary()})
    try:
        await editor.send_image(live, client=conn)
        await _read(websocket, conn, live, editor, hub.settings.limits.message_bytes)
    except WebSocketDisconnect:
        pass
    except Exception:  # noqa: BLE001
        log.exception("websocket of session %s failed", session_id)
    finally:
        editor.detach(live, conn)
        await conn.close()


#: answered by the reader at once, even while an earlier command still waits for the worker
IMMEDIATE = ("stop_drag", "cancel", "set_lr", "ping")
#: may take long (direction sets): run beside the others
BESIDE = ("compute_directions", "walk")


async def _read(websocket: WebSocket, conn: Connection, live: Any, editor: Editor, limit: int) -> None:
    """Read messages until the page leaves. Acks and a few urgent commands are handled here at
    once; the rest run in order in a command task, so a command waiting for the worker never
    delays the acks that keep frames flowing."""
    background: set[asyncio.Task] = set()
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=256)

    async def run_in_order() -> None:
        while True:
            await _run(conn, live, editor, await queue.get())

    ordered = asyncio.ensure_future(run_in_order())
    try:
        await _read_loop(websocket, conn, live, editor, limit, queue, background)
    finally:
        ordered.cancel()


async def _read_loop(websocket: WebSocket, conn: Connection, live: Any, editor: Editor, limit: int,
                     queue: asyncio.Queue[Any], background: set[asyncio.Task]) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        text = message.get("text")
        if text is None:
            conn.send_event({"type": "error", "code": "invalid_message",
                             "message": "binary messages are not accepted; send JSON text"})
            continue
        try:
            msg = parse_message(text, limit)
        except MessageError as exc:
            conn.send_event(error_event(exc))
            continue
        if msg.type == "ack":
            conn.ack(msg.seq)
            continue
        if msg.type == "hello":
            if msg.version != PROTOCOL_VERSION:
                conn.send_event(error_event(ApiError("version", f"this server speaks protocol "
                                                     f"{PROTOCOL_VERSION}, not {msg.version}"), msg.rid))
            else:
                conn.gate.set_credits(msg.credits)
                conn.send_event({"type": "state", "session": live.summary(), **_rid(msg.rid)})
            continue
        if msg.type in IMMEDIATE:
            await _run(conn, live, editor, msg)
        elif msg.type in BESIDE:
            task = asyncio.ensure_future(_run(conn, live, editor, msg))
            background.add(task)
            task.add_done_callback(background.discard)
        elif queue.full():
            conn.send_event(error_event(ApiError("busy", "too many commands waiting; slow down"), msg.rid))
        else:
            queue.put_nowait(msg)


async def _run(conn: Connection, live: Any, editor: Editor, msg: Any) -> None:
    try:
        reply = await editor.handle(live, msg, conn)
        if reply is not None:
            conn.send_event({**reply, **_rid(msg.rid)})
    except Exception as exc:  # noqa: BLE001 - every failure becomes an error event
        if not isinstance(exc, (ApiError, MessageError)):
            log.exception("command %s failed", msg.type)
        conn.send_event(error_event(exc, msg.rid))


def _rid(rid: Any) -> dict[str, Any]:
    return {} if rid is None else {"rid": rid}
