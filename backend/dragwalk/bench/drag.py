"""Drag benchmark: DragGAN's face-landmark protocol on a model, per method.

Protocol (DragGAN, Table 1, restated): take pairs of generated faces on which dlib
finds a face; drag the first face's landmarks to the second face's landmarks with
1, 5 and 68 points; detect landmarks on the result. MD is the mean distance (model
px) between the *dragged* landmarks detected on the result and their targets; "no
edit" is the same distance on the unedited first face. Also: MD relative to no edit,
how many edits converged (stop distance reached before max steps), identity change
(dlib face-descriptor distance original -> result), steps, wall time per edit and
per step, and the median time of a truncated step beside a full-forward step.
"moved" checks the motion without dlib: how far each handle's image patch really
travelled towards its target (normalised cross-correlation). The table also gives dlib's own landmark jitter ("dlib floor": MD on unedited faces
shifted by one pixel), the lowest MD any edit can be measured at on this model.

Point subsets: 1 point = nose tip (30); 5 points = outer eye corners (36, 45), nose
tip (30), mouth corners (48, 54); 68 = all. Pairs come from fixed seeds, so a run is
reproducible; timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: landmark indices dragged in each setting (iBUG 68-point numbering, 0-based)
POINT_SETS: dict[int, list[int]] = {1: [30], 5: [36, 45, 30, 48, 54], 68: list(range(68))}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..cli import add_model_arguments
    add_model_arguments(parser)
    parser.add_argument("--pairs", type=int, default=8, help="face pairs (default 8)")
    parser.add_argument("--methods", default=None,
                        help="comma-separated methods, each optionally with settings: "
                             "'draggan,freedrag:lr=0.01:mode=z' (default: every registered method)")
    parser.add_argument("--points", default="1,5,68", help="point settings to run (default 1,5,68)")
    parser.add_argument("--max-steps", type=int, default=300, help="step cap per edit (default 300, as DragGAN)")
    parser.add_argument("--seed", type=int, default=None,
                        help="first seed searched for faces (default 0; 5000 with --semantic: faces the "
                             "methods were not tuned on)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = leave as is)")
    parser.add_argument("--timing-steps", type=int, default=20,
                        help="steps of each kind for the truncated vs full-forward step timing")
    parser.add_argument("--semantic", action="store_true",
                        help="run the semantic drags (smile, open mouth, chin, nose, brows, eyes, 5 points) "
                             "on held-out faces instead of the landmark-transfer protocol")
    parser.add_argument("--faces", type=int, default=6, help="--semantic: faces (or latents) to edit (default 6)")
    parser.add_argument("--margin", type=float, default=4.0,
                        help="--semantic: landmarks at least this many px (at 64 px) inside the image")
    parser.add_argument("--inside", choices=("features", "all68"), default="features",
                        help="--semantic: which landmarks must lie --margin inside: the eyes, brows, nose and "
                             "mouth the drags move (default), or all 68 (the first protocol: only rare, small "
                             "faces fit, since this model frames the chin at the bottom edge)")
    parser.add_argument("--random-stylegan2", type=int, default=0, metavar="RES",
                        help="--semantic: a StyleGAN2 of this resolution with seeded random weights "
                             "(random 3-5 px drags, no face measures) instead of --model")
    parser.add_argument("--json", default=None, help="write all figures to this JSON file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_method_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"name:key=value:key=value"`` -> (name, DragConfig keyword arguments incl. ``params``)."""
    from ..drag import DragConfig
    from dataclasses import fields

    name, *settings = [part.strip() for part in spec.split(":")]
    known = {f.name for f in fields(DragConfig)} - {"method", "params", "max_steps"}
    config: dict[str, Any] = {"params": {}}
    for item in settings:
        if "=" not in item:
            raise ValueError(f"method setting {item!r} in {spec!r} is not key=value")
        key, value = item.split("=", 1)
        parsed: Any = value
        try:
            parsed = float(value)
        except ValueError:
            pass
        if key in known:
            config[key] = parsed
        else:
            config["params"][key] = parsed
    return name, config


