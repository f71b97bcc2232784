"""Batch drag over many seeds on a remote dragwalk server: the same drag on each seed's face,
every result saved as PNG + latent.

    python examples/batch_drag.py --server http://127.0.0.1:8000 --seeds 0-9 --out drags/
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from dragwalk.client import Client


def seeds(text: str) -> list[int]:
    """``"0-9"`` or ``"1,5,7"``."""
    if "-" in text:
        first, last = text.split("-")
        return list(range(int(first), int(last) + 1))
    return [int(s) for s in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="http://127.0.0.1:8000")
    parser.add_argument("--token", default=os.environ.get("DRAGWALK_TOKEN"))
    parser.add_argument("--seeds", default="0-9")
    parser.add_argument("--points", default="30,40->34,40", help='"x,y->x,y;..." as for `dragwalk drag`')
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--out", default="drags")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with Client(args.server, token=args.token) as client:
        for seed in seeds(args.seeds):
            with client.open_session(seed=seed) as session:
                result = session.drag(args.points, max_steps=args.steps)
                result.save(out / f"seed{seed}.png", out / f"seed{seed}.npz")
                print(f"seed {seed}: {result.reason} after {result.steps} steps")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
