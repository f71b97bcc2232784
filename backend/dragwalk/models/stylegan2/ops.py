"""The arithmetic of StyleGAN2 in plain PyTorch: no custom CUDA kernels to compile.

NVIDIA's reference ships fused CUDA ops (``upfirdn2d``, ``bias_act``); every one of
them is a short composition of ordinary tensor operations, written here as pure
functions so they run on any device PyTorch supports and can be checked by hand.

Conventions follow the network-pickle format (they decide the numbers a pickle's
weights produce, so they are facts to match, not choices):

* an FIR filter is stored as a normalised 2-D kernel (``[1,3,3,1]`` outer itself / 64);
* upsampling by 2 inserts zeros after each sample, pads (2, 1) and filters with gain 4;
* a 3x3 convolution that also upsamples is a stride-2 transposed convolution followed
  by the FIR filter with padding 1 (gain 4) — so its kernel acts as a true convolution,
  while a plain 3x3 convolution is a cross-correlation;
* leaky ReLU has slope 0.2 and output gain sqrt(2); the clamp applies after the gain.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..weight_forms import derived
from . import winograd

#: (slope, default gain) of the activations the format names
ACTIVATIONS: dict[str, tuple[float, float]] = {
    "linear": (1.0, 1.0),
    "lrelu": (0.2, math.sqrt(2.0)),
    "relu": (0.0, math.sqrt(2.0)),
}


def activation_gain(name: str) -> float:
    """The default output gain of an activation (keeps activations at unit variance)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unsupported activation {name!r} (known: {', '.join(ACTIVATIONS)})")
    return ACTIVATIONS[name][1]


def normalize_2nd_moment(x: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    """Scale each vector to unit mean square: the mapping network's input normalisation."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def _differentiated(x: Tensor) -> bool:
    """Whether autograd will differentiate through ``x`` (so it must not be overwritten)."""
    return torch.is_grad_enabled() and x.requires_grad


def bias_act(x: Tensor, bias: Tensor | None = None, act: str = "linear", gain: float | None = None,
             clamp: float | None = None, scratch: bool = False) -> Tensor:
    """Add a per-channel bias (dim 1), apply the activation, multiply by gain, clamp.

    ``gain`` defaults to the activation's own gain; ``clamp`` (the pickle's
    ``conv_clamp``) bounds the output to ``[-clamp, clamp]`` after the gain, which keeps
    fp16 layers from overflowing.

    When nothing will differentiate the result (a frame), the work runs in place once ``x`` is
    this function's own tensor, or from the start with ``scratch`` (the caller's temporary): a
    256 px layer's map is 16 MB, and each pass over it counts.
    """
    g = activation_gain(act) if gain is None else float(gain)  # also validates ``act``
    slope = ACTIVATIONS[act][0]
    own = scratch and not _differentiated(x)
    if bias is not None:
        b = bias.to(x.dtype).reshape([1, -1] + [1] * (x.dim() - 2))
        x = x.add_(b) if own else x + b
        own = not _differentiated(x)
    if act != "linear":
        x = (F.leaky_relu(x, slope, inplace=own) if slope > 0 else F.relu(x, inplace=own))
        own = not _differentiated(x)
    if g != 1:
        x = x.mul_(g) if own else x * g
    if clamp is not None and clamp >= 0:
        x = x.clamp_(-clamp, clamp) if own else x.clamp(-clamp, clamp)
    return x


def setup_filter(taps: Sequence[float] | Tensor) -> Tensor:
    """A normalised 2-D FIR kernel from 1-D taps (outer product), summing to 1."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    if f.dim() == 1:
        f = torch.outer(f, f)
    return f / f.sum()


def channels_last(x: Tensor) -> bool:
    """Whether ``x`` is a 4-D map stored channels-last (NHWC) and not also plain (NCHW)."""
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def layout_like(weight: Tensor, x: Tensor) -> Tensor:
    """``weight`` in ``x``'s memory layout: a convolution keeps channels-last (NHWC, see
    :mod:`dragwalk.runtime`) only when input and kernel both have it."""
    if channels_last(x):
        return weight.contiguous(memory_format=torch.channels_last)
    return weight


def fixed_like(weight: Tensor, x: Tensor, form: str = "", make=lambda t: t) -> Tensor:
    """``make(weight)`` (a form of a fixed weight, kept by :func:`derived` under ``form``) in
    ``x``'s memory layout, the channels-last copy kept too: a channels-last frame
    (:data:`dragwalk.models.stylegan2.generator.FRAMES_CHANNELS_LAST`) then copies no weight."""
    if channels_last(x):
        return derived(weight, form + "@channels_last",
                       lambda t: make(t).contiguous(memory_format=torch.channels_last))
    return derived(weight, form, make) if form else weight


