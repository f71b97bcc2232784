"""Conversions between generator tensors and images people see."""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """``[1, 3, H, W]`` or ``[3, H, W]`` in ``[-1, 1]`` -> ``H x W x 3`` uint8."""
    if image.dim() == 4:
        image = image[0]
    array = ((image.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return array.permute(1, 2, 0).cpu().numpy()


def to_pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray(to_uint8(image))


def from_uint8(array: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """``H x W x 3`` uint8 -> ``[1, 3, H, W]`` in ``[-1, 1]``."""
    tensor = torch.from_numpy(np.ascontiguousarray(array)).float().permute(2, 0, 1)[None]
    return (tensor / 127.5 - 1).to(device)


def encode(image: torch.Tensor, fmt: str = "PNG", quality: int = 90) -> bytes:
    buf = io.BytesIO()
    pil = to_pil(image)
    if fmt.upper() == "JPEG":
        pil.save(buf, format="JPEG", quality=quality)
    else:
        pil.save(buf, format=fmt)
    return buf.getvalue()
