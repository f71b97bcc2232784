"""The generator interface: the one seam every edit method stands on.

Drag methods, direction methods, inversion and the server only ever talk to a
:class:`Generator`. Whether the network underneath is a DCGAN or a StyleGAN2 is
the adapter's business. An adapter exposes:

* its resolution and the latent spaces it can be edited in (``z`` for a DCGAN;
  ``z``, ``w`` and ``w+`` for StyleGAN);
* ``sample(seed, truncation)`` giving a reproducible :class:`Latent`;
* ``synthesize`` which returns the image *and* the activation of a named layer,
  and which can stop at that layer (a drag step needs no more than that);
* ``drag_variables``: which part of the latent an optimiser may change;
* ``first_linear_map``: the first linear map applied to the latent (SeFa).

Per-session generator settings (class label, noise mode and seed, truncation cutoff) are
:class:`Settings`, carried by every :class:`Latent`: a shared cached model holds none of
them, so two sessions on one model never see each other's. ``check_settings`` bounds them
for a model.

Early activations (GANSpace, DP-LaSE, SFVQ) are read with
``synthesize(latent, feature_layer=name, stop_at_feature=True)``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from .window import Window


class ModelError(ValueError):
    """A model reference that cannot be resolved or a file that cannot be read.

    Lives beside the interface (not in ``registry``) so every loader can raise it without
    importing the registry that imports the loaders.
    """


#: how per-layer noise is drawn: the model's fixed maps, fresh maps from ``noise_seed``, or none
NOISE_MODES = ("const", "random", "none")
#: largest ``Settings.noise_seed``
MAX_NOISE_SEED = 2**31 - 1


@dataclass(frozen=True)
class Settings:
    """Generator settings that belong to a session, not to the shared model.

    ``class_index``: the label of a conditional model (``None`` on an unconditional one);
    ``noise_mode``: one of :data:`NOISE_MODES` (``random`` draws its maps from ``noise_seed``,
    so it is reproducible: replays and exports give the same image); ``truncation_cutoff``:
    how many rows of w+ truncation pulls towards the mean when sampling (``None`` = all).
    Checked against a model by :meth:`Generator.check_settings`; :meth:`from_dict` checks types.
    """

    class_index: int | None = None
    noise_mode: str = "const"
    noise_seed: int = 0
    truncation_cutoff: int | None = None

    def to_dict(self) -> dict:
        return {"class_index": self.class_index, "noise_mode": self.noise_mode,
                "noise_seed": self.noise_seed, "truncation_cutoff": self.truncation_cutoff}

    def replace(self, **changes: object) -> "Settings":
        """These settings with some fields changed (unknown names are refused)."""
        unknown = set(changes) - set(self.to_dict())
        if unknown:
            raise ValueError(f"unknown generator setting(s): {', '.join(sorted(unknown))}")
        return Settings.from_dict({**self.to_dict(), **changes})

    @classmethod
    def from_dict(cls, data: object) -> "Settings":
        """Settings from JSON-like data, types checked (bounds need the model: ``check_settings``)."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise ValueError("generator settings must be an object")
        unknown = set(data) - {"class_index", "noise_mode", "noise_seed", "truncation_cutoff"}
        if unknown:
            raise ValueError(f"unknown generator setting(s): {', '.join(sorted(map(str, unknown)))[:200]}")

        def integer(name: str, optional: bool) -> int | None:
            value = data.get(name)
            if value is None and optional:
                return None
            if value is None:
                return 0
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer{' or null' if optional else ''}, got {value!r:.40}")
            return int(value)

        mode = data.get("noise_mode", "const")
        if mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {', '.join(NOISE_MODES)}, got {mode!r:.40}")
        seed = integer("noise_seed", False)
        assert seed is not None
        if not 0 <= seed <= MAX_NOISE_SEED:
            raise ValueError(f"noise_seed must be in 0..{MAX_NOISE_SEED}, got {seed}")
        return cls(integer("class_index", True), str(mode), seed, integer("truncation_cutoff", True))


