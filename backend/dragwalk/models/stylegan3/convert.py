"""A StyleGAN3 network pickle's generator record as the own :class:`StyleGAN3Generator`.

The record (read by ``nvidia_pickle``'s allow-list unpickler) carries ``init_kwargs``: the
top-level sizes, ``mapping_kwargs`` and the synthesis options given flat, as the stylegan3
repository writes them. Those build the network; its tensors (filters included) load by name.
"""

from __future__ import annotations

from ..convert import construct, load_checked
from ..nvidia_pickle import NetworkPickleError, PersistentRecord, collect_tensors, generator_kwargs
from .generator import StyleGAN3Generator
from .layers import SYNTHESIS_OPTIONS


def build_stylegan3(record: PersistentRecord, name: str, source: str) -> StyleGAN3Generator:
    # the mapping network is StyleGAN2's, with the same options
    kwargs = generator_kwargs(record, source, synthesis_options=SYNTHESIS_OPTIONS, what="StyleGAN3")
    model = construct(StyleGAN3Generator, {**kwargs, "name": name}, source, NetworkPickleError)
    load_checked(model, collect_tensors(record), source, NetworkPickleError)
    model.loader = "nvidia-stylegan3"
    return model
