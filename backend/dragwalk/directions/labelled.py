"""Labelled latents for the supervised methods: a person's tags, or scored samples (cached).

Scoring a face with dlib costs several milliseconds, so the scored samples of a
model are computed once and kept under ``$DRAGWALK_HOME/directions/<model>/``;
every supervised method and attribute then reuses the same file.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..home import dragwalk_home
from ..models.base import Generator
from .base import edit_space, sample_space
from .progress import KeyedLocks
from .scorers import SCORERS, check_attribute


def model_dir(root: Path, model: str) -> Path:
    """A file-system-safe folder for one model's files under ``root``."""
    return root / re.sub(r"[^A-Za-z0-9_.-]+", "_", model).strip("._")[:80]


#: one lock per scored-samples file: InterFaceGAN and LSD (different sets, so different cache
#: keys) asked at once score the faces once, and never write the same file together
_file_locks = KeyedLocks()


def scored_samples(generator: Generator, samples: int = 1000, seed: int = 0,
                   root: Path | None = None) -> tuple[Tensor, dict[str, np.ndarray]]:
    """``(codes [N, D] in the edit space, {attribute: scores [N]})``, cached on disk.

    Scores are ``NaN`` where dlib found no face.
    """
    space = edit_space(generator)
    folder = model_dir(root or dragwalk_home() / "directions", generator.name)
    path = folder / f"scored-{space}-{int(samples)}-{int(seed)}.npz"
    with _file_locks.hold(path.resolve()):
        if path.is_file():
            with np.load(path, allow_pickle=False) as data:
                if all(name in data.files for name in SCORERS):
                    return torch.from_numpy(data["codes"]), {name: data[name] for name in SCORERS}
        from .scorers import score_latents
        from ..models.base import Latent

        codes = sample_space(generator, int(samples), int(seed) + 7919, space).cpu()
        latent = Latent(space, codes.to(generator.device))
        if space == "w" and "w+" in generator.latent_spaces:
            latent = generator.convert(latent, "w+")
        scores = score_latents(generator, latent)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")   # another process may score too
        np.savez(tmp, codes=codes.numpy(), **scores)
        tmp.replace(path)
        return codes, scores


def as_codes(codes: Any, dim: int) -> Tensor:
    """A person's latents as ``[N, dim]`` floats (accepts ``[N, 1, dim]`` w+ rows too)."""
    x = torch.as_tensor(np.asarray(codes, dtype=np.float32))
    if x.dim() == 3:
        x = x[:, 0]
    if x.dim() != 2 or x.shape[1] != dim:
        raise ValueError(f"codes must be [N, {dim}], got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("codes contain NaN or infinite values")
    return x


def binary_split(scores: np.ndarray, share: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the bottom and top ``share`` of the finite scores (negatives, positives)."""
    if not 0.0 < share <= 0.5:
        raise ValueError("share must be in (0, 0.5]")
    finite = np.flatnonzero(np.isfinite(scores))
    order = finite[np.argsort(scores[finite], kind="stable")]
    if len(order) < 4:
        raise ValueError(f"only {len(order)} usable labelled samples; need at least 4")
    k = min(max(1, int(round(len(order) * share))), len(order) // 2)  # never one sample on both sides
    return order[:k], order[-k:]


def labelled_sets(generator: Generator, attribute: str | list[str] = "all", samples: int = 1000,
                  seed: int = 0, share: float = 0.25, codes: Any = None, labels: Any = None,
                  ) -> list[tuple[str, Tensor, Tensor]]:
    """``[(name, negatives [n, D], positives [m, D])]`` per attribute.

    With ``codes`` and ``labels`` (a person's tags: 1 = has it, 0 = not; or any
    numbers, split by ``share``) one set named ``attribute`` ("tag" when "all") is
    returned; otherwise the shipped scorers label cached samples.
    """
    if codes is not None or labels is not None:
        if codes is None or labels is None:
            raise ValueError("give both codes and labels (or neither, to use the scorers)")
        x = as_codes(codes, generator.latent_dim)
        y = np.asarray(labels, dtype=np.float64).reshape(-1)
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"{y.shape[0]} labels for {x.shape[0]} codes")
        if set(np.unique(y[np.isfinite(y)])) <= {0.0, 1.0}:
            neg, pos = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
            if len(neg) < 2 or len(pos) < 2:
                raise ValueError("tags need at least two samples with each label (0 and 1)")
        else:
            neg, pos = binary_split(y, share)
        name = "tag" if attribute in ("all", None) or isinstance(attribute, list) else str(attribute)
        return [(name, x[neg], x[pos])]
    names = list(SCORERS) if attribute in ("all", None) else (
        [a.strip() for a in attribute.split(",")] if isinstance(attribute, str) else list(attribute))
    names = [check_attribute(n) for n in names]
    x, scores = scored_samples(generator, samples, seed)
    out = []
    for name in names:
        neg, pos = binary_split(scores[name], share)
        out.append((name, x[neg], x[pos]))
    return out
