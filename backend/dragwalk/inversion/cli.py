"""``dragwalk invert PHOTO -o latent.(npz|json|npy) [--pti]``: a photo into an editable latent."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import add_model_arguments

    parser = sub.add_parser("invert", help="project a photo into the latent space (optionally with PTI)")
    add_model_arguments(parser)
    parser.add_argument("photo", help="PNG, JPEG or WebP file")
    parser.add_argument("-o", "--output", required=True, help="latent file (.npz, .json or .npy)")
    parser.add_argument("--pti", action="store_true", help="also fine-tune a copy of the model (pivotal tuning)")
    parser.add_argument("--steps", type=int, default=None, help="latent optimisation steps (default 300)")
    parser.add_argument("--pti-steps", type=int, default=None, help="pivotal tuning steps (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random starting latents")
    parser.add_argument("--no-align", action="store_true", help="centre-crop instead of aligning the face")
    parser.add_argument("--save-model", default=None,
                        help="where the tuned model goes with --pti (default: LATENT-pti.safetensors)")
    parser.add_argument("--save-image", default=None, help="also write the reconstruction (.png)")
    parser.add_argument("--save-target", default=None, help="also write the cropped photo it was fitted to (.png)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0 = leave as is; 1 is often fastest for small models)")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    from ..cli import add_server_arguments
    add_server_arguments(parser, "invert")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..cli import CLIError, open_model
    from ..imaging import to_pil
    from ..latent_io import save_latent
    from ..models import save_model
    from .config import InversionConfig, InversionProgress
    from .prepare import prepare_photo_info
    from .projector import invert

    out = Path(args.output)
    if out.suffix.lower() not in (".npz", ".json", ".npy"):
        raise CLIError(f"output must end in .npz, .json or .npy, not {out.suffix or 'nothing'!r}")
    if args.save_model and not args.pti:
        raise CLIError("--save-model needs --pti (without tuning the model is unchanged)")
    config = {"pti": bool(args.pti), "seed": args.seed}
    if args.steps is not None:
        config["steps"] = args.steps
    if args.pti_steps is not None:
        config["pti_steps"] = args.pti_steps
    cfg = InversionConfig.from_dict(config)
    model_path = None
    if cfg.pti:
        model_path = Path(args.save_model) if args.save_model else out.with_name(out.stem + "-pti.safetensors")
        model_path = model_path.with_suffix(".safetensors")
        if model_path.with_suffix(".json").resolve() == out.resolve():
            raise CLIError(f"the tuned model's config {model_path.with_suffix('.json')} would overwrite "
                           f"the latent; choose another --save-model")
    if out.suffix.lower() == ".npy" and cfg.offsets:
        # a .npy holds the code only: invert without spatial offsets so the file is complete
        cfg.offsets = False

    if args.threads:
        torch.set_num_threads(args.threads)
    model = open_model(args)
    prepared = prepare_photo_info(args.photo, model, align_face=not args.no_align)
    framing = "face aligned" if prepared.face_found else "centre crop (no face found)"
    print(f"{args.photo}: {framing}, {model.resolution} px", file=sys.stderr)

    live = sys.stderr.isatty()

    def show(update: InversionProgress) -> None:
        last = update.step == update.total
        if args.quiet or (update.step % 25 and not last):
            return
        text = f"{update.stage:6s} {update.step:4d}/{update.total}  PSNR {update.psnr:5.2f} dB"
        if live:  # one line rewritten in place on a terminal, one line per report otherwise
            print("\r" + text, end="\n" if last else "", file=sys.stderr, flush=True)
        else:
            print(text, file=sys.stderr, flush=True)

    result = invert(model, prepared.tensor, cfg, progress=show)
    save_latent(result.latent, out, model=model.name)
    line = f"wrote {out}: PSNR {result.psnr:.2f} dB, SSIM {result.ssim:.3f}, {result.seconds:.1f} s"
    if result.tuned:
        line += f" (latent alone on the original model: {result.psnr_latent:.2f} dB)"
    print(line)
    if result.tuned:
        assert model_path is not None
        written = save_model(result.generator, model_path)
        print(f"wrote {written} (+ {written.with_suffix('.json').name}): the tuned model; the latent "
              f"reproduces the photo only with it, e.g.\n"
              f"  dragwalk drag --model {written} --latent {out} ...\n"
              f"  dragwalk serve --model {written}")
    with torch.no_grad():
        image = result.generator.render(result.latent)
    if args.save_image:
        to_pil(image).save(args.save_image)
        print(f"wrote {args.save_image}")
    if args.save_target:
        to_pil(prepared.tensor).save(args.save_target)
        print(f"wrote {args.save_target}")
    return 0
