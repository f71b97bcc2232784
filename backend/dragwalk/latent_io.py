"""Latents on disk and on the wire: one format shared by the CLI, the server and exports.

Three file forms, chosen by suffix:

* ``.npz`` — everything: code, spatial offsets and metadata (space, model). The lossless form.
* ``.json`` — the same as nested lists, for people and other languages.
* ``.npy`` — the code array alone (what other GAN tools exchange); its space is ``w+`` when the
  array is 3-D, else ``w`` where the model has one, else the model's default.

Loading validates shapes and values, so a bad file is refused with a message instead of
failing deep inside a forward pass.
"""

from __future__ import annotations

import base64
import io
import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .models.base import Generator, Latent

#: refuse latent files bigger than this (a w+ of an 18-layer 512-d model is 37 KB)
MAX_LATENT_BYTES = 64 * 1024 * 1024


class LatentFileError(ValueError):
    """A latent file or payload that cannot be used; the message says why."""


#: most numbers one packed array may hold (a 1024 px StyleGAN's largest offset is far smaller)
MAX_PACKED = 1 << 24


def latent_to_dict(latent: Latent, model: str | None = None, packed: bool = False) -> dict[str, Any]:
    """JSON-friendly form of a latent (first batch element only).

    ``packed`` writes each array as ``{"dtype": "float32", "shape", "zb64"}`` (little-endian bytes,
    deflated, in base64): the same numbers, exactly, in a fraction of the text (edit logs).
    """
    def arr(t: Any) -> Any:
        values = t[0].detach().cpu().float()
        return pack_array(values.numpy()) if packed else values.tolist()

    return {
        "format": "dragwalk-latent/1",
        "model": model,
        "space": latent.space,
        "code": arr(latent.code),
        "offsets": {k: arr(v) for k, v in latent.offsets.items()},
    }


def pack_array(values: np.ndarray) -> dict[str, Any]:
    """A float32 array as ``{"dtype", "shape", "zb64"}``: its little-endian bytes, deflated (a
    drag's offsets are zero far from the points), in base64. Exact."""
    data = np.ascontiguousarray(values, dtype="<f4")
    return {"dtype": "float32", "shape": list(data.shape),
            "zb64": base64.b64encode(zlib.compress(data.tobytes(), 6)).decode("ascii")}


def unpack_array(data: Any) -> np.ndarray:
    """Inverse of :func:`pack_array`; nested lists of numbers pass through as float32."""
    if not isinstance(data, dict):
        return np.asarray(data, dtype=np.float32)
    shape = data.get("shape")
    text = data.get("zb64", data.get("b64"))
    if data.get("dtype") != "float32" or not isinstance(shape, list) or not all(
            isinstance(n, int) and n >= 0 for n in shape) or not isinstance(text, str):
        raise LatentFileError("a packed array needs dtype 'float32', a shape of counts and b64 or zb64 bytes")
    count = int(np.prod(shape)) if shape else 1
    if count > MAX_PACKED or len(text) > (count * 4 * 4) // 3 + 64:
        raise LatentFileError(f"packed array too large (at most {MAX_PACKED} numbers)")
    try:
        raw = base64.b64decode(text, validate=True)
        if "zb64" in data:
            inflate = zlib.decompressobj()
            raw = inflate.decompress(raw, count * 4 + 1)     # bounded: a zip bomb stops here
    except (ValueError, zlib.error) as exc:
        raise LatentFileError(f"packed array is not valid (deflated) base64: {exc}") from None
    if len(raw) != count * 4:
        raise LatentFileError(f"packed array holds {len(raw) // 4} numbers, its shape says {count}")
    return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)


def latent_from_dict(data: Any, generator: Generator | None = None) -> Latent:
    """Inverse of :func:`latent_to_dict`, validated against ``generator`` when given."""
    if not isinstance(data, dict) or "code" not in data:
        raise LatentFileError("latent data must be an object with a 'code' field")
    try:
        code = torch.tensor(unpack_array(data["code"]))[None]
        offsets = {str(k): torch.tensor(unpack_array(v))[None]
                   for k, v in (data.get("offsets") or {}).items()}
    except (TypeError, ValueError) as exc:
        raise LatentFileError(f"latent arrays are not numeric: {exc}") from None
    space = data.get("space")
    return _validated(Latent(str(space) if space else _guess_space(code, generator), code, offsets),
                      generator)


