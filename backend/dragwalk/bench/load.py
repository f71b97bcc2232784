"""``dragwalk bench load``: loading a 1024 px network pickle against ``torch.load`` of the same tensors.

No real checkpoint can be downloaded here, so the benchmark writes one in a temporary
folder: a training snapshot ``{'G', 'D', 'G_ema', ...}`` of a 1024 px StyleGAN2 (FFHQ's
layout: 512-d z and w, 8 mapping layers, widths up to 512) or StyleGAN3 (config T), pickled
the way NVIDIA's ``torch_utils.persistence`` pickles networks, with seeded random weights
and a discriminator-sized bag of tensors for ``D`` (about 350 MB in all for StyleGAN2). The
same tensors go into a ``torch.save`` archive beside it.

Each load runs in a fresh Python process (imports done before the clock starts), ``--repeats``
times, the file in the page cache: the project's loader (``load_model``: allow-list
unpickling, conversion, a ready generator) and ``torch.load(weights_only=True)`` of the
archive. Printed: median seconds of each, their ratio, and the loader's peak resident memory
above the process's resident set before the load (``VmHWM`` - ``VmRSS``) against the file
size. Targets: ratio < 2, peak < 2 x file size.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import torch

PERSISTENCE_MODULE, PERSISTENCE_NAME = "torch_utils.persistence", "_reconstruct_persistent_obj"

_CHILD = r"""
import json, sys, time
import torch
from dragwalk.bench.step import _status_kb
import dragwalk.models.pickles, dragwalk.models.stylegan2, dragwalk.models.stylegan3
kind, path = sys.argv[1], sys.argv[2]
base = _status_kb("VmRSS")
start = time.perf_counter()
if kind == "torch":
    obj = torch.load(path, map_location="cpu", weights_only=True)
else:
    from dragwalk.models.registry import _load_path
    from pathlib import Path
    obj = _load_path(Path(path))
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_mb": (_status_kb("VmHWM") - base) / 1024}))
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", choices=("stylegan2", "stylegan3"), default="stylegan2")
    parser.add_argument("--resolution", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3, help="fresh-process loads of each kind")
    parser.add_argument("--dir", default=None, help="where to write the files (default: a temporary folder)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")


def _generator(arch: str, resolution: int, seed: int):
    torch.manual_seed(seed)
    if arch == "stylegan2":
        from ..models.stylegan2 import StyleGAN2Generator
        return StyleGAN2Generator(512, 0, 512, resolution, mapping_kwargs={"num_layers": 8},
                                  synthesis_kwargs={"channel_base": 32768, "channel_max": 512,
                                                    "num_fp16_res": 4, "conv_clamp": 256})
    from ..models.stylegan3 import StyleGAN3Generator
    return StyleGAN3Generator(512, 0, 512, resolution, synthesis_kwargs={"channel_base": 32768, "channel_max": 512})


class _Record:
    """A network as ``torch_utils.persistence`` pickles it: a reduce to the persistence global."""

    def __init__(self, class_name: str, state: dict):
        self.class_name, self.state = class_name, state


def _records(tensors: dict[str, torch.Tensor], class_name: str, init_kwargs: dict | None = None) -> _Record:
    """Nested records from dotted tensor names (tensors of a module sit in its ``_parameters``)."""
    own = {k: v for k, v in tensors.items() if "." not in k}
    children: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if "." in k:
            head, tail = k.split(".", 1)
            children.setdefault(head, {})[tail] = v
    state = {"training": False, "_parameters": own, "_buffers": {}, "_init_args": (),
             "_init_kwargs": dict(init_kwargs or {}),
             "_modules": {name: _records(sub, "Module") for name, sub in children.items()}}
    return _Record(class_name, state)


def _reconstruct_stub(meta):  # stands for the persistence global; never called here
    raise RuntimeError("stub")


def write_snapshot(arch: str, resolution: int, folder: Path) -> tuple[Path, Path]:
    """The network pickle and the ``torch.save`` archive of the same tensors."""
    g_ema = _generator(arch, resolution, 0)
    kwargs = g_ema.config()
    ema = {k: v.contiguous() for k, v in g_ema.state_dict().items()}
    g = {k: v.clone() for k, v in ema.items()}
    gen = torch.Generator().manual_seed(1)
    d = {f"b{i}.conv{j}.weight": torch.randn(512 if i < 6 else 256, 512 if i < 6 else 256, 3, 3, generator=gen)
         for i in range(9) for j in range(2)}
    module = types.ModuleType(PERSISTENCE_MODULE)
    _reconstruct_stub.__module__, _reconstruct_stub.__qualname__ = PERSISTENCE_MODULE, PERSISTENCE_NAME
    setattr(module, PERSISTENCE_NAME, _reconstruct_stub)

    class Pickler(pickle.Pickler):
        def reducer_override(self, obj):
            if isinstance(obj, _Record):
                meta = {"type": "class", "version": 4, "module_src": "", "class_name": obj.class_name,
                        "state": obj.state}
                return _reconstruct_stub, (meta,)
            return NotImplemented

    pkl, pt = folder / f"{arch}-{resolution}.pkl", folder / f"{arch}-{resolution}.pt"
    parent = PERSISTENCE_MODULE.split(".")[0]
    added = [name for name in (parent, PERSISTENCE_MODULE) if name not in sys.modules]
    sys.modules.setdefault(parent, types.ModuleType(parent))
    sys.modules[PERSISTENCE_MODULE] = module
    try:
        with open(pkl, "wb") as f:
            Pickler(f, protocol=4).dump({"G": _records(g, "Generator", kwargs), "D": _records(d, "Discriminator"),
                                         "G_ema": _records(ema, "Generator", kwargs), "augment_pipe": None})
    finally:
        for name in added:
            sys.modules.pop(name, None)
    torch.save({"G": g, "D": d, "G_ema": ema}, pt)
    return pkl, pt


def _child(kind: str, path: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    out = subprocess.run([sys.executable, "-c", _CHILD, kind, str(path)], capture_output=True, text=True,
                         env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} load failed: {out.stderr.strip()[-500:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        pkl, pt = write_snapshot(args.arch, args.resolution, Path(tmp))
        size_mb, pt_mb = pkl.stat().st_size / 2 ** 20, pt.stat().st_size / 2 ** 20
        runs: dict[str, list[dict]] = {"torch": [], "dragwalk": []}
        for _ in range(args.repeats):  # interleaved, so machine load hits both alike
            runs["torch"].append(_child("torch", pt))
            runs["dragwalk"].append(_child("dragwalk", pkl))
    t_torch = statistics.median(r["seconds"] for r in runs["torch"])
    t_ours = statistics.median(r["seconds"] for r in runs["dragwalk"])
    peak = max(r["peak_mb"] for r in runs["dragwalk"])
    figures = {"arch": args.arch, "resolution": args.resolution, "pickle_mb": round(size_mb, 1),
               "torch_save_mb": round(pt_mb, 1),
               "torch_load_s": round(t_torch, 3), "dragwalk_load_s": round(t_ours, 3),
               "time_ratio": round(t_ours / t_torch, 2), "dragwalk_peak_mb": round(peak, 1),
               "torch_load_peak_mb": round(max(r["peak_mb"] for r in runs["torch"]), 1),
               "peak_over_file": round(peak / size_mb, 2)}
    figures["targets_met"] = figures["time_ratio"] < 2 and figures["peak_over_file"] < 2
    for key, value in figures.items():
        print(f"{key:<20} {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0
