"""The session document: what one person is editing, and everything needed to undo it or replay it.

Pure bookkeeping, no torch work and no I/O: the latent of every history entry, a cursor into the
history, the current points and mask, the direction sets in use, and the latent of a drag still
running ("live"). ``to_payload``/``from_payload`` turn it into the bytes a store keeps;
``edit_log`` into the replayable JSON log. The server mutates it only from its event loop.
"""

from __future__ import annotations

import base64
import io
import json
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..drag.points import PointError
from ..drag.points import validate_points as check_points
from ..latent_io import latent_from_dict, latent_to_dict, latent_to_npz_bytes, load_latent
from ..models.base import Latent, Settings, as_hw

PROTOCOL_VERSION = 1
LOG_FORMAT = "dragwalk-log/1"
_PAYLOAD_MAGIC = b"DWS1"


class HistoryError(ValueError):
    """An undo/redo/goto that the history cannot do (nothing to undo, index out of range)."""


@dataclass
class Entry:
    """One step of the history: what was done (``record``, JSON-friendly) and the latent it gave."""

    kind: str            # "start", "reseed", "noise", "upload", "photo", "drag", "walk"
    label: str
    latent: Latent       # on the CPU, detached
    record: dict[str, Any] = field(default_factory=dict)
    #: the points and mask last in use on this image (put back when the history returns here)
    handles: list[tuple[float, float]] = field(default_factory=list)
    targets: list[tuple[float, float]] = field(default_factory=list)
    mask: np.ndarray | None = field(default=None, repr=False, compare=False)
    _blob: bytes | None = field(default=None, repr=False, compare=False)

    def blob(self) -> bytes:
        """The latent as .npz bytes, encoded once (entries never change after creation)."""
        if self._blob is None:
            self._blob = latent_to_npz_bytes(self.latent)
        return self._blob


def _cpu(latent: Latent) -> Latent:
    return latent.detach().to("cpu")


def _entry_latent(latent: Latent) -> Latent:
    """A history entry's latent on the CPU; refuses NaN/inf, which must never be stored."""
    latent = _cpu(latent)
    if not all(bool(torch.isfinite(t).all()) for t in (latent.code, *latent.offsets.values())):
        raise ValueError("the latent contains NaN or infinite values")
    return latent


def validate_points(handles: Any, targets: Any, resolution: Any, max_points: int
                    ) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """The drag engine's point checks (empty allowed: the page may clear its points), plus a cap."""
    h, t = check_points(handles, targets, resolution, allow_empty=True)
    if len(h) > max_points:
        raise PointError(f"at most {max_points} point pairs, got {len(h)}")
    return h, t


