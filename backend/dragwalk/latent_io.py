"""Latents on disk and on the wire: one format shared by the CLI, the server and exports.

Three file forms, chosen by suffix:

* ``.npz`` — everything: code, spatial offsets and metadata (space, model, generator settings).
  The lossless form.
* ``.json`` — the same as nested lists, for people and other languages.
* ``.npy`` — the code array alone (what other GAN tools exchange); its space is ``w+`` when the
  array is 3-D, else ``w`` where the model has one, else the model's default.

Loading validates shapes and values, so a bad file is refused with a message instead of
failing deep inside a forward pass. NumPy data is read by :func:`_read_npy`, never ``np.load``:
each array's header (dtype, shape) is checked against the model before a byte of data is read,
and only the bytes the header declares are ever inflated, so a small ``.npz`` whose member
inflates to gigabytes, an object array, or a header declaring 10^12 elements is refused cheaply.
"""

from __future__ import annotations

import base64
import io
import json
import math
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from .models.base import Generator, Latent, Settings

#: refuse latent files bigger than this (a w+ of an 18-layer 512-d model is 37 KB)
MAX_LATENT_BYTES = 64 * 1024 * 1024
#: arrays a .npz may hold (code, meta, one offset per layer)
MAX_NPZ_MEMBERS = 64
#: characters of the metadata string inside a .npz
MAX_META_CHARS = 4096


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
        "settings": latent.settings.to_dict(),
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
    return _validated(Latent(str(space) if space else _guess_space(code, generator), code, offsets,
                             _settings(data.get("settings"))), generator)


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
    meta = json.dumps({"format": "dragwalk-latent/1", "model": model, "space": latent.space,
                       "settings": latent.settings.to_dict()})
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
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
            raise LatentFileError(f"latent file is not valid JSON: {reason}") from None
    shapes = allowed_shapes(generator)
    if data[:2] != b"PK":
        array = _read_npy(io.BytesIO(data), "the .npy array", shapes.code if shapes else None)
        code = torch.from_numpy(np.asarray(array, dtype=np.float32))[None]
        return _validated(Latent(_guess_space(code, generator), code), generator)
    arrays = _read_npz(data, shapes)
    if "code" not in arrays:
        raise LatentFileError("latent .npz has no 'code' array")
    meta = _meta(arrays.pop("meta", None))
    code = torch.from_numpy(np.asarray(arrays.pop("code"), dtype=np.float32))[None]
    offsets = {k.split(":", 1)[1]: torch.from_numpy(np.asarray(v, dtype=np.float32))[None]
               for k, v in arrays.items() if k.startswith("offset:")}
    space = meta.get("space") or _guess_space(code, generator)
    return _validated(Latent(str(space), code, offsets, _settings(meta.get("settings"))), generator)


class _Shapes:
    """Array shapes (no batch axis) a latent file may hold for a model: ``code`` in any of its
    spaces, ``offset:NAME`` as the model's ``offset_shape(NAME)`` says (layers, StyleGAN's
    ``:rgb`` skip images)."""

    def __init__(self, generator: Generator) -> None:
        self.generator = generator
        self.code = {tuple(generator.sample(0, space=s).code.shape[1:]) for s in generator.latent_spaces}

    def get(self, name: str) -> set[tuple[int, ...]] | None:
        if name == "code":
            return self.code
        if name.startswith("offset:"):
            shape = self.generator.offset_shape(name.split(":", 1)[1])
            return None if shape is None else {tuple(shape)}
        return None


def allowed_shapes(generator: Generator | None) -> _Shapes | None:
    """What a latent file may hold for ``generator`` (``None`` without a model)."""
    return None if generator is None else _Shapes(generator)


def _read_npz(data: bytes, shapes: _Shapes | None) -> dict[str, np.ndarray]:
    """The arrays of a .npz, each read through :func:`_read_npy` (bounded, header first)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise LatentFileError(f"latent file is not a NumPy .npy/.npz file: {exc}") from None
    with archive:
        members = archive.infolist()
        if len(members) > MAX_NPZ_MEMBERS:
            raise LatentFileError(f"latent .npz holds {len(members)} arrays (at most {MAX_NPZ_MEMBERS})")
        arrays: dict[str, np.ndarray] = {}
        for info in members:
            name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            if name in arrays:
                raise LatentFileError(f"latent .npz holds {name!r} twice")
            if name != "meta" and name != "code" and not name.startswith("offset:"):
                raise LatentFileError(f"latent .npz holds an unknown array {name[:40]!r}")
            if shapes is not None and name != "meta" and shapes.get(name) is None:
                raise LatentFileError(f"latent offset {name.split(':', 1)[-1][:40]!r} does not fit the model")
            try:
                with archive.open(info) as stream:
                    arrays[name] = _read_npy(stream, f"array {name!r}", None if shapes is None
                                             else shapes.get(name), text=name == "meta")
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
                raise LatentFileError(f"array {name!r} of the .npz cannot be read: {exc}") from None
    return arrays


def _read_npy(stream: IO[bytes], what: str, shapes: set[tuple[int, ...]] | None,
              text: bool = False) -> np.ndarray:
    """One array in .npy format, its header checked before any data is read.

    Numbers only (no objects, no pickles); the shape must be one of ``shapes`` when given, else
    hold at most :data:`MAX_LATENT_BYTES` of data; exactly the declared bytes are read. With
    ``text`` the array must be a short unicode string (the .npz metadata).
    """
    fmt = np.lib.format
    try:
        version = fmt.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(stream)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = fmt.read_array_header_2_0(stream)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise LatentFileError(f"{what} is not a NumPy .npy array: {str(exc)[:200]}") from None
    if text:
        if dtype.kind != "U" or shape != () or dtype.itemsize > 4 * MAX_META_CHARS:
            raise LatentFileError(f"{what} must be a string of at most {MAX_META_CHARS} characters")
    elif dtype.hasobject or dtype.kind not in "fiu" or dtype.itemsize > 8:
        raise LatentFileError(f"{what} has dtype {dtype.str!r}; latents are arrays of numbers")
    elif shapes is not None and tuple(shape) not in shapes:
        expected = " or ".join(str(s) for s in sorted(shapes))
        raise LatentFileError(f"{what} has shape {tuple(shape)}; the model expects {expected}")
    count = math.prod(shape)
    nbytes = count * dtype.itemsize
    if nbytes > MAX_LATENT_BYTES:
        raise LatentFileError(f"{what} declares {count} elements, more than a latent can hold")
    data = stream.read(nbytes)
    if len(data) != nbytes:
        raise LatentFileError(f"{what} is truncated ({len(data)} of {nbytes} bytes)")
    array = np.frombuffer(data, dtype=dtype).copy()     # writable, as torch wants
    return array.reshape(shape, order="F" if fortran else "C")


def _meta(array: np.ndarray | None) -> dict[str, Any]:
    if array is None:
        return {}
    try:
        meta = json.loads(str(array))
    except (json.JSONDecodeError, RecursionError):
        raise LatentFileError("the .npz metadata is not valid JSON") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("space") or "", str):
        raise LatentFileError("the .npz metadata must be an object with a string 'space'")
    return meta


def _settings(data: Any) -> Settings:
    """The generator settings a latent file records (none: the defaults; files before settings)."""
    try:
        return Settings.from_dict(data)
    except ValueError as exc:
        raise LatentFileError(f"latent settings: {exc}") from None


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
    try:
        latent = latent.with_settings(generator.check_settings(latent.settings))
    except ValueError as exc:
        raise LatentFileError(f"latent settings do not fit model {generator.name}: {exc}") from None
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
