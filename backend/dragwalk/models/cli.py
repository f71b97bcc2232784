"""``dragwalk models info X`` and ``dragwalk models import X -o name.safetensors``.

``info`` says what a model file is: the architecture the own network rebuilt, its
resolution, latent spaces, class count, the layers its format flags for fp16, and which
loader read it. ``import`` converts any supported checkpoint (NVIDIA or TF-era pickle,
rosinality ``.pt``, StyleGAN3 pickle) into the project's own format (``.safetensors`` plus
its JSON config), then reloads the written file and checks that it renders the same image,
so a conversion that would not round-trip is never left behind silently.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from .base import Generator, ModelError
from .registry import CHECKPOINT_SUFFIXES, load_model, save_model

#: seed of the image ``import`` compares before and after the conversion
CHECK_SEED = 0


def open_any(ref: str, lr_mlp: float | None = None) -> Generator:
    """A model from a name or file; ``lr_mlp`` overrides a rosinality file's mapping rate."""
    if lr_mlp is not None:
        if not ref.endswith(CHECKPOINT_SUFFIXES):
            raise ModelError("--lr-mlp applies to rosinality .pt checkpoints only")
        from .rosinality import load_rosinality
        return load_rosinality(ref, lr_mlp=lr_mlp)
    return load_model(ref, "cpu")


def loader_of(model: Generator, ref: str) -> str:
    if getattr(model, "loader", None):
        return model.loader
    return "dragwalk-safetensors" if ref.endswith(".safetensors") else "built-in"


def info(model: Generator, ref: str) -> dict:
    out = model.describe()
    out["loader"] = loader_of(model, ref)
    out["own_architecture"] = model.architecture
    out["c_dim"] = getattr(model, "c_dim", 0)
    out["fp16_layers"] = out.get("fp16_blocks", out.get("fp16_layers", []))  # one key for every network
    out["parameters"] = sum(p.numel() for p in model.parameters())
    return out


def import_model(ref: str, output: str | Path, force: bool = False, lr_mlp: float | None = None) -> dict:
    """Convert ``ref`` to the own format at ``output``; returns what was written and checked."""
    output = Path(output)
    if output.suffix != ".safetensors":
        raise ModelError(f"{output}: the own format's file name ends in .safetensors")
    for path in (output, output.with_suffix(".json")):
        if path.exists() and not force:
            raise ModelError(f"{path} exists (use --force to replace it)")
    model = open_any(ref, lr_mlp)
    if not model.architecture:
        raise ModelError(f"{ref}: a {type(model).__name__} cannot be saved in the project's format")
    written = save_model(model, output)
    again = load_model(str(written), "cpu")
    latent = model.sample(CHECK_SEED)
    with torch.no_grad():
        diff = float((again.render(latent) - model.render(latent)).abs().max())
    if diff > 1e-5:
        raise ModelError(f"{written}: the converted model renders differently (max diff {diff:.3g})")
    return {"written": str(written), "config": str(written.with_suffix(".json")),
            "loader": loader_of(model, ref), "architecture": model.architecture,
            "resolution": model.resolution, "check_max_abs_diff": diff}


def cmd_info(args: argparse.Namespace) -> int:
    print(json.dumps(info(open_any(args.path, args.lr_mlp), args.path), indent=2))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    print(json.dumps(import_model(args.source, args.output, args.force, args.lr_mlp), indent=2))
    return 0


def register(models_sub: argparse._SubParsersAction) -> None:
    """Adds ``info`` and ``import`` to the ``models`` command's sub-commands."""
    lr_help = "rosinality .pt only: the mapping network's lr multiplier (not stored in the file; default 0.01)"
    info_p = models_sub.add_parser("info", help="describe a model (name or file): architecture, loader, ...")
    info_p.add_argument("path")
    info_p.add_argument("--lr-mlp", type=float, default=None, help=lr_help)
    info_p.set_defaults(func=cmd_info)
    imp = models_sub.add_parser("import", help="convert a checkpoint (.pkl, .pt) into the own .safetensors format")
    imp.add_argument("source", help="NVIDIA/TF-era/StyleGAN3 .pkl, rosinality .pt, or a model name")
    imp.add_argument("-o", "--output", required=True, help="NAME.safetensors (its .json config goes beside it)")
    imp.add_argument("--force", action="store_true", help="replace existing output files")
    imp.add_argument("--lr-mlp", type=float, default=None, help=lr_help)
    imp.set_defaults(func=cmd_import)
