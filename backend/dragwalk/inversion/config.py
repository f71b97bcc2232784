"""Settings, progress reports and results of an inversion (plain data, JSON-friendly)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from torch import Tensor

from ..models.base import Generator, Latent
from .losses import LossWeights


@dataclass
class InversionConfig:
    """How a photo is projected into the latent space.

    The ``steps`` latent steps run in two phases: the first ``code_fraction`` of
    them move only the latent code (``restarts`` candidates at once, started from
    the best of ``init_samples`` random latents), the rest move the best
    candidate's code together with the spatial offset of drag ``mode`` (the
    model's default drag mode when ``None``, e.g. ``z+b1`` on the DCGAN), which is
    what lets a small latent reproduce a photo it was never trained on. Offsets
    stay in the latent, so drags and walks keep working on the result.

    With ``pti`` a private copy of the generator is then fine-tuned for
    ``pti_steps`` around the found latent (pivotal tuning).
    """

    steps: int = 300
    lr: float = 0.05
    offset_lr: float = 0.02
    code_fraction: float = 0.4
    init_samples: int = 64
    restarts: int = 4
    space: str | None = None
    mode: str | None = None
    offsets: bool = True
    offset_reg: float = 0.01
    pti: bool = False
    pti_steps: int = 100
    pti_lr: float = 5e-4
    pti_locality: float = 0.0
    mse: float = 1.0
    l1: float = 0.5
    ssim: float = 0.5
    features: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse values that cannot work, with a message naming the field."""
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(f"inversion config: {message}")

        need(isinstance(self.steps, int) and 1 <= self.steps <= 100_000, "steps must be 1..100000")
        need(isinstance(self.pti_steps, int) and 0 <= self.pti_steps <= 100_000, "pti_steps must be 0..100000")
        need(isinstance(self.init_samples, int) and 1 <= self.init_samples <= 4096, "init_samples must be 1..4096")
        need(isinstance(self.restarts, int) and 1 <= self.restarts <= 64, "restarts must be 1..64")
        need(0.0 <= self.code_fraction <= 1.0, "code_fraction must be within [0, 1]")
        for name in ("lr", "offset_lr", "pti_lr"):
            need(0.0 < float(getattr(self, name)) <= 10.0, f"{name} must be in (0, 10]")
        for name in ("offset_reg", "pti_locality", "mse", "l1", "ssim", "features"):
            need(0.0 <= float(getattr(self, name)) <= 1e6, f"{name} must be >= 0")
        need(self.mse + self.l1 + self.ssim + self.features > 0, "at least one loss weight must be > 0")

    @property
    def weights(self) -> LossWeights:
        return LossWeights(mse=self.mse, l1=self.l1, ssim=self.ssim, features=self.features)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "InversionConfig":
        """Build from JSON-like data; unknown keys and wrong types are refused (ValueError)."""
        data = dict(data or {})
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"inversion config: unknown field(s) {', '.join(unknown)}")
        defaults = cls()
        values: dict[str, Any] = {}
        for name, value in data.items():
            default = getattr(defaults, name)
            if value is None and name in ("space", "mode"):
                values[name] = None
                continue
            try:
                if isinstance(default, bool) or name in ("pti", "offsets"):
                    if not isinstance(value, bool):
                        raise TypeError
                    values[name] = value
                elif isinstance(default, int):
                    if isinstance(value, bool) or float(value) != int(value):
                        raise TypeError
                    values[name] = int(value)
                elif isinstance(default, float):
                    if isinstance(value, bool):
                        raise TypeError
                    values[name] = float(value)
                else:
                    values[name] = str(value)
            except (TypeError, ValueError, OverflowError):
                raise ValueError(f"inversion config: {name} has an invalid value {value!r}") from None
        return cls(**values)


@dataclass
class InversionProgress:
    """One step of an inversion, as reported to a progress callback or the websocket.

    ``stage`` is ``"invert"`` (latent optimisation) or ``"pti"`` (tuning the copy);
    ``step`` counts from 1 to ``total`` within the stage; ``psnr`` (dB) compares
    the current reconstruction with the target; ``image`` is that reconstruction
    when the step was asked to render.
    """

    stage: str
    step: int
    total: int
    loss: float
    psnr: float
    image: Tensor | None = None


@dataclass
class InversionResult:
    """What an inversion found.

    ``generator`` is the shared model, or with PTI the tuned private copy: the
    latent alone reproduces the photo only together with that generator.
    ``psnr_latent`` is the reconstruction before tuning (equal to ``psnr``
    without PTI).
    """

    latent: Latent
    generator: Generator
    psnr: float
    ssim: float
    seconds: float
    psnr_latent: float | None = None
    tuned: bool = False
