"""Direction methods on a small StyleGAN2 built here (w / w+ spaces, layer ranges)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dragwalk.models import stylegan2  # part of the build: an import bug fails, never skips

from dragwalk.directions import DirectionCache, Walk, apply_walks, compute_directions  # noqa: E402
from dragwalk.directions.measures import locality, matched_amount, orthogonality, walk_change  # noqa: E402

REGION = np.zeros((16, 16), np.float32)
REGION[2:7, 2:7] = 1


@pytest.fixture(scope="module")
def sg():
    torch.manual_seed(0)
    model = stylegan2.StyleGAN2Generator(z_dim=32, w_dim=32, img_resolution=16,
                                         mapping_kwargs={"num_layers": 2},
                                         synthesis_kwargs={"channel_base": 1024, "channel_max": 32},
                                         name="tiny-sg2")
    return model.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def base(sg):
    return sg.sample(5, space="w+")


def change(sg, latent, walks) -> float:
    with torch.no_grad():
        return float((sg.render(apply_walks(sg, latent, walks)) - sg.render(latent)).abs().mean())


def test_sefa_uses_the_style_affines_of_a_layer_range(sg, base):
    ds = compute_directions(sg, "sefa", layers=[0, 3], num=8)
    assert ds.space == "w" and ds.layers == (0, 3) and ds.dim == 32
    assert orthogonality(ds.vectors) < 1e-4
    moved = apply_walks(sg, base, [Walk(ds, 0, 3.0)])
    assert torch.equal(moved.code[:, 3:], base.code[:, 3:])          # other rows untouched
    assert not torch.equal(moved.code[:, :3], base.code[:, :3])
    assert change(sg, base, [Walk(ds, 0, 3.0)]) > 1e-3
    # w latents are lifted to w+ when a layer range is used
    w = sg.sample(5, space="w")
    assert apply_walks(sg, w, [Walk(ds, 0, 1.0)]).space == "w+"


def test_ganspace_and_sfvq_fit_sampled_w(sg, base):
    gs = compute_directions(sg, "ganspace", num=8, samples=1000)
    assert gs.space == "w" and gs.params["layer"] is None
    assert all(a >= b for a, b in zip(gs.values, gs.values[1:]))
    sf = compute_directions(sg, "sfvq", bits=3, samples=1000)
    assert len(sf) == 7 and sf.extras["codebook"].shape == (8, 32)
    for ds in (gs, sf):
        assert change(sg, base, [Walk(ds, 0, 2.0)]) > 1e-3


def test_reds_region_in_w_is_local(sg, base):
    reds = compute_directions(sg, "reds", latent=base, mask=REGION, num=2, offsets="none")
    sefa = compute_directions(sg, "sefa", num=4)
    mask = torch.tensor(REGION)
    a = matched_amount(sg, base, reds, 0, 0.01, iters=8)
    reds_loc = locality(walk_change(sg, base, reds, 0, a), mask)
    sefa_loc = max(locality(walk_change(sg, base, sefa, i, matched_amount(sg, base, sefa, i, 0.01, iters=8)),
                            mask) for i in range(2))
    assert reds_loc > 1.5 * sefa_loc, (reds_loc, sefa_loc)
    curved = apply_walks(sg, base, [Walk(reds, 0, a, "curved", steps=2)])
    assert curved.space == "w+"


def test_reds_over_block_offsets_behind_the_seam(sg, base):
    """Spatial REDs on StyleGAN2 block activations: nothing outside the support's footprint moves,
    and the walk is a w+ latent plus a block offset."""
    from scipy import ndimage

    reds = compute_directions(sg, "reds", latent=base, mask=REGION, num=2)       # default: offsets, auto layer
    layer = reds.params["offsets"]
    assert reds.space == "w" and f"offset:{layer}" in reds.extras
    walked = apply_walks(sg, base, [Walk(reds, 0, 3.0)])
    assert walked.space == "w+" and torch.equal(walked.code, base.code) and layer in walked.offsets
    with torch.no_grad():
        diff = (sg.render(walked) - sg.render(base))[0].abs().sum(0).numpy()
    assert diff[REGION > 0].mean() > 1e-3
    # more local than the global w REDs at a matched change (share inside / area, numpy)
    glob = compute_directions(sg, "reds", latent=base, mask=REGION, num=2, offsets="none")
    with torch.no_grad():
        g = walk_change(sg, base, glob, 0, matched_amount(sg, base, glob, 0, 0.01, iters=8)).abs().sum(0).numpy()
        s = walk_change(sg, base, reds, 0, matched_amount(sg, base, reds, 0, 0.01, iters=8)).abs().sum(0).numpy()
    share = [x[REGION > 0].sum() / x.sum() / REGION.mean() for x in (s, g)]
    assert share[0] > 1.3 * share[1], share
    tiny = compute_directions(sg, "reds", latent=base, mask=REGION, num=2, offsets="b16", dilate=0)
    assert np.isfinite(tiny.values).all()       # 1-px cells: nothing reaches outside, still solved
    joint = compute_directions(sg, "reds", latent=base, mask=REGION, num=2, joint=True)
    assert float(joint.vectors.norm()) > 0    # joint: a w part as well
    assert change(sg, base, [Walk(joint, 0, 1.0)]) > 1e-4


def test_dplase_learns_in_z_and_walks_keep_the_norm(sg):
    ds = compute_directions(sg, "dplase", k=3, iters=10, refine=False)
    assert ds.space == "z" and ds.dim == 32
    z = sg.sample(3, space="z")
    moved = apply_walks(sg, z, [Walk(ds, 0, 4.0, "density")])
    assert abs(float(moved.code.norm() - z.code.norm())) < 1e-4
    assert change(sg, z, [Walk(ds, 0, 4.0, "density")]) > 1e-4


def test_supervised_directions_from_tags_move_the_tagged_property(sg, tmp_path):
    """A person's tags: "bright top half" on sampled w; both methods must raise it."""
    w = sg.sample(11, space="w", batch=200)
    with torch.no_grad():
        score = sg.render(sg.convert(w, "w+"))[:, :, :8].mean(dim=(1, 2, 3)).numpy()
    tags = (score > np.median(score)).astype(int)
    probe = sg.sample(99, space="w+", batch=16)
    cache = DirectionCache(tmp_path)
    for method in ("interfacegan", "lsd"):
        ds = cache.get(sg, method, attribute="bright_top", codes=w.code.numpy(), labels=tags)
        assert ds.labels == ["bright_top"] and ds.space == "w"
        with torch.no_grad():
            lo = sg.render(apply_walks(sg, probe, [Walk(ds, 0, -2.0)]))[:, :, :8].mean(dim=(1, 2, 3))
            hi = sg.render(apply_walks(sg, probe, [Walk(ds, 0, 2.0)]))[:, :, :8].mean(dim=(1, 2, 3))
        assert float((hi > lo).float().mean()) >= 0.8, method
    assert list(tmp_path.rglob("interfacegan-*.safetensors"))  # tagged sets are cached too
