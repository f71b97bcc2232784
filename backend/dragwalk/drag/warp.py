"""Ours: move the content by construction, by warping a feature map, then track and refine.

Motion supervision pushes content a pixel per step and hopes a tracker follows; on the
default model it moved content about three quarters of the way and repainted the whole
face. Intermediate activations are spatial, so this method warps the feature layer
itself with a smooth displacement field (:mod:`.field`) that takes every handle to its
target, fades to zero away from the points and stays inside the painted mask. The
difference is stored as an additive offset on that layer, which every latent can carry,
and the rest of the network renders the moved content: one forward pass, no
optimisation, and the editor can show it the moment a target is set.

A feature map is coarser than the image, and the network renders a warped map with its
own judgement: thin, faint parts (a brow on a 64 px face) come out blurred and short of
where the field put them. Two remedies, each a parameter whose default belongs to the model:

* ``match``: fit the warped map so the layers after it render the first frame moved by the
  same field on the image's own grid (:mod:`.match`). On the default model (one linear layer
  after its map) the held-out semantic drags then moved content 0.88 -> 0.96 of the way,
  what a perfect image warp scores (docs/ARCHITECTURE.md, "Drag").
* ``correct``: closed-loop rounds (:meth:`~dragwalk.drag.run.DragRun._corrected_field`) that
  render the layers after the warped map, find each handle's patch in the image with the
  same check that decides "converged", and aim the field past the target by the shortfall.

After the warp the run goes on like :class:`~dragwalk.drag.template.TemplateDrag`: the
tracker looks for each handle's first-frame patch, and where the content is not at
its target yet (a mask cut the field short, points were added mid-drag) template
supervision keeps pulling it there. Measured on the default model (`dragwalk bench drag
--semantic`), 3-5 px drags of faces the method was not tuned on: see
docs/ARCHITECTURE.md ("Drag") for the table behind the defaults.
"""

from __future__ import annotations

from torch import Tensor

from . import field as fd
from .method import MethodContext, Param, register
from .template import TemplateDrag

#: field radius at 64 px (scaled with the resolution): widest that keeps far pixels within 1/255
SIGMA_64 = 7.0


@register
class WarpDrag(TemplateDrag):
    name = "warp"
    label = "Warp (ours)"
    description = ("Moves the content by warping a feature map with a smooth field (exact at the "
                   "targets, zero far away, confined to the mask), then tracks and refines.")
    warps = True
    params = {
        **TemplateDrag.params,
        "sigma": Param(0.0, 0.0, 256.0, "Field radius (px, 0 = auto)",
                       "Gaussian radius of the displacement field; auto = 7 px at 64 px, scaled, and "
                       "widened for long drags so the warp never folds"),
        "refine": Param(0.0, 0.0, 1000.0, "Refinement steps",
                        "steps of template supervision after the warp where the tracker finds a handle "
                        "short of its target (0: stop after the warp and its check)", integer=True),
        "correct": Param(3.0, 0.0, 10.0, "Image corrections",
                         "extra renders that aim the field past a target by the shortfall the image "
                         "check finds (the network draws thin parts short of the warp); 0 = open loop",
                         integer=True),
        "match": Param(0.0, 0.0, 50.0, "Image match iterations",
                       "L-BFGS iterations that fit the warped map so the network renders the first frame "
                       "moved by the same field on the image grid (a coarse map, resampled, draws thin "
                       "parts blurred and short); 0 = off", integer=True),
        "field": Param(0.0, 0.0, 1.0, "Field shape (0 = RBF, 1 = MLS)",
                       "0: Gaussian RBF interpolation of the motions; 1: moving least squares "
                       "(similarity), which turns and scales a part as a whole between several points",
                       integer=True),
    }

    def __init__(self, context: MethodContext, values: dict[str, float] | None = None,
                 defaults: dict[str, float] | None = None):
        super().__init__(context, values, defaults)
        self.base_sigma = self.scaled("sigma", SIGMA_64 * 512.0 / 64.0, 1.0)

    def step_budget(self) -> int:
        """One step to track (and check) what the warp did, then ``refine`` steps at most."""
        return 1 + int(self.values["refine"])

    def field(self, handles: Tensor, targets: Tensor, keep: Tensor | None,
              size: tuple[int, int] | None = None) -> Tensor:
        size = size or self.ctx.feature_hw
        floor = self.ctx.resolution / self.ctx.feature_size   # one feature cell: nothing finer can show
        sigma = fd.field_sigma(handles, targets, self.base_sigma, floor)
        region = None if keep is None else 1.0 - keep
        kind = fd.FIELD_KINDS[int(self.values["field"])]
        field, _ = fd.healthy_field(handles, targets, size, self.ctx.image_hw, sigma, kind, region, floor)
        return field
