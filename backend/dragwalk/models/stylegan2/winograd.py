"""3x3 convolutions of CPU frames by Winograd's minimal filtering F(4x4, 3x3).

Why: a frame's 3x3 convolutions already run at the CPU's peak multiply-add rate (about 88
GMAC/s at 2 threads on the development machine), so only fewer multiplications make a frame
faster. F(4x4, 3x3) (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016)
writes each 4x4 tile of output from a 6x6 tile of input with 36 products per pair of channels
instead of 144: the input tiles and the kernels are taken to a transformed domain by small fixed
matrices, multiplied there (36 matrix products over the channels, which is where the time goes),
and taken back. The price is a transform pass over the map and a little precision (about 1e-5
of the activations' scale, against 2e-6 for the direct convolution: far below an 8-bit level).

Measured at 2 threads, one channels-last map, direct against this (ms): 512 ch at 16x16 8.2 ->
4.6, 32x32 26.6 -> 10.8, 256 ch at 64x64 24.7 -> 11.9, 128 ch at 128x128 25.0 -> 16.5, but 64 ch
at 256x256 24.5 -> 26.9 (the transforms' memory traffic outweighs the products) and 512 ch at
4x4 1.1 -> 1.7; hence :func:`applies`.

The matrices are the Cook-Toom construction on the points 0, 1, -1, 2, -2 and infinity;
``tests/test_winograd.py`` checks the convolution against a float64 direct one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

#: use this form for the frames' 3x3 convolutions at all (see :func:`applies`)
ENABLED = True
#: fewest input channels, and fewest cells of the map, for which it pays (module docstring)
MIN_CHANNELS = 128
MIN_CELLS = 16 * 16
#: tiles transformed at once (whole tile rows, at least one): the matrix products' row count,
#: which keeps them efficient, and a bound on the transforms' memory (36 x tiles x channels)
CHUNK_TILES = 64

# input transform B^T (6x6), kernel transform G (6x3), output transform A^T (4x6)
_BT = ((4, 0, -5, 0, 1, 0),
       (0, -4, -4, 1, 1, 0),
       (0, 4, -4, -1, 1, 0),
       (0, -2, -1, 2, 1, 0),
       (0, 2, -1, -2, 1, 0),
       (0, 4, 0, -5, 0, 1))
_G = ((1 / 4, 0, 0),
      (-1 / 6, -1 / 6, -1 / 6),
      (-1 / 6, 1 / 6, -1 / 6),
      (1 / 24, 1 / 12, 1 / 6),
      (1 / 24, -1 / 12, 1 / 6),
      (0, 0, 1))
_AT = ((1, 1, 1, 1, 1, 0),
       (0, 1, -1, 2, -2, 0),
       (0, 1, 1, 4, 4, 0),
       (0, 1, -1, 8, -8, 1))


def _kron(rows: tuple) -> Tensor:
    """The 2-D transform ``M X M^T`` of a flattened tile as one matrix (``M`` Kronecker ``M``): the
    whole transform is then one matrix product over all tiles and channels."""
    m = torch.tensor(rows, dtype=torch.float64)
    return torch.kron(m, m).float()


_INPUT = _kron(_BT)      # [36, 36]
_OUTPUT = _kron(_AT)     # [16, 36]


def applies(x: Tensor, in_channels: int) -> bool:
    """Whether a 3x3 convolution of ``x`` takes this form: a frame's map (no autograd, one
    channels-last fp32 map on the CPU: ``generator.FRAMES_CHANNELS_LAST``) that is wide and
    large enough to gain."""
    return (ENABLED and not torch.is_grad_enabled() and x.device.type == "cpu" and x.dtype == torch.float32
            and x.dim() == 4 and x.shape[0] == 1 and in_channels >= MIN_CHANNELS
            and x.shape[-2] * x.shape[-1] >= MIN_CELLS
            and x.is_contiguous(memory_format=torch.channels_last))


def transform_weight(weight: Tensor) -> Tensor:
    """``[36, in, out]``: the kernels ``[out, in, 3, 3]`` (a cross-correlation, as ``F.conv2d``)
    in the transformed domain, ``G g G^T`` (computed in float64)."""
    g = torch.tensor(_G, dtype=torch.float64)
    u = torch.einsum("ak,oikl,bl->abio", g, weight.detach().double().cpu(), g)
    return u.reshape(36, weight.shape[1], weight.shape[0]).float().contiguous()


def conv3x3(x: Tensor, u: Tensor) -> Tensor:
    """``F.conv2d(x, weight, padding=1)`` for ``u = transform_weight(weight)``, on a channels-last
    ``[1, C, H, W]`` map; the result is channels-last too. Tiles are transformed a chunk of tile
    rows at a time (:data:`CHUNK_TILES`), so their memory is bounded."""
    _, channels, height, width = x.shape
    out_channels = u.shape[2]
    rows, cols = -(-height // 4), -(-width // 4)                       # output tiles
    image = F.pad(x.permute(0, 2, 3, 1), (0, 0, 1, 4 * cols + 1 - width, 1, 4 * rows + 1 - height))[0]
    padded_width = image.shape[1]
    out = x.new_empty(4 * rows, 4 * cols, out_channels)
    chunk = max(1, CHUNK_TILES // cols)
    for top in range(0, rows, chunk):
        n = min(chunk, rows - top)
        # the 6x6 input tiles of these tile rows, every 4 samples: [6, 6, n, cols, C] (a view)
        tiles = image.as_strided((6, 6, n, cols, channels),
                                 (padded_width * channels, channels, 4 * padded_width * channels, 4 * channels, 1),
                                 image.storage_offset() + 4 * top * padded_width * channels)
        v = (_INPUT @ tiles.reshape(36, -1)).view(36, n * cols, channels)
        m = torch.bmm(v, u)                                              # [36, tiles, out]
        y = (_OUTPUT @ m.view(36, -1)).view(4, 4, n, cols, out_channels)
        out[4 * top:4 * (top + n)].view(n, 4, cols, 4, out_channels).copy_(y.permute(2, 0, 3, 1, 4))
    return out[:height, :width].unsqueeze(0).permute(0, 3, 1, 2)
