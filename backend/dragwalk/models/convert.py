"""What every checkpoint converter shares: channel layouts and checked tensor loading.

A converter (rosinality ``.pt``, TF-era pickle, StyleGAN3 pickle) turns a foreign file into
constructor arguments of one of the own networks plus a ``name -> tensor`` dict in the own
module names. This module builds the network and loads those tensors, refusing anything that
does not fit (a missing or unexpected tensor, a wrong shape, a non-float dtype) with an
error that names the tensor, so nothing half-loaded is ever handed back.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from .base import ModelError

#: buffers fixed by the architecture's configuration, tolerated when absent from a file
DERIVED_SUFFIXES = ("resample_filter",)


def channel_layout(channels: dict[int, int], source: str) -> tuple[int, int]:
    """``(channel_base, channel_max)`` with ``min(base // r, max) == channels[r]`` for every
    resolution ``r``: the own StyleGAN2's width rule. Refuses layouts the rule cannot express."""
    top = max(channels)
    channel_max = max(channels.values())
    channel_base = channels[top] * top
    if all(min(channel_base // r, channel_max) == c for r, c in channels.items()):
        return channel_base, channel_max
    layout = ", ".join(f"{r}:{c}" for r, c in sorted(channels.items()))
    raise ModelError(f"{source}: unsupported channel layout ({layout}); widths must follow "
                     f"min(base / resolution, max)")


def load_checked(model: nn.Module, tensors: dict[str, Tensor], source: str,
                 error: Callable[[str], Exception] = ModelError,
                 origin: dict[str, str] | None = None) -> nn.Module:
    """Load ``tensors`` into ``model`` (as float32) after checking names, shapes and dtypes.

    ``origin`` maps an own name to the file's name for it, so errors name what the user has."""
    origin = origin or {}
    own = model.state_dict()
    missing = [k for k in own if k not in tensors and not k.endswith(DERIVED_SUFFIXES)]
    unexpected = [k for k in tensors if k not in own]
    if missing or unexpected:
        raise error(f"{source}: tensors do not match the architecture "
                    f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    for key, value in tensors.items():
        if not isinstance(value, Tensor) or not value.is_floating_point():
            kind = value.dtype if isinstance(value, Tensor) else type(value).__name__
            raise error(f"{source}: {origin.get(key, key)} is {kind}, not a floating-point tensor")
        if tuple(value.shape) != tuple(own[key].shape):
            where = f"{origin[key]} (as {key})" if key in origin else key
            raise error(f"{source}: {where} has shape {list(value.shape)}, the architecture "
                        f"expects {list(own[key].shape)}")
        own[key] = value.float()
    model.load_state_dict(own, strict=True)
    return model.eval().requires_grad_(False)


def build_stylegan2(kwargs: dict, tensors: dict[str, Tensor], name: str, source: str,
                    error: Callable[[str], Exception] = ModelError, origin: dict[str, str] | None = None):
    """The own StyleGAN2 from converted constructor arguments and tensors."""
    from .stylegan2 import StyleGAN2Generator

    try:
        model = StyleGAN2Generator(**kwargs, name=name)
    except (TypeError, ValueError) as exc:
        raise error(f"{source}: cannot build the generator ({exc})") from None
    return load_checked(model, tensors, source, error, origin)


def filter_taps(kernel: Tensor, gain: float, source: str, what: str,
                error: Callable[[str], Exception] = ModelError) -> list[float]:
    """1-D FIR taps (normalised to sum 1) of a separable 2-D kernel stored with ``gain``.

    Files store the upsampling kernel as ``outer(k, k) / sum(k)**2 * gain``; the own network
    keeps the taps in its config and rebuilds the kernel, so check it really is that."""
    if kernel.dim() != 2 or kernel.shape[0] != kernel.shape[1]:
        raise error(f"{source}: {what} is not a square 2-D kernel ({list(kernel.shape)})")
    k = kernel.double() / gain
    taps = k.sum(dim=1)
    if abs(float(taps.sum()) - 1) > 1e-4 or not torch.allclose(torch.outer(taps, taps), k, atol=1e-6):
        raise error(f"{source}: {what} is not a normalised separable FIR kernel")
    return [float(v) for v in taps]
