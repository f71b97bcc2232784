"""``--server URL`` for ``dragwalk drag``, ``walk`` and ``invert``: the same arguments, the work
done by a running ``dragwalk serve`` (through :mod:`dragwalk.client`), the files written here.
``dragwalk.cli.main`` calls these instead of the local commands when ``--server`` is given.

The session the command edited stays on the server (its id is printed), so the page can open it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from .errors import ClientError

#: ``dragwalk invert`` options that only mean something to a local run
_LOCAL_ONLY_INVERT = {"no_align": False, "save_model": None, "save_target": None, "seed": 0}
#: ``dragwalk drag`` options the server sets for all its sessions (``dragwalk serve --precision ...``)
_LOCAL_ONLY_DRAG = {"precision": "fp32", "channels_last": False, "compile": "none"}


def _refuse_local_only(args: argparse.Namespace, options: dict[str, Any], why: str = "") -> None:
    from ..cli import CLIError

    for name, default in options.items():
        if getattr(args, name, default) != default:
            raise CLIError(f"--{name.replace('_', '-')} is not available with --server{why}")


def _client(args: argparse.Namespace) -> Any:
    from .sync import Client
    return Client(args.server, token=args.token or os.environ.get("DRAGWALK_TOKEN") or None)


def _fail(exc: ClientError) -> Any:
    from ..cli import CLIError
    return CLIError(f"the server refused: {exc.code}: {exc.message}")


def _open(client: Any, args: argparse.Namespace) -> Any:
    """The starting session: a seed, or an uploaded latent file."""
    if getattr(args, "latent", None):
        return client.upload_latent(args.latent, model=args.model)
    return client.open_session(model=args.model, seed=args.seed if args.seed is not None else 0,
                               truncation=args.truncation)


def _write_image(png: bytes, path: str | Path) -> None:
    """The PNG the server sent, as ``path``'s format."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        path.write_bytes(png)
        return
    import io

    from PIL import Image
    Image.open(io.BytesIO(png)).convert("RGB").save(path)


def _latent_kind(path: str) -> str:
    kind = Path(path).suffix.lower().lstrip(".")
    if kind not in ("npz", "json", "npy"):
        raise ValueError(f"{path}: a latent file is .npz, .json or .npy")
    return kind


def remote_drag(args: argparse.Namespace) -> int:
    """``dragwalk drag --server URL ...``"""
    from ..drag.cli import _load_mask, _params
    from ..drag.points import parse_points

    _refuse_local_only(args, _LOCAL_ONLY_DRAG, " (the server's own `dragwalk serve` flags set it)")
    handles, targets = parse_points(args.points)
    settings = {"max_steps": args.steps, **{name: getattr(args, name) for name in
                ("lr", "lambda_mask", "stop_distance", "feature_layer", "mode") if getattr(args, name) is not None}}
    mask = _load_mask(args.mask) if args.mask else None
    try:
        with _client(args) as client:
            session = _open(client, args)
            result = session.drag({"handles": handles, "targets": targets}, method=args.method,
                                  params=_params(args.param), mask=mask, **settings,
                                  on_progress=None if args.quiet else _show_drag)
            if not args.quiet:
                print(file=sys.stderr)
            _write_image(result.png, args.output)
            if args.save_latent:
                session.export(_latent_kind(args.save_latent), args.save_latent)
            if args.animation:
                session.export("gif", args.animation)
            session_id = session.id
    except ClientError as exc:
        raise _fail(exc) from None
    distances = result.done.get("distances") or [0.0]
    print(f"wrote {args.output}: {(result.reason or 'stopped').replace('_', ' ')} after {result.steps} steps, "
          f"remaining distance mean {sum(distances) / len(distances):.2f} px, max {max(distances):.2f} px "
          f"(server session {session_id})")
    return 0


def _show_drag(event: dict) -> None:
    print(f"\rstep {event['step']}  remaining {event['max_remaining']:.2f}px", end="", file=sys.stderr, flush=True)


