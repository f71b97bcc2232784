"""Tensor storages from the bytes NVIDIA network pickles carry, without copying them.

A pickled storage is ``torch.storage._load_from_bytes(b)`` where ``b`` is a legacy
(pre-zip) ``torch.save`` of that one storage: four small pickles (a magic number, the
format version 1001, a dict of system facts, the object: a persistent id
``('storage', torch.<Type>Storage, key, location, numel, None)``), a pickle of the list of
storage keys, and then per key an int64 element count followed by the raw little-endian
elements.

Those small pickles are read by an unpickler that resolves only the ``torch.<Type>Storage``
names (to dtypes) and imports nothing; the elements are then *viewed* in place
(``torch.frombuffer``), so a 350 MB network costs no second copy and no per-byte Python
work. ``torch.load`` would read the same bytes into a fresh storage, which is what made a
large pickle load several times slower than ``torch.load`` of the same tensors.

The storage shares memory with the (immutable) bytes object it came from; generators never
write their weights in place (fine-tuning works on a copy).
"""

from __future__ import annotations

import io
import pickle
import struct
import warnings
from typing import Any

import torch

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

STORAGE_DTYPES: dict[str, torch.dtype] = {
    "FloatStorage": torch.float32, "HalfStorage": torch.float16, "DoubleStorage": torch.float64,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class StorageBytesError(ValueError):
    """Bytes that are not one legacy-serialised storage."""


class _HeaderUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in STORAGE_DTYPES:
            return STORAGE_DTYPES[name]
        raise StorageBytesError(f"tensor storage bytes reference {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        return ("persistent", pid)


def storage_from_bytes(data: bytes) -> torch.TypedStorage:
    """The storage serialised in ``data``, viewing its elements in place."""
    stream = io.BytesIO(data)
    try:
        def load() -> Any:
            return _HeaderUnpickler(stream).load()

        if load() != MAGIC_NUMBER or load() != PROTOCOL_VERSION:
            raise StorageBytesError("tensor storage bytes lack the torch.save magic number")
        info = load()
        if not isinstance(info, dict) or not info.get("little_endian", False):
            raise StorageBytesError("tensor storage bytes are not little-endian")
        obj = load()
        keys = load()
    except StorageBytesError:
        raise
    except Exception as exc:  # truncated or corrupt headers
        raise StorageBytesError(f"tensor storage bytes are corrupt ({type(exc).__name__})") from None
    if not (isinstance(obj, tuple) and len(obj) == 2 and obj[0] == "persistent"):
        raise StorageBytesError("tensor storage bytes hold no storage")
    pid = obj[1]
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[1], torch.dtype)):
        raise StorageBytesError("tensor storage bytes hold a malformed storage record")
    dtype, key, numel = pid[1], pid[2], pid[4]
    if keys != [key] or not isinstance(numel, int) or numel < 0:
        raise StorageBytesError("tensor storage bytes hold an unexpected storage layout")
    start = stream.tell()
    if len(data) < start + 8:
        raise StorageBytesError("tensor storage bytes are truncated")
    (count,) = struct.unpack_from("<q", data, start)
    itemsize = torch.empty((), dtype=dtype).element_size()
    if count != numel or len(data) != start + 8 + count * itemsize:
        raise StorageBytesError("tensor storage bytes do not hold the announced number of elements")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "buffer is not writable": weights are read-only here
        flat = torch.frombuffer(data, dtype=dtype, count=count, offset=start + 8) if count else torch.empty(0, dtype=dtype)
    return torch.TypedStorage(wrap_storage=flat.untyped_storage(), dtype=dtype, _internal=True)