def find_pairs(generator, analyzer, count: int, seed: int, limit: int = 2000) -> list[dict[str, Any]]:
    """Consecutive faces (by seed) that dlib detects with all 68 landmarks inside the image,
    paired up: fixed seeds -> same pairs."""
    from ..imaging import to_uint8

    faces: list[dict[str, Any]] = []
    s = seed
    while len(faces) < 2 * count and s < seed + limit:
        latent = generator.sample(s)
        with torch.no_grad():
            image = to_uint8(generator.render(latent))
        face = analyzer.detect(image)
        side = generator.resolution - 1
        if face is not None and (face.landmarks >= 0).all() and (face.landmarks <= side).all():
            faces.append({"seed": s, "latent": latent, "image": image, "face": face,
                          "descriptor": analyzer.descriptor(image, face)})
        s += 1
    if len(faces) < 2 * count:
        raise ValueError(f"found only {len(faces)} detectable faces in seeds {seed}..{s - 1}")
    return [{"source": faces[2 * i], "target": faces[2 * i + 1]} for i in range(count)]


def patch_locate(before: np.ndarray, after: np.ndarray, point: np.ndarray, half: int = 4,
                 search: int = 8) -> np.ndarray:
    """Where the grey ``before`` patch around ``point`` is in ``after`` (best normalised
    cross-correlation over integer shifts): an image-space check independent of the
    drag's own feature tracking."""
    from numpy.lib.stride_tricks import sliding_window_view

    a, b = before.astype(float).mean(2), after.astype(float).mean(2)
    size = a.shape[0]
    x0 = int(np.clip(round(point[0]), half, size - half - 1))
    y0 = int(np.clip(round(point[1]), half, size - half - 1))
    patch = a[y0 - half:y0 + half + 1, x0 - half:x0 + half + 1]
    patch = (patch - patch.mean()) / (patch.std() + 1e-6)
    lo_y, hi_y = max(half, y0 - search), min(size - half - 1, y0 + search)
    lo_x, hi_x = max(half, x0 - search), min(size - half - 1, x0 + search)
    region = b[lo_y - half:hi_y + half + 1, lo_x - half:hi_x + half + 1]
    windows = sliding_window_view(region, (2 * half + 1, 2 * half + 1))
    mean = windows.mean(axis=(2, 3), keepdims=True)
    std = windows.std(axis=(2, 3), keepdims=True) + 1e-6
    score = (((windows - mean) / std) * patch).mean(axis=(2, 3))
    iy, ix = np.unravel_index(int(score.argmax()), score.shape)
    return np.array([lo_x + ix, lo_y + iy], float)


def content_moved(before: np.ndarray, after: np.ndarray, handles: np.ndarray, targets: np.ndarray) -> float:
    """Mean share of the way each handle's image patch really travelled to its target
    (1 = on target, 0 = stayed, < 0 = went elsewhere); handles under 2 px from their
    target are skipped. NaN when none is left."""
    shares = []
    for h, t in zip(handles, targets):
        gap = float(np.linalg.norm(t - h))
        if gap >= 2.0:
            found = patch_locate(before, after, h)
            shares.append(1.0 - float(np.linalg.norm(found - t)) / gap)
    return float(np.mean(shares)) if shares else float("nan")


def measure_edit(generator, analyzer, pair: dict[str, Any], idx: list[int], config) -> dict[str, Any]:
    """Run one edit to the end and measure it."""
    from ..drag import DragRun
    from ..imaging import to_uint8

    src, dst = pair["source"], pair["target"]
    handles = src["face"].landmarks[idx]
    targets = dst["face"].landmarks[idx]
    start = time.perf_counter()
    run = DragRun(generator, src["latent"], handles.tolist(), targets.tolist(), config=config)
    steps = 0
    while not run.done:
        run.step()
        steps += 1
    with torch.no_grad():
        image = to_uint8(run.render())
    wall = time.perf_counter() - start
    face = analyzer.detect(image)
    lost = face is None
    landmarks = analyzer.landmarks_in_box(image, src["face"].box) if lost else face.landmarks
    descriptor = analyzer.descriptor(image, face if face is not None else src["face"])
    md = float(np.linalg.norm(landmarks[idx] - targets, axis=1).mean())
    from ..faces import identity_distance
    moved = content_moved(src["image"], image, handles, targets)
    return {"md": md, "moved": moved, "converged": run.converged, "steps": steps, "wall_s": wall,
            "ms_per_step": 1000 * wall / max(steps, 1), "face_lost": lost,
            "identity": identity_distance(src["descriptor"], descriptor)}


