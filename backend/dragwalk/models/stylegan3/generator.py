"""StyleGAN3 (alias-free, configs T and R) behind the generator interface.

Latents, mapping, truncation, class labels and drag modes are StyleGAN2's (the mapping
network is the same module), so :class:`StyleGAN3Generator` inherits them from
:class:`StyleGAN2Generator` and replaces what the synthesis changes:

* layers a caller may read: ``input`` and each ``L{i}_{size}_{channels}`` layer, then
  ``image``. An intermediate layer's signal covers the image plus a margin on every side;
  what ``synthesize`` returns (and offsets add to) is its central ``sampling_rate`` square,
  which covers exactly the image, so a point has the same relative position in every
  feature map. The margins flow on unchanged.
* the default drag layer sits at 6/14 of the depth (a 128-sample layer in a 1024 px model,
  like DragGAN's sixth StyleGAN2 block);
* there is no noise input: every noise mode renders the same image.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch.nn.functional as F
from torch import Tensor

from ..base import Generator, LayerInfo, Latent, Synthesis
from ..stylegan2.generator import StyleGAN2Generator
from .layers import SynthesisNetwork

#: where the default drag layer sits, as a fraction of the depth
FEATURE_DEPTH = 6 / 14


class StyleGAN3Generator(StyleGAN2Generator):
    """StyleGAN3 generator in pure PyTorch (no CUDA extension).

    Args are the format's: ``z_dim``, ``c_dim``, ``w_dim``, ``img_resolution``,
    ``img_channels``, ``mapping_kwargs`` (``num_layers`` 2 by default, ``lr_multiplier``,
    ``w_avg_beta``) and ``synthesis_kwargs`` (see :class:`SynthesisNetwork`).
    """

    architecture = "stylegan3"

    def __init__(self, z_dim: int = 512, c_dim: int = 0, w_dim: int = 512, img_resolution: int = 1024,
                 img_channels: int = 3, mapping_kwargs: dict | None = None,
                 synthesis_kwargs: dict | None = None, name: str = "stylegan3"):
        Generator.__init__(self)
        mapping_kwargs = {"num_layers": 2, **dict(mapping_kwargs or {})}
        synthesis_kwargs = dict(synthesis_kwargs or {})
        self._adopt(SynthesisNetwork(w_dim, img_resolution, img_channels, **synthesis_kwargs), z_dim, c_dim, w_dim,
                    img_resolution, img_channels, mapping_kwargs, synthesis_kwargs, name)
        self.height = self.width = img_resolution
        self.noise_modes = ("const",)          # no noise inputs: one image per latent
        syn = self.synthesis
        stages = [("input", syn.input.channels, syn.input.size, syn.rates[0])]
        stages += [(n, l.out_channels, l.out_size, l.out_sampling_rate) for n, l in syn.layers()[:-1]]
        #: name -> (margin on each side, side of the central square)
        self._crop = {n: ((size - int(rate)) // 2, int(rate)) for n, _, size, rate in stages}
        self._layers = [LayerInfo(n, c, int(rate)) for n, c, _, rate in stages]
        self._layers.append(LayerInfo("image", img_channels, img_resolution))
        pick = min(len(stages) - 1, round(len(syn.layer_names) * FEATURE_DEPTH))
        self.default_feature_layer = stages[pick][0]
        self._style_affines = [[syn.input.affine]] + [[l.affine] for _, l in syn.layers()]
        self.eval()

    # ----------------------------------------------------------------- forward
    def _center(self, name: str, x: Tensor) -> Tensor:
        m, side = self._crop[name]
        return x[:, :, m:m + side, m:m + side]

    def _with_offset(self, name: str, x: Tensor, latent: Latent) -> Tensor:
        offset = latent.offsets.get(name)
        if offset is None:
            return x
        m, side = self._crop[name]
        if tuple(offset.shape[1:]) != (x.shape[1], side, side):
            raise ValueError(f"{self.name}: offset {name!r} must be [N, {x.shape[1]}, {side}, {side}]")
        return x + F.pad(offset.to(x.dtype), [m, x.shape[3] - m - side, m, x.shape[2] - m - side])

    def _check_offsets(self, latent: Latent) -> None:
        for name in latent.offsets:
            if name not in self._crop:
                raise ValueError(f"{self.name}: unknown offset {name!r} (a layer name other than 'image')")

    #: StyleGAN3's layers are not StyleGAN2's blocks: the whole map, as every model by default
    synthesize_window = Generator.synthesize_window
    computes_windows = False

    def synthesize(self, latent: Latent, feature_layer: str | None = None,
                   stop_at_feature: bool = False) -> Synthesis:
        if feature_layer is not None:
            self.layer(feature_layer)
        self._check_offsets(latent)
        ws = self.ws(latent).to(self.device)
        rows = ws.unbind(dim=1)
        stages: list[tuple[str, Callable[[Tensor], Tensor]]] = [("input", lambda _x: self.synthesis.input(rows[0]))]
        stages += [(n, (lambda x, l=l, w=w: l(x, w))) for (n, l), w in zip(self.synthesis.layers(), rows[1:])]
        x, features = None, None
        for i, (name, run) in enumerate(stages):
            x = run(x)
            if name in self._crop:
                x = self._with_offset(name, x, latent)
            if name == feature_layer:
                features = self._center(name, x).float()
                if stop_at_feature:
                    held = x
                    return Synthesis(None, features, lambda: self._finish(stages[i + 1:], held, latent))
        image = self._finish([], x, latent)
        return Synthesis(image, image if feature_layer == "image" else features)

    def _finish(self, stages: list, x: Tensor, latent: Latent) -> Tensor:
        for name, run in stages:
            x = run(x)
            if name in self._crop:
                x = self._with_offset(name, x, latent)
        return (x * self.synthesis.output_scale).float().clamp(-1, 1)

    def offset_shape(self, name: str) -> tuple[int, int, int] | None:
        if name not in self._crop:
            return None
        info = self.layer(name)
        return (info.channels, info.size, info.size)

    def carried(self, latent: Latent, layer: str, features: Tensor | None = None) -> dict[str, Tensor]:
        return Generator.carried(self, latent, layer, features)

    def render_carried(self, latent: Latent, layer: str, carried: dict[str, Tensor]) -> Tensor:
        return Generator.render_carried(self, latent, layer, carried)

    def describe(self) -> dict:
        info = Generator.describe(self)
        info.update({"z_dim": self.z_dim, "c_dim": self.c_dim,
                     "fp16_layers": [n for n, l in self.synthesis.layers() if l.use_fp16]})
        return info

    def first_linear_map(self, layers: Sequence[int] | None = None) -> Tensor:
        """Row 0 (the Fourier input's rotation/translation affine, 4 outputs) is included only
        when asked for by index: SeFa over every row reads the conv layers' affines."""
        if layers is None:
            layers = range(1, self.num_ws)
        return super().first_linear_map(layers)
