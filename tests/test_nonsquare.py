"""Non-square generators (2:1 portrait, as StyleGAN-Human's full-body models): width and height apart.

A tiny random-weight StyleGAN2 of 32 x 16 px (``init_res=(4, 2)``) behind the same interface:
points, masks, feature sampling and the warp field are checked against coordinates computed here
with numpy; drags, walks and an inversion run on it end to end.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dragwalk.drag import DragConfig, DragRun
from dragwalk.drag import features as fx
from dragwalk.drag import field as fd
from dragwalk.drag.points import PointError, validate_mask, validate_points
from dragwalk.models.stylegan2 import StyleGAN2Generator

H, W = 32, 16


def portrait(seed: int = 3) -> StyleGAN2Generator:
    torch.manual_seed(seed)
    model = StyleGAN2Generator(z_dim=16, w_dim=16, img_resolution=32, mapping_kwargs=dict(num_layers=2),
                               synthesis_kwargs=dict(channel_base=256, channel_max=16, init_res=(4, 2)),
                               name="portrait32x16")
    return model.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def sg():
    return portrait()


def coordinate_map(h: int, w: int) -> torch.Tensor:
    """``[1, 2, h, w]``: each cell's centre in image px (x, y), computed with numpy."""
    ys = (np.arange(h) + 0.5) * (H / h) - 0.5
    xs = (np.arange(w) + 0.5) * (W / w) - 0.5
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return torch.tensor(np.stack([xx, yy])[None], dtype=torch.float32)


def test_interface_says_height_and_width(sg):
    assert sg.image_size == (H, W) and sg.resolution == 32
    assert [(i.name, i.hw) for i in sg.layers] == [("b4", (4, 2)), ("b8", (8, 4)), ("b16", (16, 8)),
                                                   ("b32", (32, 16)), ("image", (32, 16))]
    out = sg.synthesize(sg.sample(1), "b16")
    assert out.image.shape == (1, 3, H, W) and out.features.shape == (1, 16, 16, 8)
    assert sg.offset_shape("b16") == (16, 16, 8) and sg.offset_shape("b16:rgb") == (3, 16, 8)
    info = sg.describe()
    assert (info["height"], info["width"]) == (H, W)
    with pytest.raises(ValueError, match="init_res"):
        StyleGAN2Generator(8, 0, 8, 16, synthesis_kwargs=dict(channel_base=64, channel_max=4, init_res=(4, 3)))


def test_points_and_masks_are_bounded_per_axis():
    validate_points([[15, 31]], [[0, 0]], (H, W))
    with pytest.raises(PointError, match=r"outside the 16x32 image \(x must be within 0..15, y within 0..31\)"):
        validate_points([[16, 3]], [[0, 0]], (H, W))
    with pytest.raises(PointError, match="outside"):
        validate_points([[3, 32]], [[0, 0]], (H, W))
    assert validate_mask(np.ones((H, W)), (H, W)).shape == (1, 1, H, W)
    with pytest.raises(PointError, match=r"expected \(32, 16\)"):
        validate_mask(np.ones((W, H)), (H, W))


def test_feature_sampling_and_warp_use_each_axis():
    for h, w in ((16, 8), (32, 16), (8, 4)):
        grid = coordinate_map(h, w)
        points = torch.tensor([[3.0, 20.0], [7.25, 11.5], [10.0, 5.0]])
        # a linear map read bilinearly gives back the coordinates (inside the outer cell centres)
        assert torch.allclose(fx.sample(grid, points, (H, W)), points, atol=1e-4)
        shift = torch.zeros(h, w, 2)
        shift[..., 0], shift[..., 1] = 2.0, -3.0
        moved = fd.warp(grid, shift, (H, W), mode="bilinear")
        inner = (slice(None), slice(None), slice(h // 4, -h // 4), slice(w // 4, -w // 4))
        expected = grid.clone()
        expected[0, 0] -= 2.0
        expected[0, 1] += 3.0
        assert torch.allclose(moved[inner], expected[inner], atol=1e-4)
        centres = fd.cell_centres((h, w), (H, W))
        assert torch.allclose(centres.permute(2, 0, 1)[None], grid)


def test_drags_move_content_on_a_portrait_model(sg):
    latent = sg.sample(2)
    mask = np.ones((H, W), dtype=np.float32)
    for method in ("warp", "draggan", "freedrag", "template"):
        run = DragRun(sg, latent, [[8.0, 20.0]], [[10.0, 24.0]], mask, DragConfig(method=method, max_steps=3))
        while not run.done:
            step = run.step(render=True)
        assert step.image is None or step.image.shape == (1, 3, H, W)
        (x, y), = run.handles
        assert 0 <= x <= W - 1 and 0 <= y <= H - 1
        if method == "warp":       # the warp moves the content by construction
            assert abs(x - 10.0) < 1.0 and abs(y - 24.0) < 1.0, run.handles
            assert sg.render(run.latent).shape == (1, 3, H, W)


def test_walks_and_inversion_on_a_portrait_model(sg):
    from dragwalk.directions import Walk, apply_walks, compute_directions
    from dragwalk.inversion import Inversion, InversionConfig

    base = sg.sample(4)
    dset = compute_directions(sg, "sefa", num=4)
    walked = apply_walks(sg, base, [Walk(dset, 0, 3.0)])
    before, after = sg.render(base), sg.render(walked)
    assert after.shape == (1, 3, H, W) and (after - before).abs().mean() > 1e-3
    target = sg.render(sg.sample(9))
    run = Inversion(sg, target, InversionConfig(steps=6, init_samples=4, restarts=2, offsets=False))
    losses = [run.step().loss for _ in range(6)]
    assert run.done and losses[-1] < losses[0]
    assert sg.render(run.result().latent).shape == (1, 3, H, W)
    with pytest.raises(ValueError, match=r"target must be \[1, 3, 32, 16\]"):
        Inversion(sg, torch.zeros(1, 3, W, H))


def test_photo_framing_keeps_the_models_aspect(sg):
    from dragwalk.inversion.prepare import prepare_photo

    photo = np.zeros((100, 100, 3), dtype=np.uint8)
    photo[:, 50:] = 255                      # left half black, right half white
    framed = prepare_photo(Image.fromarray(photo), sg, align_face=False)
    assert framed.shape == (1, 3, H, W)
    # the centred 50 x 100 box keeps the split in the middle: 8 dark columns, then 8 bright ones
    row = framed[0, 0, H // 2]
    assert (row[:7] < -0.9).all() and (row[9:] > 0.9).all()
