"""rosinality ``stylegan2-pytorch`` checkpoints (``.pt``) as the own StyleGAN2.

The file is a ``torch.save`` zip holding a dict: ``g_ema`` (the averaged generator's state
dict, the one people sample from), often ``g``, ``d``, optimiser states and ``args`` (an
``argparse.Namespace``), and in converted releases ``latent_avg``. It is read with
``torch.load(weights_only=True)``: PyTorch's restricted unpickler, here allowing one extra
plain-data class (``argparse.Namespace``); any other global is refused and named.

The state dict maps onto the own modules (NVIDIA's names) one to one; the differences are
conventions, converted here:

* mapping: ``style.0`` is the pixel norm, ``style.1..n`` the dense layers (``EqualLinear``,
  weight stored divided by the learning-rate multiplier ``lr_mlp``, as in NVIDIA's format).
  ``lr_mlp`` is a constructor argument, not saved in the file: 0.01 unless told otherwise;
* noise injection: the fixed noise maps live apart, in ``noises.noise_i`` (``[1, 1, r, r]``),
  the strength per layer in ``convs.j.noise.weight`` (``[1]``);
* the upsampling (blur) kernel is stored as a 2-D buffer multiplied by 4 (``blur.kernel``,
  ``upsample.kernel``); it must be a separable FIR, whose taps become ``resample_filter``;
* ToRGB: weights carry a leading batch axis (``[1, out, in, k, k]``), the bias is
  ``[1, 3, 1, 1]``; the 4x4 block's ToRGB is ``to_rgb1``, later ones ``to_rgbs.k``;
* ``activate.bias`` is the conv's bias (fused leaky ReLU, gain sqrt 2, as NVIDIA's);
* truncation's centre is ``latent_avg`` when the file has one, else the mean w of 10 000
  seeded z (rosinality's own ``mean_latent`` estimates it the same way at run time).
"""

from __future__ import annotations

import argparse
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .base import ModelError, seeded_normal
from .convert import build_stylegan2, channel_layout, filter_taps

#: z samples behind an estimated ``w_avg`` when the file has no ``latent_avg``
W_AVG_SAMPLES = 10_000
#: the kernel gain rosinality stores (``upsample_factor ** 2``)
KERNEL_GAIN = 4.0


class CheckpointError(ModelError):
    """A ``.pt`` checkpoint that was refused or could not be read; the message says why."""


def read_checkpoint(path: Path, source: str) -> Any:
    """``torch.load`` with ``weights_only=True`` (and ``argparse.Namespace`` allowed)."""
    # torch >= 1.6 archives are zips; older files are bare pickles
    with open(path, "rb") as f:
        first = f.read(1)
    if not zipfile.is_zipfile(path) and first != b"\x80":
        raise CheckpointError(f"{source} is truncated or not a torch.save archive")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            # no mmap: the model keeps the loaded tensors, which must not change if the file is
            # rewritten in place later
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError ... for bad files
        text = str(exc)
        found = re.search(r"(?:[Uu]nsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", text)
        if found:
            raise CheckpointError(f"refused to load {source}: it references {found.group(1)}, which "
                                  f"is not checkpoint data (the file may try to run code; it was not "
                                  f"loaded)") from None
        if "Weights only load failed" in text:
            raise CheckpointError(f"refused to load {source}: it holds objects that are not checkpoint "
                                  f"data (the file may try to run code; it was not loaded)") from None
        if "zip" in text or "EOF" in text or "central directory" in text:
            raise CheckpointError(f"{source} is truncated or not a torch.save archive") from None
        raise CheckpointError(f"{source} is not a readable checkpoint ({type(exc).__name__}: "
                              f"{text.splitlines()[0][:200] if text else ''})") from None


