"""A photo of any size -> the model's input framing: ``[1, 3, R, R]`` in ``[-1, 1]``.

A face model only reproduces faces framed the way its training images were. That
framing is measured rather than assumed: dlib's landmarks are found on a few of
the generator's own samples and averaged into a template (once per model). A
photo's face is then mapped onto the template by the similarity transform
(rotation, uniform scale, shift) that best fits its landmarks. Where no face is
found (or the model makes no faces dlib recognises), the photo is centre-cropped.

Resampling: the transform renders at 4x the model resolution, after a box
reduction of large photos, and a Lanczos resize makes the final size, so a
4000 px photo shrunk to 64 px does not alias.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..imaging import from_uint8, to_uint8
from ..models.base import Generator, as_hw
from .photo import MAX_UPLOAD_BYTES, PhotoError, decode_photo, to_rgb

log = logging.getLogger(__name__)

#: landmarks used for alignment: brows, nose, eyes, mouth (the jaw line moves with pose)
ALIGN_POINTS = slice(17, 68)
#: generator samples measured for the template, and the seed they come from
TEMPLATE_SAMPLES = 32
TEMPLATE_SEED = 0xFACE
#: photos are shrunk to this longest side before face detection (HOG is slow on big images)
DETECT_MAX_SIDE = 640
#: the shortest side dlib gets (faces below ~80 px are missed)
DETECT_MIN_SIDE = 256
#: supersampling factor of the affine warp before the final resize
SUPERSAMPLE = 4

_templates: dict[tuple[str, int], np.ndarray | None] = {}
_templates_lock = threading.Lock()


@dataclass
class PreparedPhoto:
    """The model-ready image and how it was framed."""

    tensor: Tensor
    face_found: bool
    landmarks: np.ndarray | None = None  # the photo's landmarks ([68, 2], photo pixels)


def _analyzer():
    """dlib's face analyzer, or None when dlib or its model files are not installed."""
    try:
        from ..faces import FaceModelsMissing, face_analyzer
        return face_analyzer()
    except (ImportError, FaceModelsMissing) as exc:
        log.warning("face alignment unavailable (%s); photos are centre-cropped", exc)
        return None


def face_template(generator: Generator) -> np.ndarray | None:
    """Mean landmarks ``[68, 2]`` of the generator's samples (model pixels), or None.

    None when fewer than a quarter of the samples show a face dlib finds: the model
    does not make faces and photos are better centre-cropped.
    """
    key = (generator.name, generator.resolution)
    with _templates_lock:
        if key in _templates:
            return _templates[key]
    analyzer = _analyzer()
    template = None
    if analyzer is not None:
        with torch.no_grad():
            latents = generator.sample_codes(TEMPLATE_SAMPLES, seed=TEMPLATE_SEED)
            images = generator.render(latents)
        found = [face.landmarks for i in range(TEMPLATE_SAMPLES)
                 if (face := analyzer.detect(to_uint8(images[i]))) is not None]
        if len(found) * 4 >= TEMPLATE_SAMPLES:
            template = np.mean(found, axis=0)
    with _templates_lock:
        _templates[key] = template
    return template


