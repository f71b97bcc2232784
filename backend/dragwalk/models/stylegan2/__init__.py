"""StyleGAN2 / StyleGAN2-ADA in pure PyTorch: ops, layers, and the generator adapter.

``ops`` holds the arithmetic (FIR resampling, modulated convolution, bias + activation),
``layers`` the modules (named as in NVIDIA's network pickles), ``generator`` the
:class:`StyleGAN2Generator` behind the project's generator interface.
"""

from .generator import StyleGAN2Generator

__all__ = ["StyleGAN2Generator"]
