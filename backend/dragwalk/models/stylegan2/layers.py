"""StyleGAN2's layers as small modules whose parameter names match NVIDIA's network pickles.

The names (``mapping.fc0.weight``, ``synthesis.b8.conv0.affine.bias``,
``synthesis.b4.const``, ``...noise_const``, ``...resample_filter``, ``...torgb.weight``)
are those of the pickle's module tree, so a pickle's tensors load with no renaming.
Constructor arguments carry the same names as the pickle's ``init_kwargs`` for the same
reason. Weights are stored unscaled, with the "equalised learning rate" gains applied
at run time, exactly as in the format.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from ..window import Window, crop
from ..weight_forms import derived
from .ops import (activation_gain, bias_act, conv2d_up2, modulated_conv2d, normalize_2nd_moment,
                  setup_filter, upsample2d)

DEFAULT_FILTER = (1, 3, 3, 1)
NOISE_MODES = ("const", "random", "none")
#: seeded noise maps kept per layer (a drag renders the same few settings again and again)
_NOISE_CACHE = 4


def _hw(resolution: int | Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` of a square side or of a pair."""
    if isinstance(resolution, int):
        return resolution, resolution
    height, width = resolution
    return int(height), int(width)


def seeded_noise(seed: int, index: int, shape: Sequence[int]) -> Tensor:
    """The noise map of synthesis layer ``index`` for ``seed``, drawn on the CPU (the same on every
    device). Each layer's stream is its own: ``seed * 64 + index`` (a network has < 64 layers)."""
    gen = torch.Generator(device="cpu").manual_seed(int(seed) * 64 + int(index))
    return torch.randn(*shape, generator=gen, dtype=torch.float32)