def upfirdn2d(x: Tensor, f: Tensor, up: int = 1, down: int = 1,
              padding: Sequence[int] = (0, 0, 0, 0), gain: float = 1.0,
              flip_filter: bool = False) -> Tensor:
    """Upsample by zero insertion, pad, convolve with the FIR ``f``, downsample.

    ``x`` is ``[N, C, H, W]``, ``f`` a 2-D kernel ``[fh, fw]`` applied to every channel,
    ``padding`` is ``(left, right, top, bottom)`` (negative values crop). The filter is
    applied as a true convolution (flipped) unless ``flip_filter``; ``gain`` scales it
    (``up ** 2`` keeps the mean when zeros were inserted).
    """
    c = x.shape[1]
    fh, fw = f.shape
    px0, px1, py0, py1 = (int(p) for p in padding)
    k = (f * gain).to(x.dtype)
    if up > 1:
        # zero insertion + filtering == a strided transposed conv with the (unflipped) filter,
        # which never builds the mostly-zero upsampled tensor; then crop/pad to the window
        k = k.flip([0, 1]) if flip_filter else k
        x = F.conv_transpose2d(x, layout_like(k[None, None].repeat(c, 1, 1, 1), x), stride=up, groups=c)
        x = F.pad(x, [px0 - fw + 1, px1 + up - fw, py0 - fh + 1, py1 + up - fh])
    else:
        k = k if flip_filter else k.flip([0, 1])
        kernel = layout_like(k[None, None].repeat(c, 1, 1, 1), x)
        if px0 == px1 >= 0 and py0 == py1 >= 0:
            # the convolution's own zero padding: no padded copy of a (large) map
            x = F.conv2d(x, kernel, padding=(py0, px0), groups=c)
        else:
            x = F.conv2d(F.pad(x, [px0, px1, py0, py1]), kernel, groups=c)  # negative values crop
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def upsample2d(x: Tensor, f: Tensor, up: int = 2) -> Tensor:
    """Double (``up``) the size with the FIR ``f``: the skip path's image upsampling."""
    fh, fw = f.shape
    padding = ((fw + up - 1) // 2, (fw - up) // 2, (fh + up - 1) // 2, (fh - up) // 2)
    return upfirdn2d(x, f, up=up, padding=padding, gain=up ** 2)


def conv2d_up2(x: Tensor, weight: Tensor, f: Tensor, groups: int = 1, transposed: Tensor | None = None) -> Tensor:
    """A ``k x k`` convolution that doubles the size: transposed conv (stride 2), then the FIR.

    ``weight`` is ``[out, in/groups, k, k]``. The kernel acts as a true convolution
    here (the format's convention for its upsampling layers). For ``k = 1`` this is
    the same as upsampling with the FIR first and convolving after. ``transposed`` is the
    weight already in the ``[in, out/groups, k, k]`` layout the transposed convolution wants,
    when the caller keeps one (a fixed weight's, :func:`~dragwalk.models.weight_forms.derived`).
    """
    out_ch, in_per_group, kh, kw = weight.shape
    if kh == 1 and kw == 1:
        return F.conv2d(upsample2d(x, f), weight, groups=groups)
    w = transposed
    if w is None:
        w = weight.reshape(groups, out_ch // groups, in_per_group, kh, kw).transpose(1, 2)
        w = w.reshape(groups * in_per_group, out_ch // groups, kh, kw)
    x = F.conv_transpose2d(x, layout_like(w, x), stride=2, groups=groups)
    # after the transposed conv the result is (k-1) samples too long; pad so the FIR lands
    # the output on the doubled grid (this is where the format's padding conventions go)
    fh, fw = f.shape
    pad = kw // 2
    px0 = pad + (fw + 1) // 2 - (kw - 1)
    px1 = pad + (fw - 2) // 2 - (kw - 2)
    py0 = pad + (fh + 1) // 2 - (kh - 1)
    py1 = pad + (fh - 2) // 2 - (kh - 2)
    return upfirdn2d(x, f, padding=(px0, px1, py0, py1), gain=4)


def modulated_conv2d(x: Tensor, weight: Tensor, styles: Tensor, demodulate: bool = True,
                     up: bool = False, f: Tensor | None = None, noise: Tensor | None = None) -> Tensor:
    """StyleGAN2's style-modulated convolution, one grouped conv for the whole batch.

    Each sample ``i`` convolves with ``weight * styles[i]`` (scaling input channels);
    with ``demodulate`` each output channel of that kernel is rescaled to unit norm,
    which replaces AdaIN's instance normalisation. ``noise`` is added after the conv.
    ``x`` ``[N, I, H, W]``, ``weight`` ``[O, I, k, k]``, ``styles`` ``[N, I]``. Small fp32 maps
    take the equivalent activation form (:func:`_modulate_activations`).
    """
    n = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    if demodulate and x.dtype == torch.float32 and (x.shape[-2] * x.shape[-1] < out_ch * kh * kw
                                                    or (_by_winograd(weight, up) and winograd.applies(x, in_ch))):
        return _modulate_activations(x, weight, styles, up, f, noise)
    if x.dtype == torch.float16 and demodulate:
        # fp16 guard: rescale before multiplying; demodulation cancels both factors
        weight = weight * (1 / math.sqrt(in_ch * kh * kw)
                           / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
    if n == 1 and x.dtype == torch.float32:
        weight = fixed_like(weight, x)      # a channels-last base gives channels-last products
    w = weight.float().unsqueeze(0) * styles.float().reshape(n, 1, in_ch, 1, 1)
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
    w = w.reshape(n * out_ch, in_ch, kh, kw).to(x.dtype)
    x = x.reshape(1, n * in_ch, *x.shape[2:])
    w = layout_like(w, x)
    if up:
        assert f is not None, "an upsampling conv needs its FIR filter"
        x = conv2d_up2(x, w, f, groups=n)
    elif kh == kw == 1 and n == 1 and channels_last(x):
        # a 1x1 conv (ToRGB) on a channels-last map is a product over its pixels; the CPU
        # convolution first copied the whole map to NCHW for its 3 output channels (3x its cost)
        x = F.linear(x.permute(0, 2, 3, 1), w.reshape(out_ch, in_ch)).permute(0, 3, 1, 2)
    else:
        x = F.conv2d(x, w, padding=kh // 2, groups=n)
    x = x.reshape(n, out_ch, *x.shape[2:])
    if noise is not None:
        x = x + noise.to(x.dtype) if _differentiated(x) else x.add_(noise.to(x.dtype))
    return x


def _by_winograd(weight: Tensor, up: bool) -> bool:
    """A 3x3 convolution that keeps the size, which a frame may compute by :mod:`.winograd`."""
    return not up and weight.shape[-2:] == (3, 3)


def _modulate_activations(x: Tensor, weight: Tensor, styles: Tensor, up: bool, f: Tensor | None,
                          noise: Tensor | None) -> Tensor:
    """:func:`modulated_conv2d` (demodulated, fp32) with the styles on the activations: scale the
    input channels, convolve with the shared weight, scale each output channel by its
    demodulation factor ``(sum_i styles_i^2 * sum_k weight_oik^2 + 1e-8)^-1/2``. The same
    numbers to float rounding, since the convolution is linear.

    Why: the weight form builds ``[N, O, I, k, k]`` modulated kernels (2.4 M values per sample for
    a 512-channel layer) and, in a backward pass, their gradients. On a small map (a drag step's
    window, the first blocks) those element-wise passes cost more than the convolution; this
    form's extra work scales with the map instead (chosen when ``H * W < O * k * k``)."""
    n, in_ch = styles.shape
    out_ch, _, kh, _ = weight.shape
    s = styles.float()
    x = x * s.reshape(n, in_ch, 1, 1)
    if up:
        assert f is not None, "an upsampling conv needs its FIR filter"
        x = conv2d_up2(x, weight, f, transposed=fixed_like(weight, x, "transposed",
                                                           lambda t: t.float().transpose(0, 1).contiguous()))
    elif _by_winograd(weight, up) and winograd.applies(x, in_ch):
        x = winograd.conv3x3(x, derived(weight, "winograd", winograd.transform_weight))
    else:
        x = F.conv2d(x, fixed_like(weight, x, "float", lambda t: t.float()), padding=kh // 2)
    energy = derived(weight, "energy", lambda t: t.float().square().sum(dim=[2, 3]).t().contiguous())
    demod = (s.square() @ energy + 1e-8).rsqrt()
    if _differentiated(x) or _differentiated(demod):
        x = x * demod.reshape(n, out_ch, 1, 1)
        return x if noise is None else x + noise.to(x.dtype)
    x = x.mul_(demod.reshape(n, out_ch, 1, 1))
    return x if noise is None else x.add_(noise.to(x.dtype))
