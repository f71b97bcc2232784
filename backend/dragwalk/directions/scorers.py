"""Attribute scorers for face models, from dlib's 68 landmarks.

Supervised directions (InterFaceGAN, LSD) need a label per sampled latent; for
the default face model these functions provide them without a trained
classifier. Every score is a ratio of landmark distances, so it does not depend
on the image size. Index convention (0-based, iBUG 68): jaw 0-16, brows 17-26,
nose 27-35 (tip 30), eyes 36-41 / 42-47, outer lips 48-59 (corners 48, 54),
inner lips 60-67.

A face dlib does not find scores ``NaN``; callers drop those samples.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor

from .progress import checkpoint

Landmarks = np.ndarray  # [68, 2] (x, y)


def _dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


def interocular(lm: Landmarks) -> float:
    """Distance between the eye centres: the face's own length unit."""
    return max(_dist(lm[36:42].mean(0), lm[42:48].mean(0)), 1e-6)


def mouth_open(lm: Landmarks) -> float:
    """Inner-lip gap (mean of three vertical pairs) per interocular distance."""
    gap = np.mean([_dist(lm[61], lm[67]), _dist(lm[62], lm[66]), _dist(lm[63], lm[65])])
    return float(gap) / interocular(lm)


def smile_width(lm: Landmarks) -> float:
    """Mouth-corner distance per interocular distance (wider when smiling)."""
    return _dist(lm[48], lm[54]) / interocular(lm)


def _eye_aspect(eye: np.ndarray) -> float:
    return (_dist(eye[1], eye[5]) + _dist(eye[2], eye[4])) / (2 * max(_dist(eye[0], eye[3]), 1e-6))


def eye_openness(lm: Landmarks) -> float:
    """Eye aspect ratio (lid gap over eye width), mean of both eyes."""
    return (_eye_aspect(lm[36:42]) + _eye_aspect(lm[42:48])) / 2


def head_yaw(lm: Landmarks) -> float:
    """Nose tip offset from the jaw's midpoint, per jaw width (> 0: nose toward image right)."""
    left, right = lm[0], lm[16]
    width = max(abs(right[0] - left[0]), 1e-6)
    return float(lm[30][0] - (left[0] + right[0]) / 2) / width


def face_size(lm: Landmarks, resolution: int = 64) -> float:
    """Jaw width (landmarks 0-16) as a share of the image side."""
    return _dist(lm[0], lm[16]) / resolution


#: attribute name -> (scorer of 68 landmarks and the image side, what a higher score means)
SCORERS: dict[str, tuple[Callable[[Landmarks, int], float], str]] = {
    "mouth_open": (lambda lm, res: mouth_open(lm), "mouth more open"),
    "smile_width": (lambda lm, res: smile_width(lm), "wider mouth / smile"),
    "eye_openness": (lambda lm, res: eye_openness(lm), "eyes more open"),
    "head_yaw": (lambda lm, res: head_yaw(lm), "head turned toward image right"),
    "face_size": (face_size, "larger face in the frame"),
}


def check_attribute(name: str) -> str:
    if name not in SCORERS:
        raise ValueError(f"unknown attribute {name!r} (known: {', '.join(SCORERS)})")
    return name


def score_landmarks(lm: Landmarks | None, resolution: int) -> dict[str, float]:
    """Every attribute of one face (``NaN`` where no face was found)."""
    if lm is None:
        return {name: float("nan") for name in SCORERS}
    return {name: float(fn(lm, resolution)) for name, (fn, _) in SCORERS.items()}


#: threads that score faces at once: dlib's detector (most of a face's cost) runs outside Python's
#: lock with a detector per thread (``faces.FaceAnalyzer``)
SCORE_THREADS = 2


def score_images(images: Tensor, threads: int = SCORE_THREADS) -> dict[str, np.ndarray]:
    """Scores ``{attribute: [N]}`` for a batch ``[N, 3, H, W]`` in ``[-1, 1]`` (dlib, ~13 ms a face
    on one thread); ``threads`` faces at a time, each score the same as one thread's."""
    from concurrent.futures import ThreadPoolExecutor

    from ..faces import face_analyzer
    from ..imaging import to_uint8

    analyzer = face_analyzer()
    side = int(images.shape[-1])

    def one(img: Tensor) -> dict[str, float]:
        return score_landmarks(analyzer.landmarks(to_uint8(img)), side)

    if threads > 1 and len(images) > 1:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dragwalk-score") as pool:
            rows = list(pool.map(one, images))
    else:
        rows = [one(img) for img in images]
    return {name: np.array([r[name] for r in rows], dtype=np.float64) for name in SCORERS}


def score_latents(generator, latents, batch: int = 64) -> dict[str, np.ndarray]:
    """Render ``Latent`` batches and score them (``latents`` is one batched Latent).

    The next batch renders in a helper thread while dlib scores this one (torch and dlib both
    run outside Python's lock): the same scores, measured 1.35-1.75x sooner for 256 faces of the
    default model (2 torch threads, machine at load 10). The helper starts each batch after this
    thread's :func:`checkpoint`, so a paused or cancelled background run renders at most the batch
    already under way; it inherits the caller's CPU priority (a Linux thread's nice value).
    """
    from concurrent.futures import ThreadPoolExecutor

    def render(start: int) -> Tensor:
        chunk = latents.derive(latents.code[start:start + batch],
                               {k: v[start:start + batch] for k, v in latents.offsets.items()})
        with torch.no_grad():                 # grad mode is per thread
            return generator.render(chunk).cpu()

    starts = list(range(0, latents.batch, batch))
    parts: list[dict[str, np.ndarray]] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dragwalk-render") as pool:
        checkpoint()
        pending = pool.submit(render, starts[0]) if starts else None
        for i in range(len(starts)):
            images = pending.result()
            checkpoint()
            if i + 1 < len(starts):
                pending = pool.submit(render, starts[i + 1])
            parts.append(score_images(images))
    if not parts:
        return {name: np.zeros(0) for name in SCORERS}
    return {name: np.concatenate([p[name] for p in parts]) for name in SCORERS}