class FullyConnectedLayer(nn.Module):
    """Dense layer with equalised learning rate.

    Args:
        in_features: input width.
        out_features: output width.
        bias: whether the layer has a bias.
        activation: ``linear``, ``lrelu`` or ``relu`` (with its gain, see ``ops.bias_act``).
        lr_multiplier: the mapping network trains at 1/100 of the rate; the stored weight is
            divided by it, so the effective weight is ``weight * lr_multiplier / sqrt(in)``.
        bias_init: initial bias (1 for style affines, so styles start near 1).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 activation: str = "linear", lr_multiplier: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        activation_gain(activation)  # validates early
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def effective_weight(self) -> Tensor:
        """``[out, in]`` weight as the forward pass uses it (SeFa reads this); made once per weight
        (a 512 x 512 scaling per call cost more than the product with one w)."""
        return derived(self.weight, "effective", lambda t: t * self.weight_gain)

    def forward(self, x: Tensor) -> Tensor:
        w = self.effective_weight().to(x.dtype)
        b = None if self.bias is None else (self.bias * self.bias_gain).to(x.dtype)
        x = x.matmul(w.t())
        return bias_act(x, b, act=self.activation)


class MappingNetwork(nn.Module):
    """z (and a class label) -> w, broadcast to ``num_ws`` rows, with truncation.

    Args:
        z_dim: latent z size (0 for label-only models).
        c_dim: label size (0 = unconditional); labels are embedded and normalised.
        w_dim: style vector size.
        num_ws: rows of w+ (one per synthesis layer that takes a style).
        num_layers: dense layers.
        embed_features: label embedding width (default ``w_dim``).
        layer_features: hidden width (default ``w_dim``).
        activation: hidden activation.
        lr_multiplier: learning-rate multiplier of every dense layer.
        w_avg_beta: training's moving-average decay of w; when not ``None`` the network
            keeps ``w_avg``, the centre truncation pulls towards.
    """

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int, num_layers: int = 8,
                 embed_features: int | None = None, layer_features: int | None = None,
                 activation: str = "lrelu", lr_multiplier: float = 0.01,
                 w_avg_beta: float | None = 0.995):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, c_dim, w_dim, num_ws, num_layers
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        widths = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for i in range(num_layers):
            setattr(self, f"fc{i}", FullyConnectedLayer(widths[i], widths[i + 1], activation=activation,
                                                        lr_multiplier=lr_multiplier))
        if w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: Tensor | None, c: Tensor | None = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, broadcast: bool = True) -> Tensor:
        """``[N, num_ws, w_dim]`` (or ``[N, w_dim]`` without ``broadcast``)."""
        x = None
        if self.z_dim > 0:
            x = normalize_2nd_moment(z.float())
        if self.c_dim > 0:
            y = normalize_2nd_moment(self.embed(c.float()))
            x = y if x is None else torch.cat([x, y], dim=1)
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        if truncation_psi != 1 and truncation_cutoff is not None and broadcast:
            return self.truncate(x, truncation_psi, truncation_cutoff)
        if truncation_psi != 1:
            x = self.truncate(x, truncation_psi)
        return x.unsqueeze(1).repeat(1, self.num_ws, 1) if broadcast else x

    def truncate(self, w: Tensor, psi: float, cutoff: int | None = None) -> Tensor:
        """Pull ``w`` (``[N, D]``) towards ``w_avg`` by ``psi``; with ``cutoff`` only the
        first ``cutoff`` rows of the broadcast w+ are pulled (the result is then w+)."""
        if not hasattr(self, "w_avg"):
            raise ValueError("this mapping network keeps no w_avg, so truncation is undefined")
        if cutoff is None:
            return self.w_avg.lerp(w, psi)
        ws = w.unsqueeze(1).repeat(1, self.num_ws, 1)
        ws[:, :cutoff] = self.w_avg.lerp(ws[:, :cutoff], psi)
        return ws


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally doubling the size), noise, bias, leaky ReLU.

    Args:
        in_channels / out_channels: widths.
        w_dim: style vector size (input of the affine that makes the styles).
        resolution: output side, or ``(height, width)`` of a non-square network (the size of
            the constant noise map).
        kernel_size: conv kernel side.
        up: 2 for the first conv of a block (upsamples), else 1.
        use_noise: per-pixel noise input scaled by a learnt ``noise_strength``.
        activation: activation after the bias.
        resample_filter: FIR taps for the upsampling.
        conv_clamp: clamp of the activations (``None`` = off).
        channels_last: memory-format hint of the format; ignored.
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int,
                 kernel_size: int = 3, up: int = 1, use_noise: bool = True, activation: str = "lrelu",
                 resample_filter: Sequence[float] = DEFAULT_FILTER, conv_clamp: float | None = None,
                 channels_last: bool = False):
        super().__init__()
        self.resolution, self.up, self.use_noise = resolution, up, use_noise
        height, width = _hw(resolution)
        self.activation, self.conv_clamp = activation, conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.act_gain = activation_gain(activation)
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([height, width]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        #: position among the network's synthesis layers (set by ``SynthesisNetwork``): seeds its noise
        self.noise_index = 0
        self._seeded: dict[tuple[int, torch.device], Tensor] = {}

    def _seeded_noise(self, seed: int, device: torch.device) -> Tensor:
        key = (int(seed), device)
        noise = self._seeded.get(key)
        if noise is None:
            noise = seeded_noise(seed, self.noise_index, self.noise_const.shape).to(device)
            while len(self._seeded) >= _NOISE_CACHE:
                self._seeded.pop(next(iter(self._seeded)))
            self._seeded[key] = noise
        return noise

    def forward(self, x: Tensor, w: Tensor, noise_mode: str = "const", gain: float = 1.0,
                noise_seed: int | None = None, window: Window | None = None) -> Tensor:
        """``noise_mode`` ``random`` draws fresh maps, from ``noise_seed`` when given (reproducible,
        the same map for every batch row), else from torch's global generator per call.

        ``x`` may be a part of the input map (:mod:`dragwalk.models.window`); ``window`` then
        says which cells of this layer's output the result covers, and the noise is read there."""
        styles = self.affine(w.float())
        noise = None
        if self.use_noise and noise_mode == "random" and noise_seed is not None:
            noise = self._seeded_noise(noise_seed, x.device) * self.noise_strength
        elif self.use_noise and noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, *self.noise_const.shape],
                                device=x.device) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        if noise is not None and window is not None:
            noise = crop(noise, window)
        x = modulated_conv2d(x, self.weight, styles, demodulate=True, up=self.up == 2,
                             f=self.resample_filter, noise=noise)
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return bias_act(x, self.bias, act=self.activation, gain=self.act_gain * gain, clamp=clamp, scratch=True)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv to image channels, without demodulation.

    Args:
        in_channels / out_channels: widths (out = image channels).
        w_dim: style vector size.
        kernel_size: conv kernel side (1 in every published model).
        conv_clamp: output clamp (``None`` = off).
        channels_last: ignored.
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1,
                 conv_clamp: float | None = None, channels_last: bool = False):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        styles = self.affine(w.float()) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False)
        return bias_act(x, self.bias, clamp=self.conv_clamp, scratch=True)


