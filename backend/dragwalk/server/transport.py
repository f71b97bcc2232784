"""uvicorn's HTTP/1.1 protocol with deadlines, so a slow or silent client cannot hold a connection.

uvicorn closes an idle kept-alive connection, but it waits without limit for the rest of a request:
headers trickled a few bytes at a time, or a body that never ends (slowloris). This subclass adds
two deadlines, counted from the first byte of a request (or the connection):

* ``timeout_header``: the request line and all headers must have arrived;
* ``timeout_body``: the whole body must have arrived.

When a deadline passes the connection is closed (the route reading the body sees a disconnect).
A websocket upgrade has no body, so its deadline ends with its headers.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


class DeadlineH11Protocol(H11Protocol):
    """:class:`H11Protocol` plus header and body deadlines (set on the class by :func:`with_deadlines`)."""

    timeout_header: float = 10.0
    timeout_body: float = 60.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._phase: Any = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._track()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._track()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._track()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _track(self) -> None:
        """Arm the deadline of the phase the client is in: headers (IDLE, unless uvicorn's own
        keep-alive timer is waiting for a first byte), body (SEND_BODY); none while we answer."""
        phase = self.conn.their_state
        if phase is not self._phase:
            self._disarm()
            self._phase = phase
        if self._deadline is not None:
            return
        if phase is h11.IDLE and self.timeout_keep_alive_task is None:
            self._deadline = self.loop.call_later(self.timeout_header, self._expired)
        elif phase is h11.SEND_BODY:
            self._deadline = self.loop.call_later(self.timeout_body, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


def with_deadlines(timeout_header: float, timeout_body: float) -> type[DeadlineH11Protocol]:
    """A protocol class with these deadlines (uvicorn instantiates the class it is given)."""
    return type("ConfiguredDeadlineH11Protocol", (DeadlineH11Protocol,),
                {"timeout_header": float(timeout_header), "timeout_body": float(timeout_body)})
