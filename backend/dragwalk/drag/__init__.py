"""Drag editing: move the content under handle points to target points.

Methods (DragGAN, FreeDrag, ...) sit behind one small interface (:mod:`.method`) and
see only feature maps; :class:`DragRun` drives any of them on any generator through
the generator interface. Contract: docs/contracts/engines.md ("drag")::

    from dragwalk.drag import DragConfig, DragRun, DragStep, PointError, drag, METHODS
"""

from __future__ import annotations

from . import draggan as _draggan  # noqa: F401  (importing registers the methods)
from . import freedrag as _freedrag  # noqa: F401
from . import template as _template  # noqa: F401
from . import warp as _warp  # noqa: F401
from .config import DEFAULT_METHOD, DragConfig
from .method import ALIASES, METHODS, DragMethod, Param, canonical_method
from .points import PointError, format_points, parse_points, validate_mask, validate_points
from .run import REASONS, DragRun, DragStep, drag

__all__ = ["DragConfig", "DragRun", "DragStep", "PointError", "drag", "METHODS", "DEFAULT_METHOD",
           "DragMethod", "Param", "ALIASES", "canonical_method", "REASONS", "parse_points", "format_points", "validate_points", "validate_mask"]
