"""Direction methods: compute times, region locality, attribute vs identity change, orthogonality.

``dragwalk bench directions`` on the default model with fixed seeds. Every figure
is measured in this run (nothing is read from a cache unless ``--cache`` is given):

* time to compute each method (SeFa, GANSpace with its sample count, DP-LaSE
  training, REDs for one painted region, SFVQ fit, supervised scoring + fits);
* locality (share of the pixel change inside the mouth region, divided by its
  area share) of REDs and of the top directions of every other method, each at a
  matched overall change (mean |pixel change|);
* for the landmark scorers: attribute change per unit step and identity change
  (dlib face-descriptor distance) for InterFaceGAN, LSD and the unsupervised
  direction closest to the InterFaceGAN normal;
* orthogonality of each set, and |z| along density-preserving vs linear walks.

``--regions`` runs only the region-direction table of ``bench/regions.py`` (REDs over z and
over spatial offsets, on held-out faces and four regions, against SeFa and GANSpace).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..cli import add_model_arguments

    add_model_arguments(parser)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="images for region tests")
    parser.add_argument("--ganspace-samples", type=int, default=10_000)
    parser.add_argument("--dplase-iters", type=int, default=1500)
    parser.add_argument("--scored-samples", type=int, default=1000, help="faces scored for the supervised methods")
    parser.add_argument("--faces", type=int, default=16, help="faces for the attribute/identity measure")
    parser.add_argument("--target-change", type=float, default=0.02,
                        help="mean |pixel change| (of [-1, 1] images) locality is compared at")
    parser.add_argument("--top", type=int, default=3, help="directions per method in the locality table")
    parser.add_argument("--startup", action="store_true",
                        help="only: when is every set ready after `dragwalk serve` starts, and after a second start")
    parser.add_argument("--asked", action="store_true",
                        help="with --startup: per method, how long a page that asks for the set the moment "
                             "the server serves waits, with the background search and without it")
    parser.add_argument("--times", action="store_true",
                        help="only: each set the server precomputes, timed at its defaults in the start-up "
                             "order on a fresh home (what shared work saves is in the figures)")
    parser.add_argument("--memory", action="store_true",
                        help="only the peak RSS growth of the sample-based methods (issue 13's 200 MB)")
    parser.add_argument("--quick", action="store_true", help="small settings (a smoke run, not the figures)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    parser.add_argument("--regions", action="store_true",
                        help="only the region-direction table (bench/regions.py): REDs variants on "
                             "held-out faces and four regions against the top 32 SeFa + GANSpace")
    parser.add_argument("--region-faces", type=int, default=5, help="held-out faces for --regions")
    parser.add_argument("--region-seeds-from", type=int, default=5000, help="first held-out seed for --regions")
    parser.add_argument("--region-variants", choices=["default", "all", "screen"], default="default",
                        help="REDs variants for --regions: global z, the default, 2-px cells; 'all' adds "
                             "8-px cells and offsets joint with z; 'screen' is the default against the same "
                             "set without its face screen (keep_face false)")
    parser.add_argument("--region-min-score", type=float, default=0.0,
                        help="held-out faces for --regions need at least this dlib detection score before any "
                             "edit (0: any face dlib finds, the original protocol)")
    parser.add_argument("--region-change", type=float, default=0.1,
                        help="mean |pixel change| inside the region (of [-1, 1] images) --regions compares at")


def _timed(fn, *args, **kwargs):
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - started


def _mouth_mask(generator, latent, pad: int = 3) -> tuple[np.ndarray, str]:
    """The mouth's landmark box (dlib) of this face, padded; a fixed box if no face is found."""
    from ..faces import face_analyzer
    from ..imaging import to_uint8

    res = generator.resolution
    mask = np.zeros((res, res), np.float32)
    with torch.no_grad():
        lm = face_analyzer().landmarks(to_uint8(generator.render(latent)))
    if lm is None:
        mask[int(0.70 * res):int(0.89 * res), int(0.28 * res):int(0.72 * res)] = 1
        return mask, "fixed"
    x0, y0 = np.floor(lm[48:60].min(0)).astype(int) - pad
    x1, y1 = np.ceil(lm[48:60].max(0)).astype(int) + pad
    mask[max(0, y0):min(res, y1 + 1), max(0, x0):min(res, x1 + 1)] = 1
    return mask, "landmarks"


