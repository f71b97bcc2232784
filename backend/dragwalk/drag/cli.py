"""``dragwalk drag``: a drag from the command line, with a progress bar and an optional GIF.

    dragwalk drag --seed 3 --points "30,40->34,40;20,20->22,18" -o out.png --animation out.gif

Bad points or masks exit with status 2 and a one-line message (``cli.main`` turns the
PointError, a ValueError, into that).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import add_model_arguments, add_runtime_arguments, add_server_arguments
    from .config import DEFAULT_METHOD
    from .method import ALIASES, METHODS

    p = sub.add_parser("drag", help="drag handle points to targets and write the result")
    add_model_arguments(p)
    add_runtime_arguments(p)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--seed", type=int, help="start from the image of this seed")
    source.add_argument("--latent", help="start from a latent file (.npz, .json, .npy)")
    p.add_argument("--truncation", type=float, default=1.0, help="with --seed (default 1.0)")
    p.add_argument("--points", required=True, help='handle -> target pairs in image px: "x,y->x,y;x,y->x,y"')
    p.add_argument("--mask", help="greyscale image at model resolution, white = may change")
    p.add_argument("--method", default=DEFAULT_METHOD, choices=sorted([*METHODS, *ALIASES]), help=f"default {DEFAULT_METHOD}")
    p.add_argument("--steps", type=int, default=300, help="maximum steps (default 300)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the method's)")
    p.add_argument("--lambda-mask", type=float, default=None, help="mask term weight (default: the method's)")
    p.add_argument("--stop-distance", type=float, default=None, help="px (default: the method's)")
    p.add_argument("--feature-layer", default=None, help="generator layer for features (default: the method's/model's)")
    p.add_argument("--mode", default=None, help="which part of the latent to optimise (see `models info`)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="method parameter, repeatable (see METHODS[name].describe())")
    p.add_argument("-o", "--output", required=True, help="result image (.png, .jpg)")
    p.add_argument("--animation", help="write the drag as an animated GIF")
    p.add_argument("--frame-every", type=int, default=2, help="GIF frame every N steps (default 2)")
    p.add_argument("--gif-scale", type=int, default=4, help="GIF upscaling factor (default 4)")
    p.add_argument("--save-latent", help="write the final latent (.npz, .json, .npy)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_server_arguments(p, "drag")
    p.set_defaults(func=run_command)


def _params(items: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--param {item!r} is not NAME=VALUE")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--param {item!r}: value is not a number") from None
    return out


def _load_mask(path: str) -> np.ndarray:
    from PIL import Image

    if not Path(path).is_file():
        raise ValueError(f"mask file not found: {path}")
    with Image.open(path) as image:
        return np.asarray(image.convert("L"), dtype=np.float32) / 255.0


def _frame(image: Any, handles: list, targets: list, scale: int):
    """An upscaled frame with handles (red) and targets (blue) drawn on it."""
    from PIL import Image, ImageDraw

    from ..imaging import to_pil

    pil = to_pil(image)
    pil = pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST)
    draw = ImageDraw.Draw(pil)
    r = max(2, scale)
    for (hx, hy), (tx, ty) in zip(handles, targets):
        h = ((hx + 0.5) * scale, (hy + 0.5) * scale)
        t = ((tx + 0.5) * scale, (ty + 0.5) * scale)
        draw.line([h, t], fill=(255, 255, 255), width=1)
        draw.ellipse([t[0] - r, t[1] - r, t[0] + r, t[1] + r], fill=(40, 90, 255))
        draw.ellipse([h[0] - r, h[1] - r, h[0] + r, h[1] + r], fill=(255, 40, 40))
    return pil


def run_command(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from ..cli import open_model
    from ..imaging import to_pil
    from ..latent_io import load_latent, save_latent
    from .config import DragConfig
    from .points import parse_points, validate_points
    from .run import DragRun

    if args.frame_every < 1 or args.gif_scale < 1:
        raise ValueError("--frame-every and --gif-scale must be at least 1")
    handles, targets = parse_points(args.points)
    config = DragConfig(method=args.method, lr=args.lr, lambda_mask=args.lambda_mask, max_steps=args.steps,
                        stop_distance=args.stop_distance, feature_layer=args.feature_layer, mode=args.mode,
                        params=_params(args.param), precision=args.precision)
    mask = _load_mask(args.mask) if args.mask else None
    generator = open_model(args)
    validate_points(handles, targets, generator.resolution)   # fail before any work
    latent = (load_latent(args.latent, generator) if args.latent
              else generator.sample(args.seed, truncation=args.truncation))
    run = DragRun(generator, latent, handles, targets, mask=mask, config=config)
    frames = []
    if args.animation:
        frames.append(_frame(run.origin_image, handles, targets, args.gif_scale))
        frames.extend(_frame(image, handles, targets, args.gif_scale) for image in run.tween(4))
    bar = tqdm(total=config.max_steps, desc="drag", unit="step", file=sys.stderr, disable=args.quiet,
               leave=False)
    step = None
    with bar:
        while not run.done:
            want = bool(args.animation) and (run.step_count + 1) % args.frame_every == 0
            step = run.step(render=want)
            bar.update(1)
            bar.set_postfix(remaining=f"{step.max_remaining:.2f}px")
            if step.image is not None:
                frames.append(_frame(step.image, step.handles, step.targets, args.gif_scale))
    with torch.no_grad():
        final = run.render()
    to_pil(final).save(args.output)
    if args.animation:
        frames.append(_frame(final, run.handles, run.targets, args.gif_scale))
        frames[0].save(args.animation, save_all=True, append_images=frames[1:], duration=60, loop=0)
    if args.save_latent:
        save_latent(run.latent, args.save_latent, model=generator.name)
    dist = run.distances()
    status = (run.reason or "stopped").replace("_", " ")
    print(f"wrote {args.output}: {status} after {run.step_count} steps, remaining distance "
          f"mean {float(dist.mean()):.2f} px, max {float(dist.max()):.2f} px"
          + (f"; animation {args.animation} ({len(frames)} frames)" if args.animation else ""))
    return 0
