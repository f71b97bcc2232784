"""A slider sweep on a remote dragwalk server: the first directions of a method, each walked from
-amount to +amount, written as one contact sheet (a row per direction).

    python examples/slider_sweep.py --server http://127.0.0.1:8000 --seed 3 --method sefa -o sheet.png
"""

from __future__ import annotations

import argparse
import os

import numpy as np
from PIL import Image

from dragwalk.client import Client


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="http://127.0.0.1:8000")
    parser.add_argument("--token", default=os.environ.get("DRAGWALK_TOKEN"))
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--method", default="sefa")
    parser.add_argument("--directions", type=int, default=4, help="rows: the first N directions")
    parser.add_argument("--amount", type=float, default=3.0)
    parser.add_argument("--count", type=int, default=5, help="columns: positions from -amount to +amount")
    parser.add_argument("-o", "--output", default="sheet.png")
    args = parser.parse_args(argv)
    with Client(args.server, token=args.token) as client, client.open_session(seed=args.seed) as session:
        found = session.directions(args.method, num=max(args.directions, 4))
        start = session.summary["cursor"]
        rows = []
        for index in range(args.directions):
            row = []
            for amount in np.linspace(-args.amount, args.amount, args.count):
                row.append(session.walk(found, {index: float(amount)}).image().convert("RGB"))
                session.goto(start)                 # each position walks from the same image
            rows.append(row)
    width, height = rows[0][0].size
    sheet = Image.new("RGB", (width * args.count, height * len(rows)))
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            sheet.paste(image, (c * width, r * height))
    sheet.save(args.output)
    print(f"wrote {args.output}: {len(rows)} directions x {args.count} positions")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
