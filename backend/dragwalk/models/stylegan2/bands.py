"""Frames in bands: the large top blocks of a CPU frame computed a band of image rows at a time.

Why: a frame's working memory is its largest maps. A 256 px FFHQ-layout frame holds its last
block's input, upsampled map and output at once (16 MB each), a 512 px one 67 MB each,
while the editor's drag step is windowed (:mod:`dragwalk.models.window`) and needs 42 and 83
MB; the frame made the editor step 2.7x and 4x the memory of its headless step. Computed band
by band, a frame holds one band of each large map plus the last whole one below them.

How: the image's rows are cut into bands. For each band, every streamed block computes the rows
the block above reads, from the rows of the block below that those read (a few more at each
level: the halo, recomputed by the neighbouring band). A slab of rows is convolved as if it were
the whole map, and the rows whose reads crossed the slab's cut are dropped ("overlap-discard");
at the map's true top and bottom the convolution's own zero padding is the whole pass's, so each
kept row is computed from the same inputs by the same operations as in the whole pass (equal to
float rounding: the CPU convolution may pick another kernel for another shape). Each block's
ToRGB runs on the rows the band owns (a partition), into a per-block image; the skip images are
summed at the end, as the whole pass sums them.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor

from ..window import Window, _up_range

#: a block whose activation map (fp32) has at least this many bytes is computed in bands, and so
#: is every block above it: 256 px FFHQ layout streams b128 and b256, 512 px b128 to b512
BAND_BYTES = 8 << 20
#: image rows per band: halo rows are recomputed at every banded level, so taller bands cost less
#: time and more memory. Frames of the FFHQ layout, 2 threads, interleaved (ms, peak tensor MB;
#: Winograd on): 256 px whole 214 / 42, 64 rows 204 / 28, 128 rows 195 / 28; 512 px whole
#: 834 / 163, 64 rows 871 / 35, 128 rows 727 / 53; 1024 px (before Winograd) whole 1446 / 330,
#: 64 rows 1681 / 76, 128 rows 1185 / 84 (with Winograd, another run: whole 1493 / 330, 128 rows
#: 1372 / 84)
BAND_ROWS = 128


def block_hw(block) -> tuple[int, int]:
    res = block.resolution
    return (res, res) if isinstance(res, int) else (int(res[0]), int(res[1]))


def first_banded(blocks: Sequence) -> int | None:
    """Index of the first block computed in bands (every later one is too), or ``None`` when no
    block is large enough. The 4x4 block never is: it has no block below to read rows of."""
    for i, block in enumerate(blocks[1:], start=1):
        h, w = block_hw(block)
        if block.out_channels * h * w * 4 >= BAND_BYTES:
            return i
    return None


def rows_read(block, lo: int, hi: int) -> tuple[int, int]:
    """Rows of the previous block's activation that ``block``'s output rows ``[lo, hi)`` read:
    conv1 (3x3) reads one row more each side, conv0 (transposed conv, then the FIR) the rest."""
    k1 = block.conv1.weight.shape[-1]
    return _up_range(lo - k1 // 2, hi + k1 // 2, block.conv0.weight.shape[-1], block.conv0.resample_filter.shape[0])


def _band(block, ws: Tensor, x: Tensor, got: tuple[int, int], want: tuple[int, int], noise: dict) -> Tensor:
    """Rows ``want`` (clipped to the map) of ``block``'s activation from rows ``got`` (clipped)
    of the previous block's (``x``)."""
    height, width = block_hw(block)
    first, second = ws.unbind(dim=1)[:2]
    g0, g1 = got
    y = block.conv0(x, first, window=Window(2 * g0, 2 * g1, 0, width), **noise)   # rows 2*g0 .. 2*g1
    k1 = block.conv1.weight.shape[-1] // 2
    c0, c1 = max(want[0] - k1, 0), min(want[1] + k1, height)
    y = block.conv1(y[:, :, c0 - 2 * g0:c1 - 2 * g0], second, window=Window(c0, c1, 0, width), **noise)
    a, b = max(want[0], 0), min(want[1], height)
    return y[:, :, a - c0:b - c0]


def render_bands(stages: Sequence, start: int, x: Tensor, img: Tensor | None, offsets: dict[str, Tensor],
                 noise: dict, rgb_suffix: str, band_rows: int | None = None) -> Tensor:
    """The image (unclamped) from stage ``start`` on, given ``x`` and ``img``, the activation and
    image after stage ``start - 1`` (whole maps). ``stages`` are ``((name, block), ws rows)``;
    ``offsets`` the latent's (a block's activation, or ``name + rgb_suffix``: its skip image)."""
    band_rows = band_rows or BAND_ROWS
    last = len(stages) - 1
    height = block_hw(stages[last][0][1])[0]
    below = block_hw(stages[start - 1][0][1])[0]
    rgbs = [x.new_empty(1, block.torgb.weight.shape[0], *block_hw(block)) for (_, block), _ in stages[start:]]
    for top in range(0, height, band_rows):
        bottom = min(height, top + band_rows)
        wants = {last: (top, bottom)}
        for i in range(last, start, -1):
            wants[i - 1] = rows_read(stages[i][0][1], *wants[i])
        lo, hi = rows_read(stages[start][0][1], *wants[start])
        got = (max(lo, 0), min(hi, below))
        y = x[:, :, got[0]:got[1]]
        for i in range(start, last + 1):
            (name, block), ws = stages[i]
            y = _band(block, ws, y, got, wants[i], noise)
            got = (max(wants[i][0], 0), min(wants[i][1], block_hw(block)[0]))
            if name in offsets:
                y = y + offsets[name][:, :, got[0]:got[1]].to(y.dtype)
            shift = last - i
            own0, own1 = top >> shift, -(-bottom >> shift)
            rgb = block.torgb(y[:, :, own0 - got[0]:own1 - got[0]], ws[:, block.num_conv]).float()
            rgbs[i - start][:, :, own0:own1] = rgb
    for ((name, block), _), rgb in zip(stages[start:], rgbs):
        skip = block.skip_image(img)
        if name + rgb_suffix in offsets:
            skip = skip + offsets[name + rgb_suffix]
        img = skip + rgb
    return img
