"""Binary frames (12-byte header + JPEG) and the credit gate that keeps a slow page fresh.

The gate is pure bookkeeping: it decides which frame goes out now and which waits. With no credit
left only the newest frame waits (older ones are dropped), so a slow page receives fewer, fresher
frames instead of a growing backlog.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

MAGIC = b"DW"
VERSION = 1
HEADER = struct.Struct(">2sBBII")   # magic, version, kind, seq, step -> 12 bytes
assert HEADER.size == 12

KIND_STATE, KIND_DRAG, KIND_WALK, KIND_INVERT, KIND_DRAG_PREVIEW = 0, 1, 2, 3, 4


def pack_frame(kind: int, seq: int, step: int, image: bytes) -> bytes:
    return HEADER.pack(MAGIC, VERSION, kind, seq & 0xFFFFFFFF, max(0, step) & 0xFFFFFFFF) + image


def unpack_frame(data: bytes) -> tuple[int, int, int, bytes]:
    """``(kind, seq, step, image)`` of a frame; ValueError when it is not one."""
    if len(data) < HEADER.size:
        raise ValueError("frame shorter than its header")
    magic, version, kind, seq, step = HEADER.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        raise ValueError("not a dragwalk v1 frame")
    return kind, seq, step, data[HEADER.size:]


@dataclass
class CreditGate:
    """Frame flow control for one connection: ``offer`` a frame, ``ack`` a sent one.

    Both return the packed frame to send now, or ``None``.
    """

    credits: int = 2
    seq: int = 0
    outstanding: set[int] = field(default_factory=set)
    pending: tuple[int, int, bytes] | None = None     # (kind, step, image), newest only
    dropped: int = 0

    def set_credits(self, credits: int) -> None:
        """Total credits (``hello.credits``); frames already in flight count against them."""
        self.credits = max(0, credits - len(self.outstanding))

    def offer(self, kind: int, step: int, image: bytes) -> bytes | None:
        if self.credits > 0 and self.pending is None:
            return self._send(kind, step, image)
        if self.pending is not None:
            self.dropped += 1
        self.pending = (kind, step, image)
        return self._flush()

    def ack(self, seq: int) -> bytes | None:
        """Return the credit of frame ``seq``; an unknown or repeated seq returns nothing."""
        if seq not in self.outstanding:
            return None
        self.outstanding.discard(seq)
        self.credits += 1
        return self._flush()

    def _flush(self) -> bytes | None:
        if self.pending is None or self.credits <= 0:
            return None
        kind, step, image = self.pending
        self.pending = None
        return self._send(kind, step, image)

    def _send(self, kind: int, step: int, image: bytes) -> bytes:
        self.seq += 1
        self.credits -= 1
        self.outstanding.add(self.seq)
        return pack_frame(kind, self.seq, step, image)
