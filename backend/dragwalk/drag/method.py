"""The one small interface every drag method implements, and the method registry.

A drag step, whatever the method, is: forward the generator to the feature layer,
move the handles on those features without gradient (:meth:`DragMethod.track`),
then build a loss that pushes the content under each handle towards its target
(:meth:`DragMethod.loss`). The run (:mod:`.run`) owns the generator, the optimiser,
the mask term and the bookkeeping; a method owns only its per-point state
(templates, sub-motions). Methods see feature maps and points, never the network.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar, Hashable, Sequence

import torch
from torch import Tensor


@dataclass(frozen=True)
class Param:
    """A tunable method parameter, described for the UI's method picker."""

    default: float
    minimum: float
    maximum: float
    label: str
    help: str = ""
    integer: bool = False

    def check(self, name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"parameter {name!r} must be a number, got {value!r}")
        value = float(value)
        if not (self.minimum <= value <= self.maximum):
            raise ValueError(f"parameter {name!r} = {value:g} is outside [{self.minimum:g}, {self.maximum:g}]")
        if self.integer and value != int(value):
            raise ValueError(f"parameter {name!r} must be a whole number, got {value:g}")
        return value


@dataclass
class MethodContext:
    """What a method may know about the run: sizes, never the architecture."""

    resolution: int          # image side in px (the longer side: radii scale with it)
    feature_size: int        # feature map side (the longer side)
    device: torch.device
    #: (height, width) of the image and of the feature map: points live in the first
    image_hw: tuple[int, int] = (0, 0)
    feature_hw: tuple[int, int] = (0, 0)

    @classmethod
    def at_layer(cls, generator: Any, layer: str, device: torch.device) -> "MethodContext":
        """The sizes a run on ``generator`` with features at ``layer`` gives its method (the
        generator interface's sizes only: a method never learns the architecture)."""
        info = generator.layer(layer)
        return cls(generator.resolution, info.size, device, generator.image_size, info.hw)

    def __post_init__(self) -> None:
        if self.image_hw == (0, 0):
            self.image_hw = (self.resolution, self.resolution)
        if self.feature_hw == (0, 0):
            self.feature_hw = (self.feature_size, self.feature_size)

    def clamp(self, points: Tensor) -> Tensor:
        """``points`` ``[..., 2]`` (x, y) kept on the image (pixel centres)."""
        height, width = self.image_hw
        return torch.stack([points[..., 0].clamp(0, width - 1), points[..., 1].clamp(0, height - 1)], dim=-1)


def model_defaults(generator: Any, method: str) -> dict[str, float]:
    """The settings a model tuned for ``method``: its ``"*"`` entry, then the method's own.

    Defaults belong to a model: what was tuned on the 64 px DCGAN (a feature blur, a
    larger lr) lives in that adapter's ``drag_defaults`` and never reaches StyleGAN,
    whose drags start from the papers' values (the method classes' own defaults).
    """
    table = getattr(generator, "drag_defaults", None) or {}
    return {**table.get("*", {}), **table.get(method, {})}