@dataclass
class Latent:
    """A point in a generator's latent space, plus optional spatial offsets.

    ``code`` is ``[N, D]`` for ``z`` and ``w``, ``[N, L, D]`` for ``w+``.
    ``offsets`` maps a layer name to an additive offset on that layer's
    activation (``[N, C, h, w]``): the "spatial latent" a drag may optimise on
    models whose vector latent is too coarse. Empty for most latents.
    ``settings`` are the session's generator settings (class, noise, cutoff): the latent
    carries them so every call renders it the way its session asked, on a shared model.
    """

    space: str
    code: Tensor
    offsets: dict[str, Tensor] = field(default_factory=dict)
    settings: Settings = field(default_factory=Settings)

    @property
    def batch(self) -> int:
        return int(self.code.shape[0])

    def detach(self) -> "Latent":
        return Latent(self.space, self.code.detach().clone(),
                      {k: v.detach().clone() for k, v in self.offsets.items()}, self.settings)

    def to(self, device: torch.device | str) -> "Latent":
        return Latent(self.space, self.code.to(device),
                      {k: v.to(device) for k, v in self.offsets.items()}, self.settings)

    def with_code(self, code: Tensor) -> "Latent":
        """Same space, offsets and settings, another code (used by walks)."""
        return Latent(self.space, code, dict(self.offsets), self.settings)

    def derive(self, code: Tensor, offsets: dict[str, Tensor] | None = None, space: str | None = None
               ) -> "Latent":
        """A latent made from this one: another code (and offsets, space), the same settings.
        Every edit builds its result with this, so the session's settings are never dropped."""
        return Latent(space or self.space, code, dict(self.offsets if offsets is None else offsets),
                      self.settings)

    def with_settings(self, settings: Settings) -> "Latent":
        return Latent(self.space, self.code, dict(self.offsets), settings)

    def rerouted(self, was: dict[str, Tensor], now: dict[str, Tensor]) -> "Latent":
        """This latent with the activations ``was`` (keyed like offsets) replaced by ``now``: the
        differences added to its offsets. How a warp of :meth:`Generator.carried` is kept."""
        offsets = dict(self.offsets)
        for name, value in was.items():
            offsets[name] = offsets[name] + (now[name] - value) if name in offsets else now[name] - value
        return self.derive(self.code, offsets)


@dataclass
class Synthesis:
    """What one forward pass produced.

    ``image`` is ``[N, 3, H, W]`` in ``[-1, 1]``, or ``None`` when the pass
    stopped at the feature layer. ``features`` is the activation of the
    requested layer (``None`` if none was asked for).

    A pass that stopped at the feature layer also hands back ``resume``: it renders the
    image from the state held there. A drag step that shows a frame calls it under
    ``torch.no_grad()``, so the autograd graph (and its memory) covers only the layers the
    loss reads, while the image costs one inference pass of the rest of the network.
    ``resume`` holds detached copies of what it reads (the activation, the latent's rows and
    offsets), taken during the pass: a step calls it *after* its backward pass and optimiser
    step, once the graph's memory is free, and still renders the latent the pass saw.
    """

    image: Tensor | None
    features: Tensor | None
    resume: Callable[[], Tensor] | None = None


@dataclass
class DragVariables:
    """The trainable part of a latent during a drag.

    ``params`` are leaf tensors with ``requires_grad`` for the optimiser;
    ``latent()`` rebuilds the full latent from them (differentiably).
    """

    params: list[Tensor]
    build: Callable[[], Latent]

    def latent(self) -> Latent:
        return self.build()


@dataclass(frozen=True)
class LayerInfo:
    """A named activation a caller may ask ``synthesize`` for: ``[N, channels, height, width]``.

    ``size`` is the longer side (the side, for square maps, which is most models); ``height`` and
    ``width`` default to it.
    """

    name: str
    channels: int
    size: int
    height: int = 0
    width: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "height", self.height or self.size)
        object.__setattr__(self, "width", self.width or self.size)

    @property
    def hw(self) -> tuple[int, int]:
        return (self.height, self.width)


def as_hw(size: int | Sequence[int]) -> tuple[int, int]:
    """``(height, width)`` from a square side or a pair: how sizes reach the pure helpers
    (points, masks, features, fields) that serve square and non-square models alike."""
    if isinstance(size, (int, float)) and not isinstance(size, bool):
        return int(size), int(size)
    height, width = size
    return int(height), int(width)


