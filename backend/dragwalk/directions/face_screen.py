"""Keep the face: which region directions leave a face detectable at a visible step, both ways.

A region set's top directions are nearly equally local (many reach the most local value
possible, ``1 / area``), but they are not equally safe: on a face that dlib only just finds
(detection score ~0.1), most edits of a visible size push it under the threshold, some keep it.
So a region set over a face probes its best candidates (by Rayleigh quotient, i.e. locality) at
``+probe`` and ``-probe``: the walk whose linearised mean |change| inside the region is ``probe``
(0.1 of the ``[-1, 1]`` range, the size ``dragwalk bench directions --regions`` compares at), in
both directions since a slider goes both ways. It keeps those after which the face is still
detected on both sides, in quotient order, until it has ``num`` (so a set may hold fewer than
``num``: every slider it offers keeps the face); when none keeps it, the set is the plain quotient
order (measured on a tuning face scoring 0.09: none of the top 64 keeps it both ways).

The check is dlib's HOG detector (``faces.FaceAnalyzer.detection_score``, ~13 ms a probe); the
probes stop as soon as ``num`` directions are kept, so a face found with a good margin costs
``2 num`` detections. Images without a face (other models, a non-face region of interest) and
installs without dlib skip the screen: the set is then the plain quotient order.

Opt-in (REDs parameter ``keep_face``, default off), by measurement: on the tuning faces (seeds
7001-7011) it kept one face more (an eyes case on a face scoring 0.09) at a worse identity there
(0.26 -> 0.32), on both held-out sets it changed no summary figure, and it costs 0.3-0.6 s a set,
which takes hair regions over the one-second budget (docs/ARCHITECTURE.md, "Region directions").
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from torch import Tensor

#: mean |change| inside the region (of the [-1, 1] range) at which a candidate is probed
PROBE = 0.1
#: candidates probed per requested direction (the top ``POOL * num`` by quotient)
POOL = 2
#: probes rendered together (each candidate's + and - side)
CHUNK = 4

Scorer = Callable[[np.ndarray], float]


def face_scorer() -> Scorer | None:
    """dlib's detection score of an ``H x W x 3`` uint8 image (> 0: a face is found), or ``None``
    when dlib or its model files are not installed."""
    from ..faces import FaceModelsMissing, face_analyzer

    try:
        return face_analyzer().detection_score
    except FaceModelsMissing:
        return None


def keep_face(render: Callable[[Sequence[int], Sequence[float]], Tensor], count: int, num: int,
              base_score: float, scorer: Scorer, chunk: int = CHUNK) -> tuple[list[int], list[float]]:
    """``(order, worst)``: up to ``num`` of the ``count`` candidates (best first), and the worse
    side's detection score of each candidate probed (``nan`` for those never probed).

    ``render(indices, signs)`` returns ``[n, 3, H, W]`` images in ``[-1, 1]``: candidate
    ``indices[i]`` walked to ``signs[i] * probe``. A candidate is kept when the face is still
    detected (score > 0) on both sides; ``base_score`` > 0 is the face's score before any edit.
    """
    from ..imaging import to_uint8

    if not base_score > 0:
        raise ValueError("keep_face needs a face detected before the edit (base score > 0)")
    worst = [float("nan")] * count
    kept: list[int] = []
    for start in range(0, count, max(1, chunk)):
        indices = list(range(start, min(count, start + chunk)))
        images = render(indices + indices, [1.0] * len(indices) + [-1.0] * len(indices))
        scores = [scorer(to_uint8(image)) for image in images]
        for i, k in enumerate(indices):
            worst[k] = min(scores[i], scores[i + len(indices)])
            if worst[k] > 0:
                kept.append(k)
        if len(kept) >= num:
            break
    # none keeps it (a face dlib only just finds): the screen cannot help, the most local come first
    return (kept[:num] if kept else list(range(min(num, count)))), worst
