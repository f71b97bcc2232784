"""Independent image measures for tests: written here, sharing nothing with the drag code."""

from __future__ import annotations

import numpy as np


def ncc_locate(before: np.ndarray, after: np.ndarray, point: tuple[float, float], half: int = 4,
               search: int = 8) -> tuple[np.ndarray, float]:
    """Where the ``before`` patch around ``point`` is in ``after``: best normalised cross-correlation.

    Independent of the drag code: grey pixels only, exhaustive integer search.
    """
    a, b = before.astype(float).mean(2), after.astype(float).mean(2)
    x0, y0 = int(round(point[0])), int(round(point[1]))
    patch = a[y0 - half:y0 + half + 1, x0 - half:x0 + half + 1]
    patch = (patch - patch.mean()) / (patch.std() + 1e-6)
    best, where = -2.0, np.array([x0, y0], float)
    for dy in range(-search, search + 1):
        for dx in range(-search, search + 1):
            y, x = y0 + dy, x0 + dx
            if y - half < 0 or x - half < 0 or y + half + 1 > b.shape[0] or x + half + 1 > b.shape[1]:
                continue
            w = b[y - half:y + half + 1, x - half:x + half + 1]
            score = float(((w - w.mean()) / (w.std() + 1e-6) * patch).mean())
            if score > best:
                best, where = score, np.array([x, y], float)
    return where, best
