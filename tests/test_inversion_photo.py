"""Photo decoding (the upload gate) and framing for inversion, on real files and the real model."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from dragwalk.imaging import to_uint8
from dragwalk.inversion import MAX_PIXELS, PhotoError, decode_photo, prepare_photo
from dragwalk.inversion.losses import psnr
from dragwalk.inversion.prepare import face_template, prepare_photo_info, similarity_transform


def _encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _gradient(width: int = 40, height: int = 30) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None, None]
    return Image.fromarray(np.broadcast_to(x // 2 + y // 2, (height, width, 3)).copy())


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width x height`` (8-bit RGB) with one tiny compressed row."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_decode_accepts_png_jpeg_webp(fmt):
    source = _gradient()
    image = decode_photo(_encode(source, fmt))
    assert image.mode == "RGB" and image.size == (40, 30)
    error = np.abs(np.asarray(image, np.int16) - np.asarray(source, np.int16)).mean()
    assert error < (0.5 if fmt == "PNG" else 8)


def test_decode_applies_exif_orientation():
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    image = decode_photo(_encode(_gradient(40, 30), "JPEG", exif=exif))
    assert image.size == (30, 40)


def test_decode_flattens_transparency_onto_white():
    rgba = Image.new("RGBA", (16, 16), (255, 0, 0, 0))
    image = decode_photo(_encode(rgba, "PNG"))
    assert image.getpixel((3, 3)) == (255, 255, 255)


@pytest.mark.parametrize("data, words", [
    (b"", "empty"),
    (b"hello, this is not an image at all", "not a PNG"),
    (b"GIF89a" + b"\0" * 64, "not a PNG"),
    (b"%PDF-1.4\n" + b"\0" * 64, "not a PNG"),
])
def test_decode_refuses_non_images(data, words):
    with pytest.raises(PhotoError, match=words):
        decode_photo(data)


def test_decode_refuses_other_formats_even_when_valid():
    with pytest.raises(PhotoError):
        decode_photo(_encode(_gradient(), "GIF"))
    with pytest.raises(PhotoError):
        decode_photo(_encode(_gradient(), "BMP"))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_decode_refuses_truncated_files(fmt):
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = _encode(noise, fmt)
    with pytest.raises(PhotoError, match="truncated|corrupt|could not be read"):
        decode_photo(data[: len(data) // 2])


def test_decode_refuses_oversized_bytes():
    data = _encode(_gradient(), "PNG")
    with pytest.raises(PhotoError, match="MiB"):
        decode_photo(data, max_bytes=len(data) - 1)
    assert decode_photo(data, max_bytes=len(data)).size == (40, 30)


def test_decode_refuses_too_many_pixels_before_decoding():
    bomb = _png_header_only(100_000, 100_000)  # 10 gigapixels claimed in ~100 bytes
    assert len(bomb) < 200
    with pytest.raises(PhotoError, match="megapixels"):
        decode_photo(bomb)
    with pytest.raises(PhotoError, match="megapixels"):
        decode_photo(_png_header_only(7000, 6000), max_pixels=MAX_PIXELS)  # 42 MP > 40 MP


def test_decode_turns_pil_decompression_bomb_error_into_photo_error():
    # our own limit lifted: PIL's guard (2x Image.MAX_IMAGE_PIXELS) must still be caught
    with pytest.raises(PhotoError, match="too many pixels"):
        decode_photo(_png_header_only(100_000, 100_000), max_pixels=10**12)


def test_decode_refuses_tiny_images():
    with pytest.raises(PhotoError, match="at least"):
        decode_photo(_encode(Image.new("RGB", (4, 4)), "PNG"))


# ---------------------------------------------------------------- framing
def test_similarity_transform_recovers_a_known_transform():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(20, 2)) * 10
    angle, scale, shift = 0.3, 1.7, np.array([5.0, -2.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = src @ (scale * rot).T + shift
    matrix = similarity_transform(src, dst)
    np.testing.assert_allclose(matrix[:, :2], scale * rot, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)


def test_prepare_photo_shape_range_and_centre_crop_without_face(generator):
    noise = Image.fromarray(np.random.default_rng(2).integers(0, 255, (90, 160, 3), dtype=np.uint8))
    info = prepare_photo_info(noise, generator)
    assert not info.face_found
    tensor = info.tensor
    assert tensor.shape == (1, 3, generator.resolution, generator.resolution)
    assert tensor.dtype == torch.float32 and -1 <= float(tensor.min()) and float(tensor.max()) <= 1


def test_prepare_photo_centres_a_face(generator):
    """A model face, enlarged and pasted off-centre on a big canvas, comes back framed as the model frames it."""
    assert face_template(generator) is not None  # dlib finds faces in the model's own samples
    with torch.no_grad():
        face = generator.render(generator.sample(90210))
    big = Image.fromarray(to_uint8(face)).resize((240, 240), Image.BICUBIC)
    canvas = Image.new("RGB", (800, 600), (40, 90, 160))
    canvas.paste(big, (480, 60))
    data = _encode(canvas, "JPEG", quality=95)
    info = prepare_photo_info(data, generator)
    assert info.face_found
    assert info.tensor.shape == (1, 3, 64, 64)
    # the aligned crop shows the same face in about the same place as the model drew it
    plain = prepare_photo(canvas, generator, align_face=False)
    aligned_psnr = float(psnr(info.tensor, face)[0])
    assert aligned_psnr > 19.0, aligned_psnr
    assert aligned_psnr > float(psnr(plain, face)[0]) + 5.0


def test_prepare_photo_refuses_missing_files_and_bad_bytes(generator, tmp_path):
    with pytest.raises(PhotoError, match="not found"):
        prepare_photo(tmp_path / "nope.jpg", generator)
    with pytest.raises(PhotoError):
        prepare_photo(b"not an image", generator)
