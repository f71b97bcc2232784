"""The ``dragwalk`` command line: ``models``, ``generate``, ``serve`` and the engines' commands.

Each engine owns its sub-commands in a ``cli`` module of its own package with a
``register(subparsers)`` function; this file only lists those modules.
"""

from __future__ import annotations

import argparse
import importlib
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
                        help=f"built-in model name or .pkl/.pt/.safetensors path (default {DEFAULT_MODEL})")
    parser.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:N, mps")


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """``--precision``, ``--channels-last`` and ``--compile`` (:mod:`dragwalk.runtime`)."""
    from .runtime import COMPILE_MODES, PRECISIONS

    parser.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="arithmetic of the forward passes (fp16 on a GPU only; default fp32)")
    parser.add_argument("--channels-last", action="store_true",
                        help="NHWC activations (pays on GPUs in half precision)")
    parser.add_argument("--compile", default="none", choices=COMPILE_MODES,
                        help="torch.compile the network's layers (default: none)")


def add_server_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """``--server URL`` and ``--token``: run ``command`` on a dragwalk server with the same
    arguments (``main`` hands it to the command's entry in :data:`REMOTE_COMMANDS`)."""
    parser.add_argument("--server", metavar="URL", default=None,
                        help="run on this dragwalk server (e.g. http://gpu-box:8000) instead of here")
    parser.add_argument("--token", default=None, help="the server's access token (default $DRAGWALK_TOKEN)")
    parser.set_defaults(remote=REMOTE_COMMANDS[command])


def open_model(args: argparse.Namespace):
    """The model ``--model``/``--device`` name, prepared for ``--channels-last``/``--compile``
    when the command has those flags."""
    from .device import pick_device
    from .runtime import Runtime, prepare

    model = load_model(args.model, pick_device(args.device))
    if hasattr(args, "precision"):
        model = prepare(model, Runtime(args.precision, args.channels_last, args.compile))
    return model


def _cmd_models_list(args: argparse.Namespace) -> int:
    for entry in list_models():
        print(f"{entry['name']:<20} {entry['description']}")
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

    models = sub.add_parser("models", help="list built-in models, describe or import a model file")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    models_sub.add_parser("list", help="built-in models").set_defaults(func=_cmd_models_list)
    from .models.cli import register as register_model_commands
    register_model_commands(models_sub)  # info, import

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
