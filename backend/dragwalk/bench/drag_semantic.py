"""``dragwalk bench drag --semantic``: the drags users make, measured as users see them.

Faces: generated faces from ``--seed`` on (default 5000: the methods were tuned on seeds
below 1000 and from 1000 to 1011, so these faces are held out) on which dlib finds the
landmarks the drags move at least ``margin`` px inside the image (``--inside features``:
eyes, brows, nose and mouth; the chin drag runs where its target is inside). This model
frames a face with its chin at the bottom edge: the first protocol (``--inside all68``,
every landmark inside, jaw and chin too) took the rare faces small enough to fit, about
one in a hundred, which dlib barely detects (scores 0.06-0.27, where an edit of a few
pixels moves the score by about as much). Every method runs every semantic drag of
:mod:`.semantic` on every face, with no mask, to its end (a drag whose targets leave the
image is skipped). Per method the table gives:

* ``motion``: mean share of the way the handles' image patches travelled, the lowest
  single edit (``e-min``, an edit's share being the mean of its pairs) and the lowest
  single pair (``p-min``) (normalised cross-correlation on the upscaled image);
* ``lm``: dlib landmark error to the targets after the drag over before it;
* ``far``: mean change (0..255) of pixels far from every point;
* ``id 1/2/5``: median identity distance (dlib descriptor) at 1, 2 and 5 points;
* ``lost``: edits after which dlib finds no face at its default threshold, and after
  which it finds none even at threshold -0.5 ("lost hard"). These 64 px faces sit at
  detector scores of 0.0-0.2, where a perfect 3 px image warp alone flips detection;
* ``conv``: edits the method called converged, and ``agree``: edits where that word
  agrees with the independent measure (every pair's patch within the tolerance of
  :func:`dragwalk.drag.verify.tolerance`);
* time: median ms per step, mean s per edit, median ms to the first frame (for the
  warp, the warped image).

Below the methods, two reference rows. ``ideal image warp`` (:func:`ideal_warp`): each
face's own image moved by the field the default warp puts on its feature map, drawn on
the image grid and rounded to 8 bits. It is the ceiling of every measure above: what
a perfect rendering of the requested motion scores. Where it misses a target (a patch
with no texture has no position to find; these faces sit so close to dlib's detection
threshold that a perfect 3 px warp flips it) the target asks more than the measure tells.
``whole image shifted`` (:func:`rigid_shift`): the whole image moved by the drag's mean
motion, which changes no shape and no identity: the faces it loses and the identity
distance it shows are the measures' own noise on these faces.

On a model without faces (a StyleGAN2 with random weights, ``--random-stylegan2 RES``)
the drags are random 3-5 px (scaled) motions at 1, 2 and 5 points in the middle of the
image; the face columns are then empty, and the reference rows move each latent's own image.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Sequence

import numpy as np
import torch

from .semantic import CHIN, FIVE_POINTS, SEMANTIC_DRAGS, content_motion, drag_points, far_change

#: relaxed detection threshold for "lost hard"
HARD_THRESHOLD = -0.5


#: which landmarks must lie ``--margin`` inside for a face to be taken (see the module docstring)
INSIDE = {
    "features": tuple(sorted({i for d in (*SEMANTIC_DRAGS, FIVE_POINTS) for i in d.landmarks} - {CHIN})),
    "all68": tuple(range(68)),
}


def find_faces(generator, analyzer, count: int, seed: int, margin: float, limit: int = 20000,
               inside: Sequence[int] = INSIDE["features"]) -> list[dict]:
    """The first ``count`` faces from ``seed`` on whose landmarks ``inside`` all lie ``margin`` px
    inside the image."""
    from ..imaging import to_uint8

    faces: list[dict] = []
    s = seed
    side = generator.resolution - 1
    index = list(inside)
    while len(faces) < count and s < seed + limit:
        latent = generator.sample(s)
        with torch.no_grad():
            image = to_uint8(generator.render(latent))
        face = analyzer.detect(image)
        points = None if face is None else face.landmarks[index]
        if points is not None and (points >= margin).all() and (points <= side - margin).all():
            faces.append({"seed": s, "latent": latent, "image": image, "face": face,
                          "descriptor": analyzer.descriptor(image, face)})
        s += 1
    if len(faces) < count:
        raise ValueError(f"found only {len(faces)} faces with landmarks {margin} px inside in seeds {seed}..{s - 1}")
    return faces


def random_drags(image: np.ndarray, seed: int, count: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``count`` drags each of 1, 2 and 5 points, 3-5 px (at 64 px) long, in random directions.

    Handles are drawn among the most textured tenth of the image's middle (largest local
    contrast), as a user picks a distinctive feature: a flat patch has no position to
    measure, whatever the method does.
    """
    rng = np.random.default_rng(seed)
    res = image.shape[0]
    scale = res / 64.0
    grey = torch.from_numpy(image.astype(np.float32)).mean(dim=2)[None, None]
    k = 2 * int(round(3 * scale)) + 1
    mean = torch.nn.functional.avg_pool2d(grey, k, 1, k // 2)
    std = (torch.nn.functional.avg_pool2d(grey * grey, k, 1, k // 2) - mean * mean).clamp_min(0).sqrt()[0, 0]
    lo, hi = int(0.2 * res), int(0.8 * res)
    inner = std[lo:hi, lo:hi]
    ys, xs = torch.nonzero(inner >= torch.quantile(inner.flatten(), 0.9), as_tuple=True)
    candidates = np.stack([xs.numpy() + lo, ys.numpy() + lo], 1).astype(float)
    out = []
    for n in (1, 2, 5):
        for _ in range(count):
            handles = _spread(candidates, n, 12.0 * scale, rng)
            angle = rng.uniform(0, 2 * np.pi, size=n)
            length = rng.uniform(3, 5, size=n) * scale
            targets = handles + np.stack([np.cos(angle), np.sin(angle)], 1) * length[:, None]
            out.append((f"random{n}", handles, np.clip(targets, 0, res - 1)))
    return out


def _spread(candidates: np.ndarray, n: int, apart: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` random candidates at least ``apart`` px from each other where possible (points
    closer than the field radius moving in unrelated random directions would tear the image,
    which is not a drag anyone makes)."""
    picked: list[np.ndarray] = []
    for i in rng.permutation(len(candidates)):
        if all(np.linalg.norm(candidates[i] - p) >= apart for p in picked):
            picked.append(candidates[i])
            if len(picked) == n:
                break
    while len(picked) < n:
        picked.append(candidates[rng.integers(len(candidates))])
    return np.array(picked, float)


#: the reference rows: each face's image moved by the warp method's own field (:func:`ideal_warp`),
#: and the whole image moved rigidly by the drag's mean motion (:func:`rigid_shift`)
IDEAL = "ideal image warp"
RIGID = "whole image shifted"


def ideal_warp(generator, image: np.ndarray, handles: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``image`` (``H x W x 3`` uint8) moved by the field the default warp method would put on
    the model's feature map (same kind, radius and floor), drawn on the image's own grid."""
    from ..drag import field as fd
    from ..drag.method import MethodContext, model_defaults
    from ..drag.warp import WarpDrag

    context = MethodContext.at_layer(generator, generator.default_feature_layer, torch.device("cpu"))
    method = WarpDrag(context, {}, model_defaults(generator, WarpDrag.name))
    h, t = (torch.as_tensor(np.asarray(p, float), dtype=torch.float32) for p in (handles, targets))
    field = method.field(h, t, None, size=generator.image_size)
    pixels = torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1)[None]
    moved = fd.warp(pixels, field, generator.image_size)
    return moved[0].permute(1, 2, 0).clamp(0, 255).round().to(torch.uint8).numpy()


def rigid_shift(generator, image: np.ndarray, handles: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``image`` moved as a whole by the mean of the drag's motions (bilinear, edges repeated): no
    shape changes, so what this row loses or changes is the measures' own noise at these faces."""
    import torch.nn.functional as F

    shift = np.mean(np.asarray(targets, float) - np.asarray(handles, float), axis=0)
    height, width = image.shape[:2]
    pixels = torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1)[None]
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                            indexing="ij")
    grid = torch.stack([(xs - float(shift[0]) + 0.5) * 2 / width - 1, (ys - float(shift[1]) + 0.5) * 2 / height - 1],
                       dim=-1)[None]
    moved = F.grid_sample(pixels, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return moved[0].permute(1, 2, 0).clamp(0, 255).round().to(torch.uint8).numpy()


#: reference rows by name: (generator, image, handles, targets) -> the image a perfect edit of that
#: kind would show
REFERENCES = {IDEAL: ideal_warp, RIGID: rigid_shift}


def run_edit(generator, latent, handles: np.ndarray, targets: np.ndarray, config) -> dict[str, Any]:
    """Run one drag to its end: final image, steps, times, the method's verdict."""
    from ..drag import DragRun
    from ..imaging import to_uint8

    start = time.perf_counter()
    run = DragRun(generator, latent, handles.tolist(), targets.tolist(), config=config)
    with torch.no_grad():
        run.render()
    first_ms = 1000 * (time.perf_counter() - start)
    steps, step_times = 0, []
    while not run.done:
        t = time.perf_counter()
        run.step()
        step_times.append(1000 * (time.perf_counter() - t))
        steps += 1
    with torch.no_grad():
        image = to_uint8(run.render())
    return {"image": image, "steps": steps, "wall_s": time.perf_counter() - start, "first_frame_ms": first_ms,
            "ms_per_step": statistics.median(step_times) if step_times else float("nan"),
            "converged": bool(run.converged), "reason": getattr(run, "reason", None)}


def drawn_edit(reference, generator, image: np.ndarray, handles: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
    """:func:`run_edit`'s record for an edit a reference of :data:`REFERENCES` draws from ``image``:
    no steps, times or verdict."""
    nan = float("nan")
    return {"image": reference(generator, image, handles, targets), "steps": 0, "wall_s": nan,
            "first_frame_ms": nan, "ms_per_step": nan, "converged": None, "reason": None}


def independent_arrival(shares: list[float], handles: np.ndarray, targets: np.ndarray, stop: float,
                        resolution: int) -> bool:
    """Every pair's patch within the verify tolerance of its target, by the bench's own measure."""
    from ..drag.verify import tolerance

    gaps = [float(np.linalg.norm(t - h)) for h, t in zip(handles, targets)]
    moving = [g for g in gaps if g > 1e-6]
    return all((1 - s) * g <= tolerance(g, stop, resolution) + 1e-6 for s, g in zip(shares, moving))


def measure_face_edit(generator, analyzer, face: dict, drag, config=None, reference=None) -> dict[str, Any] | None:
    """One semantic drag on one face, measured on the image: run with ``config``, or drawn by a
    ``reference`` of :data:`REFERENCES` (no steps, times or verdict)."""
    from ..drag import METHODS
    from ..drag.warp import WarpDrag
    from ..faces import identity_distance

    res = generator.resolution
    handles, targets = drag_points(drag, face["face"].landmarks, res)
    if (targets < 2).any() or (targets > res - 3).any():
        return None
    if reference is not None:
        out = drawn_edit(reference, generator, face["image"], handles, targets)
    else:
        out = run_edit(generator, face["latent"], handles, targets, config)
    image = out.pop("image")
    shares = content_motion(face["image"], image, handles, targets)
    found = analyzer.detect(image)
    hard = found is not None or analyzer.detect(image, threshold=HARD_THRESHOLD) is not None
    landmarks = found.landmarks if found is not None else analyzer.landmarks_in_box(image, face["face"].box)
    idx = list(drag.landmarks)
    before = float(np.linalg.norm(face["face"].landmarks[idx] - targets, axis=1).mean())
    after = float(np.linalg.norm(landmarks[idx] - targets, axis=1).mean())
    descriptor = analyzer.descriptor(image, found if found is not None else face["face"])
    stop = METHODS[config.method if config is not None else WarpDrag.name].default_stop_distance(res, len(idx))
    arrived = independent_arrival(shares, handles, targets, stop, res)
    return {**out, "drag": drag.name, "seed": face["seed"], "points": len(idx),
            "motion": float(np.mean(shares)), "motion_min": float(np.min(shares)),
            "landmark_ratio": after / before, "far": far_change(face["image"], image, handles, targets),
            "identity": identity_distance(face["descriptor"], descriptor), "lost": found is None,
            "lost_hard": not hard, "arrived": arrived,
            "agree": None if out["converged"] is None else out["converged"] == arrived}


def measure_random_edit(generator, latent, name: str, handles, targets, config=None,
                        reference=None) -> dict[str, Any]:
    """One random drag, run with ``config`` or drawn by a ``reference`` of :data:`REFERENCES`."""
    from ..drag import METHODS
    from ..drag.warp import WarpDrag
    from ..imaging import to_uint8

    res = generator.resolution
    with torch.no_grad():
        before = to_uint8(generator.render(latent))
    if reference is not None:
        out = drawn_edit(reference, generator, before, handles, targets)
    else:
        out = run_edit(generator, latent, handles, targets, config)
    image = out.pop("image")
    shares = content_motion(before, image, handles, targets)
    stop = METHODS[config.method if config is not None else WarpDrag.name].default_stop_distance(res, len(handles))
    arrived = independent_arrival(shares, handles, targets, stop, res)
    return {**out, "drag": name, "points": len(handles), "motion": float(np.mean(shares)),
            "motion_min": float(np.min(shares)), "far": far_change(before, image, handles, targets),
            "arrived": arrived, "agree": None if out["converged"] is None else out["converged"] == arrived}


def summarise(edits: list[dict[str, Any]]) -> dict[str, Any]:
    def med(key: str, points: int | None = None) -> float:
        vals = [e[key] for e in edits if key in e and (points is None or e["points"] == points)]
        return float(np.median(vals)) if vals else float("nan")

    def count(key: str) -> int | None:
        """True answers among the edits that give one (the reference row gives none)."""
        said = [e[key] for e in edits if e.get(key) is not None]
        return sum(said) if said else None

    def mean(key: str) -> float:
        vals = [e[key] for e in edits if key in e and e[key] == e[key]]
        return float(np.mean(vals)) if vals else float("nan")

    return {
        "edits": len(edits), "motion": mean("motion"),
        "edit_min": float(min(e["motion"] for e in edits)),
        "motion_min": float(min(e["motion_min"] for e in edits)),
        "landmark_ratio": mean("landmark_ratio"), "far": mean("far"),
        "identity_1": med("identity", 1), "identity_2": med("identity", 2), "identity_5": med("identity", 5),
        "lost": sum(bool(e.get("lost")) for e in edits), "lost_hard": sum(bool(e.get("lost_hard")) for e in edits),
        "converged": count("converged"), "agree": count("agree"),
        "ms_per_step": med("ms_per_step"), "s_per_edit": mean("wall_s"), "first_frame_ms": med("first_frame_ms"),
        "reasons": {r: sum(e["reason"] == r for e in edits) for r in sorted({str(e["reason"]) for e in edits})},
    }


def format_table(result: dict[str, Any]) -> str:
    lines = [f"semantic drag benchmark: model {result['model']}, {result['subjects']}, max {result['max_steps']} "
             f"steps, torch threads {result['threads']}, no mask",
             f"{'method':<26}{'edits':>6}{'motion':>8}{'e-min':>7}{'p-min':>7}{'lm':>6}{'far':>6}{'id1':>7}{'id2':>7}"
             f"{'id5':>7}{'lost':>6}{'hard':>5}{'conv':>6}{'agree':>6}{'ms/st':>7}{'s/ed':>6}{'1st ms':>8}"]
    rows = {**result["methods"], **{f"({name})": r for name, r in result.get("reference", {}).items()}}
    for name, r in rows.items():
        verdict = "".join(f"{'-' if r[k] is None else r[k]:>6}" for k in ("converged", "agree"))
        lines.append(f"{name:<26}{r['edits']:>6}{r['motion']:>8.2f}{r['edit_min']:>7.2f}{r['motion_min']:>7.2f}"
                     f"{r['landmark_ratio']:>6.2f}{r['far']:>6.2f}{r['identity_1']:>7.3f}{r['identity_2']:>7.3f}"
                     f"{r['identity_5']:>7.3f}{r['lost']:>6}{r['lost_hard']:>5}{verdict}{r['ms_per_step']:>7.2f}"
                     f"{r['s_per_edit']:>6.2f}{r['first_frame_ms']:>8.1f}")
    lines.append("motion: share of the way the image patch travelled (1 = all the way), e-min / p-min: the lowest "
                 "edit / pair; lm: dlib landmark error after / before; far: mean change (0-255) far from the points; "
                 "id: median identity distance at 1/2/5 points; lost/hard: no face at dlib's threshold 0 / -0.5; "
                 "agree: the method's 'converged' matches the independent measure")
    if result.get("reference"):
        lines.append(f"({IDEAL}): each face's image moved by the default warp's own field, drawn on the image "
                     "grid: the ceiling of every measure, not a method")
        lines.append(f"({RIGID}): the whole image moved by the drag's mean motion, no shape change: what it "
                     "loses or changes is the measures' own noise on these faces")
    for name, r in result["methods"].items():
        lines.append(f"{name}: end reasons {r['reasons']}")
    return "\n".join(lines)


def run_semantic(args, generator, configs: dict[str, Any]) -> dict[str, Any]:
    """All methods on all drags; returns the JSON-friendly result (``edits`` holds every edit)."""
    methods: dict[str, Any] = {}
    edits_out: dict[str, Any] = {}
    reference: dict[str, Any] = {}
    if args.random_stylegan2:
        from ..imaging import to_uint8

        subjects_list = []
        for i in range(args.faces):
            latent = generator.sample(args.seed + i)
            with torch.no_grad():
                image = to_uint8(generator.render(latent))
            subjects_list.append((latent, random_drags(image, args.seed + i, 2)))
        subjects = f"{len(subjects_list)} latents x {len(subjects_list[0][1])} random drags"
        for spec, config in configs.items():
            edits = [measure_random_edit(generator, lat, name, h, t, config)
                     for lat, drags in subjects_list for name, h, t in drags]
            methods[spec], edits_out[spec] = summarise(edits), edits
        drawn = {name: [measure_random_edit(generator, lat, drag, h, t, reference=draw)
                        for lat, drags in subjects_list for drag, h, t in drags]
                 for name, draw in REFERENCES.items()}
        reference = {"reference": {name: summarise(e) for name, e in drawn.items()}, "reference_edits": drawn}
    else:
        from ..faces import face_analyzer

        analyzer = face_analyzer()
        faces = find_faces(generator, analyzer, args.faces, args.seed, args.margin * generator.resolution / 64,
                           inside=INSIDE[args.inside])
        subjects = (f"{len(faces)} held-out faces (seeds {[f['seed'] for f in faces]}, {args.inside} "
                    f"{args.margin:g} px inside)")
        for spec, config in configs.items():
            edits = []
            for face in faces:
                for drag in (*SEMANTIC_DRAGS, FIVE_POINTS):
                    e = measure_face_edit(generator, analyzer, face, drag, config)
                    if e is not None:
                        edits.append(e)
            methods[spec], edits_out[spec] = summarise(edits), edits
        drawn = {name: [e for face in faces for drag in (*SEMANTIC_DRAGS, FIVE_POINTS)
                        if (e := measure_face_edit(generator, analyzer, face, drag, reference=draw)) is not None]
                 for name, draw in REFERENCES.items()}
        reference = {"reference": {name: summarise(e) for name, e in drawn.items()}, "reference_edits": drawn}
    return {"model": generator.name, "subjects": subjects, "max_steps": args.max_steps,
            "threads": torch.get_num_threads(), "methods": methods, "edits": edits_out,
            "configs": {spec: c.to_dict() for spec, c in configs.items()}, **reference}
