"""Uploaded latents and edit logs -> a validated session document, parsed off the event loop.

An upload is untrusted bytes of up to ``Limits.upload_bytes``. Everything here runs on the compute
worker (it needs the generator anyway), never on the event loop, so a large or hostile file cannot
stall other requests; and everything is validated before a document exists, so nothing invalid
can reach the store:

* ``.npz``/``.npy``: each array's header is checked against the model before it is read
  (:mod:`dragwalk.latent_io`), so decompression bombs and huge declared shapes cost nothing;
* ``.json`` latents and edit logs: parsed with a depth bound (:func:`limits.parse_json`);
* edit logs: the start obeys the same rules as ``POST /api/sessions`` (seed range, finite
  truncation in [0, 2], a space the model has); there are at most ``Limits.history`` operations,
  each with a known kind, a short label, a bounded record and a finite latent of the right shape.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..latent_io import LatentFileError, latent_from_dict, load_latent
from ..models.base import Generator
from .config import Limits
from .errors import ApiError
from .limits import MAX_JSON_DEPTH, LimitError, bounded_text, json_size, parse_json
from .messages import GeneratorSettings
from .session import LOG_FORMAT, SessionDocument

#: what an operation of an edit log may be (``SessionDocument.edit_log`` writes these)
LOG_KINDS = ("drag", "walk", "reseed", "noise", "latent", "upload", "photo")


class SeedStart(BaseModel):
    """A seeded start: the fields (and bounds) shared by ``POST /api/sessions`` and edit logs."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), strict=True)
    seed: int = Field(ge=0, le=2**32 - 1)
    truncation: float = Field(default=1.0, ge=0.0, le=2.0, allow_inf_nan=False)
    space: str | None = Field(default=None, max_length=8)
    #: the session's class, noise mode and seed, truncation cutoff (absent: the model's defaults)
    settings: GeneratorSettings | None = None


def validation_message(exc: ValidationError) -> str:
    """The first few pydantic problems as ``where: reason``."""
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ())) or "body"
        parts.append(f"{where}: {err.get('msg')}")
    return "; ".join(parts)


def sniff_suffix(filename: str | None, data: bytes) -> str:
    """``.npz``, ``.json`` or ``.npy``: by the file name, else by the first bytes."""
    name = (filename or "").lower()
    for suffix in (".npz", ".json", ".npy"):
        if name.endswith(suffix):
            return suffix
    return ".json" if data[:1] in (b"{", b"[") else ".npz" if data[:2] == b"PK" else ".npy"


#: the script that parses JSON uploads in a child process (see its docstring)
JSON_CHILD = Path(__file__).with_name("json_child.py")
#: seconds a JSON upload may take to parse
JSON_CHILD_TIMEOUT = 120.0