def noise_floor(analyzer, pairs: list[dict[str, Any]], idx: list[int]) -> float:
    """MD of dlib on copies of the unedited faces shifted by one pixel (landmarks shifted too).

    No edit can be measured below this: it is dlib's own landmark jitter at this resolution.
    """
    dists = []
    for pair in pairs:
        for face in (pair["source"], pair["target"]):
            for dx, dy in ((1, 0), (0, 1), (-1, 0), (0, -1)):
                moved = np.roll(np.roll(face["image"], dy, axis=0), dx, axis=1)
                found = analyzer.detect(moved)
                if found is not None:
                    expected = face["face"].landmarks[idx] + np.array([dx, dy])
                    dists.append(np.linalg.norm(found.landmarks[idx] - expected, axis=1).mean())
    return float(np.mean(dists)) if dists else float("nan")


def step_timing(generator, pair: dict[str, Any], config, n: int) -> dict[str, float]:
    """Median ms of a truncated step and of a full-forward (rendering) step, interleaved."""
    from ..drag import DragRun

    src, dst = pair["source"], pair["target"]
    idx = POINT_SETS[1]
    cfg = type(config).from_dict({**config.to_dict(), "max_steps": 4 * n + 10, "stop_distance": 0.01})
    run = DragRun(generator, src["latent"], src["face"].landmarks[idx].tolist(),
                  dst["face"].landmarks[idx].tolist(), config=cfg)
    truncated, full = [], []
    for i in range(2 * n):
        if run.done:
            break
        render = i % 2 == 1
        t = time.perf_counter()
        run.step(render=render)
        (full if render else truncated).append(1000 * (time.perf_counter() - t))
    return {"truncated_ms": statistics.median(truncated) if truncated else float("nan"),
            "full_forward_ms": statistics.median(full) if full else float("nan")}


def summarise(edits: list[dict[str, Any]], no_edit: float) -> dict[str, Any]:
    md = float(np.mean([e["md"] for e in edits]))
    return {
        "md": md, "md_rel": md / no_edit if no_edit > 0 else float("nan"),
        "moved_mean": float(np.nanmean([e["moved"] for e in edits])) if any(
            e["moved"] == e["moved"] for e in edits) else float("nan"),
        "converged": sum(e["converged"] for e in edits), "edits": len(edits),
        "faces_lost": sum(e["face_lost"] for e in edits),
        "identity_median": float(np.median([e["identity"] for e in edits])),
        "steps_mean": float(np.mean([e["steps"] for e in edits])),
        "wall_s_mean": float(np.mean([e["wall_s"] for e in edits])),
        "ms_per_step_median": float(np.median([e["ms_per_step"] for e in edits])),
    }


