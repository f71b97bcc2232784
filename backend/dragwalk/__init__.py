"""dragwalk: drag and walk editing of GAN images, interactive or headless.

The engines are imported lazily, so ``import dragwalk`` stays cheap and an engine's
names appear here as soon as its package is present::

    from dragwalk import load_model, drag, DragConfig, compute_directions, Walk, apply_walks
"""

from __future__ import annotations

import importlib

from .latent_io import load_latent, save_latent
from .models import DEFAULT_MODEL, Generator, Latent, list_models, load_model

__version__ = "0.1.0"

#: public name -> module that defines it (imported on first use)
_LAZY: dict[str, str] = {
    "drag": "dragwalk.drag", "DragConfig": "dragwalk.drag", "DragRun": "dragwalk.drag",
    "DragStep": "dragwalk.drag", "PointError": "dragwalk.drag",
    "DirectionSet": "dragwalk.directions", "compute_directions": "dragwalk.directions",
    "DirectionCache": "dragwalk.directions", "Walk": "dragwalk.directions",
    "apply_walks": "dragwalk.directions",
    "invert": "dragwalk.inversion", "InversionConfig": "dragwalk.inversion",
    "prepare_photo": "dragwalk.inversion",
}

__all__ = ["DEFAULT_MODEL", "Generator", "Latent", "list_models", "load_model", "load_latent",
           "save_latent", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'dragwalk' has no attribute {name!r}")