def mask_to_png(mask: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((mask.astype(np.uint8) * 255)).save(buffer, format="PNG")
    return buffer.getvalue()


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _mask_b64(mask: np.ndarray) -> str:
    return base64.b64encode(mask_to_png(mask)).decode("ascii")


def mask_from_png(data: bytes, resolution: Any) -> np.ndarray:
    """A boolean ``H x W`` mask from PNG bytes (white = may change); ``resolution``: a side or ``(H, W)``.

    PNG only (the protocol's format; other formats Pillow reads are refused before parsing), and
    the size is checked from the header before decoding, so a hostile image cannot make the
    server allocate a huge bitmap. Errors name the problem, never the decoder's internals.
    """
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError("mask must be a PNG image")
    try:
        image = Image.open(io.BytesIO(data), formats=["PNG"])
        size = image.size
    except Exception:  # noqa: BLE001 - PIL raises several types for corrupt input
        raise ValueError("mask is not a readable PNG image") from None
    height, width = as_hw(resolution)
    if size != (width, height):
        raise ValueError(f"mask must be {width}x{height}, got {size[0]}x{size[1]}")
    try:
        array = np.asarray(image.convert("L"))
    except Exception:  # noqa: BLE001
        raise ValueError("mask is not a readable PNG image (its pixel data is damaged)") from None
    return array >= 128


@dataclass
class SessionDocument:
    """One editing session. ``history[cursor]`` is the image shown unless a drag is live."""

    id: str
    model: str
    #: image side, or ``(height, width)`` of a non-square model (a square pair becomes the side)
    resolution: Any
    history: list[Entry]
    cursor: int = 0
    handles: list[tuple[float, float]] = field(default_factory=list)
    targets: list[tuple[float, float]] = field(default_factory=list)
    mask: np.ndarray | None = None
    #: direction sets in use: set id -> {"method", "params"} (recomputable, cached on disk)
    directions: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: latent of a drag in flight (stored every few steps, committed when the drag ends)
    live: Latent | None = None
    live_record: dict[str, Any] | None = None
    max_history: int = 100
    _mask_cache: tuple[np.ndarray, str] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        height, width = as_hw(self.resolution)
        self.resolution = height if height == width else (height, width)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)`` of the session's images: points and masks are checked against it."""
        return as_hw(self.resolution)

    # ------------------------------------------------------------ creation
    @classmethod
    def create(cls, session_id: str, model: str, resolution: Any, latent: Latent, kind: str = "start",
               label: str = "start", record: dict[str, Any] | None = None,
               max_history: int = 100) -> "SessionDocument":
        entry = Entry(kind, label, _entry_latent(latent), dict(record or {}))
        return cls(session_id, model, resolution, [entry], 0, max_history=max_history)

    # ------------------------------------------------------------ reading
    @property
    def current(self) -> Latent:
        """The latent the page shows: the live drag's, else the history cursor's."""
        return self.live if self.live is not None else self.history[self.cursor].latent

    @property
    def base(self) -> Latent:
        """The last committed latent (walk previews start from it)."""
        return self.history[self.cursor].latent

    @property
    def can_undo(self) -> bool:
        return self.cursor > 0

    @property
    def can_redo(self) -> bool:
        return self.cursor < len(self.history) - 1

    def origin(self) -> dict[str, Any]:
        """Seed, truncation and space of the newest seeded entry at or before the cursor."""
        for entry in reversed(self.history[: self.cursor + 1]):
            if "seed" in entry.record:
                return {"seed": entry.record["seed"], "truncation": entry.record.get("truncation", 1.0),
                        "space": entry.record.get("space", entry.latent.space)}
        return {"seed": None, "truncation": None, "space": self.current.space}

    @property
    def settings(self) -> Settings:
        """The generator settings of the image shown (class, noise, cutoff): the latent's own."""
        return self.current.settings

    def summary(self, busy: str | None = None) -> dict[str, Any]:
        """The session summary of docs/PROTOCOL.md."""
        origin = self.origin()
        return {
            "id": self.id, "model": self.model, "resolution": max(self.image_size),
            "height": self.image_size[0], "width": self.image_size[1],
            "seed": origin["seed"], "truncation": origin["truncation"], "space": self.current.space,
            "settings": self.settings.to_dict(),
            "history": [_entry_summary(i, e) for i, e in enumerate(self.history)],
            "cursor": self.cursor, "can_undo": self.can_undo, "can_redo": self.can_redo,
            "points": {"handles": [list(p) for p in self.handles], "targets": [list(p) for p in self.targets]},
            "has_mask": self.mask is not None, "mask": self.mask_b64(), "directions": sorted(self.directions),
            "busy": busy, "protocol": PROTOCOL_VERSION,
        }

    def mask_b64(self) -> str | None:
        """The mask as base64 PNG (white = may change), encoded once per mask."""
        if self.mask is None:
            return None
        if self._mask_cache is None or self._mask_cache[0] is not self.mask:
            self._mask_cache = (self.mask, _mask_b64(self.mask))
        return self._mask_cache[1]

    # ------------------------------------------------------------ editing
    def _keep_view(self) -> None:
        """The points and mask in use now belong to the entry shown: saved before the history moves."""
        entry = self.history[self.cursor]
        entry.handles, entry.targets, entry.mask = list(self.handles), list(self.targets), self.mask

    def _restore_view(self) -> None:
        entry = self.history[self.cursor]
        self.handles, self.targets, self.mask = list(entry.handles), list(entry.targets), entry.mask

    def push(self, kind: str, label: str, latent: Latent, record: dict[str, Any] | None = None,
             points: tuple[list, list] | None = None) -> Entry:
        """Add an entry after the cursor (dropping any redo branch) and move the cursor onto it.

        The entry left behind keeps the points and mask in use (the ones this operation started
        from, so undo puts them back); the new entry starts with ``points`` (a drag's tracked
        handles and its targets) or the same points, and the same mask.
        """
        latent = _entry_latent(latent)          # refused before anything changes
        self._keep_view()
        del self.history[self.cursor + 1:]
        if points is not None:
            self.handles = [(float(p[0]), float(p[1])) for p in points[0]]
            self.targets = [(float(p[0]), float(p[1])) for p in points[1]]
        entry = Entry(kind, label, latent, dict(record or {}), list(self.handles), list(self.targets),
                      self.mask)
        self.history.append(entry)
        overflow = len(self.history) - self.max_history
        if overflow > 0:
            del self.history[:overflow]
        self.cursor = len(self.history) - 1
        self.live = None
        self.live_record = None
        return entry

    def undo(self) -> None:
        if not self.can_undo:
            raise HistoryError("nothing to undo")
        self.goto(self.cursor - 1)

    def redo(self) -> None:
        if not self.can_redo:
            raise HistoryError("nothing to redo")
        self.goto(self.cursor + 1)

    def goto(self, index: int) -> None:
        """Show entry ``index``, with the points and mask last used on it."""
        if not 0 <= index < len(self.history):
            raise HistoryError(f"no history entry {index} (there are {len(self.history)})")
        self._keep_view()
        self.cursor = index
        self._restore_view()

    def set_points(self, handles: Any, targets: Any, max_points: int = 128) -> None:
        self.handles, self.targets = validate_points(handles, targets, self.resolution, max_points)

    def set_mask(self, mask: np.ndarray | None) -> None:
        if mask is not None and mask.shape != self.image_size:
            raise ValueError(f"mask must be {self.image_size[1]}x{self.image_size[0]} (width x height)")
        self.mask = None if mask is None else mask.astype(bool)

    def set_live(self, latent: Latent | None, record: dict[str, Any] | None = None) -> None:
        """Remember the latest latent of a running drag (None when it ends)."""
        self.live = None if latent is None else _cpu(latent)
        self.live_record = None if latent is None else dict(record or {})

    # ------------------------------------------------------------ persistence
    def to_payload(self) -> bytes:
        """Bytes for a store: a JSON header, then each latent as .npz bytes."""
        blobs: list[bytes] = [e.blob() for e in self.history]
        if self.live is not None:
            blobs.append(latent_to_npz_bytes(self.live))
        if self.mask is not None:
            blobs.append(mask_to_png(self.mask))
        masks: list[str] = []          # each distinct mask once (entries share them)
        seen: dict[int, int] = {}

        def mask_ref(mask: np.ndarray | None) -> int | None:
            if mask is None:
                return None
            if id(mask) not in seen:
                seen[id(mask)] = len(masks)
                masks.append(_mask_b64(mask))
            return seen[id(mask)]

        meta = {
            "format": "dragwalk-session/1", "id": self.id, "model": self.model,
            "resolution": self.resolution if isinstance(self.resolution, int) else list(self.resolution),
            "cursor": self.cursor, "max_history": self.max_history,
            "entries": [{"kind": e.kind, "label": e.label, "record": e.record, "handles": e.handles,
                         "targets": e.targets, "mask": mask_ref(e.mask)} for e in self.history],
            "masks": masks,
            "handles": self.handles, "targets": self.targets, "directions": self.directions,
            "live": self.live_record if self.live is not None else None,
            "has_mask": self.mask is not None,
            "sizes": [len(b) for b in blobs],
        }
        header = json.dumps(meta).encode()
        return b"".join([_PAYLOAD_MAGIC, struct.pack(">I", len(header)), header, *blobs])

    @classmethod
    def from_payload(cls, payload: bytes) -> "SessionDocument":
        """Inverse of :meth:`to_payload`. A drag that was live when stored becomes a history entry
        ("interrupted"), so the restored session shows the latent it had reached."""
        if payload[:4] != _PAYLOAD_MAGIC:
            raise ValueError("not a dragwalk session payload")
        (size,) = struct.unpack(">I", payload[4:8])
        meta = json.loads(payload[8:8 + size])
        offset = 8 + size
        blobs = []
        for n in meta["sizes"]:
            blobs.append(payload[offset:offset + n])
            offset += n
        entries = []
        resolution = _resolution(meta["resolution"])
        masks = [mask_from_png(base64.b64decode(m), resolution) for m in meta.get("masks") or []]
        for info, blob in zip(meta["entries"], blobs):
            mask_index = info.get("mask")
            entry = Entry(info["kind"], info["label"], load_latent(blob, suffix=".npz"), info["record"],
                          [tuple(p) for p in info.get("handles") or []], [tuple(p) for p in info.get("targets") or []],
                          None if mask_index is None else masks[mask_index])
            entry._blob = blob
            entries.append(entry)
        rest = blobs[len(entries):]
        doc = cls(meta["id"], meta["model"], resolution, entries, int(meta["cursor"]),
                  [tuple(p) for p in meta["handles"]], [tuple(p) for p in meta["targets"]],
                  directions=dict(meta.get("directions") or {}),
                  max_history=int(meta.get("max_history", 100)))
        if meta.get("live") is not None:
            live = load_latent(rest.pop(0), suffix=".npz")
            record = dict(meta["live"])
            record["interrupted"] = True
            doc.push("drag", f"{record.get('label', 'drag')} (interrupted)", live, record)
        if meta.get("has_mask"):
            doc.mask = mask_from_png(rest.pop(0), doc.resolution)
        return doc

    # ------------------------------------------------------------ edit log
    def edit_log(self) -> dict[str, Any]:
        """The replayable log (docs/PROTOCOL.md): a start, then each operation up to the cursor."""
        first = self.history[0]
        if "seed" in first.record:
            start: dict[str, Any] = {k: first.record[k] for k in ("seed", "truncation", "space")
                                     if k in first.record}
            if first.latent.settings != Settings():       # the defaults go unwritten (as in older logs)
                start["settings"] = first.latent.settings.to_dict()
        else:
            start = {"latent": latent_to_dict(first.latent, self.model, packed=True)}
        operations = []
        for entry in self.history[1: self.cursor + 1]:
            op = {k: v for k, v in entry.record.items() if k != "kind"}
            op.update(kind=entry.kind if entry.kind in ("drag", "walk", "reseed", "noise") else "reseed"
                      if "seed" in entry.record else "latent",
                      label=entry.label, latent=latent_to_dict(entry.latent, self.model, packed=True))
            operations.append(op)
        return {"format": LOG_FORMAT, "model": self.model, "start": start, "operations": operations}

    @classmethod
    def from_edit_log(cls, session_id: str, log: Any, resolution: Any, generator: Any = None,
                      max_history: int = 100) -> "SessionDocument":
        """A session whose history is the log's recorded latents (nothing is recomputed)."""
        if not isinstance(log, dict) or log.get("format") != LOG_FORMAT:
            raise ValueError(f"not an edit log (expected \"format\": \"{LOG_FORMAT}\")")
        start = log.get("start")
        operations = log.get("operations")
        if not isinstance(start, dict) or not isinstance(operations, list):
            raise ValueError("edit log needs a 'start' object and an 'operations' list")
        if "latent" in start:
            first = latent_from_dict(start["latent"], generator)
            doc = cls.create(session_id, str(log.get("model")), resolution, first, "upload", "uploaded latent",
                             max_history=max_history)
        else:
            if generator is None:
                raise ValueError("a seeded edit log needs its generator")
            seed = int(start.get("seed", 0))
            truncation = float(start.get("truncation", 1.0))
            space = start.get("space")
            settings = Settings.from_dict(start.get("settings"))
            first = generator.sample(seed, truncation=truncation, space=space, settings=settings)
            doc = cls.create(session_id, str(log.get("model")), resolution, first, "start", f"seed {seed}",
                             {"seed": seed, "truncation": truncation, "space": first.space},
                             max_history=max_history)
        for i, op in enumerate(operations):
            if not isinstance(op, dict) or "latent" not in op:
                raise ValueError(f"operation {i} has no recorded latent")
            latent = latent_from_dict(op["latent"], generator)
            record = {k: v for k, v in op.items() if k not in ("latent", "label", "kind")}
            kind = str(op.get("kind", "latent"))
            doc.push(kind, str(op.get("label", kind)), latent, record)
        return doc


def _resolution(value: Any) -> Any:
    """A stored resolution: a side, or ``[height, width]``."""
    return int(value) if isinstance(value, (int, float)) else (int(value[0]), int(value[1]))


def _entry_summary(index: int, entry: Entry) -> dict[str, Any]:
    """One history line of the session summary; a walk also says which set and amounts it used,
    so a page can put its sliders where the history says they are."""
    out: dict[str, Any] = {"index": index, "kind": entry.kind, "label": entry.label}
    if entry.kind == "walk" and "set_id" in entry.record:
        out["walk"] = {"set": entry.record["set_id"], "walks": entry.record.get("walks", [])}
    return out


def decode_base64(data: str, limit: int) -> bytes:
    """Base64 (optionally a ``data:`` URL) to bytes, refusing more than ``limit`` bytes."""
    if data.startswith("data:"):
        data = data.split(",", 1)[-1]
    if len(data) > limit * 4 // 3 + 8:
        raise ValueError(f"encoded data larger than {limit} bytes")
    try:
        return base64.b64decode(data, validate=True)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not valid base64: {exc}") from None
