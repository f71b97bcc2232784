"""Invert a folder of photos on a remote dragwalk server and export each latent (and its
reconstruction) here.

    python examples/invert_folder.py --server http://127.0.0.1:8000 photos/ --out latents/
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from dragwalk.client import Client, ClientError

PHOTOS = (".png", ".jpg", ".jpeg", ".webp")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--server", default="http://127.0.0.1:8000")
    parser.add_argument("--token", default=os.environ.get("DRAGWALK_TOKEN"))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--pti", action="store_true", help="also tune the generator to each photo")
    parser.add_argument("--out", default="latents")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    photos = sorted(p for p in Path(args.folder).iterdir() if p.suffix.lower() in PHOTOS)
    failed = 0
    with Client(args.server, token=args.token) as client:
        for photo in photos:
            try:
                with client.upload_photo(photo, pti=args.pti, steps=args.steps) as session:
                    session.export("npz", out / f"{photo.stem}.npz")
                    session.export("png", out / f"{photo.stem}.png")
                    print(f"{photo.name}: {out / photo.stem}.npz")
            except ClientError as exc:          # one bad photo does not stop the batch
                failed += 1
                print(f"{photo.name}: refused ({exc.code}: {exc.message})")
    print(f"inverted {len(photos) - failed} of {len(photos)} photos into {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