def remote_walk(args: argparse.Namespace) -> int:
    """``dragwalk walk --server URL ...``: each direction computed there, the walks committed there."""
    import numpy as np

    from ..directions.cli import _cli_error, load_region, parse_direction, parse_params, parse_strip

    if args.cache:
        raise _cli_error("--cache names a folder here; with --server the server's cache is used")
    amounts = list(args.amount or [])
    if len(amounts) > len(args.direction):
        raise _cli_error("more --amount values than --direction values")
    amounts += [0.0 if args.strip else 1.0] * (len(args.direction) - len(amounts))
    params = parse_params(args.param)
    try:
        with _client(args) as client:
            session = _open(client, args)
            mask = load_region(args, session.summary["resolution"])
            if mask is not None:
                from .aio import mask_b64
                session.command(type="set_mask", mask=mask_b64(mask))
            sets: dict[str, dict] = {}
            walks = []
            for text, amount in zip(args.direction, amounts):
                method, index = parse_direction(text)
                if method == "reds" and mask is None:
                    raise _cli_error("a reds direction needs a region: --mask FILE or --region X0,Y0,X1,Y1")
                if method not in sets:
                    sets[method] = session.directions(method, **params)
                if not 0 <= index < sets[method]["count"]:
                    raise _cli_error(f"{method} has {sets[method]['count']} directions; index {index} is out of range")
                kind = args.kind if args.kind != "curved" or method == "reds" else "linear"
                walks.append((sets[method]["set"], index, float(amount), kind))
            if len({(w[0], w[3]) for w in walks}) > 1 and any(w[3] != "linear" for w in walks):
                raise _cli_error("with --server, non-linear walks must all use one method")

            def walk_all(first_amount: float | None = None) -> bytes:
                """Commit the walks (one per set and kind) and return the image; linear walks add
                up, so walking set by set gives the local command's latent."""
                groups: dict[tuple[str, str], dict[int, float]] = {}
                for i, (set_id, index, amount, kind) in enumerate(walks):
                    value = first_amount if (i == 0 and first_amount is not None) else amount
                    groups.setdefault((set_id, kind), {})[index] = value
                result = None
                for (set_id, kind), chosen in groups.items():
                    result = session.walk(set_id, chosen, kind=kind)
                return result.png

            if args.strip is None:
                _write_image(walk_all(), args.output)
                if args.save_latent:
                    session.export(_latent_kind(args.save_latent), args.save_latent)
                print(f"wrote {args.output} (server session {session.id})")
                return 0
            start, stop, count = parse_strip(args.strip)
            start_cursor = session.summary["cursor"]
            images = []
            for amount in np.linspace(start, stop, count):
                images.append(_decode(walk_all(float(amount))))
                session.goto(start_cursor)
    except ClientError as exc:
        raise _fail(exc) from None
    from PIL import Image
    strip = Image.new("RGB", (sum(i.width for i in images), images[0].height))
    x = 0
    for image in images:
        strip.paste(image, (x, 0))
        x += image.width
    strip.save(args.output)
    print(f"wrote {args.output} ({count} images, amounts {start:g} .. {stop:g})")
    return 0


def _decode(png: bytes) -> Any:
    import io

    from PIL import Image
    return Image.open(io.BytesIO(png)).convert("RGB")


def remote_invert(args: argparse.Namespace) -> int:
    """``dragwalk invert --server URL photo -o latent.npz``: the photo inverted there."""
    _refuse_local_only(args, _LOCAL_ONLY_INVERT)
    kind = _latent_kind(args.output)

    def show(event: dict) -> None:
        if not args.quiet:
            print(f"\r{event['stage']} {event['step']}/{event['total']}  PSNR {event['psnr']:.2f} dB",
                  end="", file=sys.stderr, flush=True)
    try:
        with _client(args) as client:
            session = client.upload_photo(args.photo, pti=args.pti, model=args.model, steps=args.steps,
                                          pti_steps=args.pti_steps, on_progress=show)
            if not args.quiet:
                print(file=sys.stderr)
            session.export(kind, args.output)
            if args.save_image:
                _write_image(session.result().png, args.save_image)
            session_id = session.id
    except ClientError as exc:
        raise _fail(exc) from None
    print(f"wrote {args.output} (server session {session_id})")
    return 0
