"""FreeDrag (Ling et al., CVPR 2024), GAN version: templates, line search, fuzzy localisation.

Written from the paper's description, not from its code.

Instead of tracking every step, each handle carries a *template* (a 3x3 grid of feature
samples around it) and a current position ``p``. The optimiser pulls the features at
``p`` onto the template for a short *sub-motion* (at most ``sub_steps`` steps). Then:

* the template adapts to what is at ``p`` now, the more the better the match
  (lam = 1 / (1 + exp(alpha (L_end - beta))), alpha = ln 9 / (0.6 l), beta = 0.2 l);
* the next ``p`` is found by a line search towards the target:
  - good match (L_end < 0.5 l): of 10 candidates up to ``d_max`` ahead, take the one whose
    distance to the template is closest to ``l`` — deliberately not the best match
    ("fuzzy localisation"), so every sub-motion has a bounded amount of work;
  - some progress (L_end < L_init): stay and keep optimising;
  - no progress: back off — search ``d_max`` behind to ``d_max`` ahead for the best match.

Distances are mean L1 over the template, divided by the template's mean magnitude, so
``l`` means the same on feature maps of any scale.

Sizes are in image px and scale with the resolution (``0`` = auto): the paper's
``d_max`` is 3 px of the 128 px feature map of a 512 px StyleGAN2, i.e. 12 image px,
and its template samples sit 3 image px apart; so at 256 px auto is 6 and 1.5 px, at
64 px 1.5 and 0.375 px. Models tune their own (the 64 px DCGAN uses 2 and 2 px, see
``DCGANGenerator.drag_defaults``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from . import features as fx
from .method import DragMethod, MethodContext, Param, register


#: the paper's line-search reach: 3 px of the 128 px feature map of a 512 px model, in image px
D_MAX_512 = 12.0
#: the paper's template grid: samples 3 image px apart at 512 px (0.75 px of the 128 px map)
SPACING_512 = 3.0
#: floors of the auto sizes in image px, for models far smaller than 512 px
D_MAX_FLOOR = 1.0
SPACING_FLOOR = 0.25


@register
class FreeDrag(DragMethod):
    name = "freedrag"
    label = "FreeDrag"
    description = ("Adaptive feature templates with line search and backtracking instead of "
                   "per-step point tracking (Ling et al. 2024).")
    lr = 2e-3   # the paper's; models tune their own (see draggan.py)
    lambda_mask = 10.0
    params = {
        "l": Param(0.3, 0.05, 1.0, "Expected distance l", "per-sub-motion feature change the line search aims for"),
        "d_max": Param(0.0, 0.0, 64.0, "Max move per sub-motion (px, 0 = auto)",
                       "line-search reach; auto = the paper's 3 px of the 128 px feature map of a "
                       "512 px model (12 image px), scaled with the resolution"),
        "spacing": Param(0.0, 0.0, 16.0, "Template spacing (px, 0 = auto)",
                         "offsets of the 3x3 template grid; auto = the paper's 3 image px at 512 px "
                         "(0.75 px of its 128 px feature map), scaled with the resolution"),
        "sub_steps": Param(5.0, 1.0, 50.0, "Steps per sub-motion", integer=True),
        "candidates": Param(10.0, 2.0, 50.0, "Line-search candidates", integer=True),
    }

    def __init__(self, context: MethodContext, values: dict[str, float] | None = None,
                 defaults: dict[str, float] | None = None):
        super().__init__(context, values, defaults)
        self.d_max = self.scaled("d_max", D_MAX_512, D_MAX_FLOOR)
        self.spacing = self.scaled("spacing", SPACING_512, SPACING_FLOOR)
        s = self.spacing
        grid = torch.tensor([-s, 0.0, s], device=context.device)
        yy, xx = torch.meshgrid(grid, grid, indexing="ij")
        self.grid = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)  # [9, 2]
        l = self.values["l"]
        self.alpha = math.log(9.0) / (0.6 * l)
        self.beta = 0.2 * l
        self.position: Tensor | None = None

    # ----------------------------------------------------------------- helpers
    def _read(self, features: Tensor, points: Tensor) -> Tensor:
        """Template-shaped samples at ``points`` ``[..., 2]`` -> ``[..., 9, C]``."""
        return fx.sample(features, points[..., None, :] + self.grid, self.ctx.image_hw)

    def _distance(self, samples: Tensor) -> Tensor:
        """Relative mean L1 distance of samples ``[K, ..., 9, C]`` to the templates."""
        t = self.template.view(self.template.shape[0], *([1] * (samples.dim() - 3)), *self.template.shape[1:])
        return (samples - t).abs().mean(dim=(-1, -2)) / self.scale.view(-1, *([1] * (samples.dim() - 3)))

    # ----------------------------------------------------------------- hooks
    def start(self, features: Tensor, handles: Tensor) -> None:
        self.position = handles.clone()
        self.template = self._read(features, handles)                         # [K, 9, C]
        self.scale = self.template.abs().mean(dim=(1, 2)).clamp_min(1e-6)    # [K]
        k = handles.shape[0]
        self.count = torch.zeros(k, dtype=torch.long, device=handles.device)
        self.l_init = torch.zeros(k, device=handles.device)
        self.last = torch.zeros(k, device=handles.device)

    def reads(self, handles: Tensor, targets: Tensor) -> tuple[float, float, float, float]:
        """The template grid around each position, and the line search's candidates, which lie
        within ``d_max`` of it (backtracking included); the loss reads where the search ended."""
        return fx.box_around(handles if self.position is None else self.position, self.d_max + self.spacing)

    def track(self, features: Tensor, handles: Tensor, targets: Tensor) -> Tensor:
        assert self.position is not None, "start() must run before track()"
        l = self.values["l"]
        p = self.position
        now = self._distance(self._read(features, p))
        ended = (self.count >= self.values["sub_steps"]) | ((self.count > 0) & (now < 0.25 * l))
        for k in torch.nonzero(ended).flatten().tolist():
            p[k] = self._next_position(features, k, p[k], targets[k], float(now[k]))
            self.count[k] = 0
        if bool(ended.any()):
            now = self._distance(self._read(features, p))
        fresh = self.count == 0
        self.l_init = torch.where(fresh, now, self.l_init)
        self.count += 1
        self.last = now
        self.position = p
        return p.clone()

    def _next_position(self, features: Tensor, k: int, p: Tensor, target: Tensor, l_end: float) -> Tensor:
        """End of a sub-motion for handle ``k``: adapt its template, then line-search."""
        l, d_max = self.values["l"], self.d_max
        here = self._read(features, p[None])[0]
        arrived = float((target - p).norm()) < 0.5
        lam = 1.0 if arrived else 1.0 / (1.0 + math.exp(self.alpha * (l_end - self.beta)))
        self.template[k] = lam * here + (1 - lam) * self.template[k]
        delta = target - p
        dist = float(delta.norm())
        if dist < 1e-3:
            return p
        direction = delta / dist
        n = int(self.values["candidates"])
        if l_end < 0.5 * l:
            steps = torch.arange(1, n + 1, device=p.device, dtype=p.dtype) / n * min(d_max, dist)
            pick = "fuzzy"
        elif l_end < float(self.l_init[k]):
            return p
        else:
            reach = min(d_max, dist)
            steps = -d_max + torch.arange(0, n + 1, device=p.device, dtype=p.dtype) / n * (d_max + reach)
            pick = "best"
        cands = self.ctx.clamp(p[None] + steps[:, None] * direction[None])
        samples = self._read(features, cands)                               # [n, 9, C]
        cost = (samples - self.template[k][None]).abs().mean(dim=(1, 2)) / self.scale[k]
        index = (cost - l).abs().argmin() if pick == "fuzzy" else cost.argmin()
        return cands[index]

    def loss(self, features: Tensor, handles: Tensor, targets: Tensor, active: Tensor) -> Tensor:
        if not bool(active.any()):
            return features.sum() * 0
        samples = self._read(features, self.position[active])                # [K', 9, C]
        return ((samples - self.template[active]).abs().mean(dim=(1, 2)) / self.scale[active]).sum()

    def arrived(self, handles: Tensor, targets: Tensor, stop_distance: float) -> Tensor:
        close = (targets - handles).norm(dim=1) <= stop_distance
        return close & (self.last <= 0.5 * self.values["l"])
