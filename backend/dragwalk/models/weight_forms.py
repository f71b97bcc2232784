"""Forms of a network's fixed weights (a transposed layout, a scaled copy, per-channel sums),
made once and kept while the weight is unchanged.

Why: a drag step on a small map (a StyleGAN2 window, the DCGAN's 4x4 and 8x8 blocks) costs less
than one pass over a large weight, so re-deriving the weight's form on every call dominated it.
"""

from __future__ import annotations

import weakref
from typing import Callable

import torch
from torch import Tensor

#: id(weight) -> (a weak reference to it, {form: (version, value)}); see :func:`derived`
_DERIVED: dict[int, tuple[weakref.ref, dict[str, tuple[tuple, Tensor]]]] = {}


def derived(weight: Tensor, form: str, make: Callable[[Tensor], Tensor]) -> Tensor:
    """``make(weight)``, kept while ``weight`` lives unchanged (remade after an in-place change, a
    move or a cast). A weight being trained (pivotal tuning's private copy) gets a fresh,
    differentiable result every call. Forms are ordinary tensors even when first made in an
    inference pass, so a drag's autograd may save them."""
    if weight.requires_grad:
        return make(weight)
    entry = _DERIVED.get(id(weight))
    if entry is None or entry[0]() is not weight:
        key = id(weight)
        entry = (weakref.ref(weight, lambda _, key=key: _DERIVED.pop(key, None)), {})
        _DERIVED[key] = entry
    version = (weight._version, weight.data_ptr(), weight.device, weight.dtype)
    held = entry[1].get(form)
    if held is None or held[0] != version:
        with torch.inference_mode(False):   # made in a frame's inference pass, read by drags' autograd
            held = (version, make(weight.detach()))
        entry[1][form] = held
    return held[1]
