"""The ``dragwalk`` command line: ``models``, ``generate``, ``serve`` and the engines' commands.

Each engine owns its sub-commands in a ``cli`` module of its own package with a
``register(subparsers)`` function; this file only lists those modules.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from .models import DEFAULT_MODEL, ModelError, list_models, load_model

#: packages whose ``cli.register(subparsers)`` adds commands (drag, walk, bench, ...)
COMMAND_MODULES: tuple[str, ...] = (
    "dragwalk.drag.cli",          # drag
    "dragwalk.directions.cli",    # directions compute, walk
    "dragwalk.inversion.cli",     # invert
    "dragwalk.server.cli",        # replay
    "dragwalk.bench.cli",         # bench NAME
)


#: commands that take ``--server URL`` -> the function that runs them on that server
REMOTE_COMMANDS: dict[str, str] = {
    "drag": "dragwalk.client.cli:remote_drag",
    "walk": "dragwalk.client.cli:remote_walk",
    "invert": "dragwalk.client.cli:remote_invert",
}


class CLIError(Exception):
    """A user mistake on the command line: printed as one line, exit status 2."""


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model`` and ``--device``, shared by every command that runs a generator."""
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help=f"built-in model name or .pkl/.safetensors path (default {DEFAULT_MODEL})")
    parser.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps")


def add_server_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """``--server URL`` and ``--token``: run ``command`` on a dragwalk server with the same
    arguments (``main`` hands it to the command's entry in :data:`REMOTE_COMMANDS`)."""
    parser.add_argument("--server", metavar="URL", default=None,
                        help="run on this dragwalk server (e.g. http://gpu-box:8000) instead of here")
    parser.add_argument("--token", default=None, help="the server's access token (default $DRAGWALK_TOKEN)")
    parser.set_defaults(remote=REMOTE_COMMANDS[command])


def open_model(args: argparse.Namespace):
    from .device import pick_device
    return load_model(args.model, pick_device(args.device))


def _cmd_models_list(args: argparse.Namespace) -> int:
    for entry in list_models():
        print(f"{entry['name']:<20} {entry['description']}")
    return 0


def _cmd_models_info(args: argparse.Namespace) -> int:
    model = load_model(args.path, "cpu")
    info = model.describe()
    info["parameters"] = sum(p.numel() for p in model.parameters())
    print(json.dumps(info, indent=2))
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from .imaging import to_pil
    import torch

    model = open_model(args)
    latent = model.sample(args.seed, truncation=args.truncation)
    with torch.no_grad():
        image = model.render(latent)
    out = Path(args.output)
    to_pil(image).save(out)
    print(f"wrote {out} ({model.resolution}x{model.resolution}, seed {args.seed})")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from .server.app import serve
    return serve(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dragwalk", description="Drag and walk editing of GAN images.")
    sub = parser.add_subparsers(dest="command", required=True)

    models = sub.add_parser("models", help="list built-in models or describe a model file")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    models_sub.add_parser("list", help="built-in models").set_defaults(func=_cmd_models_list)
    info = models_sub.add_parser("info", help="describe a model (name or file)")
    info.add_argument("path")
    info.set_defaults(func=_cmd_models_info)

    gen = sub.add_parser("generate", help="render the image of a seed")
    add_model_arguments(gen)
    gen.add_argument("--seed", type=int, required=True)
    gen.add_argument("--truncation", type=float, default=1.0)
    gen.add_argument("-o", "--output", required=True, help="output image (.png, .jpg)")
    gen.set_defaults(func=_cmd_generate)

    serve = sub.add_parser("serve", help="run the web editor")
    from .server.config import add_serve_arguments
    add_serve_arguments(serve)
    serve.set_defaults(func=_cmd_serve)

    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = args.func
    if getattr(args, "server", None):
        module, name = args.remote.split(":")
        func = getattr(importlib.import_module(module), name)
    try:
        return int(func(args) or 0)
    except (CLIError, ModelError, ValueError, FileNotFoundError) as exc:
        print(f"dragwalk: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("dragwalk: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
