"""``dragwalk replay`` (an edit log from the server, again, headless) and ``dragwalk protocol-schema``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import add_model_arguments

    parser = sub.add_parser("replay", help="replay an edit log (log.json from the editor) headless")
    add_model_arguments(parser)
    parser.set_defaults(model=None)
    parser.add_argument("log", help="edit log (.json, format dragwalk-log/1)")
    parser.add_argument("-o", "--output", required=True, help="final image (.png/.jpg)")
    parser.add_argument("--latent", help="also write the final latent (.npz/.json/.npy)")
    parser.add_argument("--recorded", action="store_true",
                        help="use the latents the log recorded instead of recomputing each edit")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="fail (exit 1) if a recomputed latent differs from the recorded one by more")
    parser.set_defaults(func=run)

    schema = sub.add_parser("protocol-schema", help="write the websocket protocol's JSON Schema "
                            "(docs/protocol.schema.json) from the pydantic models")
    schema.add_argument("-o", "--output", help="file to write (default: print it)")
    schema.add_argument("--check", metavar="FILE", help="exit 1 when FILE differs from the models")
    schema.set_defaults(func=run_schema)


def run_schema(args: argparse.Namespace) -> int:
    from .protocol_schema import check, render

    if args.check:
        problem = check(Path(args.check))
        print(problem or f"{args.check} matches the models")
        return 1 if problem else 0
    if args.output:
        Path(args.output).write_text(render())
        print(f"wrote {args.output}")
    else:
        print(render(), end="")
    return 0


def run(args: argparse.Namespace) -> int:
    import torch

    from ..cli import CLIError, open_model
    from ..imaging import to_pil
    from ..latent_io import save_latent
    from .replay import replay_log

    path = Path(args.log)
    if not path.is_file():
        raise CLIError(f"no edit log at {path}")
    try:
        log = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CLIError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(log, dict):
        raise CLIError(f"{path} is not an edit log")
    if args.model is None:
        args.model = log.get("model") or "digiface-dcgan64"
    generator = open_model(args)

    def show(report) -> None:
        extra = "" if report.deviation is None else f", max |diff| from recorded {report.deviation:.3g}"
        print(f"  {report.index + 1:3d}. {report.kind:<7} {report.how}{extra}")

    print(f"replaying {len(log.get('operations') or [])} operation(s) on {generator.name}")
    latent, reports = replay_log(generator, log, recompute=not args.recorded, on_op=show)
    with torch.no_grad():
        image = generator.render(latent.to(generator.device))
    to_pil(image).save(args.output)
    print(f"wrote {args.output}")
    if args.latent:
        save_latent(latent, args.latent, generator.name)
        print(f"wrote {args.latent}")
    if args.tolerance is not None:
        worst = max((r.deviation or 0.0 for r in reports), default=0.0)
        if worst > args.tolerance:
            print(f"replay differs from the recording by {worst:.3g} > {args.tolerance:g}")
            return 1
    return 0
