"""Real photos -> latents: validated decoding, face-centred cropping, projection, pivotal tuning.

The server calls :func:`decode_photo` on uploads and :class:`Inversion` step by
step (so it can stream progress and cancel); the CLI and Python callers use
:func:`invert`.
"""

from .config import InversionConfig, InversionProgress, InversionResult
from .photo import MAX_PIXELS, MAX_UPLOAD_BYTES, PhotoError, decode_photo
from .prepare import prepare_photo
from .projector import Inversion, invert

__all__ = ["Inversion", "InversionConfig", "InversionProgress", "InversionResult", "MAX_PIXELS",
           "MAX_UPLOAD_BYTES", "PhotoError", "decode_photo", "invert", "prepare_photo"]