class SkipConv(nn.Module):
    """The 'resnet' architecture's shortcut: 1x1 conv that doubles the size, no bias.

    Args:
        in_channels / out_channels: widths.
        resample_filter: FIR taps for the upsampling.
    """

    def __init__(self, in_channels: int, out_channels: int, resample_filter: Sequence[float] = DEFAULT_FILTER):
        super().__init__()
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: Tensor, gain: float = 1.0) -> Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        return conv2d_up2(x, w, self.resample_filter.to(x.dtype)) * gain


class SynthesisBlock(nn.Module):
    """One resolution: (const | upsampling conv0), conv1, and ToRGB.

    Args:
        in_channels: width coming in (0 for the first, 4x4 block which starts from ``const``).
        out_channels: width of this block.
        w_dim: style vector size.
        resolution: this block's side, or ``(height, width)`` in a non-square network.
        img_channels: image channels.
        is_last: the last block always has a ToRGB.
        architecture: ``skip`` (ToRGB per block, images summed with upsampling: the
            StyleGAN2 default), ``orig`` (ToRGB only at the end) or ``resnet``
            (ToRGB only at the end, residual shortcut per block).
        resample_filter: FIR taps.
        conv_clamp: activation clamp.
        use_fp16: the format's flag for the top blocks; honoured on CUDA when the
            generator enables half precision, otherwise the block computes in fp32.
        fp16_channels_last: ignored (memory-format hint).
        **layer_kwargs: passed to both ``SynthesisLayer``s (kernel_size, use_noise, activation).
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int,
                 img_channels: int, is_last: bool, architecture: str = "skip",
                 resample_filter: Sequence[float] = DEFAULT_FILTER, conv_clamp: float | None = None,
                 use_fp16: bool = False, fp16_channels_last: bool = False, **layer_kwargs):
        super().__init__()
        if architecture not in ("orig", "skip", "resnet"):
            raise ValueError(f"unknown synthesis architecture {architecture!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.resolution, self.is_last, self.architecture, self.use_fp16 = resolution, is_last, architecture, use_fp16
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, *_hw(resolution)]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2,
                                        resample_filter=resample_filter, conv_clamp=conv_clamp, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution,
                                    conv_clamp=conv_clamp, **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = SkipConv(in_channels, out_channels, resample_filter)

    def features(self, x: Tensor | None, ws: Tensor, noise_mode: str = "const", fp16: bool = False,
                 noise_seed: int | None = None) -> Tensor:
        """This block's activation (before ToRGB) from the previous block's."""
        dtype = torch.float16 if (fp16 and self.use_fp16) else torch.float32
        rows = ws.unbind(dim=1)
        noise = {"noise_mode": noise_mode, "noise_seed": noise_seed}
        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)
            return self.conv1(x, rows[0], **noise)
        x = x.to(dtype)
        if self.architecture == "resnet":
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x, rows[0], **noise)
            return y + self.conv1(x, rows[1], gain=math.sqrt(0.5), **noise)
        x = self.conv0(x, rows[0], **noise)
        return self.conv1(x, rows[1], **noise)

    def skip_image(self, img: Tensor | None) -> Tensor | None:
        """The previous blocks' image brought to this block's size (``None`` before the first)."""
        return None if img is None else upsample2d(img, self.resample_filter)

    def image(self, x: Tensor, img: Tensor | None, ws: Tensor, upsampled: bool = False) -> Tensor | None:
        """The image so far: the previous one upsampled (unless ``upsampled`` says it already
        is, see :meth:`skip_image`), plus this block's ToRGB (fp32)."""
        if img is not None and not upsampled:
            img = upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, ws[:, self.num_conv]).float()
            img = y if img is None else img + y
        return img

    def forward(self, x: Tensor | None, img: Tensor | None, ws: Tensor, noise_mode: str = "const",
                fp16: bool = False, noise_seed: int | None = None) -> tuple[Tensor, Tensor | None]:
        """``ws`` is ``[N, num_conv + num_torgb, w_dim]``; returns (features, image so far)."""
        x = self.features(x, ws, noise_mode, fp16, noise_seed)
        return x, self.image(x, img, ws)