def detect_landmarks(image: Image.Image) -> np.ndarray | None:
    """68 landmarks of the largest face in ``image`` (its pixels), or None."""
    analyzer = _analyzer()
    if analyzer is None:
        return None
    width, height = image.size
    scale = min(DETECT_MAX_SIDE / max(width, height), 1.0)
    scale = max(scale, DETECT_MIN_SIDE / min(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = image if size == image.size else image.resize(size, Image.BILINEAR, reducing_gap=2.0)
    array = np.asarray(small)
    face = analyzer.detect(array, upsample=0) or analyzer.detect(array, upsample=1)
    if face is None:
        return None
    fx, fy = width / size[0], height / size[1]
    points = face.landmarks.copy()
    points[:, 0] = (points[:, 0] + 0.5) * fx - 0.5
    points[:, 1] = (points[:, 1] + 0.5) * fy - 0.5
    return points


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 matrix of rotation, uniform scale and shift mapping ``source`` points onto ``target``
    in the least-squares sense (Umeyama 1991, reflections excluded)."""
    src_mean, dst_mean = source.mean(0), target.mean(0)
    src, dst = source - src_mean, target - dst_mean
    cov = dst.T @ src / len(source)
    u, s, vt = np.linalg.svd(cov)
    d = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1, 1] = -1
    rotation = u @ d @ vt
    scale = np.trace(np.diag(s) @ d) / src.var(0).sum()
    shift = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, shift[:, None]])


def align_to_template(image: Image.Image, landmarks: np.ndarray, template: np.ndarray,
                      resolution: int) -> Image.Image:
    """Warp ``image`` so its landmarks land on ``template`` in a ``resolution`` px square."""
    # continuous coordinates: pixel centres at i + 0.5 (PIL's transform convention)
    src = landmarks[ALIGN_POINTS] + 0.5
    big = resolution * SUPERSAMPLE
    dst = (template[ALIGN_POINTS] + 0.5) * SUPERSAMPLE
    forward = similarity_transform(src, dst)          # photo -> supersampled output
    pixels_per_output = 1.0 / np.sqrt(abs(np.linalg.det(forward[:, :2])))
    reduce = max(1, int(pixels_per_output))
    if reduce > 1:                                     # box filter first: no aliasing
        image = image.reduce(reduce)
        forward = forward.copy()
        forward[:, :2] *= reduce
    full = np.vstack([forward, [0, 0, 1]])
    inverse = np.linalg.inv(full)[:2]                  # output -> photo, what PIL wants
    fill = tuple(int(v) for v in np.asarray(image).reshape(-1, 3).mean(0))
    warped = image.transform((big, big), Image.AFFINE, tuple(inverse.ravel()), Image.BICUBIC,
                             fillcolor=fill)
    return warped.resize((resolution, resolution), Image.LANCZOS)


def centre_crop(image: Image.Image, resolution: int | tuple[int, int]) -> Image.Image:
    """The largest centred box of the model's aspect (a square, or ``(height, width)``), resized
    to it (the fallback framing)."""
    out_h, out_w = as_hw(resolution)
    width, height = image.size
    if out_h == out_w:
        box_w = box_h = min(width, height)
        left, top = (width - box_w) // 2, (height - box_h) // 2
    else:
        scale = min(width / out_w, height / out_h)
        box_w, box_h = out_w * scale, out_h * scale
        left, top = (width - box_w) / 2, (height - box_h) / 2
    return image.resize((out_w, out_h), Image.LANCZOS, box=(left, top, left + box_w, top + box_h),
                        reducing_gap=3.0)


def load_image(image: Image.Image | bytes | str | Path) -> Image.Image:
    """Bytes and files go through :func:`decode_photo` (the same checks as uploads)."""
    if isinstance(image, Image.Image):
        return to_rgb(image)
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise PhotoError(f"photo not found: {path}")
        if path.stat().st_size > MAX_UPLOAD_BYTES:
            raise PhotoError(f"photo is larger than {MAX_UPLOAD_BYTES // 2**20} MiB: {path}")
        return decode_photo(path.read_bytes())
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode_photo(bytes(image))
    raise PhotoError(f"cannot read a photo from {type(image).__name__}")


def prepare_photo_info(image: Image.Image | bytes | str | Path, generator: Generator,
                       align_face: bool = True) -> PreparedPhoto:
    """Like :func:`prepare_photo`, also saying whether a face was found and aligned."""
    photo = load_image(image)
    resolution = generator.resolution
    if align_face and generator.image_size[0] == generator.image_size[1]:   # the face template is square
        template = face_template(generator)
        landmarks = detect_landmarks(photo) if template is not None else None
        if template is not None and landmarks is not None:
            framed = align_to_template(photo, landmarks, template, resolution)
            return PreparedPhoto(from_uint8(np.array(framed), generator.device), True, landmarks)
    framed = centre_crop(photo, generator.image_size)
    return PreparedPhoto(from_uint8(np.array(framed), generator.device), False)


def prepare_photo(image: Image.Image | bytes | str | Path, generator: Generator,
                  align_face: bool = True) -> Tensor:
    """Crop and resize a photo to the model: ``[1, 3, R, R]`` in ``[-1, 1]`` on the model's device.

    With ``align_face`` the largest face dlib finds is aligned to where the model
    puts faces; otherwise (or without a face) the centre square is used.
    """
    return prepare_photo_info(image, generator, align_face).tensor
