"""Test helper: rosinality ``stylegan2-pytorch`` generator state dicts, and their own forward.

The state dict is spelled out from the repository's published module layout (``style.N``
EqualLinear layers after a pixel norm, ``input.input``, ``conv1`` / ``to_rgb1``,
``convs.j`` StyledConvs with ``conv.modulation``, ``conv.blur.kernel``, ``noise.weight`` and
``activate.bias``, ``to_rgbs.k`` with ``upsample.kernel``, ``noises.noise_i``), with random
weights, independently of the project's converter.

``reference_forward`` computes the image the way that code computes it, on those names:
per-sample modulated kernels scaled by ``1/sqrt(fan_in)``, upsampling convs as a stride-2
transposed convolution followed by the blur with padding (1, 1) for 4 taps, noise added before the
fused bias + leaky ReLU, ToRGB skips upsampled by zero insertion with padding (2, 1)
(both paddings as the repository derives them from the kernel length).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

SQRT2 = math.sqrt(2.0)


def make_kernel(taps) -> Tensor:
    k = torch.tensor(taps, dtype=torch.float32)
    k = torch.outer(k, k)
    return k / k.sum()


def state_dict(size: int, style_dim: int, n_mlp: int, channels: dict[int, int], seed: int = 0,
               blur=(1, 3, 3, 1), lr_mlp: float = 0.01) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0, shift=0.0):
        return torch.randn(shape, generator=g) * scale + shift

    sd: dict[str, Tensor] = {}
    for i in range(1, n_mlp + 1):
        sd[f"style.{i}.weight"] = rnd(style_dim, style_dim, scale=1 / lr_mlp)
        sd[f"style.{i}.bias"] = rnd(style_dim, scale=0.1 / lr_mlp)
    sd["input.input"] = rnd(1, channels[4], 4, 4)
    kernel = make_kernel(blur) * 4

    def styled(p: str, cin: int, cout: int, up: bool) -> None:
        sd[p + "conv.weight"] = rnd(1, cout, cin, 3, 3)
        sd[p + "conv.modulation.weight"] = rnd(cin, style_dim)
        sd[p + "conv.modulation.bias"] = rnd(cin, scale=0.2, shift=1.0)
        if up:
            sd[p + "conv.blur.kernel"] = kernel.clone()
        sd[p + "noise.weight"] = rnd(1, scale=0.3)
        sd[p + "activate.bias"] = rnd(cout, scale=0.2)

    def rgb(p: str, cin: int, up: bool) -> None:
        if up:
            sd[p + "upsample.kernel"] = kernel.clone()
        sd[p + "conv.weight"] = rnd(1, 3, cin, 1, 1)
        sd[p + "conv.modulation.weight"] = rnd(cin, style_dim)
        sd[p + "conv.modulation.bias"] = rnd(cin, scale=0.2, shift=1.0)
        sd[p + "bias"] = rnd(1, 3, 1, 1, scale=0.2)

    styled("conv1.", channels[4], channels[4], False)
    rgb("to_rgb1.", channels[4], False)
    log_size = int(math.log2(size))
    for k, log_res in enumerate(range(3, log_size + 1)):
        res = 2 ** log_res
        styled(f"convs.{2 * k}.", channels[res // 2], channels[res], True)
        styled(f"convs.{2 * k + 1}.", channels[res], channels[res], False)
        rgb(f"to_rgbs.{k}.", channels[res], True)
    for i in range((log_size - 2) * 2 + 1):
        res = 2 ** ((i + 5) // 2)
        sd[f"noises.noise_{i}"] = rnd(1, 1, res, res)
    return sd


def _upfirdn(x: Tensor, kernel: Tensor, up: int, pad: tuple[int, int]) -> Tensor:
    n, c, h, w = x.shape
    if up > 1:
        y = torch.zeros(n, c, h * up, w * up)
        y[:, :, ::up, ::up] = x
        x = y
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    k = kernel.flip([0, 1]).expand(c, 1, *kernel.shape)
    return F.conv2d(x, k, groups=c)


def _equal_linear(x: Tensor, weight: Tensor, bias: Tensor, lr: float = 1.0) -> Tensor:
    return x @ (weight * lr / math.sqrt(weight.shape[1])).T + bias * lr


def _styled_conv(sd, p: str, x: Tensor, w: Tensor, noise: Tensor, up: bool) -> Tensor:
    outs = []
    weight = sd[p + "conv.weight"][0]
    cin = weight.shape[1]
    style = _equal_linear(w, sd[p + "conv.modulation.weight"], sd[p + "conv.modulation.bias"])
    for i in range(x.shape[0]):
        k = weight / math.sqrt(cin * 9) * style[i].reshape(1, -1, 1, 1)
        k = k / torch.sqrt((k ** 2).sum(dim=[1, 2, 3], keepdim=True) + 1e-8)
        if up:
            y = F.conv_transpose2d(x[i:i + 1], k.transpose(0, 1), stride=2)
            kernel = sd[p + "conv.blur.kernel"]
            q = (kernel.shape[0] - 2) - 2  # Blur padding of a stride-2, 3x3 transposed conv
            y = _upfirdn(y, kernel, 1, ((q + 1) // 2 + 1, q // 2 + 1))
        else:
            y = F.conv2d(x[i:i + 1], k, padding=1)
        outs.append(y)
    out = torch.cat(outs) + sd[p + "noise.weight"] * noise
    out = out + sd[p + "activate.bias"].reshape(1, -1, 1, 1)
    return F.leaky_relu(out, 0.2) * SQRT2


def _to_rgb(sd, p: str, x: Tensor, w: Tensor, skip: Tensor | None) -> Tensor:
    weight = sd[p + "conv.weight"][0]
    style = _equal_linear(w, sd[p + "conv.modulation.weight"], sd[p + "conv.modulation.bias"])
    outs = [F.conv2d(x[i:i + 1], weight / math.sqrt(weight.shape[1]) * style[i].reshape(1, -1, 1, 1))
            for i in range(x.shape[0])]
    out = torch.cat(outs) + sd[p + "bias"]
    if skip is not None:
        kernel = sd[p + "upsample.kernel"]
        q = kernel.shape[0] - 2  # Upsample's padding for factor 2
        out = out + _upfirdn(skip, kernel, 2, ((q + 1) // 2 + 1, q // 2))
    return out


def reference_mapping(sd, z: Tensor, latent_avg: Tensor, psi: float, n_latent: int,
                      lr_mlp: float = 0.01) -> Tensor:
    x = z / torch.sqrt((z ** 2).mean(dim=1, keepdim=True) + 1e-8)
    i = 1
    while f"style.{i}.weight" in sd:
        x = F.leaky_relu(_equal_linear(x, sd[f"style.{i}.weight"], sd[f"style.{i}.bias"], lr_mlp), 0.2) * SQRT2
        i += 1
    w = latent_avg + psi * (x - latent_avg)
    return w[:, None].repeat(1, n_latent, 1)


def reference_synthesis(sd, latent: Tensor) -> Tensor:
    n = latent.shape[0]
    out = sd["input.input"].repeat(n, 1, 1, 1)
    out = _styled_conv(sd, "conv1.", out, latent[:, 0], sd["noises.noise_0"], False)
    skip = _to_rgb(sd, "to_rgb1.", out, latent[:, 1], None)
    k, i = 0, 1
    while f"convs.{2 * k}.conv.weight" in sd:
        out = _styled_conv(sd, f"convs.{2 * k}.", out, latent[:, i], sd[f"noises.noise_{2 * k + 1}"], True)
        out = _styled_conv(sd, f"convs.{2 * k + 1}.", out, latent[:, i + 1], sd[f"noises.noise_{2 * k + 2}"], False)
        skip = _to_rgb(sd, f"to_rgbs.{k}.", out, latent[:, i + 2], skip)
        k, i = k + 1, i + 2
    return skip
