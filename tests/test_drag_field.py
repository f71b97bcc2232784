"""The warp's maths against independent computations (numpy, scipy), and the arrival check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.interpolate import RBFInterpolator

from dragwalk.drag import field as fd
from dragwalk.drag.verify import content_arrival, grey, locate

HANDLES = torch.tensor([[20.0, 30.0], [40.0, 28.0], [31.0, 44.0]])
TARGETS = torch.tensor([[17.0, 27.0], [43.0, 26.0], [31.0, 48.0]])


def test_rbf_field_is_gaussian_rbf_interpolation_exact_at_the_targets():
    sigma = 7.0
    points = fd.cell_centres(32, 64)
    got = fd.rbf_field(points, HANDLES, TARGETS, sigma).numpy()
    # scipy's Gaussian RBF is exp(-(eps r)^2): eps = 1 / (sqrt(2) sigma); no polynomial term
    ref = RBFInterpolator(TARGETS.numpy(), (TARGETS - HANDLES).numpy(), kernel="gaussian",
                          epsilon=1 / (np.sqrt(2) * sigma), degree=-1)(points.reshape(-1, 2).numpy())
    assert np.abs(got.reshape(-1, 2) - ref).max() < 2e-3
    at_targets = fd.rbf_field(TARGETS, HANDLES, TARGETS, sigma).numpy()
    assert np.allclose(at_targets, (TARGETS - HANDLES).numpy(), atol=1e-3)
    far = fd.rbf_field(torch.tensor([[63.0, 0.0]]), HANDLES, TARGETS, sigma)
    assert float(far.norm()) < 1e-3


def _mls_similarity_reference(v, p, q, alpha=1.0):
    """Schaefer et al. 2006, eq. for the similarity deformation, written from the paper."""
    w = 1.0 / np.sum((p - v) ** 2, axis=1) ** alpha
    p_star, q_star = w @ p / w.sum(), w @ q / w.sum()
    ph, qh = p - p_star, q - q_star
    mu = np.sum(w * np.sum(ph ** 2, axis=1))
    perp = lambda a: np.stack([-a[..., 1], a[..., 0]], -1)  # noqa: E731
    d = v - p_star
    out = np.zeros(2)
    for i in range(len(p)):
        a_i = w[i] * np.array([ph[i], -perp(ph[i])]) @ np.array([d, -perp(d)]).T
        out += qh[i] @ a_i
    return out / mu + q_star


def test_mls_similarity_matches_the_paper_formula():
    rng = np.random.default_rng(1)
    p = HANDLES.numpy().astype(float)
    q = TARGETS.numpy().astype(float)
    vs = rng.uniform(0, 64, size=(50, 2))
    got = fd.mls_similarity(torch.tensor(vs, dtype=torch.float32), HANDLES, TARGETS).numpy()
    ref = np.array([_mls_similarity_reference(v, p, q) for v in vs])
    assert np.abs(got - ref).max() < 1e-3
    # exact at the control points; a single point is a pure translation
    assert np.allclose(fd.mls_similarity(HANDLES, HANDLES, TARGETS).numpy(), q, atol=1e-4)
    one = fd.mls_similarity(torch.tensor(vs, dtype=torch.float32), HANDLES[:1], TARGETS[:1]).numpy()
    assert np.allclose(one, vs + (q[0] - p[0]), atol=1e-4)


@pytest.mark.parametrize("kind", fd.FIELD_KINDS)
def test_fields_are_exact_at_targets_and_vanish_far_away_and_outside_the_mask(kind):
    u = fd.displacement_field(HANDLES, TARGETS, 64, 64, 7.0, kind)
    for h, t in zip(HANDLES, TARGETS):
        x, y = int(t[0]), int(t[1])
        assert torch.allclose(u[y, x], t - h, atol=0.05), (kind, u[y, x], t - h)
    assert float(u[0:4, 60:64].norm(dim=-1).max()) < 0.01           # far corner
    assert fd.largest_slope(u, 64) < 1.0                              # the warp does not fold
    region = torch.zeros(1, 1, 64, 64)
    region[..., 20:40, 10:30] = 1
    masked = fd.displacement_field(HANDLES, TARGETS, 64, 64, 7.0, kind, region)
    assert float(masked[region[0, 0] == 0].abs().max()) == 0.0
    assert torch.allclose(masked[27, 17], TARGETS[0] - HANDLES[0], atol=0.05)


def test_close_points_moving_apart_neither_fold_nor_overshoot():
    """Landmarks of one face dragged to another's (seeds 5 -> 6 of the default model): the nose
    moves 10 px past a mouth corner that barely moves. A single wide RBF overshot to 23 px and
    folded; the narrowed, composed field stays one-to-one and within the motions asked for."""
    h = torch.tensor([[19.4, 29.9], [41.6, 27.6], [35.6, 42.4], [26.4, 49.9], [37.4, 48.1]])
    t = torch.tensor([[23.9, 30.1], [44.1, 31.9], [26.6, 37.6], [26.6, 45.1], [37.9, 47.1]])
    longest = float((t - h).norm(dim=1).max())
    wide = fd.rbf_field(fd.cell_centres(64, 64), h, t, 1.25 * longest)
    assert float(wide.norm(dim=-1).max()) > 2 * longest            # what went wrong before
    sigma = fd.field_sigma(h, t, 7.0, floor=2.0)
    assert sigma == pytest.approx(0.6 * float((h[2] - h[4]).norm()))   # nose and mouth corner: 6 px
    for kind in fd.FIELD_KINDS:
        u, _ = fd.healthy_field(h, t, 64, 64, sigma, kind, floor=2.0)
        assert float(fd.jacobian_determinant(u, 64).min()) > 0.05, kind
        assert float(u.norm(dim=-1).max()) <= 1.1 * longest, kind
        for hh, tt in zip(h, t):                                   # still exact at the targets
            x, y = int(round(float(tt[0]))), int(round(float(tt[1])))
            assert float((u[y, x] - (tt - hh)).norm()) < 1.0, (kind, u[y, x], tt - hh)
    # a healthy field keeps its radius: two brows raised together, 20 px apart
    brows = torch.tensor([[20.0, 24.0], [40.0, 24.0]])
    _, sigma = fd.healthy_field(brows, brows + torch.tensor([0.0, -3.0]), 32, 64, 7.0)
    assert sigma == 7.0
    assert fd.narrowest_sigma(brows[:1], brows[:1]) == float("inf")


def test_long_drags_widen_the_field_so_it_never_folds():
    h, t = torch.tensor([[100.0, 128.0]]), torch.tensor([[140.0, 128.0]])
    sigma = fd.field_sigma(h, t, 10.0)
    assert sigma >= 1.25 * 40
    assert fd.largest_slope(fd.displacement_field(h, t, 256, 256, sigma), 256) < 0.6
    one_step = fd.displacement_field(h, t, 256, 256, 10.0, substeps=1)
    assert float(fd.jacobian_determinant(one_step, 256).min()) < 0                  # what it avoids
    composed = fd.displacement_field(h, t, 256, 256, 10.0)                         # 8 sub-steps
    assert float(fd.jacobian_determinant(composed, 256).min()) > 0


def test_warp_is_backward_bilinear_sampling_like_scipy():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, 16, 16)).astype(np.float32)
    u = fd.displacement_field(torch.tensor([[7.0, 8.0]]), torch.tensor([[9.5, 7.0]]), 16, 16, 3.0)
    got = fd.warp(torch.from_numpy(image)[None], u, 16, mode="bilinear")[0].numpy()
    yy, xx = np.mgrid[0:16, 0:16].astype(np.float64)
    src_x, src_y = xx - u[..., 0].numpy(), yy - u[..., 1].numpy()
    ref = np.stack([ndimage.map_coordinates(c, [src_y, src_x], order=1, mode="nearest") for c in image])
    assert np.abs(got - ref).max() < 1e-4
    # the content that was at the handle is now at the target
    assert np.allclose(got[:, 7, 9], ndimage.map_coordinates(image[0], [[8.0], [7.0]], order=1)[0], atol=0.05) \
        or abs(float(u[7, 9, 0]) - 2.5) < 0.05


# ----------------------------------------------------------------- arrival check
@pytest.fixture(scope="module")
def face(generator):
    with torch.no_grad():
        return generator.render(generator.sample(0))


def test_locate_finds_a_known_shift_to_a_fraction_of_a_pixel(face):
    shifted = torch.roll(face, shifts=(2, 3), dims=(2, 3))          # 3 px right, 2 px down
    found = locate(grey(face), grey(shifted), [36.0, 30.0], 6)
    assert torch.allclose(found, torch.tensor([39.0, 32.0]), atol=0.3), found
    # half a pixel (bilinear resampling of the image): found on the 4x upscaled grid
    half = fd.warp(face, torch.full((64, 64, 2), 0.5), 64, mode="bilinear")
    found = locate(grey(face), grey(half), [36.0, 30.0], 4)
    assert torch.allclose(found, torch.tensor([36.5, 30.5]), atol=0.35), found


def test_arrival_is_judged_on_the_image_not_on_the_tracker(face):
    handles, targets = torch.tensor([[36.0, 30.0]]), torch.tensor([[40.0, 30.0]])
    moved = torch.roll(face, shifts=4, dims=3)
    assert content_arrival(face, moved, handles, targets, 1.0).all_arrived
    stayed = content_arrival(face, face, handles, targets, 1.0)
    assert not stayed.all_arrived and stayed.error[0] > 3.5
    # a pair with nothing to move counts as arrived without looking
    idle = content_arrival(face, face, torch.tensor([[36.0, 30.0]]), torch.tensor([[36.5, 30.0]]), 1.0)
    assert idle.all_arrived


def test_arrival_is_judged_on_the_8_bit_image_the_user_sees(face):
    """Content moved only in levels below half an 8-bit step is invisible on the page and in the
    PNG: it has not arrived, though a float image still carries it (and NCC ignores scale)."""
    handles, targets = torch.tensor([[36.0, 30.0]]), torch.tensor([[40.0, 30.0]])
    faint = 0.1 + torch.roll(face, shifts=4, dims=3) * (0.4 / 127.5)    # +-0.4 of a level around a level
    assert not content_arrival(face, faint, handles, targets, 1.0).all_arrived
    visible = 0.1 + torch.roll(face, shifts=4, dims=3) * (40 / 127.5)
    assert content_arrival(face, visible, handles, targets, 1.0).all_arrived