class DragMethod(abc.ABC):
    """Base class of drag methods. Subclasses set the class attributes and implement the hooks.

    ``lr``, ``lambda_mask`` and ``stop_distance`` are the method's defaults for the
    shared :class:`~dragwalk.drag.config.DragConfig` fields (``stop_distance`` in
    image px, ``0`` = the method's resolution-scaled rule); ``params`` are its own knobs.
    """

    name: ClassVar[str] = ""
    #: older names still accepted (saved logs, URLs), never listed
    aliases: ClassVar[tuple[str, ...]] = ()
    label: ClassVar[str] = ""
    description: ClassVar[str] = ""
    lr: ClassVar[float] = 2e-3
    lambda_mask: ClassVar[float] = 20.0
    params: ClassVar[dict[str, Param]] = {}

    #: True for methods that move content by warping a feature map (see :meth:`field`)
    warps: ClassVar[bool] = False

    def __init__(self, context: MethodContext, values: dict[str, float] | None = None,
                 defaults: dict[str, float] | None = None):
        self.ctx = context
        self.values = self.resolve(values or {}, defaults)

    # ----------------------------------------------------------------- description
    @classmethod
    def resolve(cls, values: dict[str, Any], defaults: dict[str, float] | None = None) -> dict[str, float]:
        """Method parameters: ``values``, else the model's ``defaults``, else the method's own.

        ValueError for unknown or out-of-range values.
        """
        unknown = sorted(set(values) - set(cls.params))
        if unknown:
            known = ", ".join(cls.params) or "none"
            raise ValueError(f"method {cls.name!r} has no parameter(s) {', '.join(unknown)} (known: {known})")
        out = {k: p.default for k, p in cls.params.items()}
        for k, v in (defaults or {}).items():
            if k in cls.params:
                out[k] = cls.params[k].check(k, v)
        for k, v in values.items():
            out[k] = cls.params[k].check(k, v)
        return out

    @classmethod
    def default_stop_distance(cls, resolution: int, points: int = 1) -> float:
        """DragGAN's rule: 1 px at 512 px, 2 px with more than 5 points, scaled with the
        resolution; never under 1 px (one pixel is a lot on a 64 px face already)."""
        base = 2.0 if points > 5 else 1.0
        return max(base * resolution / 512.0, base)

    @classmethod
    def describe(cls, generator: Any = None) -> dict[str, Any]:
        """JSON-friendly description for the method picker: label, defaults, tunable parameters.

        With a ``generator`` the defaults are that model's (see :func:`model_defaults`).
        """
        tuned = model_defaults(generator, cls.name) if generator is not None else {}
        values = cls.resolve({}, tuned)
        return {
            "name": cls.name,
            "label": cls.label,
            "description": cls.description,
            "defaults": {"lr": float(tuned.get("lr", cls.lr)),
                         "lambda_mask": float(tuned.get("lambda_mask", cls.lambda_mask)),
                         "stop_distance": None},
            "params": {k: {"default": values[k], "min": p.minimum, "max": p.maximum, "label": p.label,
                           "help": p.help, "integer": p.integer} for k, p in cls.params.items()},
        }

    # ----------------------------------------------------------------- hooks
    def scaled(self, name: str, reference_512: float, floor: float) -> float:
        """Parameter ``name`` in image px; ``0`` (auto) means the reference value at 512 px scaled
        to this resolution, but at least ``floor`` px: on a 64 px model DragGAN's radii would
        shrink below one feature cell and see nothing."""
        value = self.values[name]
        if value > 0:
            return value
        return max(reference_512 * self.ctx.resolution / 512.0, floor)

    @abc.abstractmethod
    def start(self, features: Tensor, handles: Tensor) -> None:
        """(Re)initialise per-point state from the features where the handles are now."""

    @abc.abstractmethod
    def track(self, features: Tensor, handles: Tensor, targets: Tensor) -> Tensor:
        """New handle positions ``[K, 2]`` on ``features`` (called without gradient)."""

    @abc.abstractmethod
    def loss(self, features: Tensor, handles: Tensor, targets: Tensor, active: Tensor) -> Tensor:
        """Motion-supervision loss for the ``active`` handles (differentiable in ``features``)."""

    def together_key(self) -> Hashable | None:
        """Methods with equal keys track and compute their losses as one batch when their
        sessions' drags step together (:mod:`.batch`: :meth:`track_together`,
        :meth:`loss_together`); ``None`` (the default): this one tracks on its own."""
        return None

    @staticmethod
    def track_together(methods: Sequence["DragMethod"], features: Tensor, handles: Tensor,
                       targets: Tensor) -> Tensor:
        """:meth:`track` of each method on its map: ``features`` ``[B, C, h, w]``, ``handles`` and
        ``targets`` ``[B, K, 2]`` -> ``[B, K, 2]``, the numbers each gets alone. Methods whose
        :meth:`together_key` is not ``None`` override it with one batched computation."""
        return torch.stack([m.track(features[b:b + 1], handles[b], targets[b]) for b, m in enumerate(methods)])

    @staticmethod
    def loss_together(methods: Sequence["DragMethod"], features: Tensor, handles: Tensor, targets: Tensor,
                      active: Sequence[Tensor]) -> list[Tensor]:
        """:meth:`loss` of each method on its map (shapes as :meth:`track_together`; ``active[b]``
        is method ``b``'s ``[K]`` mask): one loss per method."""
        return [m.loss(features[b:b + 1], handles[b], targets[b], active[b]) for b, m in enumerate(methods)]

    def reads(self, handles: Tensor, targets: Tensor) -> tuple[float, float, float, float] | None:
        """A box ``(x0, y0, x1, y1)`` in image px holding every position that :meth:`track` and then
        :meth:`loss` may read in a step that starts from ``handles``, or ``None`` for anywhere.
        With a box the run may have the model compute only the features there
        (``Generator.synthesize_window``); a read outside it would see zeros."""
        return None

    def arrived(self, handles: Tensor, targets: Tensor, stop_distance: float) -> Tensor:
        """Which handles count as done (``[K]`` bool); plain distance by default."""
        return (targets - handles).norm(dim=1) <= stop_distance

    def step_budget(self) -> int | None:
        """Most steps after (re)start this method wants, or ``None`` for the run's ``max_steps``."""
        return None

    def field(self, handles: Tensor, targets: Tensor, keep: Tensor | None,
              size: tuple[int, int] | None = None) -> Tensor | None:
        """A backward displacement field ``[s, s, 2]`` (image px, on the feature map's cells, or
        on a grid of ``size`` cells) that takes the content at each handle to its target, or
        ``None`` for methods that only optimise. ``keep`` (``[1, 1, s, s]``, 1 = keep) is the
        painted mask's complement.

        The run warps the feature layer with it once, before the first step: the content
        moves by construction, and the steps after that only refine.
        """
        return None


#: knobs every method has: how the run treats the latent, whatever the loss
COMMON_PARAMS: dict[str, Param] = {
    "offset_lr": Param(0.1, 0.0, 10.0, "Spatial-latent lr factor",
                       "learning rate of spatial offsets (4-D drag variables) relative to lr: "
                       "activations are small, so a full lr wrecks the image"),
    "offset_decay": Param(0.0, 0.0, 100.0, "Spatial-latent decay",
                          "weight of the mean squared spatial offset in the loss: keeps the "
                          "edit small where the motion does not need it"),
    "smooth": Param(0.0, 0.0, 4.0, "Feature smoothing passes",
                    "binomial low-pass of the feature map before tracking and supervision: removes "
                    "the checkerboard of transposed convolutions that makes tracking jump",
                    integer=True),
}


#: method name -> class; filled by the method modules via :func:`register`
METHODS: dict[str, type[DragMethod]] = {}
#: an older name -> the method's name (accepted everywhere a name is, listed nowhere)
ALIASES: dict[str, str] = {}


def register(cls: type[DragMethod]) -> type[DragMethod]:
    """Class decorator adding a method to :data:`METHODS` (and its old names to :data:`ALIASES`)."""
    cls.params = {**COMMON_PARAMS, **cls.params}
    METHODS[cls.name] = cls
    for alias in cls.__dict__.get("aliases", ()):
        ALIASES[alias] = cls.name
    return cls


def canonical_method(name: str) -> str:
    """The method's current name for ``name`` (itself, or what an alias stands for)."""
    return ALIASES.get(name, name)