class SynthesisNetwork(nn.Module):
    """The stack of blocks from 4x4 to ``img_resolution``.

    Args:
        w_dim: style vector size.
        img_resolution: output side (a power of two >= 4); the longer side of a non-square network.
        img_channels: image channels.
        init_res: ``(height, width)`` of the first block's constant input: ``(4, 4)`` (square), or
            e.g. ``(4, 2)`` for 2:1 portrait images (StyleGAN-Human's full-body models). Every
            block doubles both sides; block ``b<r>`` is ``r * init_res / 4``.
        channel_base: width of a block at resolution r is ``min(channel_base // r, channel_max)``.
        channel_max: the widest a block may be.
        num_fp16_res: how many of the highest resolutions are flagged for fp16 (never
            below 8x8), as in the format.
        **block_kwargs: passed to every ``SynthesisBlock`` (architecture, conv_clamp, ...).
    """

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_fp16_res: int = 0, init_res: Sequence[int] = (4, 4),
                 **block_kwargs):
        super().__init__()
        log2 = int(math.log2(img_resolution))
        if img_resolution < 4 or 2 ** log2 != img_resolution:
            raise ValueError(f"StyleGAN2 resolution must be a power of two >= 4, got {img_resolution}")
        h0, w0 = (int(v) for v in init_res)
        if max(h0, w0) != 4 or min(h0, w0) not in (1, 2, 4):
            raise ValueError(f"init_res must be (4, 4), (4, 2), (2, 4), (4, 1) or (1, 4), got {tuple(init_res)}")
        self.init_res = (h0, w0)
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        #: (height, width) of the image
        self.img_size = (img_resolution * h0 // 4, img_resolution * w0 // 4)
        self.block_resolutions = [2 ** i for i in range(2, log2 + 1)]
        channels = {r: min(channel_base // r, channel_max) for r in self.block_resolutions}
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            side = res if (h0, w0) == (4, 4) else (res * h0 // 4, res * w0 // 4)
            block = SynthesisBlock(channels[res // 2] if res > 4 else 0, channels[res], w_dim, side,
                                   img_channels, is_last=res == img_resolution,
                                   use_fp16=res >= fp16_resolution, **block_kwargs)
            self.num_ws += block.num_conv
            if block.is_last:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)
        index = 0
        for _, block in self.blocks():
            for layer in (getattr(block, "conv0", None), block.conv1):
                if layer is not None:
                    layer.noise_index = index
                    index += 1

    def blocks(self) -> list[tuple[str, SynthesisBlock]]:
        return [(f"b{r}", getattr(self, f"b{r}")) for r in self.block_resolutions]

    def block_ws(self, ws: Tensor) -> list[Tensor]:
        """The w+ rows each block reads: its convs' rows, and for ToRGB the next row
        (shared with the next block's first conv), as in the format."""
        out, start = [], 0
        for _, block in self.blocks():
            out.append(ws.narrow(1, start, block.num_conv + block.num_torgb))
            start += block.num_conv
        return out

    def forward(self, ws: Tensor, noise_mode: str = "const", fp16: bool = False,
                noise_seed: int | None = None) -> Tensor:
        x = img = None
        for (_, block), rows in zip(self.blocks(), self.block_ws(ws)):
            x, img = block(x, img, rows, noise_mode, fp16, noise_seed)
        return img
