"""StyleGAN3 (alias-free) in pure PyTorch: ``layers`` (Fourier input, filtered-lrelu layers),
``generator`` (the adapter), ``convert`` (from an NVIDIA network pickle's record)."""

from .generator import StyleGAN3Generator

__all__ = ["StyleGAN3Generator"]
