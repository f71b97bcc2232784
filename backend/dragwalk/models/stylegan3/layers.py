"""StyleGAN3's alias-free synthesis in plain PyTorch, named as in NVIDIA's network pickles.

The network (Karras et al. 2021, "Alias-Free Generative Adversarial Networks") is a Fourier
feature input followed by ``num_layers`` modulated convolutions and a ToRGB layer. Each conv
works on a signal with a known sampling rate and cutoff: after the convolution the signal is
upsampled by a low-pass FIR, put through the leaky ReLU (which creates high frequencies) and
low-passed again while downsampling ("filtered leaky ReLU"). The per-layer schedule of
cutoffs, stopbands, sampling rates, sizes and widths follows from a handful of config values
(:func:`layer_schedule`); the FIR filters themselves are buffers loaded from the file
(``up_filter``, ``down_filter``: 1-D separable taps, or 2-D radial ones in config R).

Names (``synthesis.input.freqs``, ``synthesis.L3_52_512.down_filter``, ...) and constructor
arguments are the pickle's, so tensors load with no renaming.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..stylegan2.layers import FullyConnectedLayer
from ..stylegan2.ops import bias_act


def layer_schedule(img_resolution: int, img_channels: int, channel_base: int, channel_max: int,
                   num_layers: int = 14, num_critical: int = 2, first_cutoff: float = 2,
                   first_stopband: float = 2 ** 2.1, last_stopband_rel: float = 2 ** 0.3,
                   margin_size: int = 10) -> dict[str, np.ndarray]:
    """Per layer (index 0 is the Fourier input's output): cutoff, stopband, sampling rate,
    transition half-width, side (sampling rate plus margins; the last two are the image) and
    width. Cutoffs and stopbands rise geometrically until the last ``num_critical`` layers."""
    last_cutoff = img_resolution / 2
    last_stopband = last_cutoff * last_stopband_rel
    exponents = np.minimum(np.arange(num_layers + 1) / (num_layers - num_critical), 1)
    cutoffs = first_cutoff * (last_cutoff / first_cutoff) ** exponents
    stopbands = first_stopband * (last_stopband / first_stopband) ** exponents
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, img_resolution))))
    half_widths = np.maximum(stopbands, rates / 2) - cutoffs
    sizes = rates + margin_size * 2
    sizes[-2:] = img_resolution
    channels = np.rint(np.minimum((channel_base / 2) / cutoffs, channel_max))
    channels[-1] = img_channels
    return {"cutoffs": cutoffs, "stopbands": stopbands, "rates": rates, "half_widths": half_widths,
            "sizes": sizes, "channels": channels}


def lowpass_taps(numtaps: int, cutoff: float, width: float, fs: float) -> Tensor:
    """A Kaiser-windowed sinc low-pass (the window's beta from the transition width).

    Only a freshly built network uses it; a loaded one gets the file's filters. Radial (2-D)
    filters of config R are approximated by the outer product of this design."""
    nyq = fs / 2
    atten = 2.285 * (numtaps - 1) * math.pi * (width / nyq) + 7.95
    beta = 0.1102 * (atten - 8.7) if atten > 50 else (0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21)
                                                      if atten > 21 else 0.0)
    n = np.arange(numtaps) - (numtaps - 1) / 2
    taps = 2 * cutoff / fs * np.sinc(2 * cutoff / fs * n) * np.kaiser(numtaps, beta)
    return torch.as_tensor(taps / taps.sum(), dtype=torch.float32)


def fir_resample(x: Tensor, f: Tensor | None, up: int = 1, down: int = 1,
                 padding: tuple[int, int, int, int] = (0, 0, 0, 0), gain: float = 1.0) -> Tensor:
    """Upsample by zero insertion, pad ``(left, right, top, bottom)`` (negative crops), filter
    with ``f`` as a true convolution, keep every ``down``-th sample.

    A 1-D ``f`` acts separably (rows, then columns: 2k multiplies a sample instead of k^2), a
    2-D one (config R's radial filters) directly; ``None`` is the identity. The stride of the
    filtering convolution does the downsampling, so dropped samples are never computed."""
    n, c, h, w = x.shape
    if up > 1:
        z = x.new_zeros([n, c, h * up, w * up])
        z[:, :, ::up, ::up] = x
        x = z
    x = F.pad(x, list(padding))
    if f is None:
        x = x[:, :, ::down, ::down]
        return x * gain if gain != 1 else x
    f = f.to(x.dtype)
    if f.dim() == 1:
        k = (f * math.sqrt(gain)).flip(0)
        x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), stride=(1, down), groups=c)
        return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), stride=(down, 1), groups=c)
    k = (f * gain).flip([0, 1])
    return F.conv2d(x, k[None, None].expand(c, 1, -1, -1), stride=down, groups=c)


class SynthesisInput(nn.Module):
    """Fourier features: ``channels`` sinusoids of fixed frequencies, rotated and translated
    by an affine of w, sampled on a ``size`` grid at ``sampling_rate``, then mixed linearly.

    Args:
        w_dim: style vector size.
        channels: number of sinusoids (and output width).
        size: output side in samples.
        sampling_rate: samples per unit length of the image (the image spans one unit).
        bandwidth: cutoff; frequencies near it fade out, so nothing aliases.
    """

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float):
        super().__init__()
        self.w_dim, self.channels, self.size = w_dim, channels, int(size)
        self.sampling_rate, self.bandwidth = float(sampling_rate), float(bandwidth)
        freqs = torch.randn([channels, 2])
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * bandwidth
        self.weight = nn.Parameter(torch.randn([channels, channels]))
        self.affine = FullyConnectedLayer(w_dim, 4)
        with torch.no_grad():  # starts as the identity transform: rotation (1, 0), no translation
            self.affine.weight.zero_()
            self.affine.bias.copy_(torch.tensor([1.0, 0, 0, 0]))
        self.register_buffer("transform", torch.eye(3))
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", torch.rand([channels]) - 0.5)

    def forward(self, w: Tensor) -> Tensor:
        n = w.shape[0]
        t = self.affine(w.float())                                   # (cos, sin, tx, ty), unnormalised
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        rot = torch.eye(3, device=w.device).repeat(n, 1, 1)
        rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = t[:, 0], -t[:, 1], t[:, 1], t[:, 0]
        shift = torch.eye(3, device=w.device).repeat(n, 1, 1)
        shift[:, 0, 2], shift[:, 1, 2] = -t[:, 2], -t[:, 3]
        m = rot @ shift @ self.transform.unsqueeze(0)
        phases = self.phases.unsqueeze(0) + (self.freqs.unsqueeze(0) @ m[:, :2, 2:]).squeeze(2)
        freqs = self.freqs.unsqueeze(0) @ m[:, :2, :2]               # [N, C, 2]
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth)
                      / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        # sample centres in image units: (i + 0.5 - size / 2) / sampling_rate
        coords = (torch.arange(self.size, device=w.device, dtype=torch.float32) + 0.5
                  - self.size / 2) / self.sampling_rate
        gx, gy = coords.view(1, -1).expand(self.size, -1), coords.view(-1, 1).expand(-1, self.size)
        grid = torch.stack([gx, gy], dim=-1)                         # [H, W, 2] (x, y)
        x = torch.einsum("hwk,nck->nhwc", grid, freqs) + phases[:, None, None, :]
        x = torch.sin(x * (2 * math.pi)) * amplitudes[:, None, None, :]
        x = x @ (self.weight / math.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2)


class SynthesisLayer(nn.Module):
    """Modulated conv, then the filtered leaky ReLU (up by ``up_factor``, down by ``down_factor``).

    Args follow the format: ``is_torgb`` (1x1 conv, no demodulation, linear), sizes, sampling
    rates, cutoffs and half-widths of the input and output signals, ``conv_kernel`` (3 in
    config T, 1 in R), ``filter_size`` (taps per sampling-rate factor), ``lrelu_upsampling``,
    ``use_radial_filters`` (config R's 2-D downsampling filters), ``conv_clamp``. The input is
    divided by the square root of ``magnitude_ema`` (training's running mean square).
    """

    def __init__(self, w_dim: int, is_torgb: bool, is_critically_sampled: bool, use_fp16: bool,
                 in_channels: int, out_channels: int, in_size: int, out_size: int,
                 in_sampling_rate: float, out_sampling_rate: float, in_cutoff: float, out_cutoff: float,
                 in_half_width: float, out_half_width: float, conv_kernel: int = 3, filter_size: int = 6,
                 lrelu_upsampling: int = 2, use_radial_filters: bool = False, conv_clamp: float | None = 256,
                 magnitude_ema_beta: float = 0.999):
        super().__init__()
        self.is_torgb, self.use_fp16 = is_torgb, use_fp16
        self.in_channels, self.out_channels = in_channels, out_channels
        self.in_size, self.out_size = int(in_size), int(out_size)
        self.out_sampling_rate = float(out_sampling_rate)
        self.conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_clamp = conv_clamp
        tmp_rate = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, self.conv_kernel, self.conv_kernel]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))
        self.up_factor = int(round(tmp_rate / in_sampling_rate))
        self.down_factor = int(round(tmp_rate / out_sampling_rate))
        if in_sampling_rate * self.up_factor != tmp_rate or out_sampling_rate * self.down_factor != tmp_rate:
            raise ValueError("sampling rates must divide the layer's internal rate")
        up_taps = filter_size * self.up_factor if self.up_factor > 1 and not is_torgb else 1
        down_taps = filter_size * self.down_factor if self.down_factor > 1 and not is_torgb else 1
        if up_taps > 1:
            self.register_buffer("up_filter", lowpass_taps(up_taps, in_cutoff, in_half_width * 2, tmp_rate))
        else:
            self.up_filter = None
        if down_taps > 1:
            taps = lowpass_taps(down_taps, out_cutoff, out_half_width * 2, tmp_rate)
            radial = use_radial_filters and not is_critically_sampled
            self.register_buffer("down_filter", torch.outer(taps, taps) if radial else taps)
        else:
            self.down_filter = None
        # padding before the up-filter so that after down-sampling exactly out_size samples
        # remain, placed symmetrically (the paper's appendix C.3)
        total = (self.out_size - 1) * self.down_factor + 1
        total -= (self.in_size + self.conv_kernel - 1) * self.up_factor
        total += up_taps + down_taps - 2
        lo = (total + self.up_factor) // 2
        self.padding = (lo, total - lo, lo, total - lo)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        n = x.shape[0]
        styles = self.affine(w.float())
        if self.is_torgb:
            styles = styles / math.sqrt(self.in_channels * self.conv_kernel ** 2)
        weight = self.weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)
        if not self.is_torgb:
            weight = weight * (weight.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
        weight = weight * self.magnitude_ema.rsqrt()
        k = self.conv_kernel
        x = x.float().reshape(1, n * self.in_channels, *x.shape[2:])
        x = F.conv2d(x, weight.reshape(n * self.out_channels, self.in_channels, k, k), padding=k - 1, groups=n)
        x = x.reshape(n, self.out_channels, *x.shape[2:])
        x = x + self.bias.reshape(1, -1, 1, 1)
        x = fir_resample(x, self.up_filter, up=self.up_factor, padding=self.padding, gain=self.up_factor ** 2)
        if self.is_torgb:
            x = bias_act(x, None, act="linear", gain=1.0, clamp=self.conv_clamp)
        else:
            x = bias_act(x, None, act="lrelu", clamp=self.conv_clamp)
        x = fir_resample(x, self.down_filter, down=self.down_factor)
        return x


SYNTHESIS_OPTIONS = {"channel_base", "channel_max", "num_layers", "num_critical", "first_cutoff",
                     "first_stopband", "last_stopband_rel", "margin_size", "output_scale", "num_fp16_res",
                     "conv_kernel", "filter_size", "lrelu_upsampling", "use_radial_filters", "conv_clamp",
                     "magnitude_ema_beta"}


class SynthesisNetwork(nn.Module):
    """``input`` then layers ``L{i}_{size}_{channels}``; the last is the ToRGB layer.

    Args: ``w_dim``, ``img_resolution``, ``img_channels``, the schedule's values (see
    :func:`layer_schedule`), ``output_scale`` (the image is multiplied by it, 0.25),
    ``num_fp16_res`` (which layers the format flags for fp16; computed in fp32 here), and
    per-layer options (``conv_kernel``, ``filter_size``, ``lrelu_upsampling``,
    ``use_radial_filters``, ``conv_clamp``, ``magnitude_ema_beta``).
    """

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_layers: int = 14, num_critical: int = 2, first_cutoff: float = 2,
                 first_stopband: float = 2 ** 2.1, last_stopband_rel: float = 2 ** 0.3, margin_size: int = 10,
                 output_scale: float = 0.25, num_fp16_res: int = 4, **layer_kwargs):
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.num_ws = num_layers + 2
        self.output_scale = output_scale
        s = layer_schedule(img_resolution, img_channels, channel_base, channel_max, num_layers, num_critical,
                           first_cutoff, first_stopband, last_stopband_rel, margin_size)
        self.rates = [float(r) for r in s["rates"]]
        self.input = SynthesisInput(w_dim, int(s["channels"][0]), int(s["sizes"][0]), s["rates"][0],
                                    s["cutoffs"][0])
        self.layer_names: list[str] = []
        for idx in range(num_layers + 1):
            prev = max(idx - 1, 0)
            layer = SynthesisLayer(
                w_dim, is_torgb=idx == num_layers, is_critically_sampled=idx >= num_layers - num_critical,
                use_fp16=bool(s["rates"][idx] * 2 ** num_fp16_res > img_resolution),
                in_channels=int(s["channels"][prev]), out_channels=int(s["channels"][idx]),
                in_size=int(s["sizes"][prev]), out_size=int(s["sizes"][idx]),
                in_sampling_rate=int(s["rates"][prev]), out_sampling_rate=int(s["rates"][idx]),
                in_cutoff=s["cutoffs"][prev], out_cutoff=s["cutoffs"][idx],
                in_half_width=s["half_widths"][prev], out_half_width=s["half_widths"][idx], **layer_kwargs)
            name = f"L{idx}_{layer.out_size}_{layer.out_channels}"
            setattr(self, name, layer)
            self.layer_names.append(name)

    def layers(self) -> list[tuple[str, SynthesisLayer]]:
        return [(n, getattr(self, n)) for n in self.layer_names]

    def forward(self, ws: Tensor, **_ignored) -> Tensor:
        rows = ws.unbind(dim=1)
        x = self.input(rows[0])
        for (_, layer), w in zip(self.layers(), rows[1:]):
            x = layer(x, w)
        return x * self.output_scale
