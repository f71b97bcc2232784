"""Semantic directions in a generator's latent space, and the walks (sliders) along them.

Public API (docs/contracts/engines.md)::

    from dragwalk.directions import (DirectionSet, compute_directions, DirectionCache, Walk,
                                     apply_walks, METHODS)

Methods: ``sefa``, ``ganspace``, ``dplase``, ``reds`` (a painted region), ``sfvq``,
``interfacegan`` and ``lsd`` (labelled latents). Each lives in its own module and
only talks to the :class:`~dragwalk.models.base.Generator` interface.
"""

from .base import DirectionSet
from .cache import DirectionCache
from .methods import METHODS, compute_directions
from .walks import KINDS, Walk, apply_walks, walk_kinds

__all__ = ["DirectionCache", "DirectionSet", "KINDS", "METHODS", "Walk", "apply_walks",
           "compute_directions", "walk_kinds"]
