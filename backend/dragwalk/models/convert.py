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
from torch.overrides import TorchFunctionMode

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


class _NoRandomInit(TorchFunctionMode):
    """``torch.randn`` / ``torch.rand`` return uninitialised memory while active: a network
    whose weights come from a file need not draw millions of random numbers first (that
    costs about as much as reading a large file). Everything else runs as usual, so
    buffers computed from the configuration (FIR kernels) are right."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.randn, torch.rand):
            kwargs = {k: v for k, v in kwargs.items() if k != "generator"}
            return torch.empty(*args, **kwargs)
        return func(*args, **kwargs)


def construct(cls: Callable[..., nn.Module], kwargs: dict, source: str,
              error: Callable[[str], Exception] = ModelError) -> nn.Module:
    """``cls(**kwargs)`` without random initialisation; :func:`load_checked` must then give it
    every parameter the file has (it refuses files that lack one)."""
    try:
        with _NoRandomInit():
            return cls(**kwargs)
    except (TypeError, ValueError, ZeroDivisionError) as exc:
        raise error(f"{source}: cannot build the generator ({exc})") from None


def load_checked(model: nn.Module, tensors: dict[str, Tensor], source: str,
                 error: Callable[[str], Exception] = ModelError,
                 origin: dict[str, str] | None = None) -> nn.Module:
    """Give ``model`` the file's ``tensors`` (float32) after checking names, shapes and dtypes.

    The tensors are assigned, not copied (no second copy of a large file in memory). Buffers
    the file may omit (:data:`DERIVED_SUFFIXES`) keep the values the constructor computed.
    ``origin`` maps an own name to the file's name for it, so errors name what the user has."""
    origin = origin or {}
    own = model.state_dict()
    missing = [k for k in own if k not in tensors and not k.endswith(DERIVED_SUFFIXES)]
    unexpected = [k for k in tensors if k not in own and not k.endswith(DERIVED_SUFFIXES)]
    if missing or unexpected:
        raise error(f"{source}: tensors do not match the architecture "
                    f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    state: dict[str, Tensor] = {}
    for key, value in tensors.items():
        if key not in own:
            continue
        if not isinstance(value, Tensor) or not value.is_floating_point():
            kind = value.dtype if isinstance(value, Tensor) else type(value).__name__
            raise error(f"{source}: {origin.get(key, key)} is {kind}, not a floating-point tensor")
        if tuple(value.shape) != tuple(own[key].shape):
            where = f"{origin[key]} (as {key})" if key in origin else key
            raise error(f"{source}: {where} has shape {list(value.shape)}, the architecture "
                        f"expects {list(own[key].shape)}")
        state[key] = value.float()
    for key in own:
        state.setdefault(key, own[key])
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval().requires_grad_(False)


def build_stylegan2(kwargs: dict, tensors: dict[str, Tensor], name: str, source: str,
                    error: Callable[[str], Exception] = ModelError, origin: dict[str, str] | None = None):
    """The own StyleGAN2 from converted constructor arguments and tensors."""
    from .stylegan2 import StyleGAN2Generator

    model = construct(StyleGAN2Generator, {**kwargs, "name": name}, source, error)
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
