"""DragConfig: the settings of one drag, validated, and round-trippable through JSON.

``None`` in a field means "the method's or the model's default", so a saved config
keeps meaning the same thing when defaults are retuned, and the server can forward
the browser's settings verbatim.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..runtime import check_precision

#: the method used when none is named: the best on `dragwalk bench drag --semantic` (docs/ARCHITECTURE.md)
DEFAULT_METHOD = "warp"
#: refuse absurd step counts from a client (a drag of this length would run for minutes)
MAX_STEPS_LIMIT = 10000


@dataclass
class DragConfig:
    """Settings of a drag.

    Args:
        method: a key of :data:`dragwalk.drag.METHODS`.
        lr: Adam learning rate (``None`` = the method's default).
        lambda_mask: weight of the "keep outside the mask" term (``None`` = method default).
        max_steps: give up after this many steps.
        stop_distance: a handle is done within this many image px of its target
            (``None`` = the method's resolution-scaled default).
        feature_layer: generator layer read for tracking and supervision (``None`` = method/model default).
        mode: which part of the latent is optimised, one of ``generator.drag_modes``
            (``None`` = the model's default, its first mode).
        params: method-specific parameters (see ``METHODS[name].describe()["params"]``).
        precision: arithmetic of the network's forward pass, one of
            :data:`dragwalk.runtime.PRECISIONS` (``fp16`` on a GPU only). Kept with the
            drag so a replay runs the same arithmetic; tracking and losses are fp32 always.
    """

    method: str = DEFAULT_METHOD
    lr: float | None = None
    lambda_mask: float | None = None
    max_steps: int = 300
    stop_distance: float | None = None
    feature_layer: str | None = None
    mode: str | None = None
    params: dict[str, float] = field(default_factory=dict)
    precision: str = "fp32"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "DragConfig":
        """Raise ValueError with a clear message for any bad field."""
        from .method import METHODS, canonical_method

        if isinstance(self.method, str):
            self.method = canonical_method(self.method)  # "stable" is the old name of "template"
        if self.method not in METHODS:
            raise ValueError(f"unknown drag method {self.method!r} (known: {', '.join(METHODS)})")
        for name, positive in (("lr", True), ("lambda_mask", False), ("stop_distance", True)):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number or null, got {value!r}")
            if (positive and value <= 0) or value < 0:
                raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'}, got {value!r}")
            setattr(self, name, float(value))
        if isinstance(self.max_steps, bool) or not isinstance(self.max_steps, (int, float)) \
                or self.max_steps != int(self.max_steps) or not 1 <= self.max_steps <= MAX_STEPS_LIMIT:
            raise ValueError(f"max_steps must be a whole number in 1..{MAX_STEPS_LIMIT}, got {self.max_steps!r}")
        self.max_steps = int(self.max_steps)
        for name in ("feature_layer", "mode"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"{name} must be a layer/mode name or null, got {value!r}")
        check_precision(self.precision)
        if not isinstance(self.params, dict):
            raise ValueError(f"params must be an object of method parameters, got {self.params!r}")
        resolved = METHODS[self.method].resolve(self.params)  # checks names and ranges
        self.params = {k: resolved[k] for k in self.params}
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "DragConfig":
        """Build from a JSON object; unknown keys and bad values raise ValueError."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise ValueError(f"drag config must be an object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown drag config field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**data)