def _curved_locality(generator, latent, reds, mask, args) -> float:
    """Locality of the curved REDs walk (4 sub-steps) at about the target change.

    Bisection would recompute REDs dozens of times, so the amount is matched with
    the straight walk and then corrected by one secant step on the curved one.
    """
    from ..directions.measures import locality, matched_amount, walk_change

    amount = matched_amount(generator, latent, reds, 0, args.target_change)
    change = walk_change(generator, latent, reds, 0, amount, "curved")
    amount *= args.target_change / max(float(change.abs().mean()), 1e-12)
    return locality(walk_change(generator, latent, reds, 0, amount, "curved"), mask)


def _locality_table(generator, sets, args) -> dict:
    from ..directions import compute_directions
    from ..directions.measures import locality, matched_amount, walk_change

    rows: dict[str, list[float]] = {}
    reds_seconds: list[float] = []
    areas = []
    for seed in args.seeds:
        latent = generator.sample(seed)
        mask_np, how = _mouth_mask(generator, latent)
        mask = torch.tensor(mask_np)
        areas.append(float(mask.mean()))
        reds, seconds = _timed(compute_directions, generator, "reds", latent=latent, mask=mask_np,
                               num=args.top, offsets="none")           # REDs over the global latent
        reds_seconds.append(seconds)
        offsets = compute_directions(generator, "reds", latent=latent, mask=mask_np, num=args.top)
        rows.setdefault("reds-curved", []).append(_curved_locality(generator, latent, reds, mask, args))
        for name, ds in [("reds", reds), ("reds-offsets", offsets), *sets.items()]:
            best = 0.0
            for i in range(min(args.top, len(ds))):
                amount = matched_amount(generator, latent, ds, i, args.target_change)
                best = max(best, locality(walk_change(generator, latent, ds, i, amount), mask))
            rows.setdefault(name, []).append(best)
    mean = {k: statistics.mean(v) for k, v in rows.items()}
    others = [k for k in mean if not k.startswith("reds")]
    best_other = max(others, key=lambda k: mean[k])
    baseline = mean[best_other]
    unsupervised = max((k for k in others if k not in ("interfacegan", "lsd")), key=lambda k: mean[k])
    return {"per_method_best_of_top": mean, "per_seed": rows, "region_area_share": areas,
            "reds_over_best_other": mean["reds"] / baseline, "best_other": best_other,
            "reds_curved_over_best_other": mean["reds-curved"] / baseline,
            "reds_over_best_unsupervised": mean["reds"] / mean[unsupervised], "best_unsupervised": unsupervised,
            "reds_seconds_per_seed": reds_seconds}


def _attribute_table(generator, sets, supervised, args) -> dict:
    from ..directions.walks import Walk, apply_walks
    from ..faces import face_analyzer, identity_distance
    from ..imaging import to_uint8
    from ..directions.scorers import score_landmarks

    analyzer = face_analyzer()
    faces = generator.sample_codes(args.faces, seed=777)
    with torch.no_grad():
        base_images = generator.render(faces)
    base_desc = [analyzer.descriptor(to_uint8(img)) for img in base_images]
    ifg, lsd = supervised["interfacegan"], supervised["lsd"]
    out = {}
    for a, attribute in enumerate(ifg.labels):
        normal = ifg.vectors[a]
        # the unsupervised direction most aligned with the boundary normal, sign matched
        best = max(((name, i) for name, ds in sets.items() for i in range(min(10, len(ds)))),
                   key=lambda t: abs(float(sets[t[0]].vectors[t[1]] @ normal)))
        cos = float(sets[best[0]].vectors[best[1]] @ normal)
        candidates = {"interfacegan": (ifg, a, 1.0), "lsd": (lsd, lsd.labels.index(attribute), 1.0),
                      f"{best[0]}:{best[1]}": (sets[best[0]], best[1], 1.0 if cos >= 0 else -1.0)}
        entry = {"closest_unsupervised_cosine": abs(cos)}
        for label, (ds, index, sign) in candidates.items():
            scores, ids = {}, []
            for step in (-1.0, 1.0):
                moved = apply_walks(generator, faces, [Walk(ds, index, sign * step)])
                with torch.no_grad():
                    images = generator.render(moved)
                vals = []
                for k, img in enumerate(images):
                    array = to_uint8(img)
                    face = analyzer.detect(array)
                    vals.append(score_landmarks(None if face is None else face.landmarks,
                                                generator.resolution)[attribute])
                    if face is not None and base_desc[k] is not None:
                        ids.append(identity_distance(analyzer.descriptor(array, face), base_desc[k]))
                scores[step] = np.array(vals)
            ok = np.isfinite(scores[-1.0]) & np.isfinite(scores[1.0])
            per_step = float(np.mean(scores[1.0][ok] - scores[-1.0][ok]) / 2) if ok.any() else float("nan")
            identity = float(np.mean(ids)) if ids else float("nan")
            entry[label] = {"attribute_per_unit_step": per_step, "identity_change_per_unit_step": identity,
                            "ratio": per_step / identity if identity else float("nan"), "faces": int(ok.sum())}
        out[attribute] = entry
    return out