def generator_state(ckpt: Any, source: str) -> tuple[dict[str, Tensor], Tensor | None]:
    """The generator's state dict (``g_ema``, else ``g``, else the file itself) and ``latent_avg``."""
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{source} holds a {type(ckpt).__name__}, not a checkpoint dict")
    state = ckpt
    for key in ("g_ema", "g"):
        if isinstance(ckpt.get(key), dict):
            state = ckpt[key]
            break
    if "style.1.weight" not in state and not any(k.startswith("module.style.1.") for k in state):
        keys = ", ".join(map(str, list(ckpt)[:10])) or "none"
        raise CheckpointError(f"{source} has no rosinality StyleGAN2 generator ('g_ema' or 'g'); keys: {keys}")
    state = {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()}
    avg = ckpt.get("latent_avg")
    if avg is not None and not isinstance(avg, Tensor):
        raise CheckpointError(f"{source}: latent_avg is a {type(avg).__name__}, not a tensor")
    return state, avg


class _Reader:
    """Takes tensors out of a state dict by name, checking each one's rank and leading axes."""

    def __init__(self, state: dict[str, Any], source: str):
        self.state, self.source, self.used = state, source, set()
        self.origin: dict[str, str] = {}  # own name -> the file's name

    def put(self, out: dict[str, Tensor], own: str, key: str, value: Tensor) -> None:
        out[own] = value
        self.origin[own] = key

    def take(self, out: dict[str, Tensor], own: str, key: str, ndim: int, lead_ones: int = 0) -> Tensor:
        """``get`` the file's ``key`` into ``out[own]``, leading unit axes dropped."""
        value = self.get(key, ndim, lead_ones)
        value = value.reshape(value.shape[lead_ones:])
        self.put(out, own, key, value)
        return value

    def get(self, key: str, ndim: int, lead_ones: int = 0) -> Tensor:
        if key not in self.state:
            raise CheckpointError(f"{self.source}: the generator lacks {key}")
        value = self.state[key]
        self.used.add(key)
        if not isinstance(value, Tensor) or not value.is_floating_point():
            raise CheckpointError(f"{self.source}: {key} is not a floating-point tensor")
        if value.dim() != ndim or any(s != 1 for s in value.shape[:lead_ones]):
            raise CheckpointError(f"{self.source}: {key} has shape {list(value.shape)}, expected "
                                  f"{ndim} axes{' with leading 1s' if lead_ones else ''}")
        return value

    def count(self, pattern: str) -> int:
        """How many consecutive indices ``i`` have ``pattern.format(i)`` in the state dict."""
        n = 0
        while pattern.format(n) in self.state:
            n += 1
        return n

    def leftover(self) -> list[str]:
        return [k for k in self.state if k not in self.used]


def _styled_conv(r: _Reader, src: str, noise: str, dst: str, out: dict[str, Tensor]) -> int:
    """One ``StyledConv`` onto a ``SynthesisLayer``; returns its output width."""
    weight = r.take(out, dst + "weight", src + "conv.weight", 5, 1)
    r.take(out, dst + "affine.weight", src + "conv.modulation.weight", 2)
    r.take(out, dst + "affine.bias", src + "conv.modulation.bias", 1)
    r.take(out, dst + "noise_strength", src + "noise.weight", 1, 1)
    r.take(out, dst + "noise_const", noise, 4, 2)
    r.take(out, dst + "bias", src + "activate.bias", 1)
    return int(weight.shape[0])


def _to_rgb(r: _Reader, src: str, dst: str, out: dict[str, Tensor]) -> None:
    r.take(out, dst + "weight", src + "conv.weight", 5, 1)
    r.take(out, dst + "affine.weight", src + "conv.modulation.weight", 2)
    r.take(out, dst + "affine.bias", src + "conv.modulation.bias", 1)
    r.put(out, dst + "bias", src + "bias", r.get(src + "bias", 4, lead_ones=1).reshape(-1))