def format_table(result: dict[str, Any]) -> str:
    settings = result["settings"]
    lines = [f"drag benchmark: model {result['model']}, {result['pairs']} pairs, max {result['max_steps']} steps, "
             f"torch threads {result['threads']}",
             f"{'method':<32}{'pts':>4}{'MD':>7}{'MD/none':>9}{'moved':>7}{'conv':>7}{'lost':>5}{'id med':>8}"
             f"{'steps':>7}{'s/edit':>8}{'ms/step':>9}"]
    for n in settings:
        none, floor = result["no_edit"][str(n)], result["dlib_floor"][str(n)]
        lines.append(f"{'no edit':<32}{n:>4}{none:>7.2f}{1.0:>9.2f}")
        lines.append(f"{'dlib floor (1 px shifted)':<32}{n:>4}{floor:>7.2f}{floor / none:>9.2f}")
        for name, per in result["methods"].items():
            r = per[str(n)]
            lines.append(f"{name:<32}{n:>4}{r['md']:>7.2f}{r['md_rel']:>9.2f}{r['moved_mean']:>7.2f}{r['converged']:>4}/{r['edits']:<2}"
                         f"{r['faces_lost']:>5}{r['identity_median']:>8.3f}{r['steps_mean']:>7.1f}"
                         f"{r['wall_s_mean']:>8.2f}{r['ms_per_step_median']:>9.2f}")
    for name, t in result["step_timing"].items():
        lines.append(f"step time {name}: truncated {t['truncated_ms']:.2f} ms, full forward "
                     f"{t['full_forward_ms']:.2f} ms (median, 1 point, interleaved)")
    lines.append("dlib floor: MD of dlib on unedited faces shifted by 1 px; no edit can score below it")
    lines.append("moved: share of the way the handles' image patches travelled to their targets "
                 "(normalised cross-correlation, independent of the drag's tracking; 1 = all the way)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..cli import open_model
    from ..drag import METHODS, DragConfig
    from ..faces import face_analyzer

    if args.pairs < 1:
        raise ValueError("--pairs must be at least 1")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    settings = [int(s) for s in args.points.split(",") if s.strip()]
    bad = [s for s in settings if s not in POINT_SETS]
    if bad:
        raise ValueError(f"--points: unknown setting(s) {bad} (known: 1, 5, 68)")
    specs = [s.strip() for s in (args.methods or ",".join(METHODS)).split(",") if s.strip()]
    configs = {}
    for spec in specs:
        name, kwargs = parse_method_spec(spec)
        configs[spec] = DragConfig(method=name, max_steps=args.max_steps, **kwargs)
    if args.semantic:
        args.seed = 5000 if args.seed is None else args.seed
        return _run_semantic(args, configs)
    args.seed = 0 if args.seed is None else args.seed
    generator = open_model(args)
    analyzer = face_analyzer()
    pairs = find_pairs(generator, analyzer, args.pairs, args.seed)
    no_edit = {str(n): float(np.mean([np.linalg.norm(p["source"]["face"].landmarks[POINT_SETS[n]]
                                                     - p["target"]["face"].landmarks[POINT_SETS[n]], axis=1).mean()
                                      for p in pairs])) for n in settings}
    floor = {str(n): noise_floor(analyzer, pairs, POINT_SETS[n]) for n in settings}
    total = len(configs) * len(settings) * len(pairs)
    bar = None
    if not args.no_progress:
        from tqdm import tqdm
        bar = tqdm(total=total, desc="drag bench", unit="edit", file=sys.stderr, leave=False)
    methods: dict[str, Any] = {}
    edits_out: dict[str, Any] = {}
    for spec, config in configs.items():
        methods[spec], edits_out[spec] = {}, {}
        for n in settings:
            edits = []
            for pair in pairs:
                edits.append(measure_edit(generator, analyzer, pair, POINT_SETS[n], config))
                if bar:
                    bar.update(1)
            methods[spec][str(n)] = summarise(edits, no_edit[str(n)])
            edits_out[spec][str(n)] = edits
    if bar:
        bar.close()
    timing = {spec: step_timing(generator, pairs[0], config, args.timing_steps) for spec, config in configs.items()}
    result = {
        "model": generator.name, "pairs": len(pairs), "max_steps": args.max_steps,
        "threads": torch.get_num_threads(), "settings": settings,
        "pair_seeds": [[p["source"]["seed"], p["target"]["seed"]] for p in pairs],
        "no_edit": no_edit, "dlib_floor": floor, "methods": methods, "step_timing": timing,
        "configs": {spec: c.to_dict() for spec, c in configs.items()}, "edits": edits_out,
    }
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return 0


def random_stylegan2(resolution: int, seed: int = 0):
    """A StyleGAN2 with seeded random weights and an FFHQ-like layout (narrower, for CPUs):
    a stand-in for drag mechanics where no real network can be downloaded."""
    from ..models.stylegan2 import StyleGAN2Generator

    torch.manual_seed(seed)
    model = StyleGAN2Generator(z_dim=128, w_dim=128, img_resolution=resolution,
                               mapping_kwargs={"num_layers": 2},
                               synthesis_kwargs={"channel_base": 4096, "channel_max": 128},
                               name=f"random-stylegan2-{resolution}")
    model = model.eval().requires_grad_(False)
    # random ToRGB weights saturate the image to flat colour: scale them to an image std of 0.5
    with torch.no_grad():
        ws = model.sample(seed, space="w+", batch=4).code
        raw = model.synthesis(ws)
        gain = 0.5 / float(raw.std().clamp_min(1e-6))
        for _, block in model.synthesis.blocks():
            if block.num_torgb:
                block.torgb.weight.mul_(gain)
                block.torgb.bias.mul_(gain)
    return model


def _run_semantic(args: argparse.Namespace, configs: dict) -> int:
    from ..cli import open_model
    from .drag_semantic import format_table as semantic_table, run_semantic

    generator = random_stylegan2(args.random_stylegan2) if args.random_stylegan2 else open_model(args)
    result = run_semantic(args, generator, configs)
    print(semantic_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=float))
        print(f"wrote {args.json}")
    return 0
