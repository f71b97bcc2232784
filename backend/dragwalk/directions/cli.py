"""``dragwalk directions compute|list|augment`` and ``dragwalk walk``.

Direction sets come from the on-disk :class:`DirectionCache`, so a second ``walk``
with the same method reuses what the first computed. ``--direction METHOD:INDEX``
and ``--amount`` may repeat (several sliders); ``--strip a:b:n`` renders ``n``
images with the first slider from ``a`` to ``b`` side by side.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import numpy as np


def _cli_error(message: str) -> Exception:
    from ..cli import CLIError
    return CLIError(message)


def parse_value(text: str) -> Any:
    """``3`` -> 3, ``0.5`` -> 0.5, ``true``/``none``, ``2,6`` -> [2, 6], else the string."""
    low = text.strip().lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    if "," in text and all(part.strip().lstrip("-").isdigit() for part in text.split(",")):
        return [int(part) for part in text.split(",")]
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_params(items: list[str] | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise _cli_error(f"--param expects NAME=VALUE, got {item!r}")
        name, value = item.split("=", 1)
        params[name.strip()] = parse_value(value)
    return params


def parse_direction(text: str) -> tuple[str, int]:
    """``METHOD:INDEX`` -> (method, index), with a clear message otherwise."""
    from .methods import METHODS

    method, sep, index = text.partition(":")
    if not sep or not index.strip().lstrip("-").isdigit():
        raise _cli_error(f"--direction expects METHOD:INDEX (e.g. sefa:0), got {text!r}")
    if method not in METHODS:
        raise _cli_error(f"unknown direction method {method!r} in --direction (known: {', '.join(METHODS)})")
    return method, int(index)


def parse_strip(text: str) -> tuple[float, float, int]:
    try:
        a, b, n = text.split(":")
        start, stop, count = float(a), float(b), int(n)
    except ValueError:
        raise _cli_error(f"--strip expects START:STOP:COUNT (e.g. -3:3:7), got {text!r}") from None
    if not 1 <= count <= 64:
        raise _cli_error("--strip COUNT must be between 1 and 64")
    return start, stop, count


def load_region(args: argparse.Namespace, resolution: int) -> np.ndarray | None:
    """The painted region from ``--mask FILE`` (white = region) or ``--region X0,Y0,X1,Y1``."""
    if args.mask:
        from PIL import Image

        path = Path(args.mask)
        if not path.is_file():
            raise _cli_error(f"mask file not found: {path}")
        image = Image.open(path).convert("L").resize((resolution, resolution), Image.BILINEAR)
        return (np.asarray(image, dtype=np.float32) / 255.0 > 0.5).astype(np.float32)
    if args.region:
        try:
            x0, y0, x1, y1 = (int(v) for v in args.region.split(","))
        except ValueError:
            raise _cli_error(f"--region expects X0,Y0,X1,Y1 in pixels, got {args.region!r}") from None
        mask = np.zeros((resolution, resolution), np.float32)
        mask[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = 1
        return mask
    return None


def _base_latent(args: argparse.Namespace, model):
    if args.latent:
        from ..latent_io import load_latent
        return load_latent(args.latent, model)
    return model.sample(args.seed, truncation=args.truncation)


# --------------------------------------------------------------------- commands
def _cmd_list(args: argparse.Namespace) -> int:
    from .methods import METHODS

    if args.json:
        print(json.dumps(METHODS, indent=2))
        return 0
    for name, info in METHODS.items():
        needs = [k[6:] for k in ("needs_mask", "needs_labels") if info[k]]
        extra = f"  (needs {', '.join(needs)})" if needs else ""
        print(f"{name:<13} {info['label']}{extra}\n{'':<13} {info['description']}")
    return 0


def _cmd_compute(args: argparse.Namespace) -> int:
    import time

    from ..cli import open_model
    from .cache import DirectionCache

    params = parse_params(args.param)
    model = open_model(args)
    cache = DirectionCache(args.cache)
    if args.method == "reds":
        mask = load_region(args, model.resolution)
        if mask is None:
            raise _cli_error("reds needs a region: --mask FILE or --region X0,Y0,X1,Y1")
        params.update(mask=mask, latent=_base_latent(args, model))
    started = time.perf_counter()
    directions = cache.get(model, args.method, **params)
    seconds = time.perf_counter() - started
    if args.output:
        directions.save(args.output)
    summary = directions.to_dict()
    summary["seconds"] = round(seconds, 3)
    if args.method != "reds":
        summary["file"] = str(cache.path(model, args.method, **params))
    if args.output:
        summary["file"] = str(args.output)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{directions.method}: {len(directions)} directions in {directions.space} for {directions.model} "
              f"({seconds:.2f} s){'  -> ' + summary['file'] if 'file' in summary else ''}")
        for i, label in enumerate(directions.labels[: args.show]):
            value = "" if directions.values is None else f"  value {directions.values[i]:.4g}"
            print(f"  {i:>3}  {label:<28} scale {float(directions.scales[i]):.4g}{value}")
    return 0


def _walks_from_args(args: argparse.Namespace, model, base, cache) -> list:
    from .walks import Walk

    amounts = list(args.amount or [])
    if len(amounts) > len(args.direction):
        raise _cli_error("more --amount values than --direction values")
    amounts += [0.0 if args.strip else 1.0] * (len(args.direction) - len(amounts))
    params = parse_params(args.param)
    walks = []
    for text, amount in zip(args.direction, amounts):
        method, index = parse_direction(text)
        extra = dict(params)
        if method == "reds":
            mask = load_region(args, model.resolution)
            if mask is None:
                raise _cli_error("a reds direction needs a region: --mask FILE or --region X0,Y0,X1,Y1")
            extra.update(mask=mask, latent=base)
        directions = cache.get(model, method, **extra)
        if not 0 <= index < len(directions):
            raise _cli_error(f"{method} has {len(directions)} directions; index {index} is out of range")
        kind = args.kind
        if kind == "curved" and method != "reds":
            kind = "linear"
        walks.append(Walk(directions, index, float(amount), kind))
    return walks


def _cmd_walk(args: argparse.Namespace) -> int:
    import torch

    from ..cli import open_model
    from ..imaging import to_pil
    from .cache import DirectionCache
    from .walks import Walk, apply_walks

    model = open_model(args)
    base = _base_latent(args, model)
    strip = parse_strip(args.strip) if args.strip else None
    walks = _walks_from_args(args, model, base, DirectionCache(args.cache))
    out = Path(args.output)
    with torch.no_grad():
        if strip is None:
            latent = apply_walks(model, base, walks)
            to_pil(model.render(latent)).save(out)
            if args.save_latent:
                from ..latent_io import save_latent
                save_latent(latent, args.save_latent, model.name)
            print(f"wrote {out}")
            return 0
        first = walks[0]
        frames = []
        for amount in np.linspace(strip[0], strip[1], strip[2]):
            moved = Walk(first.directions, first.index, float(amount), first.kind)
            frames.append(model.render(apply_walks(model, base, [moved, *walks[1:]])))
    image = torch.cat(frames, dim=3)  # side by side
    to_pil(image).save(out)
    print(f"wrote {out} ({strip[2]} images, amounts {strip[0]:g} .. {strip[1]:g})")
    return 0


def _cmd_augment(args: argparse.Namespace) -> int:
    import torch

    from ..cli import open_model
    from ..imaging import to_pil
    from ..latent_io import save_latent
    from . import sfvq
    from .cache import DirectionCache

    if args.count < 1 or args.count > 10_000:
        raise _cli_error("--count must be between 1 and 10000")
    model = open_model(args)
    directions = DirectionCache(args.cache).get(model, "sfvq", **parse_params(args.param))
    if not 0 <= args.segment < len(directions):
        raise _cli_error(f"the SFVQ curve has {len(directions)} segments; --segment {args.segment} is out of range")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    seeds = list(args.seeds) if args.seeds else [args.seed]
    for seed in seeds:
        base = model.sample(seed, truncation=args.truncation)
        latents = sfvq.segment_latents(model, directions, args.segment, args.count, base)
        with torch.no_grad():
            for i, latent in enumerate(latents):
                stem = out / f"seed{seed}-seg{args.segment}-{i:03d}"
                to_pil(model.render(latent)).save(stem.with_suffix(".png"))
                if args.latents:
                    save_latent(latent, stem.with_suffix(".npz"), model.name)
                written += 1
    print(f"wrote {written} images to {out} (segment {args.segment}, {len(seeds)} seed(s))")
    return 0


# --------------------------------------------------------------------- parsers
def _add_source(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0, help="seed of the starting image (default 0)")
    parser.add_argument("--truncation", type=float, default=1.0)
    parser.add_argument("--latent", default=None, help="start from a latent file (.npz, .json, .npy)")


def _add_common(parser: argparse.ArgumentParser) -> None:
    from ..cli import add_model_arguments

    add_model_arguments(parser)
    parser.add_argument("--param", action="append", metavar="NAME=VALUE",
                        help="method parameter, repeatable (e.g. num=16, samples=2000, layers=0,6)")
    parser.add_argument("--cache", default=None, help="direction cache folder "
                        "(default $DRAGWALK_HOME/directions or ~/.dragwalk/directions)")


def _add_region(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mask", default=None, help="REDs region: image file, white = region")
    parser.add_argument("--region", default=None, help="REDs region: rectangle X0,Y0,X1,Y1 in model pixels")


def register(sub: argparse._SubParsersAction) -> None:
    from .methods import METHODS

    directions = sub.add_parser("directions", help="compute and list latent directions")
    dsub = directions.add_subparsers(dest="directions_command", required=True)

    listing = dsub.add_parser("list", help="the direction methods and their parameters")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=_cmd_list)

    compute = dsub.add_parser("compute", help="compute (or load from the cache) a direction set")
    compute.add_argument("--method", required=True, choices=list(METHODS))
    _add_common(compute)
    _add_source(compute)
    _add_region(compute)
    compute.add_argument("-o", "--output", default=None, help="also write the set to this .safetensors file")
    compute.add_argument("--show", type=int, default=10, help="directions to list (default 10)")
    compute.add_argument("--json", action="store_true", help="print the summary as JSON")
    compute.set_defaults(func=_cmd_compute)

    augment = dsub.add_parser("augment", help="images along one SFVQ segment (controllable augmentation)")
    _add_common(augment)
    augment.add_argument("--segment", type=int, required=True)
    augment.add_argument("--count", type=int, default=8, help="images per seed along the segment")
    augment.add_argument("--seed", type=int, default=0)
    augment.add_argument("--seeds", type=int, nargs="*", help="several starting seeds")
    augment.add_argument("--truncation", type=float, default=1.0)
    augment.add_argument("--latents", action="store_true", help="also write each latent (.npz)")
    augment.add_argument("-o", "--output", required=True, help="output folder")
    augment.set_defaults(func=_cmd_augment)

    walk = sub.add_parser("walk", help="move an image along directions (sliders) and save it")
    _add_common(walk)
    _add_source(walk)
    _add_region(walk)
    walk.add_argument("--direction", action="append", required=True, metavar="METHOD:INDEX",
                      help="a slider, repeatable (e.g. sefa:0)")
    walk.add_argument("--amount", action="append", type=float,
                      help="slider position per --direction, in the direction's natural units")
    walk.add_argument("--kind", default="linear", choices=["linear", "density", "curved"],
                      help="path: straight, on the |z| shell, or recomputed REDs (default linear)")
    walk.add_argument("--strip", default=None, metavar="START:STOP:COUNT",
                      help="write COUNT images side by side, first slider from START to STOP")
    walk.add_argument("--save-latent", default=None, help="also write the walked latent")
    walk.add_argument("-o", "--output", required=True, help="output image (.png, .jpg)")
    from ..cli import add_server_arguments
    add_server_arguments(walk, "walk")
    walk.set_defaults(func=_cmd_walk)
    # let "--strip -3:3:7" (a value starting with a minus) parse like a negative number
    walk._negative_number_matcher = re.compile(r"^-\d+$|^-\d*\.\d+$|^-[\d.]+:[-\d.]+:\d+$")
