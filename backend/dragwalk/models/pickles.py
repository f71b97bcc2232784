"""One entry for every ``.pkl`` generator: read once with the allow-list, then the right builder.

A ``.pkl`` may be an NVIDIA PyTorch network pickle (StyleGAN2/-ADA, or StyleGAN3 whose
synthesis network starts from a Fourier ``input`` layer) or a TF-era pickle of
``dnnlib.tflib`` networks. All are read by ``nvidia_pickle``'s allow-list unpickler (with
the TF stand-in class added), so no file's code ever runs; what was read decides the builder.
"""

from __future__ import annotations

from pathlib import Path

from .nvidia_pickle import NetworkPickleError, build_generator, generator_record, read_network_pickle
from .tf_pickle import TF_GLOBALS, build_tf_generator, is_tf_data

#: read-ahead of the streamed unpickling (big storages are read in one go regardless)
STREAM_BUFFER = 1 << 20


def load_pickle(path: str | Path, name: str | None = None):
    """The own generator for a network pickle of any supported kind."""
    path = Path(path)
    source = f"network pickle {path.name}"
    try:
        with open(path, "rb", buffering=STREAM_BUFFER) as stream:
            obj = read_network_pickle(stream, source, extra=TF_GLOBALS)
    except OSError as exc:
        raise NetworkPickleError(f"cannot read {path}: {exc.strerror}") from None
    name = name or str(path)
    if is_tf_data(obj):
        return build_tf_generator(obj, name, source)
    record = generator_record(obj, source)
    synthesis = record.modules.get("synthesis")
    if synthesis is not None and "input" in getattr(synthesis, "modules", {}):
        from .stylegan3.convert import build_stylegan3
        return build_stylegan3(record, name, source)
    model = build_generator(record, name, source)
    model.loader = "nvidia-stylegan2"
    return model
