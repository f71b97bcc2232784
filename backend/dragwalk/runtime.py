"""How a network runs on its device: numeric precision, memory layout and compilation.

None of these change what an edit means, only how fast it is computed, so they are
settings of the process (``dragwalk serve --precision bf16 --channels-last --compile
reduce-overhead``, the same flags on ``dragwalk drag`` and ``dragwalk bench step``), not of
a session. Precision alone is also recorded in a drag's config
(:attr:`~dragwalk.drag.DragConfig.precision`), because a replay must run the same
arithmetic to end on the same latent.

* **precision**: ``fp32`` (the default; on NVIDIA GPUs convolutions use TF32 tensor cores,
  PyTorch's default), ``bf16`` (CPU or GPU) or ``fp16`` (GPU
  only: CPUs have no fast fp16 convolutions). The synthesis runs under
  :func:`torch.autocast`; the latent, the optimiser state, tracking and the losses stay
  fp32 (a drag's features are cast back before anything reads them), and fp16 gradients
  go through a gradient scaler so small ones do not flush to zero.
* **channels_last**: NHWC activations; cuDNN's tensor-core convolutions want them in half
  precision. The network's 4-D weights are stored NHWC, and a convolution with an NHWC
  kernel gives NHWC activations (kernels a model builds on the fly follow the input's
  layout: StyleGAN2's ``ops.layout_like``).
* **compile**: :func:`torch.compile` of the modules the adapter names in
  ``compile_units`` (each layer, so Python between layers, offsets and early exits
  keep working). CUDA graphs are not offered (see :data:`COMPILE_MODES`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING
import torch
from torch import Tensor

if TYPE_CHECKING:
    from .models.base import Generator

PRECISIONS = ("fp32", "bf16", "fp16")
#: torch.compile modes offered. Not the CUDA-graph ones (``reduce-overhead``, ``max-autotune``):
#: a graph per layer writes each call's outputs over the last call's, while later layers (and
#: the frame's continuation of the same pass) still read them; seen failing on an H200.
COMPILE_MODES = ("none", "default", "max-autotune-no-cudagraphs")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device | str | None = None) -> str:
    """``precision`` if it is known (and usable on ``device``, when given); else ValueError."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r} (known: {', '.join(PRECISIONS)})")
    if device is not None and precision == "fp16" and torch.device(device).type == "cpu":
        raise ValueError("precision fp16 needs a GPU; on a CPU use bf16 or fp32")
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The context a forward pass runs in at ``precision`` (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def grad_scaler(device: torch.device, precision: str) -> "torch.amp.GradScaler | None":
    """A gradient scaler for fp16 (whose small gradients underflow), else ``None``."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


@dataclass(frozen=True)
class Runtime:
    """The process-wide way networks run: see the module docstring."""

    precision: str = "fp32"
    channels_last: bool = False
    compile: str = "none"

    def __post_init__(self) -> None:
        check_precision(self.precision)
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"unknown compile mode {self.compile!r} (known: {', '.join(COMPILE_MODES)})")

    def describe(self) -> str:
        parts = [self.precision] + (["channels_last"] if self.channels_last else []) \
            + ([f"compile={self.compile}"] if self.compile != "none" else [])
        return "+".join(parts)


def prepare(generator: "Generator", runtime: Runtime) -> "Generator":
    """Apply ``runtime``'s layout and compilation to ``generator`` in place (idempotent), after
    checking its precision can run on the generator's device."""
    check_precision(runtime.precision, generator.device)
    applied = getattr(generator, "_runtime_applied", None)
    if applied == (runtime.channels_last, runtime.compile):
        return generator
    if applied is not None:
        raise ValueError("this network was already prepared with other layout/compile settings; load a fresh copy")
    if runtime.channels_last:
        generator.to(memory_format=torch.channels_last)
    if runtime.compile != "none":
        # every layer of a network compiles the same code for another shape: allow that many
        for name in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit"):
            if hasattr(torch._dynamo.config, name):
                setattr(torch._dynamo.config, name, max(getattr(torch._dynamo.config, name), 256))
        units = tuple(getattr(generator, "compile_units", ()))
        for module in generator.modules():
            if units and isinstance(module, units):
                module.compile(mode=runtime.compile, dynamic=False)
    generator._runtime_applied = (runtime.channels_last, runtime.compile)
    return generator


def owned(x: Tensor) -> Tensor:
    """``x`` detached, as fp32, in memory of its own, never a view of a buffer a compiled
    network may reuse: anything kept past a step (a frame, a drag's first features)."""
    x = x.detach()
    return x.float() if x.dtype != torch.float32 else x.clone()