def parse_upload_json(data: bytes) -> Any:
    """An uploaded JSON file (up to ``Limits.upload_bytes``), parsed in a child process with the
    depth bound of :func:`limits.parse_json`; latents' number lists come back as float32 arrays.

    Blocking: call it off the event loop. A child process, not a thread, because turning 20 MB
    of JSON into Python lists holds the GIL long enough to starve the event loop.
    """
    try:
        done = subprocess.run([sys.executable, str(JSON_CHILD)], input=data, capture_output=True,
                              timeout=JSON_CHILD_TIMEOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    except subprocess.TimeoutExpired:
        raise LimitError("bad_request", "file took too long to parse") from None
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip()[:300]
        if done.returncode == 2 and "recursion limit" in reason:
            raise LimitError("bad_request", f"file is nested deeper than {MAX_JSON_DEPTH} levels")
        if done.returncode == 2:
            raise LimitError("bad_request", f"file is not valid JSON: {reason}")
        raise ApiError("internal", "the JSON parser failed")
    out = done.stdout
    (size,) = struct.unpack(">I", out[:4])
    skeleton = parse_json(out[4:4 + size], "file")
    with np.load(io.BytesIO(out[4 + size:]), allow_pickle=False) as npz:
        arrays = [npz[f"arr_{i}"] for i in range(len(npz.files))]
    return _with_arrays(skeleton, arrays)


def _with_arrays(node: Any, arrays: list[np.ndarray]) -> Any:
    """The child's skeleton with each ``{"__array__": i}`` replaced by its array."""
    if isinstance(node, list):
        return [_with_arrays(v, arrays) for v in node]
    if isinstance(node, dict):
        if set(node) == {"__array__"} and isinstance(node["__array__"], int) \
                and 0 <= node["__array__"] < len(arrays):
            return arrays[node["__array__"]]
        return {k: _with_arrays(v, arrays) for k, v in node.items()}
    return node


def document_from_upload(session_id: str, model: str, generator: Generator, data: bytes, suffix: str,
                         parsed: Any, limits: Limits) -> SessionDocument:
    """The session an upload describes (runs on the compute worker). ApiError when unusable.

    The document's payload is encoded here once, so its latents' bytes are cached before the
    event loop stores it.
    """
    if isinstance(parsed, dict) and parsed.get("format") == LOG_FORMAT:
        log = check_edit_log(parsed, generator, limits)
        log["model"] = model
        try:
            doc = SessionDocument.from_edit_log(session_id, log, generator.image_size, generator,
                                                limits.history)
        except (ValueError, KeyError, TypeError) as exc:
            raise ApiError("bad_request", f"edit log cannot be used: {exc}") from None
    else:
        try:
            latent = latent_from_dict(parsed, generator) if suffix == ".json" \
                else load_latent(data, generator, suffix=suffix)
        except (LatentFileError, ValueError) as exc:
            raise ApiError("bad_request", str(exc)) from None
        doc = SessionDocument.create(session_id, model, generator.image_size, latent, "upload",
                                     "uploaded latent", max_history=limits.history)
    doc.to_payload()
    return doc


def check_edit_log(log: dict[str, Any], generator: Generator, limits: Limits) -> dict[str, Any]:
    """The log with its start and operations checked against the bounds (ApiError otherwise)."""
    start = log.get("start")
    operations = log.get("operations")
    if not isinstance(start, dict) or not isinstance(operations, list):
        raise ApiError("bad_request", "edit log needs a 'start' object and an 'operations' list")
    if "latent" not in start:
        try:
            seeded = SeedStart.model_validate(start)
        except ValidationError as exc:
            raise ApiError("bad_request", f"edit log start: {validation_message(exc)}") from None
        if seeded.space is not None and seeded.space not in generator.latent_spaces:
            raise ApiError("bad_request", f"edit log start: model {generator.name} has no latent "
                           f"space {seeded.space!r}")
        try:
            generator.check_settings(seeded.settings.settings() if seeded.settings else None)
        except ValueError as exc:
            raise ApiError("bad_request", f"edit log start: {exc}") from None
    if len(operations) > limits.history:
        raise ApiError("bad_request", f"edit log has {len(operations)} operations; a session keeps "
                       f"at most {limits.history}")
    for i, op in enumerate(operations):
        if not isinstance(op, dict) or "latent" not in op:
            raise ApiError("bad_request", f"operation {i} has no recorded latent")
        kind = bounded_text(op.get("kind", "latent"), limits.kind_chars, f"operation {i} kind")
        if kind not in LOG_KINDS:
            raise ApiError("bad_request", f"operation {i} has unknown kind {kind!r} "
                           f"(known: {', '.join(LOG_KINDS)})")
        bounded_text(op.get("label", kind), limits.label_chars, f"operation {i} label")
        record = {k: v for k, v in op.items() if k not in ("latent", "label", "kind")}
        try:
            size = json_size(record)
        except (TypeError, ValueError):
            raise LimitError("bad_request", f"operation {i} record is not plain JSON") from None
        if size > limits.record_bytes:
            raise LimitError("bad_request", f"operation {i} record larger than {limits.record_bytes} bytes")
    return log
