"""Face measurements with dlib: 68 landmarks and the 128-d face descriptor.

Used by the drag benchmark (landmark distances, identity change), the
supervised direction scorers and face-centred cropping for inversion. The model
files come from the PyPI package ``face-recognition-models``; they are read by
path because that package's ``__init__`` needs ``pkg_resources``.

Images here are small (64 px): dlib's HOG detector wants faces of ~80 px and
more, so images are upscaled before detection and landmarks scaled back.
"""

from __future__ import annotations

import importlib.util
import queue
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from PIL import Image

#: side the image is resized to before detection (dlib works well from ~80 px faces)
DETECT_SIDE = 256


class FaceModelsMissing(RuntimeError):
    """dlib or the face-recognition-models files are not installed."""


def _models_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FaceModelsMissing("face-recognition-models is not installed (pip install face-recognition-models)")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


@dataclass
class Face:
    """One detected face: its box and landmarks in the input image's pixels."""

    box: tuple[float, float, float, float]  # left, top, right, bottom
    landmarks: np.ndarray  # [68, 2] (x, y)


class FaceAnalyzer:
    """dlib's frontal face detector, 68-point shape predictor and face descriptor network.

    dlib objects are not safe to share between threads. Detection, most of a face's cost (about
    9 of 13 ms for a 64 px face upscaled to 256), takes a detector of its own from a pool, so
    threads detect in parallel (dlib releases Python's lock); the shape predictor and the
    descriptor network, shared, are used under one lock.
    """

    def __init__(self) -> None:
        try:
            import dlib
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise FaceModelsMissing("dlib is not installed (pip install dlib-bin)") from exc
        models = _models_dir()
        self._dlib = dlib
        self._idle: "queue.SimpleQueue[Any]" = queue.SimpleQueue()   # detectors no thread holds
        self._predictor = dlib.shape_predictor(str(models / "shape_predictor_68_face_landmarks.dat"))
        self._encoder = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
        self._lock = threading.Lock()

    @contextmanager
    def _detector(self) -> Iterator[Any]:
        """A detector for this thread alone: an idle one, or a new one (a few KB; at most one per
        thread detecting at the same time)."""
        try:
            detector = self._idle.get_nowait()
        except queue.Empty:
            detector = self._dlib.get_frontal_face_detector()
        try:
            yield detector
        finally:
            self._idle.put(detector)

    @staticmethod
    def _upscaled(image: np.ndarray) -> tuple[np.ndarray, float]:
        side = image.shape[0]
        if side >= DETECT_SIDE:
            return np.ascontiguousarray(image), 1.0
        scale = DETECT_SIDE / side
        big = Image.fromarray(image).resize((DETECT_SIDE, DETECT_SIDE), Image.BICUBIC)
        return np.asarray(big), scale

    def detect(self, image: np.ndarray, upsample: int = 0, threshold: float = 0.0) -> Face | None:
        """The largest face in an ``H x W x 3`` uint8 image, or ``None``.

        ``threshold`` shifts dlib's detection threshold (0 = its default; lower finds more).
        """
        big, scale = self._upscaled(image)
        with self._detector() as detector:
            rects = (detector(big, upsample) if threshold == 0.0
                     else detector.run(big, upsample, threshold)[0])
        if len(rects) == 0:
            return None
        rect = max(rects, key=lambda r: r.width() * r.height())
        with self._lock:
            shape = self._predictor(big, rect)
        points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        # dlib pixel centres are integers; map back through the resize (pixel-centre convention)
        points = (points + 0.5) / scale - 0.5
        box = tuple((np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], float) + 0.5) / scale - 0.5)
        return Face(box=box, landmarks=points)  # type: ignore[arg-type]

    def detection_score(self, image: np.ndarray, upsample: int = 0) -> float:
        """dlib's score for the best face in the image (``detect`` finds one when it is > 0);
        ``-inf`` when nothing scores above -2. Benchmarks use it as a margin: how near an edit
        takes a face to being lost."""
        big, _ = self._upscaled(image)
        with self._detector() as detector:
            _, scores, _ = detector.run(big, upsample, -2.0)
        return float(max(scores)) if len(scores) else float("-inf")

    def landmarks(self, image: np.ndarray) -> np.ndarray | None:
        face = self.detect(image)
        return None if face is None else face.landmarks

    def landmarks_in_box(self, image: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """Landmarks inside a given box, skipping detection (for images whose face moved little)."""
        big, scale = self._upscaled(image)
        l, t, r, b = ((np.array(box) + 0.5) * scale - 0.5).round().astype(int)
        rect = self._dlib.rectangle(int(l), int(t), int(r), int(b))
        with self._lock:
            shape = self._predictor(big, rect)
        points = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        return (points + 0.5) / scale - 0.5

    def descriptor(self, image: np.ndarray, face: Face | None = None) -> np.ndarray | None:
        """dlib's 128-d identity descriptor (distance < 0.6 means "same person" in dlib's docs)."""
        big, scale = self._upscaled(image)
        if face is None:
            with self._detector() as detector:
                rects = detector(big, 0)
            if len(rects) == 0:
                return None
            rect = max(rects, key=lambda r: r.width() * r.height())
        else:
            l, t, r, b = ((np.array(face.box) + 0.5) * scale - 0.5).round().astype(int)
            rect = self._dlib.rectangle(int(l), int(t), int(r), int(b))
        with self._lock:
            shape = self._predictor(big, rect)
            vec = self._encoder.compute_face_descriptor(big, shape)
        return np.array(vec, dtype=np.float64)


@lru_cache(maxsize=1)
def face_analyzer() -> FaceAnalyzer:
    """One shared analyzer per process (loading the models takes about a second)."""
    return FaceAnalyzer()


def identity_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))
