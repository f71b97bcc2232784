"""The classic DCGAN generator behind the generator interface.

Architecture (Radford et al. 2016, as in PyTorch's face tutorial): ``z`` of
``nz`` values goes through five transposed convolutions; the first four are
followed by batch norm (in eval mode, i.e. a fixed affine map) and ReLU, the
last by tanh. Sizes 4 -> 8 -> 16 -> 32 -> 64 px for ``ngf=64``.

Layer names: ``b0`` .. ``b3`` are the activations after each ReLU, ``image``
the tanh output. A "spatial latent" for drags is an additive offset on one of
these activations (drag mode ``z+b1`` optimises z and an 8x8 offset map).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import DragVariables, Generator, LayerInfo, Latent, Settings, Synthesis, seeded_normal
from .weight_forms import derived


#: batches at least this large run the first block as one matrix product (see UpBlock._convolve)
MATMUL_BATCH = 64
#: stride-2 blocks whose input has at most this many pixels run as a matrix product and a fold
#: (see :func:`transposed_as_matmul`)
MATMUL_PIXELS = 64


def transposed_as_matmul(x: Tensor, weight: Tensor, stride: int, padding: int,
                         patches: Tensor | None = None) -> Tensor:
    """``conv_transpose2d(x, weight, stride=stride, padding=padding)`` as one matrix product
    (every input pixel's contribution to its ``k x k`` output patch) and a fold (col2im, which
    sums the overlapping patches).

    Why: on a 4x4 or 8x8 input (the 512 -> 256 and 256 -> 128 blocks) this is a tall, thin
    product with 8 or 2 MB of weights, and PyTorch's CPU transposed convolution spent several
    times the arithmetic's cost on it (the largest items of a DCGAN drag step). The same numbers
    to float rounding, and each sample's rows come out bit for bit the same at any batch size (checked by
    the batched-drag tests), so batched drags still end where single ones do.

    ``patches`` is ``weight.flatten(1).t()`` stored contiguous (:meth:`UpBlock.patch_weight`):
    the product with the transposed view took twice as long on CPU.
    """
    n, c, h, w = x.shape
    k = weight.shape[-1]
    patches = weight.flatten(1).t() if patches is None else patches
    # the samples side by side as the columns of one product: the weight is read once, where a
    # batched product reads it once per sample (8 drags' 512 -> 256 block: 13 -> 4-6 ms on 2
    # threads), and each column's sums are the ones the sample alone gets
    side = torch.mm(patches, x.permute(1, 0, 2, 3).reshape(c, n * h * w))
    cols = side.view(-1, n, h * w).permute(1, 0, 2)                  # [N, C_out * k * k, h * w]
    size = ((h - 1) * stride - 2 * padding + k, (w - 1) * stride - 2 * padding + k)
    return F.fold(cols, size, k, stride=stride, padding=padding)


class UpBlock(nn.Module):
    """Transposed conv, then batch norm and ReLU (or tanh for the last block).

    Args:
        in_channels: channels coming in.
        out_channels: channels going out.
        first: the first block maps a 1x1 latent to 4x4 (stride 1, no padding);
            the others double the size (stride 2, padding 1).
        last: the last block ends in tanh and has no batch norm.
    """

    def __init__(self, in_channels: int, out_channels: int, first: bool = False, last: bool = False):
        super().__init__()
        stride, padding = (1, 0) if first else (2, 1)
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, 4, stride, padding, bias=False)
        self.norm = None if last else nn.BatchNorm2d(out_channels)
        self.last = last

    def patch_weight(self) -> Tensor:
        """The weight as ``[C_out * k * k, C_in]``, contiguous, for :func:`transposed_as_matmul`;
        made once per weight tensor (:func:`~dragwalk.models.weight_forms.derived`; a weight
        being trained, pivotal tuning's private copy, gets a differentiable one per call)."""
        return derived(self.conv.weight, "patches", lambda t: t.flatten(1).t().contiguous())

    def forward(self, x: Tensor) -> Tensor:
        if self._folds_norm(x):
            return self._first_with_norm(x)
        x = self._convolve(x)
        if self.last:
            return torch.tanh(x)
        return torch.relu(self.norm(x))

    def _folds_norm(self, x: Tensor) -> bool:
        """Whether this pass is the first block over a sample batch with batch norm in eval mode:
        GANSpace, SFVQ and DP-LaSE run it over thousands of samples, and DP-LaSE also backward."""
        norm = self.norm
        return (norm is not None and not norm.training and norm.running_var is not None
                and x.shape[0] >= MATMUL_BATCH and self._from_a_point(x) and self.conv.weight.is_contiguous())

    def _from_a_point(self, x: Tensor) -> bool:
        """Whether this is the first block's ``1 x 1`` input (stride 1, no padding): each output pixel
        is then one column of the weight, and the convolution is a matrix product."""
        conv = self.conv
        return x.shape[-2:] == (1, 1) and conv.stride == (1, 1) and conv.padding == (0, 0)

    def _first_with_norm(self, x: Tensor) -> Tensor:
        """``relu(norm(conv(x)))`` of a ``1 x 1`` input as one product with a bias: eval-mode batch
        norm is ``scale * y + shift`` per channel, so it folds into the weight's columns and the
        bias. Its own pass over the ``[N, 512, 4, 4]`` map and that pass's backward (the largest
        item of a DP-LaSE iteration) are gone; the same numbers to float rounding."""
        conv, norm = self.conv, self.norm
        assert norm is not None and norm.running_var is not None and norm.running_mean is not None
        scale = torch.rsqrt(norm.running_var + norm.eps)
        if norm.weight is not None:
            scale = scale * norm.weight
        shift = -norm.running_mean * scale
        if norm.bias is not None:
            shift = shift + norm.bias
        taps = conv.weight.shape[-2] * conv.weight.shape[-1]
        weight = (conv.weight * scale[None, :, None, None]).flatten(1)       # [C_in, C_out * k * k]
        y = torch.addmm(shift.repeat_interleave(taps), x.flatten(1), weight)
        return torch.relu_(y).view(x.shape[0], *conv.weight.shape[1:])

    def _convolve(self, x: Tensor) -> Tensor:
        """The transposed convolution, in the form that is fastest on CPU for this input; every
        form gives the same numbers to float rounding.

        A drag (or a few sessions' drags stepped together) must get each sample's rows bit for
        bit as alone, so batched drags end exactly where single ones do: Adam turns a rounding
        difference in a near-zero gradient into a whole step."""
        conv, n = self.conv, x.shape[0]
        if not conv.weight.is_contiguous():         # channels-last weights: the convolution's own layout
            return conv(x)
        if self._from_a_point(x):
            flat, shape = conv.weight.flatten(1), (n, *conv.weight.shape[1:])
            if n >= MATMUL_BATCH:
                # sample batches (GANSpace and SFVQ run this block over 10k samples several times):
                # one product, 3x as fast as PyTorch's transposed convolution on CPU
                return (x.flatten(1) @ flat).view(shape)
            # drags: one product per sample (one over the batch is not bit-invariant); the
            # convolution took 1.1 ms of a 2-thread step, the products 0.4
            return torch.cat([row @ flat for row in x.flatten(1).split(1)]).view(shape)
        if n < MATMUL_BATCH and conv.stride == (2, 2) and x.shape[-2] * x.shape[-1] <= MATMUL_PIXELS:
            # big sample batches keep the convolution: the product's columns are 4x its output
            return transposed_as_matmul(x, conv.weight, 2, conv.padding[0], self.patch_weight())
        return conv(x)


class DCGANGenerator(Generator):
    """DCGAN generator; the latent is ``z`` of shape ``[N, nz]``.

    Args:
        nz: latent size.
        ngf: width multiplier (channels of the last hidden block).
        nc: image channels.
        resolution: output side; 64 gives the classic five-block network.
        name: registry name.
    """

    architecture = "dcgan"
    latent_spaces = ("z",)
    default_space = "z"
    num_ws = 1
    drag_modes = ("z+b1", "z", "z+b0", "z+b2")
    #: modules ``dragwalk.runtime.prepare`` compiles one by one
    compile_units = (UpBlock,)
    #: drag settings tuned on this model with `dragwalk bench drag` (the methods' own
    #: defaults are the papers', for StyleGAN). ``smooth``: the stride-2 transposed
    #: convolutions leave a checkerboard that one [1, 2, 1] pass removes; ``lr``: z plus
    #: spatial offsets reach the same landmark distance as 2e-3 in half the steps at 1e-2.
    #: The warp keeps its class default RBF field: with the image corrections it moved content
    #: further than MLS on the 12 tuning faces (seeds 0+ and 1000+: 0.86 / 0.91 against
    #: 0.82 / 0.90 of the way) with less change far from the points (docs/ARCHITECTURE.md).
    #: Its image match (20 iterations) took content 0.86 / 0.89 -> 0.93 / 0.97 of the way there,
    #: what the image-grid warp itself scores, and made the corrections redundant.
    drag_defaults = {
        "*": {"smooth": 1.0, "lr": 1e-2},
        "template": {"patch": 4.0, "r1": 5.0, "offset_lr": 0.3, "offset_decay": 10.0},
        "warp": {"patch": 4.0, "r1": 5.0, "offset_lr": 0.3, "offset_decay": 10.0, "match": 20.0, "correct": 0.0},
        "freedrag": {"d_max": 2.0, "spacing": 2.0},
    }

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3, resolution: int = 64,
                 name: str = "dcgan"):
        super().__init__()
        n_up = resolution.bit_length() - 3  # 64 -> 4 blocks after the first
        if 4 * 2 ** n_up != resolution:
            raise ValueError(f"DCGAN resolution must be a power of two >= 8, got {resolution}")
        widths = [ngf * 2 ** (n_up - 1 - i) for i in range(n_up)]  # 512, 256, 128, 64
        blocks = [UpBlock(nz, widths[0], first=True)]
        for a, b in zip(widths[:-1], widths[1:]):
            blocks.append(UpBlock(a, b))
        blocks.append(UpBlock(widths[-1], nc, last=True))
        self.blocks = nn.ModuleList(blocks)
        self.name = name
        self.resolution = resolution
        self.latent_dim = nz
        self._layers = [LayerInfo(f"b{i}", w, 4 * 2 ** i) for i, w in enumerate(widths)]
        self._layers.append(LayerInfo("image", nc, resolution))
        self.default_feature_layer = f"b{n_up - 1}"  # the 32x32 block at 64 px
        self._config = {"nz": nz, "ngf": ngf, "nc": nc, "resolution": resolution}
        self.eval()

    def config(self) -> dict:
        return dict(self._config)

    # ----------------------------------------------------------------- latents
    def sample(self, seed: int, truncation: float = 1.0, space: str | None = None,
               batch: int = 1, settings: Settings | None = None) -> Latent:
        """No classes, no noise inputs, no w+: only the default settings pass ``check_settings``."""
        if space not in (None, "z"):
            raise ValueError(f"{self.name} has only a 'z' latent space, not {space!r}")
        settings = self.check_settings(settings)
        z = seeded_normal(seed, (batch, self.latent_dim)) * float(truncation)
        return Latent("z", z.to(self.device), settings=settings)

    # ----------------------------------------------------------------- forward
    @property
    def layers(self) -> Sequence[LayerInfo]:
        return self._layers

    def synthesize(self, latent: Latent, feature_layer: str | None = None,
                   stop_at_feature: bool = False) -> Synthesis:
        if latent.space != "z":
            raise ValueError(f"{self.name} expects a 'z' latent, got {latent.space!r}")
        self.check_settings(latent.settings)
        if feature_layer is not None:
            self.layer(feature_layer)  # validates the name
        for name in latent.offsets:
            self.layer(name)
        x = latent.code.reshape(latent.batch, self.latent_dim, 1, 1)
        features = None
        for i, info in enumerate(self._layers):
            x = self._block(i, x, latent)
            if info.name == feature_layer:
                features = x
                if stop_at_feature:
                    held, frozen = features.detach(), latent.detach()   # see Synthesis: safe after a step
                    return Synthesis(None, features, lambda: self._resume(i + 1, held, frozen))
        return Synthesis(x, features)

    def _block(self, index: int, x: Tensor, latent: Latent) -> Tensor:
        """Block ``index`` and the latent's offset on its output."""
        x = self.blocks[index](x)
        offset = latent.offsets.get(self._layers[index].name)
        return x if offset is None else x + offset

    def _resume(self, start: int, x: Tensor, latent: Latent) -> Tensor:
        """The image from block ``start`` on, given the activation ``x`` entering it."""
        for i in range(start, len(self.blocks)):
            x = self._block(i, x, latent)
        return x

    def render_carried(self, latent: Latent, layer: str, carried: dict[str, Tensor]) -> Tensor:
        index = [info.name for info in self._layers].index(self.layer(layer).name)
        return self._resume(index + 1, carried[layer], latent)

    # ----------------------------------------------------------------- editing
    def drag_variables(self, latent: Latent, mode: str | None = None) -> DragVariables:
        mode = mode or self.drag_modes[0]
        if mode not in self.drag_modes:
            raise ValueError(f"{self.name}: unknown drag mode {mode!r} (known: {', '.join(self.drag_modes)})")
        z = latent.code.detach().clone().requires_grad_(True)
        offsets = {k: v.detach().clone().requires_grad_(True) for k, v in latent.offsets.items()}
        if mode != "z":
            name = mode.split("+", 1)[1]
            if name not in offsets:
                info = self.layer(name)
                offsets[name] = torch.zeros(latent.batch, info.channels, info.size, info.size,
                                            device=z.device, requires_grad=True)
        params = [z, *offsets.values()]
        return DragVariables(params, lambda: Latent("z", z, dict(offsets), latent.settings))

    def first_linear_map(self, layers: Sequence[int] | None = None) -> Tensor:
        weight = self.blocks[0].conv.weight  # [nz, C, 4, 4]
        return weight.detach().reshape(self.latent_dim, -1)

    # ----------------------------------------------------------------- loading
    @classmethod
    def from_tutorial_state_dict(cls, state: dict[str, Tensor], name: str = "dcgan") -> "DCGANGenerator":
        """Build from a state dict of PyTorch's DCGAN tutorial layout (``main.<i>.*``)."""
        convs = sorted({int(k.split(".")[1]) for k in state if k.endswith(".weight") and state[k].dim() == 4})
        first = state[f"main.{convs[0]}.weight"]
        last = state[f"main.{convs[-1]}.weight"]
        nz, nc, ngf = first.shape[0], last.shape[1], last.shape[0]
        resolution = 4 * 2 ** (len(convs) - 1)
        model = cls(nz=nz, ngf=ngf, nc=nc, resolution=resolution, name=name)
        mapped: dict[str, Tensor] = {}
        for b, conv_index in enumerate(convs):
            mapped[f"blocks.{b}.conv.weight"] = state[f"main.{conv_index}.weight"]
            if b < len(convs) - 1:
                norm_index = conv_index + 1
                for part in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
                    mapped[f"blocks.{b}.norm.{part}"] = state[f"main.{norm_index}.{part}"]
        model.load_state_dict(mapped, strict=True)
        return model.eval().requires_grad_(False)
