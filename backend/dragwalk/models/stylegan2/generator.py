"""StyleGAN2 / StyleGAN2-ADA behind the generator interface.

Latent spaces: ``z`` (the sampling space), ``w`` (one style vector) and ``w+``
(one style vector per synthesis layer, ``num_ws`` rows), which is where sessions
edit by default — DragGAN drags in w+ and optimises its first six rows (drag modes:
``w+:first6``, ``w+``, and ``w``, one vector shared by those six rows; see
``StyleGAN2Generator.drag_variables``).

Layers a caller may read: each synthesis block's output ``b4``, ``b8``, ... and
``image``. The default drag feature layer is the sixth block (``b128``) as in
DragGAN; models too small to have six blocks use the block at half resolution,
which is what the sixth block is for a 256 px model (fine enough to track points
to a pixel or two, coarse enough to carry semantics).

Conditional models (``c_dim > 0``) take a class label. The label, the noise mode (and
seed) and the truncation cutoff are per-session :class:`~dragwalk.models.base.Settings`
carried by each latent, never state of this (shared, cached) module: ``sample`` maps z with
the settings' class and cutoff, ``convert`` maps a z latent with its class, and the
synthesis draws noise as its latent's settings say. ``sample(..., class_index=k)`` is a
shorthand for ``settings=Settings(class_index=k)``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..base import DragVariables, Generator, LayerInfo, Latent, Settings, Synthesis, seeded_normal
from ..window import Window, conv_input, crop, part, place, up_conv_input, zero_outside
from . import bands
from .layers import NOISE_MODES, FullyConnectedLayer, MappingNetwork, SynthesisLayer, SynthesisNetwork, ToRGBLayer

#: DragGAN optimises the first six rows of w+
DRAG_ROWS = 6
#: DragGAN reads features after the sixth synthesis block
FEATURE_BLOCK = 6
#: offset key suffix for a block's incoming skip image (see ``StyleGAN2Generator.carried``)
RGB_SUFFIX = ":rgb"
#: frames (passes without autograd) of one fp32 latent on the CPU run channels-last (NHWC): the
#: CPU convolutions then skip a layout reorder around every call, and the fixed weights keep a
#: channels-last copy (``ops.fixed_like``). A 256 px FFHQ-layout frame: 275 -> 231 ms at 2
#: threads (interleaved in one process). Drag steps (autograd on small windows) stay NCHW, where
#: channels-last was slower; accelerators keep the runtime's layout (``--channels-last``).
FRAMES_CHANNELS_LAST = True
#: the same frames compute their large top blocks a band of rows at a time (:mod:`.bands`), which
#: bounds a frame's memory by a band's maps
BANDED_FRAMES = True


def _frame_layout(x: Tensor) -> Tensor:
    """``x`` channels-last when it is a CPU frame's activation (see :data:`FRAMES_CHANNELS_LAST`)."""
    if (FRAMES_CHANNELS_LAST and not torch.is_grad_enabled() and x.device.type == "cpu"
            and x.shape[0] == 1 and x.dtype == torch.float32 and not _transformed(x)):
        return x.contiguous(memory_format=torch.channels_last)
    return x


def _transformed(x: Tensor) -> bool:
    """Whether ``x`` is inside a ``torch.func`` transform (REDs' Jacobians), whose batched
    tensors cannot change their memory format."""
    check = getattr(getattr(torch._C, "_functorch", None), "is_functorch_wrapped_tensor", None)
    return bool(check(x)) if check is not None else False


def _block_hw(block) -> tuple[int, int]:
    res = block.resolution
    return (res, res) if isinstance(res, int) else (int(res[0]), int(res[1]))


