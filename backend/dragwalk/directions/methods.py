"""The method table the UI's picker reads, and the one entry point that runs a method.

``METHODS`` is plain JSON-friendly data (the server can send it as is):
``name -> {label, description, params: {name: default}, needs_mask, needs_labels,
needs_latent, walk_kinds, cacheable}``, and ``only_with: {switch: [parameters]}`` where
parameters act only with a switch on. Methods live in their own modules; this
file only knows their names and defaults.
"""

from __future__ import annotations

import hashlib
import importlib
from typing import Any

import numpy as np

from .. import __version__
from ..models.base import Generator
from . import progress
from .base import VERSION, DirectionSet, model_fingerprint
from .ranges import check_params

#: per-request inputs (not parameters: they are not part of a cache key by value)
INPUTS = ("latent", "mask", "codes", "labels")
#: values of a switch (``only_with``) under which the parameters it governs do nothing: a request
#: that sets one of those to anything but its default is refused, never silently ignored
SWITCHED_OFF = (None, "none", "")

METHODS: dict[str, dict[str, Any]] = {
    "sefa": {
        "label": "SeFa",
        "description": "Closed-form factorisation of the first linear map: directions that change "
                       "the generator's first layer most. Instant.",
        "params": {"num": 32, "layers": None},
        "needs_mask": False, "needs_labels": False, "needs_latent": False,
        "walk_kinds": ["linear", "density"], "cacheable": True,
    },
    "ganspace": {
        "label": "GANSpace",
        "description": "Principal components of sampled latents (or of an early activation, "
                       "regressed back to z). A few seconds.",
        "params": {"num": 80, "samples": 10_000, "layer": None, "layers": None, "seed": 0},
        "needs_mask": False, "needs_labels": False, "needs_latent": False,
        "walk_kinds": ["linear", "density"], "cacheable": True,
    },
    "dplase": {
        "label": "DP-LaSE",
        "description": "Learned directions: maximal, uncorrelated change of an early layer with "
                       "density-preserving endpoints, refined to channel groups. Stops when its "
                       "objective flattens: about a minute on a CPU; computed once per model.",
        "params": {"k": 20, "layer": None, "iters": 1500, "batch": 16, "lr": 3e-3, "eps_max": 10.0,
                   "groups": 6, "refine": True, "seed": 0, "tol": 0.02, "time_limit": 240.0},
        "needs_mask": False, "needs_labels": False, "needs_latent": False,
        "walk_kinds": ["density", "linear"], "cacheable": True,
    },
    "reds": {
        "label": "REDs (painted region)",
        "description": "Rayleigh EigenDirections: edits that change the pixels inside the painted "
                       "region and hold those outside, at the current image. Under a second.",
        "params": {"num": 8, "beta_f": 0.99, "beta_c": 0.999, "solver": "generalized",
                   "layers": None, "seed": 0, "offsets": "auto", "joint": False, "channels": 4,
                   "dilate": 0, "realism": 10.0, "edges": 1.0, "keep_face": False},
        # these shape the directions over an activation's offsets; over the code they do nothing
        "only_with": {"offsets": ["joint", "channels", "dilate", "realism", "edges", "keep_face"]},
        "needs_mask": True, "needs_labels": False, "needs_latent": True,
        "walk_kinds": ["linear", "curved"], "cacheable": False,
    },
    "sfvq": {
        "label": "SFVQ curve",
        "description": "A space-filling curve through the latent data; each segment is a direction "
                       "and points along it give controllable variations. A few seconds.",
        "params": {"bits": 5, "samples": 10_000, "pcs": 20, "layer": None, "epochs": 2, "lr": 1e-2,
                   "layers": None, "seed": 0},
        "needs_mask": False, "needs_labels": False, "needs_latent": False,
        "walk_kinds": ["linear"], "cacheable": True,
    },
    "interfacegan": {
        "label": "InterFaceGAN (attributes)",
        "description": "Normal of a linear boundary between faces scored high and low on an "
                       "attribute (dlib landmarks: mouth open, smile width, eye openness, head yaw, "
                       "face size) or tagged by you.",
        "params": {"attribute": "all", "samples": 1000, "seed": 0, "share": 0.5, "condition": None,
                   "layers": None},
        "needs_mask": False, "needs_labels": True, "needs_latent": False,
        "walk_kinds": ["linear", "density"], "cacheable": True,
    },
    "lsd": {
        "label": "LSD quasi-eigenvectors (our construction)",
        "description": "After Toledo-Marin & Glazier's latent spectral decomposition, built by us "
                       "from its description on a trained model: one quasi-eigenvector per label (the "
                       "leading eigenvector of that label's latents, whitened), completed to a basis; "
                       "the slider moves weight from the low label's vector to the high's. Not the "
                       "paper's procedure or code.",
        "params": {"attribute": "all", "samples": 1000, "seed": 0, "share": 0.25, "shrink": 0.9,
                   "layers": None},
        "needs_mask": False, "needs_labels": True, "needs_latent": False,
        "walk_kinds": ["linear", "density"], "cacheable": True,
    },
}


