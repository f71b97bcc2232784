"""Region directions on held-out faces: locality at matched in-region change, identity, faces lost.

``dragwalk bench directions --regions``. For each held-out face (the first seeds from
``--region-seeds-from`` that dlib finds a face in; with ``--region-min-score``, only faces whose
detection score is at least that before any edit: a stated protocol change, since a face that
scores ~0.15 is lost by about half of all edits of this size) and each region (the dlib landmark boxes of the mouth and of the eyes, the hair above
the brows, the background beside the face), every direction of every method is walked
until the mean absolute pixel change *inside the region* equals ``--region-change``
(bisection, all directions of a set at once). At that change:

* locality = share of the change inside the region / the region's area share
  (``measures.locality``: 1 = spread evenly, ``1 / area`` = all inside);
* identity = dlib face-descriptor distance to the unedited face (in the unedited face's box);
* lost = dlib no longer detects a face it found before the edit; margin = the change of dlib's
  detection score (a face is lost when its score falls below 0; held-out faces start at 0.05-2).

A method's figure on one (face, region) is its most local direction among its ``num``; directions
within ``TIE`` (1 %) of the best count as equally local and the method's own first one among them
is taken (region sets put many directions at the cap ``1 / area``, where a plain argmax would pick
by float rounding).
The baseline is the best of the top 32 SeFa and top 32 GANSpace directions; each method's
ratio is taken per (face, region) and the median reported. Compute time is the median
wall time of one region set (after one warm-up call).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import torch

from ..directions import DirectionSet, Walk, apply_walks, compute_directions
from ..directions.measures import locality
from ..models.base import Generator, Latent

#: region-direction variants measured (name -> reds parameters)
VARIANTS: dict[str, dict[str, Any]] = {
    "reds z (global)": {"offsets": "none"},
    "reds default": {},
    "reds dilate 1": {"dilate": 1},
    "reds no edges": {"edges": 0.0, "dilate": 1},
    "reds no realism": {"realism": 0.0, "edges": 0.0, "dilate": 1},
    "reds b2 k8": {"offsets": "b2", "channels": 8},
}
#: the default against the same set with its face screen (``--region-variants screen``)
SCREEN_VARIANTS: dict[str, dict[str, Any]] = {
    "reds default": {},
    "reds face screen": {"keep_face": True},
}
#: more variants (``--region-variants all``): coarser cells, and offsets joint with z
MORE_VARIANTS: dict[str, dict[str, Any]] = {
    "reds b1 k8": {"offsets": "b1", "channels": 8},
    "reds z+b2 k4": {"offsets": "b2", "channels": 4, "joint": True},
}
REGIONS = ("mouth", "eyes", "hair", "background")
#: smallest region measured (share of the image)
MIN_AREA = 0.02
#: directions whose locality is within this share of the best count as equally local
TIE = 0.01


def region_masks(landmarks: np.ndarray, box: tuple[float, ...], res: int, pad: int = 2) -> dict[str, np.ndarray]:
    """The four regions of one face as ``res x res`` float masks (1 = region)."""
    def rect(y0: float, y1: float, x0: float, x1: float) -> np.ndarray:
        m = np.zeros((res, res), np.float32)
        m[max(0, int(np.floor(y0))):min(res, int(np.ceil(y1)) + 1),
          max(0, int(np.floor(x0))):min(res, int(np.ceil(x1)) + 1)] = 1
        return m

    def around(points: np.ndarray) -> np.ndarray:
        (x0, y0), (x1, y1) = points.min(0), points.max(0)
        return rect(y0 - pad, y1 + pad, x0 - pad, x1 + pad)

    left, top, right, bottom = box
    brow = float(landmarks[17:27, 1].min())
    hair = rect(0, brow - pad - 1, left - 2, right + 2)
    background = np.zeros((res, res), np.float32)
    background[:, :max(0, int(np.floor(min(left, landmarks[:, 0].min()) - 4)))] = 1
    background[:, min(res, int(np.ceil(max(right, landmarks[:, 0].max()) + 5))):] = 1
    return {"mouth": around(landmarks[48:68]), "eyes": around(landmarks[36:48]), "hair": hair,
            "background": background}


def _render_walks(generator: Generator, latent: Latent, dset: DirectionSet, indices: list[int],
                  amounts: list[float]) -> torch.Tensor:
    """``[n, 3, H, W]``: the image after walking direction ``indices[i]`` by ``amounts[i]``."""
    moved = [apply_walks(generator, latent, [Walk(dset, i, a)]) for i, a in zip(indices, amounts)]
    offsets = {k: torch.cat([m.offsets[k] for m in moved]) for k in moved[0].offsets}
    with torch.no_grad():
        return generator.render(moved[0].derive(torch.cat([m.code for m in moved]), offsets))


def matched_amounts(generator: Generator, latent: Latent, dset: DirectionSet, indices: list[int],
                    mask: torch.Tensor, target: float, base: torch.Tensor, iters: int = 10,
                    max_amount: float = 512.0) -> tuple[list[float], torch.Tensor]:
    """Amounts (bisection, all ``indices`` at once) whose mean |change| inside ``mask`` is ``target``."""
    inside = mask.bool()

    def sizes(amounts: list[float]) -> tuple[np.ndarray, torch.Tensor]:
        change = _render_walks(generator, latent, dset, indices, amounts) - base
        return change.abs().mean(1)[:, inside].mean(1).numpy(), change

    lo, hi = np.zeros(len(indices)), np.ones(len(indices))
    while True:
        s, _ = sizes(hi.tolist())
        grow = (s < target) & (hi < max_amount)
        if not grow.any():
            break
        lo, hi = np.where(grow, hi, lo), np.where(grow, hi * 2, hi)
    for _ in range(iters):
        mid = (lo + hi) / 2
        s, _ = sizes(mid.tolist())
        lo, hi = np.where(s < target, mid, lo), np.where(s < target, hi, mid)
    amounts = ((lo + hi) / 2).tolist()
    return amounts, sizes(amounts)[1]


def _slider_ms(generator: Generator, latent: Latent, dset: DirectionSet, moves: int = 5) -> float:
    """Median wall time of one slider move as the server does it: walk, render, JPEG-encode."""
    from ..imaging import encode

    times = []
    for i in range(moves):
        started = time.perf_counter()
        with torch.no_grad():
            encode(generator.render(apply_walks(generator, latent, [Walk(dset, 0, 0.5 * (i + 1))])), "JPEG", 90)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _faces(generator: Generator, analyzer: Any, start: int, count: int, limit: int = 200,
           min_score: float = 0.0) -> list[tuple]:
    """The first ``count`` seeds from ``start`` in which dlib finds a face scoring at least ``min_score``
    (decided before any edit: the held-out rule)."""
    from ..imaging import to_uint8

    out = []
    for seed in range(start, start + limit):
        latent = generator.sample(seed)
        with torch.no_grad():
            image = to_uint8(generator.render(latent))
        face = analyzer.detect(image)
        score = analyzer.detection_score(image) if face is not None else float("-inf")
        if face is not None and score >= min_score:
            out.append((seed, latent, face, analyzer.descriptor(image, face), score))
        if len(out) == count:
            break
    return out


def most_local(change: torch.Tensor, mask: torch.Tensor, tie: float = TIE) -> int:
    """Index of the most local of the changes ``[n, 3, H, W]``; the first among those within ``tie``
    (a share) of the best, so the method's own order decides between equally local directions."""
    locs = np.array([locality(ch, mask) for ch in change])
    return int(np.flatnonzero(locs >= locs.max() * (1.0 - tie))[0])


