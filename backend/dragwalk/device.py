"""Where torch work runs: CUDA, then Apple MPS, then CPU, unless the user says otherwise."""

from __future__ import annotations

import torch


def pick_device(preference: str | None = None) -> torch.device:
    """``preference`` is ``None``/``"auto"`` or a torch device string (``cpu``, ``cuda:1``, ``mps``)."""
    if preference in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(preference)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {preference!r}: {exc}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {preference!r} asked for, but CUDA is not available here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {preference!r} asked for, but MPS is not available here")
    return device


def pick_dtype(device: torch.device, half: bool = False) -> torch.dtype:
    """fp32 by default; fp16 only on a GPU and only when asked for."""
    if half and device.type in ("cuda", "mps"):
        return torch.float16
    return torch.float32