def check_method(method: str) -> dict[str, Any]:
    info = METHODS.get(method)
    if info is None:
        raise ValueError(f"unknown direction method {method!r} (known: {', '.join(METHODS)})")
    return info


def resolved_params(method: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` over the method's defaults; unknown names and values outside their ranges
    (:mod:`.ranges`) are refused with a ValueError."""
    info = check_method(method)
    unknown = sorted(set(params) - set(info["params"]) - set(INPUTS))
    if unknown:
        raise ValueError(f"{method}: unknown parameter(s) {', '.join(unknown)} "
                         f"(known: {', '.join(info['params'])})")
    merged = dict(info["params"])
    merged.update(check_params(method, {k: v for k, v in params.items() if k not in INPUTS}))
    for switch, dependent in info.get("only_with", {}).items():
        if merged[switch] in SWITCHED_OFF:
            ignored = [k for k in dependent if k in params and params[k] != info["params"][k]]
            if ignored:
                raise ValueError(f"{method}: {', '.join(ignored)} only act(s) with {switch} set, and "
                                 f"{switch} is {merged[switch]!r}")
    return merged


def _value_hash(value: Any) -> str:
    if hasattr(value, "code"):  # a Latent
        value = value.code
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    array = np.ascontiguousarray(np.asarray(value, dtype=np.float32))
    return hashlib.sha1(array.tobytes() + str(array.shape).encode()).hexdigest()[:16]


def input_hashes(params: dict[str, Any]) -> dict[str, str]:
    """Per-request inputs (a latent, a mask, a person's tags) by a hash of their values."""
    return {k: _value_hash(params[k]) for k in INPUTS if params.get(k) is not None}


def compute_directions(generator: Generator, method: str, **params: Any) -> DirectionSet:
    """Run ``method`` on ``generator`` (defaults from ``METHODS``; ValueError on a bad input).

    The set records what produced it (``provenance``), so a file found on disk can be traced
    to a method, its parameters, a model's weights and a dragwalk version.
    """
    merged = resolved_params(method, params)
    inputs = {k: params[k] for k in INPUTS if params.get(k) is not None}
    if METHODS[method]["needs_mask"] and "mask" not in inputs:
        raise ValueError(f"{method} needs a region mask (mask=H x W array, 1 = region)")
    module = importlib.import_module(f"dragwalk.directions.{method}")
    with progress.computing():          # a page's computation: the background search pauses for it
        result = module.compute(generator, **merged, **inputs)
    result.provenance = {"method": method, "params": merged, "inputs": input_hashes(params),
                         "model": generator.name, "model_hash": model_fingerprint(generator),
                         "dragwalk": __version__, "format_version": VERSION}
    return result
