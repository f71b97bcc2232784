"""Image similarity measures for inversion: PSNR, SSIM and the optimised loss.

Pure functions on ``[N, 3, H, W]`` tensors in ``[-1, 1]``. SSIM is written here in
torch (not taken from scikit-image) because the loss needs its gradient.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

#: SSIM constants for images mapped to [0, 1] (K1 = 0.01, K2 = 0.03, data range 1)
_C1 = 0.01 ** 2
_C2 = 0.03 ** 2


def psnr(image: Tensor, target: Tensor) -> Tensor:
    """Peak signal-to-noise ratio in dB per batch element, for a data range of 2 ([-1, 1])."""
    mse = ((image.float() - target.float()) ** 2).flatten(1).mean(1).clamp_min(1e-12)
    return 10.0 * torch.log10(4.0 / mse)


def _gaussian_1d(size: int, sigma: float, device, dtype) -> Tensor:
    coords = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(coords ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def ssim(image: Tensor, target: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Structural similarity per batch element (Wang et al. 2004: Gaussian 11x11, sigma 1.5).

    Computed on each colour channel and averaged, over the valid region only (no
    padding), which is how the paper and scikit-image's ``gaussian_weights=True``
    mode define it, on images mapped to [0, 1] (SSIM is not shift invariant: the
    usual figures assume non-negative pixels). Small images get a window that fits them. The five local
    statistics are blurred in one separable depthwise convolution (the cost of
    SSIM would otherwise exceed that of the generator at 64 px).
    """
    channels = image.shape[1]
    window = min(window, image.shape[-1], image.shape[-2])
    if window % 2 == 0:
        window -= 1
    g = _gaussian_1d(window, sigma, image.device, image.dtype)
    image, target = (image + 1) * 0.5, (target + 1) * 0.5
    stack = torch.cat([image, target, image * image, target * target, image * target], dim=1)
    n = stack.shape[1]
    stack = F.conv2d(stack, g.view(1, 1, 1, -1).expand(n, 1, 1, window), groups=n)
    stack = F.conv2d(stack, g.view(1, 1, -1, 1).expand(n, 1, window, 1), groups=n)
    mu_x, mu_y, xx, yy, xy = stack.split(channels, dim=1)
    var_x = xx - mu_x ** 2
    var_y = yy - mu_y ** 2
    cov = xy - mu_x * mu_y
    num = (2 * mu_x * mu_y + _C1) * (2 * cov + _C2)
    den = (mu_x ** 2 + mu_y ** 2 + _C1) * (var_x + var_y + _C2)
    return (num / den).flatten(1).mean(1)


def multiscale_ssim(image: Tensor, target: Tensor, scales: int = 2) -> Tensor:
    """Mean SSIM over ``scales`` resolutions (each halving): structure at several sizes.

    A plain average rather than the product of Wang's MS-SSIM: at 64 px the coarse
    scales are tiny and a product would be dominated by them.
    """
    total = ssim(image, target)
    for _ in range(scales - 1):
        image, target = F.avg_pool2d(image, 2), F.avg_pool2d(target, 2)
        if min(image.shape[-2:]) < 8:
            scales -= 1
            break
        total = total + ssim(image, target)
    return total / scales


@dataclass(frozen=True)
class LossWeights:
    """How much each term counts in the reconstruction loss."""

    mse: float = 1.0
    l1: float = 0.5
    ssim: float = 0.5
    features: float = 0.0


def reconstruction_loss(image: Tensor, target: Tensor, weights: LossWeights,
                        features: "FeatureNet | None" = None) -> Tensor:
    """Per-element loss ``[N]``: pixel terms (MSE, L1), structure (1 - SSIM), optional features.

    Per element so a batch of restarts can be optimised together and ranked.
    """
    diff = image - target
    loss = weights.mse * (diff ** 2).flatten(1).mean(1) + weights.l1 * diff.abs().flatten(1).mean(1)
    if weights.ssim:
        loss = loss + weights.ssim * (1.0 - multiscale_ssim(image, target))
    if weights.features and features is not None:
        loss = loss + weights.features * features.distance(image, target)
    return loss


class FeatureNet(torch.nn.Module):
    """A fixed, randomly initialised conv net whose activations serve as a perceptual term.

    No pretrained perceptual network is available without downloads (dlib's face
    descriptor is not differentiable), but random conv features are known to carry
    a useful texture/edge signal. The seed fixes the weights, so the loss is
    reproducible; nothing is trained.
    """

    def __init__(self, seed: int = 0, widths: tuple[int, ...] = (32, 64, 128)):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        layers: list[torch.nn.Module] = []
        channels = 3
        for width in widths:
            conv = torch.nn.Conv2d(channels, width, 3, stride=2, padding=1, bias=False)
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen) / math.sqrt(9 * channels))
            layers.append(conv)
            channels = width
        self.convs = torch.nn.ModuleList(layers)
        self.requires_grad_(False)

    def distance(self, image: Tensor, target: Tensor) -> Tensor:
        """Mean squared difference of normalised activations over all layers, per element."""
        total = torch.zeros(image.shape[0], device=image.device, dtype=image.dtype)
        x, y = image, target
        for conv in self.convs:
            x, y = F.leaky_relu(conv(x), 0.2), F.leaky_relu(conv(y), 0.2)
            scale = y.detach().pow(2).mean().clamp_min(1e-8)
            total = total + ((x - y) ** 2).flatten(1).mean(1) / scale
        return total / len(self.convs)