def convert_state(state: dict[str, Any], latent_avg: Tensor | None, source: str,
                  lr_mlp: float = 0.01) -> tuple[dict, dict[str, Tensor], dict[str, str]]:
    """Own ``StyleGAN2Generator`` arguments, tensors, and each tensor's name in the file."""
    r = _Reader(state, source)
    out: dict[str, Tensor] = {}
    n_mlp = 0
    while f"style.{n_mlp + 1}.weight" in state:  # style.0 is the parameter-free pixel norm
        n_mlp += 1
    if n_mlp == 0:
        raise CheckpointError(f"{source}: the mapping layers style.1..style.n are missing")
    for i in range(n_mlp):
        r.take(out, f"mapping.fc{i}.weight", f"style.{i + 1}.weight", 2)
        r.take(out, f"mapping.fc{i}.bias", f"style.{i + 1}.bias", 1)
    style_dim = int(out["mapping.fc0.weight"].shape[1])
    n_convs = r.count("convs.{}.conv.weight")
    if n_convs % 2:
        raise CheckpointError(f"{source}: an odd number of synthesis convs ({n_convs})")
    size = 2 ** (2 + n_convs // 2)
    r.take(out, "synthesis.b4.const", "input.input", 4, 1)
    channels = {4: _styled_conv(r, "conv1.", "noises.noise_0", "synthesis.b4.conv1.", out)}
    _to_rgb(r, "to_rgb1.", "synthesis.b4.torgb.", out)
    kernels = []
    for k in range(n_convs // 2):
        res = 2 ** (k + 3)
        p = f"synthesis.b{res}."
        channels[res] = _styled_conv(r, f"convs.{2 * k}.", f"noises.noise_{2 * k + 1}", p + "conv0.", out)
        _styled_conv(r, f"convs.{2 * k + 1}.", f"noises.noise_{2 * k + 2}", p + "conv1.", out)
        _to_rgb(r, f"to_rgbs.{k}.", p + "torgb.", out)
        kernels += [(f"convs.{2 * k}.conv.blur.kernel", r.get(f"convs.{2 * k}.conv.blur.kernel", 2)),
                    (f"to_rgbs.{k}.upsample.kernel", r.get(f"to_rgbs.{k}.upsample.kernel", 2))]
    taps = [1.0, 3.0, 3.0, 1.0]
    if kernels:
        taps = filter_taps(kernels[0][1], KERNEL_GAIN, source, kernels[0][0], CheckpointError)
        for key, kernel in kernels[1:]:
            if kernel.shape != kernels[0][1].shape or not torch.allclose(kernel, kernels[0][1], atol=1e-6):
                raise CheckpointError(f"{source}: {key} differs from the other blur kernels")
    leftover = r.leftover()
    if leftover:
        raise CheckpointError(f"{source}: unexpected tensors {leftover[:5]} (not a rosinality StyleGAN2 generator)")
    if latent_avg is not None:
        out["mapping.w_avg"] = latent_avg.reshape(-1) if latent_avg.numel() == style_dim else latent_avg
    base, cmax = channel_layout(channels, source)
    kwargs = {"z_dim": style_dim, "c_dim": 0, "w_dim": style_dim, "img_resolution": size, "img_channels":
              int(out["synthesis.b4.torgb.weight"].shape[0]),
              "mapping_kwargs": {"num_layers": n_mlp, "lr_multiplier": float(lr_mlp)},
              "synthesis_kwargs": {"channel_base": base, "channel_max": cmax, "resample_filter": taps}}
    return kwargs, out, r.origin


def estimate_w_avg(model, samples: int = W_AVG_SAMPLES, seed: int = 0) -> Tensor:
    """The mean w of ``samples`` seeded z: truncation's centre for files that keep none."""
    with torch.no_grad():
        z = seeded_normal(seed, (samples, model.z_dim))
        return model.mapping(z, None, broadcast=False).mean(dim=0)


def load_rosinality(path: str | Path, name: str | None = None, lr_mlp: float = 0.01):
    """A :class:`StyleGAN2Generator` from a rosinality ``stylegan2-pytorch`` checkpoint."""
    path = Path(path)
    source = f"checkpoint {path.name}"
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    state, latent_avg = generator_state(read_checkpoint(path, source), source)
    kwargs, tensors, origin = convert_state(state, latent_avg, source, lr_mlp)
    estimated = "mapping.w_avg" not in tensors
    if estimated:
        tensors["mapping.w_avg"] = torch.zeros(kwargs["w_dim"])
    model = build_stylegan2(kwargs, tensors, name or str(path), source, CheckpointError, origin)
    if estimated:
        model.mapping.w_avg.copy_(estimate_w_avg(model))
    model.loader = "rosinality"
    return model