def _norm_table(generator, sefa, seeds) -> dict:
    from ..directions.walks import Walk, apply_walks

    table = {}
    for kind in ("linear", "density"):
        drift = []
        for seed in seeds:
            base = generator.sample(seed)
            start = float(base.code.norm())
            for amount in (2.0, 4.0, 6.0):
                moved = apply_walks(generator, base, [Walk(sefa, 0, amount, kind)])
                drift.append(float(moved.code.norm()) - start)
        table[kind] = {"mean_norm_change": statistics.mean(drift), "max_abs_norm_change": max(map(abs, drift))}
    return table


def compute_times(args: argparse.Namespace) -> dict:
    """Seconds of each method the server precomputes, one after another in its order and with its
    parameters (``server.precompute``), on a fresh ``DRAGWALK_HOME``: the scored faces and the
    activation PCA are computed once, by the first method that needs them, as at start-up. The
    load average is printed beside the figures (a shared machine's figures mean little without)."""
    from ..cli import open_model
    from ..directions import compute_directions
    from ..server.precompute import FULL, ORDER

    generator = open_model(args)
    print(f"model {generator.name}, torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as home:
        old = os.environ.get("DRAGWALK_HOME")
        os.environ["DRAGWALK_HOME"] = home
        try:
            for method in ORDER:
                ds, seconds = _timed(compute_directions, generator, method, **FULL.get(method, {}))
                extra = {k: ds.params[k] for k in ("iterations", "stopped") if k in ds.params}
                rows[method] = {"seconds": seconds, "load": os.getloadavg()[0], **extra}
                note = ", ".join(f"{k} {v}" for k, v in extra.items())
                print(f"  {method:13s} {seconds:7.2f} s  (load {rows[method]['load']:.1f}{', ' + note if note else ''})",
                      flush=True)
        finally:
            if old is None:
                os.environ.pop("DRAGWALK_HOME", None)
            else:
                os.environ["DRAGWALK_HOME"] = old
    print(f"  all          {sum(r['seconds'] for r in rows.values()):7.2f} s")
    return {"model": generator.name, "threads": torch.get_num_threads(), "methods": rows}


def run(args: argparse.Namespace) -> int:
    from ..cli import open_model
    from ..directions import compute_directions
    from ..directions.labelled import scored_samples
    from ..directions.measures import orthogonality

    if args.quick:
        args.ganspace_samples, args.dplase_iters, args.scored_samples = 2000, 100, 300
        args.faces, args.seeds = 8, args.seeds[:1]
    if args.startup:
        from .startup import run_startup

        figures = run_startup(args)
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2, default=float))
        return 0
    if args.times:
        figures = compute_times(args)
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2, default=float))
        return 0
    if args.memory:
        from .direction_memory import memory_table

        print(f"model {args.model}: peak resident-memory growth of one default computation")
        rows = memory_table(args.model, threads=max(1, torch.get_num_threads()))
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2))
        return 0
    generator = open_model(args)
    print(f"model {generator.name}, torch threads {torch.get_num_threads()}, seeds {args.seeds}")
    if args.regions:
        from .regions import MORE_VARIANTS, SCREEN_VARIANTS, VARIANTS, region_table

        variants = {"all": {**VARIANTS, **MORE_VARIANTS}, "screen": SCREEN_VARIANTS}.get(args.region_variants, VARIANTS)
        figures = region_table(generator, args.region_seeds_from, args.region_faces, args.region_change,
                               variants=variants, ganspace_samples=args.ganspace_samples,
                               min_score=args.region_min_score)
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2, default=float))
        return 0
    times: dict[str, float] = {}
    sefa_runs = [_timed(compute_directions, generator, "sefa")[1] for _ in range(5)]
    times["sefa"] = statistics.median(sefa_runs)
    sets = {"sefa": compute_directions(generator, "sefa")}
    sets["ganspace"], times["ganspace"] = _timed(compute_directions, generator, "ganspace",
                                                 samples=args.ganspace_samples)
    print(f"  sefa {times['sefa'] * 1000:.1f} ms, ganspace ({args.ganspace_samples} samples) "
          f"{times['ganspace']:.1f} s", flush=True)
    sets["dplase"], times["dplase"] = _timed(compute_directions, generator, "dplase", iters=args.dplase_iters)
    print(f"  dplase ({sets['dplase'].params['iterations']} of {args.dplase_iters} iterations) "
          f"{times['dplase']:.1f} s", flush=True)
    sets["sfvq"], times["sfvq"] = _timed(compute_directions, generator, "sfvq")
    with tempfile.TemporaryDirectory() as home:  # score fresh samples, never a cached file
        old = os.environ.get("DRAGWALK_HOME")
        os.environ["DRAGWALK_HOME"] = home
        try:
            _, times["scoring"] = _timed(scored_samples, generator, args.scored_samples, 0)
            supervised = {}
            for method in ("interfacegan", "lsd"):
                supervised[method], times[method] = _timed(compute_directions, generator, method,
                                                           samples=args.scored_samples)
        finally:
            if old is None:
                os.environ.pop("DRAGWALK_HOME", None)
            else:
                os.environ["DRAGWALK_HOME"] = old
    print(f"  sfvq {times['sfvq']:.1f} s, scoring {args.scored_samples} faces {times['scoring']:.1f} s, "
          f"interfacegan fit {times['interfacegan']:.2f} s, lsd fit {times['lsd']:.2f} s", flush=True)
    unsupervised_and_supervised = {**sets, **supervised}
    locality = _locality_table(generator, unsupervised_and_supervised, args)
    times["reds"] = statistics.median(locality["reds_seconds_per_seed"][1:] or locality["reds_seconds_per_seed"])
    print(f"  reds (one region) {times['reds']:.2f} s (median; first call {locality['reds_seconds_per_seed'][0]:.2f} s)")
    print(f"\nlocality at mean |dI| = {args.target_change} (best of top {args.top}; 1 = uniform, "
          f"region area share {statistics.mean(locality['region_area_share']):.3f}):")
    for name, value in sorted(locality["per_method_best_of_top"].items(), key=lambda kv: -kv[1]):
        print(f"  {name:<13} {value:6.2f}")
    print(f"  REDs / best other ({locality['best_other']}): {locality['reds_over_best_other']:.2f}x; "
          f"curved REDs / best other: {locality['reds_curved_over_best_other']:.2f}x; "
          f"REDs / best unsupervised ({locality['best_unsupervised']}): "
          f"{locality['reds_over_best_unsupervised']:.2f}x")
    attributes = _attribute_table(generator, sets, supervised, args)
    print("\nattribute change per unit step / identity change (descriptor distance) per unit step:")
    for attribute, entry in attributes.items():
        parts = [f"{k}: {v['attribute_per_unit_step']:+.4f} / {v['identity_change_per_unit_step']:.3f}"
                 for k, v in entry.items() if isinstance(v, dict)]
        print(f"  {attribute:<13} " + "; ".join(parts))
    ortho = {name: orthogonality(ds.vectors) for name, ds in unsupervised_and_supervised.items()}
    print("\northogonality (max |cos| between two directions of a set):")
    print("  " + ", ".join(f"{k} {v:.3f}" for k, v in ortho.items()))
    norms = _norm_table(generator, sets["sefa"], args.seeds)
    print("|z| change along SeFa 0 walks of 2, 4, 6 units: " + ", ".join(
        f"{k} mean {v['mean_norm_change']:+.4f} (max {v['max_abs_norm_change']:.4f})" for k, v in norms.items()))
    figures = {"model": generator.name, "threads": torch.get_num_threads(), "seconds": times,
               "settings": {k: v for k, v in vars(args).items() if k != "func"},
               "locality": locality, "attributes": attributes, "orthogonality": ortho, "latent_norm": norms}
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=float))
        print(f"\nwrote {args.json}")
    return 0