def save_latent(latent: Latent, path: str | Path, model: str | None = None) -> Path:
    """Write ``latent`` to ``path`` (.npz, .json or .npy, by suffix)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        path.write_text(json.dumps(latent_to_dict(latent, model)))
    elif suffix == ".npz":
        path.write_bytes(latent_to_npz_bytes(latent, model))
    elif suffix == ".npy":
        if latent.offsets:
            raise LatentFileError("a .npy file holds only the code; this latent has spatial offsets "
                                  "(save it as .npz or .json)")
        np.save(path, latent.code[0].detach().cpu().float().numpy())
    else:
        raise LatentFileError(f"unknown latent file type {suffix!r} (use .npz, .json or .npy)")
    return path


def latent_to_npz_bytes(latent: Latent, model: str | None = None) -> bytes:
    arrays = {"code": latent.code[0].detach().cpu().float().numpy()}
    for name, value in latent.offsets.items():
        arrays[f"offset:{name}"] = value[0].detach().cpu().float().numpy()
    meta = json.dumps({"format": "dragwalk-latent/1", "model": model, "space": latent.space})
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array(meta), **arrays)
    return buffer.getvalue()


def load_latent(source: str | Path | bytes, generator: Generator | None = None,
                suffix: str | None = None) -> Latent:
    """Read a latent from a file path or from bytes (then ``suffix`` names the form)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise LatentFileError(f"latent file not found: {path}")
        if path.stat().st_size > MAX_LATENT_BYTES:
            raise LatentFileError(f"latent file too large: {path}")
        data, suffix = path.read_bytes(), path.suffix.lower()
    else:
        data = bytes(source)
        if len(data) > MAX_LATENT_BYTES:
            raise LatentFileError("latent payload too large")
    suffix = (suffix or "").lower()
    if suffix == ".json":
        try:
            return latent_from_dict(json.loads(data), generator)
        except json.JSONDecodeError as exc:
            raise LatentFileError(f"latent file is not valid JSON: {exc}") from None
    try:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise LatentFileError(f"latent file is not a NumPy .npy/.npz file: {exc}") from None
    if isinstance(loaded, np.ndarray):
        code = torch.from_numpy(np.asarray(loaded, dtype=np.float32))[None]
        return _validated(Latent(_guess_space(code, generator), code), generator)
    with loaded:
        if "code" not in loaded.files:
            raise LatentFileError("latent .npz has no 'code' array")
        meta = json.loads(str(loaded["meta"])) if "meta" in loaded.files else {}
        code = torch.from_numpy(np.asarray(loaded["code"], dtype=np.float32))[None]
        offsets = {k.split(":", 1)[1]: torch.from_numpy(np.asarray(loaded[k], dtype=np.float32))[None]
                   for k in loaded.files if k.startswith("offset:")}
    space = meta.get("space") or _guess_space(code, generator)
    return _validated(Latent(space, code, offsets), generator)


def _guess_space(code: torch.Tensor, generator: Generator | None) -> str:
    if code.dim() == 3:
        return "w+"
    if generator is None:
        return "z"
    # a bare 2-D array from a StyleGAN tool is a w (what projectors export); DCGANs only have z
    return "w" if "w" in generator.latent_spaces else generator.default_space


def _validated(latent: Latent, generator: Generator | None) -> Latent:
    tensors = [latent.code, *latent.offsets.values()]
    if any(not torch.isfinite(t).all() for t in tensors):
        raise LatentFileError("latent contains NaN or infinite values")
    if generator is None:
        return latent
    if latent.space not in generator.latent_spaces:
        raise LatentFileError(f"latent space {latent.space!r} is not offered by model "
                              f"{generator.name} (it has {', '.join(generator.latent_spaces)})")
    expected = generator.sample(0, space=latent.space)
    if tuple(latent.code.shape) != tuple(expected.code.shape):
        raise LatentFileError(f"latent code has shape {tuple(latent.code.shape[1:])}, model "
                              f"{generator.name} expects {tuple(expected.code.shape[1:])}")
    for name, value in latent.offsets.items():
        shape = generator.offset_shape(name)
        if shape is None or tuple(value.shape[1:]) != shape:
            raise LatentFileError(f"latent offset {name!r} does not fit model {generator.name}")
    return latent.to(generator.device)
