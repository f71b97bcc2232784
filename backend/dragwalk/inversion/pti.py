"""Pivotal tuning (Roich et al. 2022): fine-tune a private copy of the generator around a latent.

Loaded models are cached and shared by every session, so tuning must never touch
them: :func:`tunable_copy` deep-copies the network (weights and buffers) and
unfreezes only the copy. The copy stays in eval mode, so batch-norm statistics
are fixed and only the weights move. Memory bound: one copy per tuned session
(:func:`model_bytes` of the model; 13.7 MiB for the default DCGAN) plus, only while
tuning runs, Adam's two moment buffers and a snapshot of the best weights (so at
most four model-sized buffers per session during tuning, one afterwards).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from ..models.base import Generator, Latent


def tunable_copy(generator: Generator) -> Generator:
    """A deep copy of ``generator`` whose weights require gradients; the original is untouched."""
    tuned = copy.deepcopy(generator)
    tuned.eval()
    tuned.requires_grad_(True)
    tuned.name = f"{generator.name}+pti"
    return tuned


def freeze(generator: Generator) -> Generator:
    """Back to inference: no gradients, eval mode (what the rest of the project expects)."""
    return generator.eval().requires_grad_(False)


def model_bytes(generator: Generator) -> int:
    """Bytes held by the parameters and buffers of one model copy."""
    tensors = [*generator.parameters(), *generator.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def locality_latents(generator: Generator, pivot: Latent, count: int, seed: int,
                     step_size: float = 0.5) -> Latent:
    """Latents a little way from the pivot towards random samples (the PTI locality region).

    The tuned copy is asked to keep rendering these as the original model did, so
    edits that move away from the pivot do not fall onto a damaged generator.
    """
    samples = generator.sample_codes(count, seed=seed, space=pivot.space, settings=pivot.settings)
    code = pivot.code.detach() + step_size * (samples.code.to(pivot.code.device) - pivot.code.detach())
    offsets = {k: v.detach().expand(count, *v.shape[1:]) for k, v in pivot.offsets.items()}
    return pivot.derive(code, offsets)


def locality_loss(tuned: Generator, original_images: Tensor, latents: Latent) -> Tensor:
    """Mean squared change of the tuned copy's images on ``latents`` versus the original's."""
    return ((tuned.render(latents) - original_images) ** 2).mean()