class StyleGAN2Generator(Generator):
    """StyleGAN2 generator (mapping + synthesis) in pure PyTorch.

    Args:
        z_dim: size of z (512 in published models).
        c_dim: size of the class label (0 = unconditional).
        w_dim: size of a style vector w.
        img_resolution: output side, a power of two from 4 to 1024 (or more); the longer side of
            a non-square model (``synthesis_kwargs["init_res"]``, e.g. ``(4, 2)`` for 2:1 portrait
            images: 1024 x 512 at ``img_resolution=1024``).
        img_channels: image channels (3).
        mapping_kwargs: ``MappingNetwork`` options (num_layers, lr_multiplier,
            embed_features, layer_features, activation, w_avg_beta).
        synthesis_kwargs: ``SynthesisNetwork`` options (channel_base, channel_max,
            num_fp16_res, conv_clamp, architecture, resample_filter, use_noise,
            kernel_size, activation).
        name: registry name or file the model came from.

    Run-time setting (not part of the saved config): ``half`` (compute the fp16-flagged
    blocks in half precision on CUDA; fp32 everywhere else). The class, noise and
    truncation cutoff are per latent (``Latent.settings``), so sessions sharing this
    module cannot change each other's images.
    """

    architecture = "stylegan2"
    latent_spaces = ("z", "w", "w+")
    default_space = "w+"
    drag_modes = ("w+:first6", "w+", "w")
    #: modules ``dragwalk.runtime.prepare`` compiles one by one
    compile_units = (SynthesisLayer, ToRGBLayer)
    computes_windows = True
    #: nothing tuned here: StyleGAN drags start from the papers' settings, which are the
    #: method classes' own defaults (Adam at lr 2e-3 on w+, no feature blur, DragGAN's radii
    #: and FreeDrag's sizes scaled from 512 px, L2 tracking — L1 measured no different)
    drag_defaults: dict[str, dict[str, float]] = {}

    def __init__(self, z_dim: int = 512, c_dim: int = 0, w_dim: int = 512, img_resolution: int = 1024,
                 img_channels: int = 3, mapping_kwargs: dict | None = None,
                 synthesis_kwargs: dict | None = None, name: str = "stylegan2"):
        super().__init__()
        mapping_kwargs = dict(mapping_kwargs or {})
        synthesis_kwargs = dict(synthesis_kwargs or {})
        if "resample_filter" in synthesis_kwargs:
            synthesis_kwargs["resample_filter"] = [float(v) for v in synthesis_kwargs["resample_filter"]]
        self._adopt(SynthesisNetwork(w_dim, img_resolution, img_channels, **synthesis_kwargs), z_dim, c_dim, w_dim,
                    img_resolution, img_channels, mapping_kwargs, synthesis_kwargs, name)
        self.height, self.width = self.synthesis.img_size
        self.noise_modes = NOISE_MODES if self.synthesis.b4.conv1.use_noise else ("const",)
        blocks = self.synthesis.blocks()
        self._layers = [LayerInfo(n, b.out_channels, int(n[1:]), *_block_hw(b)) for n, b in blocks]
        self._layers.append(LayerInfo("image", img_channels, img_resolution, self.height, self.width))
        pick = blocks[FEATURE_BLOCK - 1][0] if len(blocks) >= FEATURE_BLOCK + 1 else f"b{img_resolution // 2}"
        self.default_feature_layer = pick if img_resolution >= 8 else blocks[0][0]
        self._style_affines = self._affines_by_row()
        self.eval()

    def _adopt(self, synthesis: torch.nn.Module, z_dim: int, c_dim: int, w_dim: int, img_resolution: int,
               img_channels: int, mapping_kwargs: dict, synthesis_kwargs: dict, name: str) -> None:
        """What StyleGAN2 and StyleGAN3 (a subclass with another ``synthesis``) set up alike: the
        mapping network, the constructor arguments that rebuild the network, sizes and name."""
        self.synthesis = synthesis
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, synthesis.num_ws, **mapping_kwargs)
        self._config = {"z_dim": z_dim, "c_dim": c_dim, "w_dim": w_dim, "img_resolution": img_resolution,
                        "img_channels": img_channels, "mapping_kwargs": mapping_kwargs,
                        "synthesis_kwargs": synthesis_kwargs}
        self.name = name
        self.z_dim, self.c_dim = z_dim, c_dim
        self.resolution = img_resolution
        self.latent_dim = w_dim
        self.num_ws = synthesis.num_ws
        self.half = False

    def config(self) -> dict:
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in self._config.items()}

    # ----------------------------------------------------------------- settings
    def _label(self, batch: int, settings: Settings) -> Tensor | None:
        """The one-hot label of checked ``settings`` (``None`` for an unconditional model)."""
        if self.c_dim == 0:
            return None
        index = self.check_settings(settings).class_index
        return F.one_hot(torch.full([batch], int(index or 0), dtype=torch.long), self.c_dim).float().to(self.device)

    # ----------------------------------------------------------------- latents
    def sample(self, seed: int, truncation: float = 1.0, space: str | None = None, batch: int = 1,
               settings: Settings | None = None, class_index: int | None = None) -> Latent:
        """z from ``seeded_normal``; in w / w+ it is mapped (with the settings' class) and pulled
        towards ``w_avg`` by ``truncation`` (psi), in w+ on the first ``truncation_cutoff`` rows
        only. A ``z`` latent is returned untruncated: psi acts in w."""
        space = space or self.default_space
        if space not in self.latent_spaces:
            raise ValueError(f"{self.name}: unknown latent space {space!r} (known: z, w, w+)")
        settings = settings or Settings()
        if class_index is not None:
            settings = settings.replace(class_index=int(class_index))
        settings = self.check_settings(settings)
        z = seeded_normal(seed, (batch, self.z_dim)).to(self.device)
        if space == "z":
            return Latent("z", z, settings=settings)
        with torch.no_grad():
            c = self._label(batch, settings)
            if space == "w":
                return Latent("w", self.mapping(z, c, truncation, broadcast=False), settings=settings)
            return Latent("w+", self.mapping(z, c, truncation, settings.truncation_cutoff), settings=settings)

    def convert(self, latent: Latent, space: str) -> Latent:
        """z -> w -> w+ (differentiable). w+ -> w only when every row is the same w."""
        if latent.space == space:
            return latent
        code = latent.code
        if latent.space == "z" and space in ("w", "w+"):
            w = self.mapping(code, self._label(code.shape[0], latent.settings), broadcast=False)
            code = w if space == "w" else w.unsqueeze(1).repeat(1, self.num_ws, 1)
        elif latent.space == "w" and space == "w+":
            code = code.unsqueeze(1).repeat(1, self.num_ws, 1)
        elif latent.space == "w+" and space == "w" and torch.equal(code, code[:, :1].expand_as(code)):
            code = code[:, 0]
        else:
            raise ValueError(f"{self.name}: cannot convert a {latent.space!r} latent to {space!r}")
        return latent.derive(code, space=space)

    # ----------------------------------------------------------------- forward
    @property
    def layers(self) -> Sequence[LayerInfo]:
        return self._layers

    def ws(self, latent: Latent) -> Tensor:
        """``[N, num_ws, w_dim]`` of any latent (checked)."""
        code = self.convert(latent, "w+").code if latent.space != "w+" else latent.code
        if code.dim() != 3 or code.shape[1:] != (self.num_ws, self.latent_dim):
            raise ValueError(f"{self.name}: a w+ latent must be [N, {self.num_ws}, {self.latent_dim}], "
                             f"got {list(code.shape)}")
        return code

    def _check_offsets(self, latent: Latent) -> None:
        """Offsets name a block (``b64``: its activation) or a block's skip image (``b64:rgb``)."""
        for name in latent.offsets:
            base, _, part = name.partition(":")
            self.layer(base)
            if part not in ("", RGB_SUFFIX[1:]):
                raise ValueError(f"{self.name}: unknown offset {name!r} (a block name, or a block name "
                                 f"followed by {RGB_SUFFIX!r})")

    def _forward(self, latent: Latent, feature_layer: str | None, stop_at_feature: bool
                 ) -> tuple[Tensor | None, Tensor | None, Tensor | None, Callable[[], Tensor] | None]:
        """(image, features, skip image entering ``feature_layer``'s ToRGB sum, and when the pass
        stopped at ``feature_layer``, a call that renders the image from there)."""
        if feature_layer is not None:
            self.layer(feature_layer)
        stages, fp16, noise = self._stages(latent)
        names = [name for (name, _), _ in stages]
        banded = None if stop_at_feature else self._banded_from(
            stages, names.index(feature_layer) if feature_layer in names else -1)
        x = img = features = skip = None
        for i, ((name, block), rows) in enumerate(stages):
            if i == banded:
                img = bands.render_bands(stages, i, x, img, latent.offsets, noise, RGB_SUFFIX)
                break
            x, skip = self._enter(name, block, rows, x, img, latent, fp16, noise)
            if name == feature_layer:
                features = x.float()
                if stop_at_feature:
                    return None, features, skip, self._resumer(stages, i, x, skip, latent, fp16, noise)
            img = block.image(x, skip, rows, upsampled=True)
        image = img.clamp(-1, 1)
        if feature_layer == "image":
            features = image
        return image, features, None, None

    def _stages(self, latent: Latent) -> tuple[list, bool, dict]:
        """The (block, its w rows) pairs of ``latent`` (checked), whether fp16 blocks run in
        fp16, and the noise arguments."""
        self._check_offsets(latent)
        settings = self.check_settings(latent.settings)
        noise = {"noise_mode": settings.noise_mode,
                 "noise_seed": settings.noise_seed if settings.noise_mode == "random" else None}
        ws = self.ws(latent).to(self.device)
        fp16 = self.half and ws.device.type == "cuda"
        return list(zip(self.synthesis.blocks(), self.synthesis.block_ws(ws))), fp16, noise

    def render_carried(self, latent: Latent, layer: str, carried: dict[str, Tensor]) -> Tensor:
        stages, fp16, noise = self._stages(latent)
        index = [name for (name, _), _ in stages].index(self.layer(layer).name)
        block = stages[index][0][1]
        x = carried[layer].to(torch.float16 if fp16 and block.use_fp16 else torch.float32)
        return self._resume(stages, index, x, carried.get(layer + RGB_SUFFIX), latent, fp16, noise)

    def _resumer(self, stages: list, index: int, x: Tensor, skip: Tensor | None, latent: Latent,
                 fp16: bool, noise: dict) -> Callable[[], Tensor]:
        """:meth:`_resume` on detached copies taken now (:class:`~dragwalk.models.base.Synthesis`):
        the rows may be the optimised tensor itself, which the optimiser changes in place."""
        frozen = [(block, rows.detach().clone()) for block, rows in stages]
        x, skip, latent = x.detach(), None if skip is None else skip.detach(), latent.detach()
        return lambda: self._resume(frozen, index, x, skip, latent, fp16, noise)

    def _resume(self, stages: list, index: int, x: Tensor, skip: Tensor | None, latent: Latent,
                fp16: bool, noise: dict) -> Tensor:
        """The image from stage ``index``'s ToRGB on, given its activation ``x`` and skip image."""
        (_, block), rows = stages[index]
        img = block.image(x, skip, rows, upsampled=True)
        banded = self._banded_from(stages, index)
        for i, ((name, block), rows) in enumerate(stages[index + 1:], start=index + 1):
            if i == banded:
                img = bands.render_bands(stages, i, x, img, latent.offsets, noise, RGB_SUFFIX)
                break
            x, skip = self._enter(name, block, rows, x, img, latent, fp16, noise)
            img = block.image(x, skip, rows, upsampled=True)
        return img.clamp(-1, 1)

    def _banded_from(self, stages: list, after: int) -> int | None:
        """The stage from which a pass computes in bands (:mod:`.bands`): only a CPU frame of one
        fp32 latent (no autograd, no ``torch.func`` transform) of the skip architecture, and only
        above stage ``after``, whose whole map the caller wants."""
        rows = stages[0][1]
        if (not BANDED_FRAMES or torch.is_grad_enabled() or rows.device.type != "cpu" or rows.shape[0] != 1
                or rows.dtype != torch.float32 or _transformed(rows) or self.half
                or stages[-1][0][1].architecture != "skip"):
            return None
        start = bands.first_banded([block for (_, block), _ in stages])
        if start is None:
            return None
        start = max(start, after + 1)
        return start if start < len(stages) else None

    def _enter(self, name: str, block, rows: Tensor, x: Tensor | None, img: Tensor | None, latent: Latent,
               fp16: bool, noise: dict) -> tuple[Tensor, Tensor | None]:
        """A block's activation and the skip image entering its ToRGB sum, each with its offset."""
        x = _frame_layout(block.features(x, rows, fp16=fp16, **noise))
        if name in latent.offsets:
            x = x + latent.offsets[name].to(x.dtype)
        skip = block.skip_image(img)
        if skip is not None and name + RGB_SUFFIX in latent.offsets:
            skip = skip + latent.offsets[name + RGB_SUFFIX]
        return x, skip

    def synthesize(self, latent: Latent, feature_layer: str | None = None,
                   stop_at_feature: bool = False) -> Synthesis:
        image, features, _, resume = self._forward(latent, feature_layer, stop_at_feature)
        return Synthesis(image, features, resume)

    def synthesize_window(self, latent: Latent, layer: str, window: Window | None) -> Synthesis:
        """Only the cells ``window`` depends on: block by block down from ``layer``, each block
        computes the part of its map the block above reads (:mod:`..window`), until that part is
        the whole map; the blocks below that run whole, and no ToRGB runs. Each cell computed is
        the number the whole pass gives there (``tests/test_stylegan_window.py``), so gradients
        are the whole pass's too. ``resume`` renders the frame with one whole inference pass."""
        plan = None if window is None else self._window_plan(layer, window)
        if plan is None:
            return self.synthesize(latent, layer, stop_at_feature=True)
        start, boxes, entry = plan
        stages, fp16, noise = self._stages(latent)
        x = None
        for (name, block), rows in stages[:start]:
            x, _ = self._enter(name, block, rows, x, None, latent, fp16, noise)
        x, box = crop(x, entry), entry
        for (name, block), rows in stages[start:len(boxes) + start]:
            x = self._block_window(block, rows, x, box, boxes[name], fp16, noise)
            box = boxes[name]
            if name in latent.offsets:
                x = x + crop(latent.offsets[name], box).to(x.dtype)
        features = place(x, box, self.layer(layer).hw).float()
        frozen = latent.detach()
        return Synthesis(None, features, lambda: self._forward(frozen, None, False)[0])

    def _window_plan(self, layer: str, window: Window) -> tuple[int, dict[str, Window], Window] | None:
        """(index of the first block computed in part, the part of each such block's activation by
        block name, the part of the whole block below it that the first one reads), or ``None``
        when the window needs the whole feature map, the layer is the image, or the architecture
        has no plan ('resnet')."""
        blocks = self.synthesis.blocks()
        names = [name for name, _ in blocks]
        if self.layer(layer).name not in names:          # the image: its pass is the whole network
            return None
        index = names.index(layer)
        hw = _block_hw(blocks[index][1])
        box = window.clipped(hw)
        if box.covers(hw) or index == 0 or blocks[index][1].architecture == "resnet":
            return None
        boxes: dict[str, Window] = {}
        for i in range(index, 0, -1):
            name, block = blocks[i]
            boxes[name] = box
            read = conv_input(box, block.conv1.weight.shape[-1])
            box = up_conv_input(read, block.conv0.weight.shape[-1], tuple(block.conv0.resample_filter.shape))
            if i == 1 or box.covers(_block_hw(blocks[i - 1][1])):
                return i, dict(reversed(boxes.items())), box
        return None

    @staticmethod
    def _block_window(block, rows: Tensor, x: Tensor, box_in: Window, box_out: Window, fp16: bool,
                      noise: dict) -> Tensor:
        """Block ``block``'s activation on ``box_out`` from the previous one on ``box_in`` (zero
        outside its map); zero outside this block's map, as a whole pass's padding reads it."""
        hw = _block_hw(block)
        x = x.to(torch.float16 if (fp16 and block.use_fp16) else torch.float32)
        first, second = rows.unbind(dim=1)[:2]
        up = box_in.doubled()
        y = zero_outside(block.conv0(x, first, window=up, **noise), up, hw)
        read = conv_input(box_out, block.conv1.weight.shape[-1])
        y = zero_outside(block.conv1(part(y, up, read), second, window=read, **noise), read, hw)
        return part(y, read, box_out)

    def offset_shape(self, name: str) -> tuple[int, int, int] | None:
        base, _, part = name.partition(":")
        if part == RGB_SUFFIX[1:]:
            shape = super().offset_shape(base)
            return None if shape is None else (self.synthesis.img_channels, shape[1], shape[2])
        return super().offset_shape(name) if not part else None

    def carried(self, latent: Latent, layer: str, features: Tensor | None = None) -> dict[str, Tensor]:
        """The block's activation and, in the skip architecture, the image summed so far
        (``layer + ":rgb"``): the low frequencies of everything before ``layer`` live there,
        so a warp of the activation alone would leave a ghost of the old content."""
        if layer == "image":
            raise ValueError(f"{self.name}: the image is not an intermediate layer")
        _, features, skip, _ = self._forward(latent, layer, True)
        assert features is not None
        out = {layer: features}
        if skip is not None:
            out[layer + RGB_SUFFIX] = skip
        return out

    # ----------------------------------------------------------------- editing
    def drag_variables(self, latent: Latent, mode: str | None = None) -> DragVariables:
        """Which part of w+ a drag (or an inversion's second phase) optimises:

        * ``w+:first6`` (DragGAN's default): rows 0..5 of w+ train independently, the
          rest stay at their start values;
        * ``w+``: every row trains;
        * ``w`` (DragGAN's "w" mode): *one* vector shared by rows 0..5, the rest stay at
          their start values. The trainable tensor is one ``[N, w_dim]`` change added to
          each of rows 0..5 (started at zero, so the first frame is the start image
          exactly): for a latent sampled in w or z, whose rows are all the same w (the
          paper's setting), rows 0..5 are then one shared vector w + delta; after a ``w+``
          edit they keep their differences and move as one. Adam's steps are the same as
          on the shared vector itself (its gradient is the sum over the six rows).

        The result is always a ``w+`` latent; offsets are carried, fixed.
        """
        mode = mode or self.drag_modes[0]
        if mode not in self.drag_modes:
            raise ValueError(f"{self.name}: unknown drag mode {mode!r} (known: {', '.join(self.drag_modes)})")
        offsets = {k: v.detach() for k, v in latent.offsets.items()}
        ws = self.ws(latent.detach()).detach().clone()
        rows = min(DRAG_ROWS, self.num_ws) if mode in ("w+:first6", "w") else self.num_ws
        tail = ws[:, rows:]
        if mode == "w":
            start = ws[:, :rows]
            delta = torch.zeros_like(ws[:, 0]).requires_grad_(True)
            return DragVariables([delta], lambda: Latent(
                "w+", torch.cat([start + delta[:, None], tail], dim=1), dict(offsets), latent.settings))
        head = ws[:, :rows].clone().requires_grad_(True)
        return DragVariables([head], lambda: Latent("w+", torch.cat([head, tail], dim=1), dict(offsets),
                                                    latent.settings))

    def _affines_by_row(self) -> list[list[FullyConnectedLayer]]:
        """For each w+ row, the style affines of the convolutions that read it (or, for the
        last row, which only the final ToRGB reads, that ToRGB's affine)."""
        convs: list[list[FullyConnectedLayer]] = [[] for _ in range(self.num_ws)]
        rgbs: list[list[FullyConnectedLayer]] = [[] for _ in range(self.num_ws)]
        start = 0
        for _, block in self.synthesis.blocks():
            layers = [block.conv0] if block.in_channels else []
            for i, layer in enumerate(layers + [block.conv1]):
                convs[start + i].append(layer.affine)
            if block.num_torgb:
                rgbs[start + block.num_conv].append(block.torgb.affine)
            start += block.num_conv
        return [c if c else r for c, r in zip(convs, rgbs)]

    def first_linear_map(self, layers: Sequence[int] | None = None) -> Tensor:
        """``[w_dim, sum of channels]``: the style affines of the w+ rows ``layers`` side by side."""
        rows = range(self.num_ws) if layers is None else [int(i) for i in layers]
        for i in rows:
            if not 0 <= i < self.num_ws:
                raise ValueError(f"{self.name}: w+ row {i} outside 0..{self.num_ws - 1}")
        mats = [a.effective_weight().detach().t() for i in rows for a in self._style_affines[i]]
        return torch.cat(mats, dim=1)

    def describe(self) -> dict:
        info = super().describe()
        info.update({"z_dim": self.z_dim,
                     "fp16_blocks": [n for n, b in self.synthesis.blocks() if b.use_fp16]})
        return info
