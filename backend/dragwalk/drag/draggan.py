"""DragGAN (Pan et al., SIGGRAPH 2023): motion supervision + nearest-neighbour point tracking.

Written from the paper's description, not from its code.

* Motion supervision: around each handle p, the features one step further towards the
  target, F(q + d), are pulled onto the *detached* current features F(q) for every q in
  a disc of radius r1. Because F(q) is a constant, the only way to lower the loss is to
  move the content forward — the stop-gradient trick.
* Point tracking: the handle moves to the position in a window of radius r2 whose
  feature is nearest to the handle's feature in the first frame of the drag; ``distance``
  picks the norm over channels: 1 = L1 (the paper), 2 = L2 (the reference code, the
  default). Here the search is refined to sub-pixel precision with a parabola fit, which
  matters on a 64 px model where one pixel is a large fraction of a face.

Features are read with bilinear ``grid_sample`` on the map itself instead of upsampling
the map to image size first: identical at integer positions, within about 1 % of the
loss at fractional ones (tests/test_drag_stylegan.py runs a reference step from the
paper beside this one).

Why L2 by default: on where the handle's first-frame *image* patch ends up (share of
the drag, bench.semantic.content_motion), L1 and L2 tracking were indistinguishable.
Default model, 84 semantic 3-5 px drags (12 faces): draggan L1 -0.11 / L2 -0.09 (paired
difference -0.02 +- 0.04), template 0.17 / 0.21 (-0.04 +- 0.03), warp 0.71 / 0.71. Small
random-weights StyleGAN2, 24 drags of textured points each: 64 px, 6.4 px drags: draggan
0.00 / 0.07 (-0.08 +- 0.06), template 0.00 / 0.04 (-0.04 +- 0.04); 128 px, 10 px drags:
draggan -0.04 / -0.06 (+0.02 +- 0.02), template 0.08 / 0.10 (-0.02 +- 0.03). No difference
beyond noise (optimisation barely moves content on either model; a random StyleGAN2's w
hardly moves anything), so the reference code's L2 stays, on every model.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import features as fx
from .method import DragMethod, MethodContext, Param, register


@register
class DragGAN(DragMethod):
    name = "draggan"
    label = "DragGAN"
    description = ("Motion supervision with stop-gradient plus nearest-neighbour point tracking "
                   "against the first-frame handle features (Pan et al. 2023).")
    #: the paper's value; models tune their own (the DCGAN's z + spatial offsets use 1e-2,
    #: see ``DCGANGenerator.drag_defaults``)
    lr = 2e-3
    lambda_mask = 20.0
    params = {
        "r1": Param(0.0, 0.0, 64.0, "Supervision radius (px, 0 = auto)",
                    "radius of the disc of features pushed towards the target"),
        "r2": Param(0.0, 0.0, 64.0, "Tracking radius (px, 0 = auto)",
                    "half side of the window searched for the handle's content"),
        "step": Param(1.0, 0.1, 8.0, "Step (px)", "how far the content is pushed per step"),
        "patch": Param(0.0, 0.0, 16.0, "Tracking patch radius (px)",
                       "0 = track one feature vector (DragGAN); > 0 = match a disc of features"),
        "subpixel": Param(1.0, 0.0, 1.0, "Sub-pixel tracking", "1 = parabola refinement of the match",
                          integer=True),
        "distance": Param(2.0, 1.0, 2.0, "Tracking distance (1 = L1, 2 = L2)",
                          "feature distance of the nearest-neighbour search: 1 = L1 over channels "
                          "(the paper), 2 = L2 (the reference code)", integer=True),
    }
    #: floors of the auto radii in px (DragGAN's 3 and 12 px at 512 scale to < 2 px at 64 px)
    R1_FLOOR = 3.0
    R2_FLOOR = 3.0

    def __init__(self, context: MethodContext, values: dict[str, float] | None = None,
                 defaults: dict[str, float] | None = None):
        super().__init__(context, values, defaults)
        self.r1 = self.scaled("r1", 3.0, self.R1_FLOOR)
        self.r2 = self.scaled("r2", 12.0, self.R2_FLOOR)
        self.disc = fx.disc_offsets(self.r1, device=context.device)
        self.window, self.n_window = fx.square_offsets(self.r2, device=context.device)
        self.patch = fx.disc_offsets(self.values["patch"], spacing=max(1.0, self.values["patch"] / 2),
                                     device=context.device)
        self.templates: Tensor | None = None

    def start(self, features: Tensor, handles: Tensor) -> None:
        # first-frame features at the handle (and around it, with a patch): [K, P, C]
        self.templates = fx.sample(features, handles[:, None, :] + self.patch, self.ctx.image_hw)

    def reads(self, handles: Tensor, targets: Tensor) -> tuple[float, float, float, float]:
        """Tracking reads the window (``n`` px each way) and the patch around it; the loss then
        reads the disc and one step around the tracked handle, which is at most ``n + 0.5`` px
        from where it was (sub-pixel refinement adds up to half a pixel)."""
        return fx.box_around(handles, self.n_window + 0.5 + max(self.values["patch"], self.r1 + self.values["step"]))

    def track(self, features: Tensor, handles: Tensor, targets: Tensor) -> Tensor:
        assert self.templates is not None, "start() must run before track()"
        return self.best_match(self.match_costs(features, handles), handles)

    def together_key(self):
        """DragGANs with the same settings track and compute losses as one batch; subclasses
        (Template, the warp's refinement) track and aim otherwise, so they step alone."""
        if type(self) is not DragGAN:
            return None
        return (DragGAN, tuple(sorted(self.values.items())), self.r1, self.r2, self.ctx.image_hw)

    @staticmethod
    def track_together(methods, features: Tensor, handles: Tensor, targets: Tensor) -> Tensor:
        first = methods[0]
        templates = torch.stack([m.templates for m in methods])
        costs = first._costs(features, handles, templates)                       # [B, K, W]
        return first.best_match(costs.flatten(0, 1), handles.flatten(0, 1)).view_as(handles)

    @staticmethod
    def loss_together(methods, features: Tensor, handles: Tensor, targets: Tensor, active) -> list[Tensor]:
        per = methods[0]._handle_losses(features, handles, targets)              # [B, K]
        return [per[b][mask].sum() if bool(mask.any()) else features[b].sum() * 0
                for b, mask in enumerate(active)]

    def best_match(self, costs: Tensor, handles: Tensor) -> Tensor:
        """The window position of least cost per handle (sub-pixel with ``subpixel``), as new handles."""
        if self.values["subpixel"]:
            offsets = fx.subpixel_argmin(costs, self.n_window, 1.0)
        else:
            offsets = self.window[costs.argmin(dim=1)]
        return self.ctx.clamp(handles + offsets)

    def match_costs(self, features: Tensor, handles: Tensor) -> Tensor:
        """Distance (L1 or L2 over channels, see ``distance``) of every window position's features
        to the first-frame template, averaged over the patch: ``[K, W]``."""
        assert self.templates is not None
        return self._costs(features, handles[None], self.templates[None])[0]

    def _costs(self, features: Tensor, handles: Tensor, templates: Tensor) -> Tensor:
        """:meth:`match_costs` of ``B`` maps ``[B, C, h, w]``, handles ``[B, K, 2]`` and templates
        ``[B, K, P, C]`` -> ``[B, K, W]``."""
        candidates = handles[:, :, None, None, :] + self.window[None, None, :, None, :] + self.patch[None, None, None]
        feats = fx.sample_each(features, candidates, self.ctx.image_hw)  # [B, K, W, P, C]
        diff = feats - templates[:, :, None]
        dist = diff.abs().sum(dim=4) if self.values["distance"] == 1 else diff.norm(dim=4)
        return dist.mean(dim=3)

    def loss(self, features: Tensor, handles: Tensor, targets: Tensor, active: Tensor) -> Tensor:
        """``sum_k mean_q |F(q + d_k) - goal_k(q)|`` over the disc ``q`` around each active handle,
        with ``d_k`` one ``step`` towards its target; the goal is a constant (see :meth:`goal`)."""
        h, t = handles[active], targets[active]
        if h.shape[0] == 0:
            return features.sum() * 0
        q, d = self._disc_and_step(h[None], t[None])
        return self._terms(features, q, d, self.goal(features, q[0], active)[None])[0].sum()

    def _disc_and_step(self, handles: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """The disc around each handle, ``q`` ``[B, K, M, 2]``, and its step ``d`` ``[B, K, 2]``."""
        delta = targets - handles
        dist = delta.norm(dim=2, keepdim=True).clamp_min(1e-6)
        d = delta / dist * torch.clamp(dist, max=self.values["step"])
        return handles[:, :, None, :] + self.disc[None, None], d

    def _terms(self, features: Tensor, q: Tensor, d: Tensor, goal: Tensor) -> Tensor:
        """Each handle's term ``mean_q |F(q + d) - goal(q)|`` on its map: ``[B, K]``."""
        ahead = fx.sample_each(features, q + d[:, :, None, :], self.ctx.image_hw)
        return (ahead - goal).abs().mean(dim=(2, 3))

    def _handle_losses(self, features: Tensor, handles: Tensor, targets: Tensor) -> Tensor:
        """Every handle's term of :meth:`loss` (DragGAN's own goal) for ``B`` maps: ``[B, K]``."""
        q, d = self._disc_and_step(handles, targets)
        return self._terms(features, q, d, self._goal_each(features, q))

    def goal(self, features: Tensor, q: Tensor, active: Tensor) -> Tensor:
        """What the features one step ahead are pulled onto: DragGAN's *detached* current
        features at ``q``, so only moving the content forward lowers the loss."""
        return self._goal_each(features, q[None])[0]

    def _goal_each(self, features: Tensor, q: Tensor) -> Tensor:
        return fx.sample_each(features.detach(), q, self.ctx.image_hw)      # stop-gradient
