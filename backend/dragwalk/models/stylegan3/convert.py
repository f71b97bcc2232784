"""A StyleGAN3 network pickle's generator record as the own :class:`StyleGAN3Generator`.

The record (read by ``nvidia_pickle``'s allow-list unpickler) carries ``init_kwargs``: the
top-level sizes, ``mapping_kwargs`` and the synthesis options given flat, as the stylegan3
repository writes them. Those build the network; its tensors (filters included) load by name.
"""

from __future__ import annotations

from ..convert import construct, load_checked
from ..nvidia_pickle import NetworkPickleError, PersistentRecord, _plain, collect_tensors
from .generator import StyleGAN3Generator
from .layers import SYNTHESIS_OPTIONS

_TOP = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")
_MAPPING_OPTIONS = {"num_layers", "lr_multiplier", "w_avg_beta", "embed_features", "layer_features", "activation"}


def stylegan3_kwargs(record: PersistentRecord, source: str) -> dict:
    kwargs = _plain(record.init_kwargs)
    for name, value in zip(_TOP, record.init_args):
        kwargs.setdefault(name, _plain(value))
    missing = [k for k in _TOP if k not in kwargs]
    if missing:
        raise NetworkPickleError(f"{source}: the generator record lacks {', '.join(missing)} in init_kwargs")
    top = {k: kwargs.pop(k) for k in _TOP}
    mapping = dict(kwargs.pop("mapping_kwargs", None) or {})
    synthesis = dict(kwargs.pop("synthesis_kwargs", None) or {})
    synthesis.update(kwargs)
    unknown = sorted((set(mapping) - _MAPPING_OPTIONS) | (set(synthesis) - SYNTHESIS_OPTIONS))
    if unknown:
        raise NetworkPickleError(f"{source}: unsupported StyleGAN3 option(s) {', '.join(unknown)}")
    return {**top, "mapping_kwargs": mapping, "synthesis_kwargs": synthesis}


def build_stylegan3(record: PersistentRecord, name: str, source: str) -> StyleGAN3Generator:
    model = construct(StyleGAN3Generator, {**stylegan3_kwargs(record, source), "name": name}, source,
                      NetworkPickleError)
    load_checked(model, collect_tensors(record), source, NetworkPickleError)
    model.loader = "nvidia-stylegan3"
    return model
