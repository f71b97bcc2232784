"""What each direction method's parameters may be: types and ranges, checked before any work.

A parameter set is the whole cost of a direction computation (``ganspace`` with ``samples:
100000`` is minutes of both cores and gigabytes), so every parameter of every method in
:data:`~dragwalk.directions.methods.METHODS` has a declared range here, as drag parameters have
(:class:`dragwalk.drag.method.Param`). :func:`check_params` refuses anything outside with a
ValueError naming the parameter and its range; :func:`describe_ranges` gives the UI the same
table (``GET /api/methods``). Sample counts stop at the defaults' order of magnitude: the memory
of sample-based methods grows with ``samples`` times the feature size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

MAX_SEED = 2**32 - 1
MAX_NAME = 64
MAX_ATTRIBUTES = 16


@dataclass(frozen=True)
class Number:
    """An int or float in ``[minimum, maximum]`` (``above_minimum``: strictly greater)."""

    minimum: float
    maximum: float
    integer: bool = False
    above_minimum: bool = False
    nullable: bool = False

    def check(self, name: str, value: Any) -> Any:
        if value is None and self.nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a {'whole ' if self.integer else ''}number, got {value!r}")
        if self.integer and value != int(value):
            raise ValueError(f"{name} must be a whole number, got {value!r}")
        low_ok = value > self.minimum if self.above_minimum else value >= self.minimum
        if not (low_ok and value <= self.maximum):
            bracket = "(" if self.above_minimum else "["
            raise ValueError(f"{name} = {value:g} is outside {bracket}{self.minimum:g}, {self.maximum:g}]")
        return int(value) if self.integer else float(value)

    def describe(self) -> dict[str, Any]:
        return {"type": "int" if self.integer else "float", "min": self.minimum, "max": self.maximum,
                "exclusive_min": self.above_minimum, "nullable": self.nullable}


@dataclass(frozen=True)
class Flag:
    def check(self, name: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, got {value!r}")
        return value

    def describe(self) -> dict[str, Any]:
        return {"type": "bool"}


@dataclass(frozen=True)
class Choice:
    choices: tuple[str, ...]

    def check(self, name: str, value: Any) -> str:
        if value not in self.choices:
            raise ValueError(f"{name} must be one of {', '.join(self.choices)}, got {str(value)[:40]!r}")
        return value

    def describe(self) -> dict[str, Any]:
        return {"type": "choice", "choices": list(self.choices)}


@dataclass(frozen=True)
class Name:
    """A short name (a layer, an attribute) or ``null``; the method checks it names something."""

    nullable: bool = True

    def check(self, name: str, value: Any) -> Any:
        if value is None and self.nullable:
            return None
        if not isinstance(value, str) or not 0 < len(value) <= MAX_NAME:
            raise ValueError(f"{name} must be a name of 1..{MAX_NAME} characters"
                             f"{' or null' if self.nullable else ''}")
        return value

    def describe(self) -> dict[str, Any]:
        return {"type": "name", "nullable": self.nullable, "max_length": MAX_NAME}


@dataclass(frozen=True)
class Names:
    """One name, or a list of at most ``MAX_ATTRIBUTES`` names (labelled attributes)."""

    def check(self, name: str, value: Any) -> Any:
        if isinstance(value, str):
            return Name(nullable=False).check(name, value)
        if not isinstance(value, list) or not 0 < len(value) <= MAX_ATTRIBUTES:
            raise ValueError(f"{name} must be a name or a list of 1..{MAX_ATTRIBUTES} names")
        return [Name(nullable=False).check(name, v) for v in value]

    def describe(self) -> dict[str, Any]:
        return {"type": "names", "max_items": MAX_ATTRIBUTES, "max_length": MAX_NAME}


@dataclass(frozen=True)
class RowRange:
    """``null`` (all w+ rows) or ``[start, end]``; the model bounds it further (``layer_range``)."""

    def check(self, name: str, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, (list, tuple)) or len(value) != 2 or any(
                isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 64 for v in value):
            raise ValueError(f"{name} must be null or [start, end] with whole numbers in 0..64")
        return [int(v) for v in value]

    def describe(self) -> dict[str, Any]:
        return {"type": "rows", "min": 0, "max": 64}


SEED = Number(0, MAX_SEED, integer=True)
LAYER = Name()
ROWS = RowRange()
SHARE = Number(0.0, 0.5, above_minimum=True)

#: every parameter of every method (the keys of ``METHODS[m]["params"]``) with its range
RANGES: dict[str, dict[str, Any]] = {
    "sefa": {"num": Number(1, 512, integer=True), "layers": ROWS},
    "ganspace": {"num": Number(1, 512, integer=True), "samples": Number(100, 10_000, integer=True),
                 "layer": LAYER, "layers": ROWS, "seed": SEED},
    "dplase": {"k": Number(1, 64, integer=True), "layer": LAYER, "iters": Number(1, 5000, integer=True),
               "batch": Number(1, 64, integer=True), "lr": Number(0.0, 1.0, above_minimum=True),
               "eps_max": Number(0.0, 100.0, above_minimum=True), "groups": Number(1, 32, integer=True),
               "refine": Flag(), "seed": SEED,
               # 0: no early stop on convergence (every one of ``iters`` runs)
               "tol": Number(0.0, 1.0),
               # null: no time limit (iters x batch still bounds the run)
               "time_limit": Number(0.0, 600.0, above_minimum=True, nullable=True)},
    "reds": {"num": Number(1, 64, integer=True), "beta_f": Number(0.0, 1.0), "beta_c": Number(0.0, 1.0),
             "solver": Choice(("generalized", "nullspace")), "layers": ROWS, "seed": SEED,
             "offsets": LAYER, "joint": Flag(), "channels": Number(1, 64, integer=True),
             "dilate": Number(0, 4, integer=True), "realism": Number(0.0, 100.0),
             "edges": Number(0.0, 100.0), "keep_face": Flag()},
    "sfvq": {"bits": Number(1, 8, integer=True), "samples": Number(100, 10_000, integer=True),
             "pcs": Number(1, 256, integer=True), "layer": LAYER, "epochs": Number(1, 20, integer=True),
             "lr": Number(0.0, 1.0, above_minimum=True), "layers": ROWS, "seed": SEED},
    "interfacegan": {"attribute": Names(), "samples": Number(20, 2000, integer=True), "seed": SEED,
                     "share": SHARE, "condition": LAYER, "layers": ROWS},
    "lsd": {"attribute": Names(), "samples": Number(20, 2000, integer=True), "seed": SEED,
            "share": SHARE, "shrink": Number(0.0, 1.0), "layers": ROWS},
}


def check_params(method: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with each value checked against its range (ValueError naming the first bad one).

    Names without a declared range are left to the caller (``resolved_params`` refuses unknown
    names; inputs such as ``mask`` are not parameters).
    """
    table = RANGES.get(method, {})
    return {k: table[k].check(k, v) if k in table else v for k, v in params.items()}


def describe_ranges(method: str) -> dict[str, dict[str, Any]]:
    """The range of each parameter of ``method``, JSON-friendly (for the UI)."""
    return {name: spec.describe() for name, spec in RANGES.get(method, {}).items()}
