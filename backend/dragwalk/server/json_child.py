"""Parse an uploaded JSON file in a child process, returning its big number arrays as NumPy.

Run as a script (``python json_child.py``), never imported by the server: it imports only the
standard library, NumPy and pydantic-core, so it starts in a fraction of a second. It reads the
upload on stdin and writes, on stdout, a 4-byte length, the JSON "skeleton" (the same structure,
each latent's ``code``/``offsets`` lists replaced by ``{"__array__": i}``) and then an ``.npz`` of
those arrays (float32). Why a process: parsing 20 MB of JSON into Python lists and converting them
holds the GIL for long stretches, and a server thread doing that starves the event loop (issue 13).
Errors go to stderr as one line, with exit status 2.
"""

from __future__ import annotations

import io
import struct
import sys
from typing import Any

import numpy as np
import pydantic_core


def _to_array(value: Any, arrays: list[np.ndarray]) -> Any:
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError, OverflowError):
        return value                         # not numbers: left for the server's own checks
    arrays.append(array)
    return {"__array__": len(arrays) - 1}


def _compact(node: Any, arrays: list[np.ndarray]) -> Any:
    """``node`` with every latent's arrays moved into ``arrays``."""
    if isinstance(node, list):
        return [_compact(v, arrays) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _compact(v, arrays) for k, v in node.items() if k not in ("code", "offsets")}
    if "code" in node:
        out["code"] = _to_array(node["code"], arrays) if isinstance(node["code"], list) else node["code"]
        offsets = node.get("offsets")
        if isinstance(offsets, dict):
            out["offsets"] = {k: _to_array(v, arrays) if isinstance(v, list) else v for k, v in offsets.items()}
        elif "offsets" in node:
            out["offsets"] = offsets
    return out


def main() -> int:
    data = sys.stdin.buffer.read()
    try:
        parsed = pydantic_core.from_json(data or b"null", allow_inf_nan=False)
    except ValueError as exc:
        sys.stderr.write(str(exc).replace("\n", " ")[:300])
        return 2
    arrays: list[np.ndarray] = []
    skeleton = pydantic_core.to_json(_compact(parsed, arrays))
    buffer = io.BytesIO()
    np.savez(buffer, *arrays)
    sys.stdout.buffer.write(struct.pack(">I", len(skeleton)) + skeleton + buffer.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
