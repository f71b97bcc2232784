"""Reading NVIDIA StyleGAN2 / StyleGAN2-ADA network pickles without running their code.

A network pickle (``network-snapshot-*.pkl``, what DragGAN users download) is a dict
``{'G', 'D', 'G_ema', 'augment_pipe', 'training_set_kwargs', ...}``. Each network was
pickled through NVIDIA's ``torch_utils.persistence``: it reduces to a call of the
global ``torch_utils.persistence._reconstruct_persistent_obj`` with one dict, ``meta``:
``type`` (``'class'``), ``version``, ``module_src`` (the full Python source of the
module that defined the class — loading it normally *executes* that source),
``class_name`` and ``state`` (the object's ``__dict__``: ``_modules``, ``_parameters``,
``_buffers``, ``_init_kwargs`` ...). Sub-networks are nested records of the same kind.
Tensors are ordinary PyTorch pickles: ``torch._utils._rebuild_tensor_v2`` over storages
stored as legacy ``torch.save`` bytes (``torch.storage._load_from_bytes``).

The loader here is an allow-list unpickler:

* the persistence global becomes :func:`_persistent_record`, which keeps the class
  name and state and never looks at ``module_src``;
* tensors are rebuilt by our own small functions; storage bytes are parsed by
  ``storage_bytes`` (its own allow-list: storage type names only) and viewed in place;
* ``dnnlib`` ``EasyDict`` becomes a dict, ``collections.OrderedDict``, ``set`` and a
  few numpy scalar/array constructors are allowed (harmless data types);
* **every other global is refused** with an error naming it — nothing is imported, so
  a ``__reduce__`` to ``os.system`` never runs.

Only the generator record (``G_ema``, else ``G``) is turned into a network: its
``init_kwargs`` build :class:`StyleGAN2Generator` and its tensors load by name.
"""

from __future__ import annotations

import collections
import io
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import Tensor

from .base import ModelError


class NetworkPickleError(ModelError):
    """A network pickle that was refused or could not be read; the message says why."""


@dataclass
class PersistentRecord:
    """What a ``torch_utils.persistence`` object carries, minus its source code."""

    class_name: str
    version: Any = None
    state: dict = field(default_factory=dict)

    @property
    def init_kwargs(self) -> dict:
        kwargs = self.state.get("_init_kwargs", self.state.get("init_kwargs"))
        return dict(kwargs or {})

    @property
    def init_args(self) -> tuple:
        return tuple(self.state.get("_init_args", self.state.get("init_args")) or ())

    @property
    def modules(self) -> dict:
        return dict(self.state.get("_modules") or {})


class _EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict`` (a dict with attribute access): plain data."""


def _persistent_record(meta: Any) -> PersistentRecord:
    """Replacement for ``_reconstruct_persistent_obj``: keep the record, never exec ``module_src``."""
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise NetworkPickleError("malformed persistent object record (expected a 'class' record)")
    name, state = meta.get("class_name"), meta.get("state")
    if not isinstance(name, str) or not isinstance(state, dict):
        raise NetworkPickleError("malformed persistent object record (class_name/state missing)")
    return PersistentRecord(name, meta.get("version"), dict(state))


def _storage_from_bytes(data: Any):
    """A tensor storage from its legacy ``torch.save`` bytes, viewed in place (``storage_bytes``)."""
    from .storage_bytes import StorageBytesError, storage_from_bytes

    if not isinstance(data, (bytes, bytearray)):
        raise NetworkPickleError("tensor storage is not a byte string")
    try:
        return storage_from_bytes(bytes(data) if isinstance(data, bytearray) else data)
    except StorageBytesError as exc:
        raise NetworkPickleError(f"a tensor storage could not be read ({exc})") from None


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_ignored: Any) -> Tensor:
    """A tensor view of ``storage``; requires_grad, hooks and metadata are dropped (inference only)."""
    if not isinstance(storage, torch.TypedStorage):
        raise NetworkPickleError("a tensor refers to something that is not a storage")
    try:
        t = torch.empty((0,), dtype=storage.dtype)
        t.set_(storage._untyped_storage, int(offset), tuple(int(s) for s in size),
               tuple(int(s) for s in stride))
    except (RuntimeError, TypeError, ValueError) as exc:
        raise NetworkPickleError(f"a tensor does not fit its storage ({exc})") from None
    return t


def _rebuild_parameter(data: Any, *_ignored: Any) -> Tensor:
    if not isinstance(data, Tensor):
        raise NetworkPickleError("a parameter holds no tensor")
    return data


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """numpy scalars/arrays as pickled by numpy 1.x (``numpy.core``) and 2.x (``numpy._core``)."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray

    out: dict[tuple[str, str], Any] = {("numpy", "dtype"): np.dtype, ("numpy", "ndarray"): np.ndarray}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out[(mod, "scalar")] = multiarray.scalar
        out[(mod, "_reconstruct")] = multiarray._reconstruct
    return out