class Generator(nn.Module, abc.ABC):
    """Base class of every model adapter. Subclasses set the attributes below."""

    #: registry name or file the model came from
    name: str = "generator"
    #: output image side in pixels; the longer side of a non-square model (see ``image_size``)
    resolution: int = 0
    #: output height and width (0: ``resolution``, a square model)
    height: int = 0
    width: int = 0
    #: latent spaces this model can be edited in, the first is the sampling space
    latent_spaces: tuple[str, ...] = ("z",)
    #: the space sessions edit in unless told otherwise
    default_space: str = "z"
    #: dimension of one latent vector
    latent_dim: int = 0
    #: number of style vectors in w+ (1 for models without w+)
    num_ws: int = 1
    #: the layer a drag reads features from unless told otherwise
    default_feature_layer: str = ""
    #: drag modes (which part of the latent is optimised), the first is the default
    drag_modes: tuple[str, ...] = ("code",)
    #: size of a conditional model's class label (0 = unconditional)
    c_dim: int = 0
    #: noise modes this model renders differently (``("const",)``: it has no noise inputs)
    noise_modes: tuple[str, ...] = ("const",)
    #: drag settings tuned for this model: method name (or ``"*"`` for all) -> DragConfig
    #: fields (``lr``, ``lambda_mask``) and method parameters; empty = the papers' defaults
    drag_defaults: dict[str, dict[str, float]] = {}

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)`` of the images: every point, mask and frame is measured against it."""
        return (self.height or self.resolution, self.width or self.resolution)

    # ----------------------------------------------------------------- latents
    @abc.abstractmethod
    def sample(self, seed: int, truncation: float = 1.0, space: str | None = None,
               batch: int = 1, settings: Settings | None = None) -> Latent:
        """A reproducible latent for ``seed``: the same seed gives the same image everywhere.

        ``settings`` (checked with :meth:`check_settings`) choose the class and truncation
        cutoff of the sample and travel with the latent."""

    def sample_codes(self, n: int, seed: int = 0, space: str | None = None,
                     truncation: float = 1.0, settings: Settings | None = None) -> Latent:
        """``n`` latents at once, for methods that need statistics of the latent space."""
        return self.sample(seed, truncation=truncation, space=space, batch=n, settings=settings)

    def check_settings(self, settings: Settings | None) -> Settings:
        """``settings`` bounded for this model (``None``: the defaults), or ``ValueError``.

        A conditional model's missing class becomes 0; an unconditional model refuses one.
        """
        settings = settings or Settings()
        index = settings.class_index
        if self.c_dim == 0 and index is not None:
            raise ValueError(f"{self.name} is unconditional: it has no classes (class_index must be null)")
        if self.c_dim > 0:
            index = 0 if index is None else index
            if not 0 <= index < self.c_dim:
                raise ValueError(f"{self.name}: class index {index} outside 0..{self.c_dim - 1}")
        if settings.noise_mode not in self.noise_modes:
            raise ValueError(f"{self.name}: noise mode {settings.noise_mode!r} not offered "
                             f"(it has {', '.join(self.noise_modes)})")
        cutoff = settings.truncation_cutoff
        if cutoff is not None and not (self.num_ws > 1 and 1 <= cutoff <= self.num_ws):
            raise ValueError(f"{self.name}: truncation cutoff {cutoff} outside 1..{self.num_ws}"
                             if self.num_ws > 1 else f"{self.name} has no w+ rows to cut truncation off at")
        seed = settings.noise_seed if settings.noise_mode == "random" else 0   # one spelling per image
        return Settings(index, settings.noise_mode, seed, cutoff)

    def convert(self, latent: Latent, space: str) -> Latent:
        """Express ``latent`` in another space (e.g. z -> w -> w+)."""
        if latent.space == space:
            return latent
        raise ValueError(f"{self.name}: cannot convert a {latent.space!r} latent to {space!r}")

    # ----------------------------------------------------------------- forward
    @property
    @abc.abstractmethod
    def layers(self) -> Sequence[LayerInfo]:
        """The activations ``synthesize`` can return, from earliest to last."""

    @abc.abstractmethod
    def synthesize(self, latent: Latent, feature_layer: str | None = None,
                   stop_at_feature: bool = False) -> Synthesis:
        """Run the generator; return the image and the activation of ``feature_layer``.

        With ``stop_at_feature`` the blocks after ``feature_layer`` are skipped and
        ``image`` is ``None``: a drag step only needs the features. Such a pass also
        returns ``resume`` (see :class:`Synthesis`), which renders the rest on demand.
        """

    #: whether :meth:`synthesize_window` computes less than the whole map (callers skip working
    #: out a window for models that would compute it all anyway)
    computes_windows: bool = False

    def synthesize_window(self, latent: Latent, layer: str, window: Window | None) -> Synthesis:
        """``synthesize(latent, layer, stop_at_feature=True)`` for a caller that reads the features
        only inside ``window`` (all of them when ``None``).

        A model may compute only the cells the window depends on at every layer below it (a
        drag step reads a few discs around its handles); cells outside the window are then
        zero. This default computes the whole map, which is always right. ``resume`` renders
        the whole image either way.
        """
        return self.synthesize(latent, layer, stop_at_feature=True)

    def carried(self, latent: Latent, layer: str, features: Tensor | None = None) -> dict[str, Tensor]:
        """Everything the network after ``layer`` reads, keyed like ``Latent.offsets``.

        Warping all of these (and adding the difference as offsets) moves the content
        the rest of the network renders; all have the layer's spatial size. For most networks that is the layer's activation
        alone (``features``, when the caller has it already, saves a pass); StyleGAN2's
        skip generator also carries the image summed so far.
        """
        if features is None:
            features = self.synthesize(latent, layer, stop_at_feature=True).features
        assert features is not None
        return {layer: features}

    def render_carried(self, latent: Latent, layer: str, carried: dict[str, Tensor]) -> Tensor:
        """The image the network after ``layer`` renders from ``carried`` (keyed like
        :meth:`carried`, e.g. a warped copy of it), the rest of ``latent`` unchanged.

        A warp tries several fields on one activation (:mod:`dragwalk.drag.run`), so models
        override this to run only the layers after ``layer``. This default renders the whole
        network with the differences as offsets.
        """
        return self.render(latent.rerouted(self.carried(latent, layer), carried))

    def offset_shape(self, name: str) -> tuple[int, int, int] | None:
        """``(channels, height, width)`` of an offset this model accepts under ``name``, else ``None``."""
        for info in self.layers:
            if info.name == name and name != "image":
                return (info.channels, info.height, info.width)
        return None

    def render(self, latent: Latent) -> Tensor:
        """The image alone, ``[N, 3, H, W]`` in ``[-1, 1]``."""
        out = self.synthesize(latent)
        assert out.image is not None
        return out.image

    def layer(self, name: str) -> LayerInfo:
        for info in self.layers:
            if info.name == name:
                return info
        known = ", ".join(i.name for i in self.layers)
        raise ValueError(f"{self.name}: no layer named {name!r} (known: {known})")

    # ----------------------------------------------------------------- editing
    @abc.abstractmethod
    def drag_variables(self, latent: Latent, mode: str | None = None) -> DragVariables:
        """The part of ``latent`` a drag optimises, as trainable leaf tensors."""

    @abc.abstractmethod
    def first_linear_map(self, layers: Sequence[int] | None = None) -> Tensor:
        """Weight ``[latent_dim, out]`` of the first linear map applied to the latent.

        For StyleGAN this stacks the style affines of ``layers`` (indices into w+);
        SeFa eigen-decomposes it.
        """

    # ----------------------------------------------------------------- misc
    #: short architecture key used by the project's own file format
    architecture: str = ""

    def config(self) -> dict:
        """Constructor keyword arguments that rebuild this network (the own format's JSON)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be saved in the project's format")

    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    def describe(self) -> dict:
        """A JSON-friendly summary for ``models info`` and ``/api/models``."""
        return {
            "name": self.name,
            "architecture": type(self).__name__,
            "resolution": self.resolution,
            "height": self.image_size[0],
            "width": self.image_size[1],
            "latent_spaces": list(self.latent_spaces),
            "default_space": self.default_space,
            "latent_dim": self.latent_dim,
            "num_ws": self.num_ws,
            "c_dim": self.c_dim,
            "noise_modes": list(self.noise_modes),
            "drag_modes": list(self.drag_modes),
            "default_feature_layer": self.default_feature_layer,
            "layers": [{"name": i.name, "channels": i.channels, "size": i.size, "height": i.height,
                        "width": i.width} for i in self.layers],
        }


def seeded_normal(seed: int, shape: Sequence[int]) -> Tensor:
    """Standard normal samples from a CPU generator, so a seed means the same on every device."""
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn(*shape, generator=gen, dtype=torch.float32)
