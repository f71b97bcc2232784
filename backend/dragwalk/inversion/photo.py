"""Untrusted photo bytes -> a validated RGB image.

The server hands this function whatever a browser uploaded, so it must refuse
everything that is not a plain still photo of a sane size *before* pixels are
decoded: PIL reads only the header in ``Image.open``, which is where the pixel
count is checked (a tiny PNG can claim 100 000 x 100 000 pixels and would ask for
30 GB once decoded). The type is judged by the file's magic bytes, never by a
name or a declared content type.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

#: largest upload accepted (bytes)
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
#: largest image accepted (width x height)
MAX_PIXELS = 40_000_000
#: smallest side accepted: below this there is no face to find and nothing to invert
MIN_SIDE = 8

#: PIL format name -> what the message calls it
ALLOWED_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "WEBP": "WebP"}


class PhotoError(ValueError):
    """A photo that cannot be used: wrong type, too big, truncated or corrupt. The message says why."""


def sniff_format(data: bytes) -> str | None:
    """The format named by the magic bytes (PNG, JPEG or WEBP), or ``None`` for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def decode_photo(data: bytes, max_bytes: int = MAX_UPLOAD_BYTES,
                 max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Validate and decode an uploaded photo into an RGB PIL image.

    Checks, in this order: byte size, magic bytes (PNG/JPEG/WebP only), the
    header's pixel count (before any pixel is decoded), then the full decode
    (a truncated or corrupt file fails here). EXIF orientation is applied so
    phone photos stand upright; transparency is flattened onto white.

    Raises:
        PhotoError: with a message fit to show the person who uploaded the file.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise PhotoError(f"photo must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise PhotoError("photo is empty")
    if len(data) > max_bytes:
        raise PhotoError(f"photo is {len(data) / 2**20:.1f} MiB; the limit is {max_bytes / 2**20:.0f} MiB")
    sniffed = sniff_format(data)
    if sniffed is None:
        raise PhotoError("not a PNG, JPEG or WebP image")
    try:
        with warnings.catch_warnings():
            # our own pixel limit is checked below; PIL's warning would only be noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            # only the header has been read so far: no pixel is decoded before this check
            width, height = image.size
            if width * height > max_pixels:
                raise PhotoError(f"photo is {width} x {height} = {width * height / 1e6:.1f} megapixels; "
                                 f"the limit is {max_pixels / 1e6:g} megapixels")
            if min(width, height) < MIN_SIDE:
                raise PhotoError(f"photo is {width} x {height} pixels; at least {MIN_SIDE} per side needed")
            actual = "JPEG" if image.format == "MPO" else image.format  # MPO: a camera's multi-picture JPEG
            if actual not in ALLOWED_FORMATS or actual != sniffed:
                raise PhotoError(f"unsupported image type {image.format!r} (PNG, JPEG or WebP only)")
            if ImageFile.LOAD_TRUNCATED_IMAGES:  # a global another library may have set
                raise PhotoError("refusing to decode: PIL is set to accept truncated images")
            image.load()
            image = ImageOps.exif_transpose(image)
    except PhotoError:
        raise
    except Image.DecompressionBombError as exc:
        # PIL refuses in Image.open, before our own check could run
        raise PhotoError(f"photo has too many pixels (more than {2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6:.0f} "
                         f"megapixels; the limit is {max_pixels / 1e6:g} megapixels)") from None
    except UnidentifiedImageError:
        raise PhotoError("the file could not be read as an image (corrupt or not an image)") from None
    except Exception as exc:  # truncated data, broken chunks or EXIF: PIL raises many types
        raise PhotoError(f"the image is truncated or corrupt ({type(exc).__name__}: {exc})") from None
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB; transparency composited onto white (how a page shows it)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale to 8 bits instead of clipping at 255
        levels = np.asarray(image, dtype=np.float64) / 257.0
        image = Image.fromarray(np.clip(levels, 0, 255).astype(np.uint8), "L")
    if image.mode == "P" or image.mode in ("LA", "PA", "La"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "RGBa"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")