def _judge(analyzer: Any, change: torch.Tensor, base: torch.Tensor, mask: torch.Tensor, face: Any,
           desc: np.ndarray, score: float) -> tuple[float, float, bool, float]:
    """``(locality, identity distance, lost, detection score change)`` of the most local edit."""
    from ..faces import identity_distance
    from ..imaging import to_uint8

    best = most_local(change, mask)
    image = to_uint8((base + change[best])[None].clamp(-1, 1))
    lost = analyzer.detect(image) is None
    return (locality(change[best], mask), identity_distance(analyzer.descriptor(image, face), desc), lost,
            analyzer.detection_score(image) - score)


def region_table(generator: Generator, seeds_from: int = 5000, faces: int = 5, target: float = 0.1,
                 num: int = 8, top: int = 32, variants: dict[str, dict[str, Any]] | None = None,
                 ganspace_samples: int = 10_000, min_score: float = 0.0, log=print) -> dict[str, Any]:
    """The figures described in the module docstring (also printed through ``log``)."""
    from ..faces import face_analyzer

    if not 0.0 <= min_score <= 5.0:
        raise ValueError(f"min_score must be in [0, 5] (dlib detection scores of faces are ~0-3), got {min_score}")
    variants = VARIANTS if variants is None else variants
    analyzer = face_analyzer()
    baselines = {"sefa": compute_directions(generator, "sefa", num=top),
                 "ganspace": compute_directions(generator, "ganspace", num=top, samples=ganspace_samples)}
    held = _faces(generator, analyzer, seeds_from, faces, min_score=min_score)
    rule = f"with a detection score >= {min_score}" if min_score > 0 else "(dlib finds them)"
    log(f"held-out faces {rule}: seeds {[h[0] for h in held]}, detection scores "
        f"{[round(h[4], 2) for h in held]}; in-region change {target}")
    rows: dict[str, dict[str, list]] = {}
    warm: set[str] = set()
    slider: list[float] = []
    for seed, latent, face, desc, score in held:
        with torch.no_grad():
            base = generator.render(latent)[0]
        for region, mask_np in region_masks(face.landmarks, face.box, generator.resolution).items():
            if mask_np.mean() < MIN_AREA:     # e.g. no background beside a face that fills the width
                log(f"  seed {seed} {region}: skipped (covers {mask_np.mean():.1%} of the image)")
                continue
            mask = torch.from_numpy(mask_np)
            results: dict[str, tuple[float, float, bool, float, float]] = {}
            for name, dset in baselines.items():
                idx = list(range(len(dset)))
                _, change = matched_amounts(generator, latent, dset, idx, mask, target, base)
                results[name] = (*_judge(analyzer, change, base, mask, face, desc, score), 0.0)
            for name, params in variants.items():
                if name not in warm:          # one warm-up per variant (vmap tracing, channel basis)
                    warm.add(name)
                    compute_directions(generator, "reds", latent=latent, mask=mask_np, num=num, **params)
                started = time.perf_counter()
                try:
                    dset = compute_directions(generator, "reds", latent=latent, mask=mask_np, num=num, **params)
                except ValueError as exc:     # e.g. a region too large for a fine layer
                    log(f"    {name} on {region}: {exc}")
                    continue
                seconds = time.perf_counter() - started
                slider.append(_slider_ms(generator, latent, dset))
                idx = list(range(len(dset)))
                _, change = matched_amounts(generator, latent, dset, idx, mask, target, base)
                results[name] = (*_judge(analyzer, change, base, mask, face, desc, score), seconds)
            baseline = max(results["sefa"][0], results["ganspace"][0])
            for name, (loc, ident, lost, margin, seconds) in results.items():
                r = rows.setdefault(name, {"locality": [], "ratio": [], "identity": [], "lost": [],
                                           "margin": [], "seconds": [], "region": []})
                r["margin"].append(margin)
                r["locality"].append(loc)
                r["ratio"].append(loc / baseline)
                r["identity"].append(ident)
                r["lost"].append(bool(lost))
                r["seconds"].append(seconds)
                r["region"].append(region)
            log(f"  seed {seed} {region}: " + ", ".join(f"{k} {v[0]:.2f}/{v[1]:.2f}/{int(v[2])}/{v[3]:+.2f}/{v[4]:.2f}s"
                                                         for k, v in results.items()))
    summary = {}
    for name, r in rows.items():
        per_region = {}
        for region in REGIONS:
            sel = [i for i, g in enumerate(r["region"]) if g == region]
            if not sel:
                continue
            per_region[region] = {
                "locality": statistics.median(r["locality"][i] for i in sel),
                "ratio": statistics.median(r["ratio"][i] for i in sel),
                "identity": statistics.median(r["identity"][i] for i in sel),
                "identity_max": max(r["identity"][i] for i in sel),
                "lost": sum(r["lost"][i] for i in sel),
                "margin": statistics.median(r["margin"][i] for i in sel)}
        summary[name] = {"median_ratio": statistics.median(r["ratio"]), "cases": len(r["ratio"]),
                         "median_seconds": statistics.median(r["seconds"]), "max_seconds": max(r["seconds"]),
                         "lost": sum(r["lost"]), "regions": per_region}
    log(f"\nregion directions at mean |dI| inside the region = {target} ({len(held)} faces; "
        f"ratio = locality / best of top {top} SeFa + top {top} GANSpace, median over faces x regions)")
    log(f"  {'method':<16} {'ratio':>6} {'time s (max)':>12} {'lost':>4}  " + "  ".join(
        f"{g}: loc/ratio/id(max)/lost/margin" for g in REGIONS))
    for name, s in summary.items():
        parts = [f"{g}: {v['locality']:.2f}/{v['ratio']:.2f}/{v['identity']:.2f}({v['identity_max']:.2f})/{v['lost']}"
                 f"/{v['margin']:+.2f}"
                 for g, v in s["regions"].items()]
        log(f"  {name:<16} {s['median_ratio']:6.2f} {s['median_seconds']:5.2f} ({s['max_seconds']:4.2f}) "
            f"{s['lost']:4d}  " + "  ".join(parts))
    log(f"  slider move (walk + render + JPEG, region sets): median {statistics.median(slider):.1f} ms, "
        f"max {max(slider):.1f} ms over {len(slider)} sets")
    return {"seeds": [h[0] for h in held], "scores": [h[4] for h in held], "min_score": min_score,
            "target": target, "summary": summary, "per_face": rows,
            "slider_ms": slider}