#: (module, name) -> the object the unpickler hands back. Nothing else is resolvable.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_record,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("dnnlib", "EasyDict"): _EasyDict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
    ("torch", "Size"): torch.Size,
}


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only :data:`ALLOWED_GLOBALS` and imports nothing."""

    def __init__(self, file, source: str = "network pickle", extra: dict[tuple[str, str], Any] | None = None):
        super().__init__(file)
        self.source = source
        self.allowed = {**ALLOWED_GLOBALS, **_numpy_globals(), **(extra or {})}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise NetworkPickleError(
                f"refused to load {self.source}: it references {module}.{name}, which is not a "
                f"network component (the file may try to run code; it was not loaded)") from None

    def persistent_load(self, pid: Any) -> Any:
        raise NetworkPickleError(f"refused to load {self.source}: unexpected persistent reference "
                                 f"{str(pid)[:60]!r} (torch.save archives are not network pickles)")


def read_network_pickle(data: bytes | BinaryIO, source: str = "network pickle",
                        extra: dict[tuple[str, str], Any] | None = None) -> Any:
    """Unpickle ``data`` (bytes, or a binary file read as a stream, so the whole file never
    sits in memory beside the tensors made from it) with the allow-list (plus ``extra``:
    other formats' plain-data stand-ins); corrupt or truncated input is a clear error."""
    stream = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    start = stream.tell()
    magic = stream.read(2)
    stream.seek(start)
    if magic == b"PK":
        raise NetworkPickleError(f"{source} is a zip archive (a torch.save file?), not an NVIDIA "
                                 f"network pickle")
    try:
        return RestrictedUnpickler(stream, source, extra).load()
    except NetworkPickleError:
        raise
    except EOFError:
        raise NetworkPickleError(f"{source} is truncated (the pickle ends early)") from None
    except Exception as exc:  # UnpicklingError, ValueError, struct errors ... from bad bytes
        raise NetworkPickleError(f"{source} is not a readable pickle ({type(exc).__name__}: {exc})") from None


def generator_record(data: Any, source: str = "network pickle") -> PersistentRecord:
    """The generator to build: ``G_ema`` (the averaged weights everyone samples from), else ``G``."""
    if isinstance(data, PersistentRecord) and data.class_name == "Generator":
        return data
    if not isinstance(data, dict):
        raise NetworkPickleError(f"{source} holds a {type(data).__name__}, not a network dict "
                                 f"with 'G_ema' or 'G'")
    for key in ("G_ema", "G"):
        record = data.get(key)
        if isinstance(record, PersistentRecord):
            return record
    keys = ", ".join(map(str, list(data)[:10])) or "none"
    raise NetworkPickleError(f"{source} has no generator network ('G_ema' or 'G'); keys: {keys}")


def collect_tensors(record: PersistentRecord, prefix: str = "") -> dict[str, Tensor]:
    """Parameters and buffers of a record tree under their dotted names (``mapping.fc0.weight``)."""
    out: dict[str, Tensor] = {}
    for slot in ("_parameters", "_buffers"):
        for name, value in (record.state.get(slot) or {}).items():
            if value is None:
                continue
            if not isinstance(value, Tensor):
                raise NetworkPickleError(f"{prefix}{name} is a {type(value).__name__}, not a tensor")
            out[prefix + name] = value
    for name, child in record.modules.items():
        if child is None:
            continue
        if not isinstance(child, PersistentRecord):
            raise NetworkPickleError(f"sub-network {prefix}{name} is not a network record")
        out.update(collect_tensors(child, f"{prefix}{name}."))
    return out


_TOP_KWARGS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")
_MAPPING_KWARGS = {"num_layers", "embed_features", "layer_features", "activation", "lr_multiplier",
                   "w_avg_beta"}
_SYNTHESIS_KWARGS = {"channel_base", "channel_max", "num_fp16_res", "conv_clamp", "architecture",
                     "resample_filter", "use_noise", "kernel_size", "activation", "fp16_channels_last",
                     "init_res"}


def _plain(value: Any) -> Any:
    """numpy scalars and EasyDicts to JSON-friendly Python values (the own format's config)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def generator_kwargs(record: PersistentRecord, source: str = "network pickle",
                     mapping_options: set[str] = _MAPPING_KWARGS, synthesis_options: set[str] = _SYNTHESIS_KWARGS,
                     what: str = "generator") -> dict:
    """Generator constructor arguments from the record's ``init_kwargs`` (``StyleGAN2Generator``'s
    by default; the StyleGAN3 loader passes its own option names and ``what``).

    Both layouts are read: ``synthesis_kwargs={...}`` (stylegan2-ada-pytorch) and the
    synthesis options given at top level (the stylegan3 repository).
    """
    kwargs = _plain(record.init_kwargs)
    for name, value in zip(_TOP_KWARGS, record.init_args):
        kwargs.setdefault(name, _plain(value))
    missing = [k for k in _TOP_KWARGS if k not in kwargs]
    if missing:
        raise NetworkPickleError(f"{source}: the generator record lacks {', '.join(missing)} in init_kwargs")
    mapping = dict(kwargs.pop("mapping_kwargs", None) or {})
    synthesis = dict(kwargs.pop("synthesis_kwargs", None) or {})
    top = {k: kwargs.pop(k) for k in _TOP_KWARGS}
    synthesis.update(kwargs)  # whatever is left was given flat
    unknown = sorted((set(mapping) - set(mapping_options)) | (set(synthesis) - set(synthesis_options)))
    if unknown:
        raise NetworkPickleError(f"{source}: unsupported {what} option(s) {', '.join(unknown)}")
    return {**top, "mapping_kwargs": mapping, "synthesis_kwargs": synthesis}


def _check_stylegan2(record: PersistentRecord, source: str) -> None:
    synthesis = record.modules.get("synthesis")
    if not isinstance(synthesis, PersistentRecord) or "mapping" not in record.modules:
        raise NetworkPickleError(f"{source}: the generator has no mapping/synthesis networks")
    if "b4" not in synthesis.modules:
        kinds = sorted({getattr(m, "class_name", "?") for m in synthesis.modules.values()})
        hint = (" (a StyleGAN3 alias-free network: pickles.load_pickle, which load_model uses, builds it)"
                if "SynthesisInput" in kinds else "")
        raise NetworkPickleError(f"{source}: not a StyleGAN2 synthesis network{hint}")


def build_generator(record: PersistentRecord, name: str, source: str = "network pickle"):
    """Our StyleGAN2 from a generator record: constructor from init_kwargs, tensors by name."""
    from .convert import build_stylegan2

    _check_stylegan2(record, source)
    kwargs, tensors = generator_kwargs(record, source), collect_tensors(record)
    # a non-square network (2:1 full-body models) says its aspect in the shape of its constant input
    const = tensors.get("synthesis.b4.const")
    if const is not None and const.dim() == 3 and tuple(const.shape[1:]) != (4, 4):
        kwargs["synthesis_kwargs"].setdefault("init_res", [int(v) for v in const.shape[1:]])
    return build_stylegan2(kwargs, tensors, name, source, NetworkPickleError)


def load_network_pickle(path: str | Path, name: str | None = None):
    """A :class:`StyleGAN2Generator` from an NVIDIA network pickle, safely."""
    path = Path(path)
    source = f"network pickle {path.name}"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise NetworkPickleError(f"cannot read {path}: {exc.strerror}") from None
    return build_generator(generator_record(read_network_pickle(data, source), source),
                           name or str(path), source)
