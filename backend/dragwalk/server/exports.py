"""Animations of a drag: the JPEG frames a session kept, as a GIF (Pillow) or an MP4 (imageio-ffmpeg,
where installed)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


class ExportUnavailable(RuntimeError):
    """The export needs an encoder this installation lacks."""


def _images(frames: list[bytes], size: int | None) -> list[Image.Image]:
    """The frames decoded, the longer side scaled to ``size`` (the aspect kept: a 2:1 portrait
    model's frames stay 2:1; sides rounded to even numbers, which video encoders need)."""
    images = [Image.open(io.BytesIO(f)).convert("RGB") for f in frames]
    if size and images:
        width, height = images[0].size
        scale = size / max(width, height)
        target = (max(2, 2 * round(width * scale / 2)), max(2, 2 * round(height * scale / 2)))
        images = [im.resize(target, Image.NEAREST) for im in images]
    return images


def gif_bytes(frames: list[bytes], fps: float = 20.0, size: int | None = 256) -> bytes:
    """An endlessly looping GIF; the last frame is held a little longer so the result is seen."""
    if not frames:
        raise ValueError("no frames")
    images = _images(frames, size)
    duration = [max(20, int(1000 / fps))] * len(images)
    duration[-1] = 1000
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)
    return buffer.getvalue()


def mp4_available() -> bool:
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return False
    return True


def mp4_bytes(frames: list[bytes], fps: float = 20.0, size: int | None = 256) -> bytes:
    if not frames:
        raise ValueError("no frames")
    if not mp4_available():
        raise ExportUnavailable("MP4 export needs imageio-ffmpeg (pip install imageio-ffmpeg); GIF works without it")
    import imageio.v3 as iio

    arrays = np.stack([np.asarray(im) for im in _images(frames, size)])
    return iio.imwrite("<bytes>", arrays, extension=".mp4", fps=fps, codec="libx264")
