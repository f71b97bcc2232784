"""``dragwalk bench NAME``: each benchmark lives in its own module with ``add_arguments`` and ``run``."""

from __future__ import annotations

import argparse
import importlib

#: benchmark name -> module holding ``add_arguments(parser)`` and ``run(args) -> int``
BENCHMARKS: dict[str, str] = {
    "drag": "dragwalk.bench.drag",
    "directions": "dragwalk.bench.directions",
    "server": "dragwalk.bench.server",
    "invert": "dragwalk.bench.invert",
    "step": "dragwalk.bench.step",
    "load": "dragwalk.bench.load",
}


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="run a benchmark and print its figures")
    bench_sub = bench.add_subparsers(dest="bench_name", required=True)
    for name, module_name in BENCHMARKS.items():
        module = importlib.import_module(module_name)
        parser = bench_sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0])
        module.add_arguments(parser)
        parser.set_defaults(func=module.run)
