"""Windows: the part of a feature map a caller will read, and the arithmetic of computing only it.

A drag step reads its feature map in a few small discs and search windows around the
handles; everything else of the map is computed for nothing. A :class:`Window` says which
cells a caller reads (``Generator.synthesize_window``), so a model can compute, at each
layer below, only the cells those depend on (their cone), with exactly the numbers the
whole pass gives there.

The helpers are pure box arithmetic on half-open integer ranges. A box may reach past a
map's edges: the cells outside hold zeros, which is what a convolution's zero padding reads
there, so one formula serves the border and the interior alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class Window:
    """Rows ``top:bottom`` and columns ``left:right`` (half-open) of a feature map."""

    top: int
    bottom: int
    left: int
    right: int

    def __post_init__(self) -> None:
        if self.bottom <= self.top or self.right <= self.left:
            raise ValueError(f"empty window {self}")

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left

    def grown(self, cells: int) -> "Window":
        return Window(self.top - cells, self.bottom + cells, self.left - cells, self.right + cells)

    def clipped(self, hw: tuple[int, int]) -> "Window":
        """Inside a ``(height, width)`` map (the box must overlap it)."""
        return Window(max(self.top, 0), min(self.bottom, hw[0]), max(self.left, 0), min(self.right, hw[1]))

    def covers(self, hw: tuple[int, int]) -> bool:
        return self.top <= 0 and self.left <= 0 and self.bottom >= hw[0] and self.right >= hw[1]

    def within(self, hw: tuple[int, int]) -> bool:
        return self.top >= 0 and self.left >= 0 and self.bottom <= hw[0] and self.right <= hw[1]

    def doubled(self) -> "Window":
        """The same region on a map of twice the size."""
        return Window(2 * self.top, 2 * self.bottom, 2 * self.left, 2 * self.right)


def crop(x: Tensor, box: Window) -> Tensor:
    """The cells of ``box`` from a whole map ``[..., H, W]``, zeros where the box leaves it."""
    height, width = x.shape[-2:]
    if box.bottom <= 0 or box.right <= 0 or box.top >= height or box.left >= width:
        return x.new_zeros(*x.shape[:-2], box.height, box.width)
    return F.pad(x, (-box.left, box.right - width, -box.top, box.bottom - height))


def part(x: Tensor, at: Window, box: Window) -> Tensor:
    """Cells ``box`` of a map ``x`` that covers ``at`` (``box`` inside ``at``)."""
    return x[..., box.top - at.top:box.bottom - at.top, box.left - at.left:box.right - at.left]


def place(x: Tensor, box: Window, hw: tuple[int, int]) -> Tensor:
    """A ``box``-sized map (inside the map) put back on a whole ``hw`` map of zeros."""
    return F.pad(x, (box.left, hw[1] - box.right, box.top, hw[0] - box.bottom))


def zero_outside(x: Tensor, box: Window, hw: tuple[int, int]) -> Tensor:
    """``x`` (covering ``box``) with the cells outside the ``hw`` map set to zero: a layer's bias
    and activation make them non-zero, while the next convolution must read zero padding there."""
    if box.within(hw):
        return x
    inner = box.clipped(hw)
    return F.pad(part(x, box, inner),
                 (inner.left - box.left, box.right - inner.right, inner.top - box.top, box.bottom - inner.bottom))


def conv_input(box: Window, kernel: int) -> Window:
    """What a same-size ``kernel x kernel`` convolution (padding ``kernel // 2``) reads to write ``box``."""
    return box.grown(kernel // 2)


def _up_range(lo: int, hi: int, kernel: int, taps: int) -> tuple[int, int]:
    """Input samples ``[a, b)`` that outputs ``[lo, hi)`` of :func:`..stylegan2.ops.conv2d_up2` read
    along one axis: the stride-2 transposed convolution writes sample ``j`` from inputs ``i`` with
    ``0 <= j - 2i < kernel``; after its padding ``pad0`` the FIR reads ``j`` in
    ``[o - pad0, o - pad0 + taps)`` for output ``o``."""
    pad0 = kernel // 2 + (taps + 1) // 2 - (kernel - 1)
    first = -((-(lo - pad0 - kernel + 1)) // 2)          # ceil((lo - pad0 - kernel + 1) / 2)
    last = (hi - 1 - pad0 + taps - 1) // 2               # floor(...)
    return first, last + 1


def up_conv_input(box: Window, kernel: int, taps: tuple[int, int]) -> Window:
    """What an upsampling convolution (``kernel``, FIR of ``taps`` = (rows, columns)) reads, on the
    half-size map, to write ``box``; computed on that input alone it writes ``doubled()`` of it."""
    top, bottom = _up_range(box.top, box.bottom, kernel, taps[0])
    left, right = _up_range(box.left, box.right, kernel, taps[1])
    return Window(top, bottom, left, right)


def feature_window(points_box: tuple[float, float, float, float], image_hw: tuple[int, int],
                   feature_hw: tuple[int, int], margin: int = 0) -> Window:
    """The feature cells bilinear reads at image positions inside ``points_box`` (x0, y0, x1, y1 in
    image px, pixel centres at integers) touch, grown by ``margin`` cells, inside the map.

    A read at image x lands at ``(x + 0.5) * w / W - 0.5`` on a ``w``-wide map and touches the
    cell below and the one above that."""
    x0, y0, x1, y1 = points_box

    def cells(lo: float, hi: float, image: int, feature: int) -> tuple[int, int]:
        scale = feature / image
        return (math.floor((lo + 0.5) * scale - 0.5) - margin,
                math.floor((hi + 0.5) * scale - 0.5) + 2 + margin)

    top, bottom = cells(y0, y1, image_hw[0], feature_hw[0])
    left, right = cells(x0, x1, image_hw[1], feature_hw[1])
    return Window(top, bottom, left, right).clipped(feature_hw)
