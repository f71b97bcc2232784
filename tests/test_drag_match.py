"""The warp's image match (:mod:`dragwalk.drag.match`) against an independent solve, and on
the default model against what the user sees."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dragwalk.drag import DragConfig, DragRun
from dragwalk.drag import match
from dragwalk.imaging import to_uint8

from image_oracles import ncc_locate


@pytest.fixture(scope="module")
def latent(generator):
    return generator.sample(0)


def test_the_match_is_the_ridge_least_squares_solution_on_its_support():
    """A linear "network" (a random 12 x 20 matrix on a 1 x 5 x 4 map): the L-BFGS fit equals
    numpy's closed form ``(A_S^T A_S + ridge I)^-1 A_S^T (t - A m)`` on the support's cells,
    and leaves every other cell as it was."""
    rng = np.random.default_rng(3)
    a = rng.normal(size=(12, 20))
    start = rng.normal(size=20)
    target = rng.normal(size=12)
    where = np.zeros((5, 4))
    where[1:4, 1:3] = 1.0                     # 6 of the 20 cells may change
    ridge = 0.5
    s = np.flatnonzero(where.ravel())
    a_s = a[:, s]
    want = start.copy()
    want[s] += np.linalg.solve(a_s.T @ a_s + ridge * np.eye(len(s)), a_s.T @ (target - a @ start))

    matrix = torch.tensor(a, dtype=torch.float32)
    maps = {"layer": torch.tensor(start, dtype=torch.float32).view(1, 1, 5, 4)}

    def render(m: dict[str, torch.Tensor]) -> torch.Tensor:
        return matrix @ m["layer"].reshape(-1)

    got = match.matched(render, maps, torch.tensor(target, dtype=torch.float32),
                        torch.tensor(where, dtype=torch.float32)[None, None], iterations=50, ridge=ridge)
    assert np.abs(got["layer"].numpy().ravel() - want).max() < 2e-3
    assert np.array_equal(got["layer"].numpy().ravel()[where.ravel() == 0], start.astype(np.float32)[where.ravel() == 0])


def test_the_support_is_what_the_field_moves_and_a_cell_around_inside_the_region():
    field = torch.zeros(8, 8, 2)
    field[3, 4] = torch.tensor([0.5, 0.0])
    field[6, 6] = torch.tensor([0.01, 0.0])            # under MOVED_PX: not moved
    got = match.support(field)[0, 0].numpy()
    want = np.zeros((8, 8))
    want[2:5, 3:6] = 1
    assert np.array_equal(got, want)
    region = torch.ones(1, 1, 8, 8)
    region[..., :, 5:] = 0
    want[:, 5:] = 0
    assert np.array_equal(match.support(field, region)[0, 0].numpy(), want)


def test_the_image_match_takes_a_thin_part_all_the_way_and_keeps_the_rest(generator, latent):
    """The nose tip (dlib 30 on seed 0) 3 px right, corrections off: the warped 32 x 32 map
    alone renders it short; matched, it lands on the target by the tests' own NCC, and the
    image far from the drag keeps its pixels."""
    handle, target = (36.625, 41.625), (39.625, 41.625)
    with torch.no_grad():
        original = to_uint8(generator.render(latent))

    def result(iterations: int) -> tuple[float, float]:
        run = DragRun(generator, latent, [handle], [target],
                      config=DragConfig(params={"correct": 0, "match": iterations}))
        while not run.done:
            run.step()
        with torch.no_grad():
            after = to_uint8(run.render())
        found, _ = ncc_locate(original, after, handle)
        yy, xx = np.mgrid[0:64, 0:64]
        far = np.hypot(xx - 38, yy - 41.6) > 14
        change = np.abs(after.astype(float) - original.astype(float)).mean(axis=2)
        return float(found[0] - round(handle[0])), float(change[far].mean())

    moved, far = result(20)
    assert moved == 3.0 and far < 1.0, (moved, far)
    assert result(0)[0] <= 2.0


def test_with_a_mask_the_match_changes_nothing_the_warp_may_not(generator, latent):
    """A painted disc around an eye corner dragged 5 px: matched, the image outside the disc
    changes less than the plain warp changes it (a cell's spread by the last convolution), and
    beyond 3 px of the disc not at all."""
    handle, target = (36.4, 30.1), (41.4, 30.1)
    yy, xx = np.mgrid[0:64, 0:64]
    r = np.hypot(xx - 39, yy - 30)
    mask = (r <= 7).astype(np.float32)
    with torch.no_grad():
        original = to_uint8(generator.render(latent)).astype(float)

    def change(iterations: int) -> np.ndarray:
        run = DragRun(generator, latent, [handle], [target], mask=mask,
                      config=DragConfig(params={"correct": 0, "match": iterations}))
        while not run.done:
            run.step()
        with torch.no_grad():
            return np.abs(to_uint8(run.render()).astype(float) - original).mean(axis=2)

    matched, warped = change(20), change(0)
    assert matched[r > 7].mean() <= warped[r > 7].mean(), (matched[r > 7].mean(), warped[r > 7].mean())
    assert matched[r > 10].max() < 1.0
    assert matched[r <= 7].mean() > 10.0


def test_the_animation_frames_move_the_content_part_of_the_way(generator, latent):
    """A drag's in-between frames (``DragRun.tween``, the exported animation): at 1/3 and 2/3 of
    a 6 px drag the eye corner sits 2 and 4 px along, by the tests' own NCC."""
    handle, target = (36.4, 30.1), (42.4, 30.1)
    with torch.no_grad():
        original = to_uint8(generator.render(latent))
    run = DragRun(generator, latent, [handle], [target])
    frames = run.tween(3)
    assert len(frames) == 2
    shifts = [float(ncc_locate(original, to_uint8(f), handle)[0][0] - round(handle[0])) for f in frames]
    assert abs(shifts[0] - 2) <= 1 and abs(shifts[1] - 4) <= 1, shifts


@pytest.fixture(scope="module")
def sg3():
    from dragwalk.models.stylegan3 import StyleGAN3Generator

    torch.manual_seed(2)
    return StyleGAN3Generator(8, 0, 8, 16, synthesis_kwargs=dict(channel_base=64, channel_max=8, num_layers=4,
                                                                 margin_size=2, conv_kernel=1,
                                                                 use_radial_filters=True)).eval().requires_grad_(False)


@pytest.mark.parametrize("model", ["sg32", "sg3"])
def test_the_match_works_on_every_architecture(model, sg32, sg3):
    """StyleGAN2 (its own render of the layers after the feature layer) and StyleGAN3 (the
    generic render with offsets): matched, the drag's image is much nearer the first frame
    moved on the image grid, drawn here by scipy's cubic spline from the method's field."""
    from scipy import ndimage

    g = sg32 if model == "sg32" else sg3
    res = g.resolution
    handles, targets = [[0.4 * res, 0.5 * res]], [[0.55 * res, 0.5 * res]]

    def error(iterations: int) -> float:
        run = DragRun(g, g.sample(0), handles, targets, config=DragConfig(params={"match": iterations, "correct": 0}))
        with torch.no_grad():
            image = run.render()[0].numpy()
        field = run.method.field(torch.tensor(handles), torch.tensor(targets), None, size=g.image_size).numpy()
        yy, xx = np.mgrid[0:res, 0:res].astype(float)
        at = [yy - field[..., 1], xx - field[..., 0]]         # backward map: out(v) = first(v - u(v))
        want = np.stack([ndimage.map_coordinates(c, at, order=3, mode="nearest") for c in run.origin_image[0].numpy()])
        return float(np.abs(image - want).mean())

    matched, warped = error(20), error(0)
    assert matched < 0.5 * warped, (matched, warped)
