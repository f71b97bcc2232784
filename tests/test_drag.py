"""The drag engine on the real default model: validation, real motion, mask, resume, consistency."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dragwalk.drag import (DEFAULT_METHOD, METHODS, DragConfig, DragRun, DragStep, PointError, drag,
                           parse_points)
from dragwalk.drag import features as fx
from dragwalk.imaging import to_uint8

from image_oracles import ncc_locate

SEED = 0
#: a distinctive point of seed 0 (inner corner of the right eye, dlib landmark 42) and a target
HANDLE = (36.4, 30.1)
TARGET = (41.4, 30.1)


@pytest.fixture(scope="session")
def latent(generator):
    return generator.sample(SEED)


@pytest.fixture(scope="session")
def original(generator, latent):
    with torch.no_grad():
        return to_uint8(generator.render(latent))


def finish(run: DragRun) -> DragStep:
    step = run.step()
    while not run.done:
        step = run.step()
    return step


# ----------------------------------------------------------------- validation
@pytest.mark.parametrize("handles, targets, message", [
    ([(70, 10)], [(10, 10)], "outside the 64x64 image"),
    ([(10, 10)], [(10, -1)], "outside the 64x64 image"),
    ([(math.nan, 10)], [(10, 10)], "not a finite number"),
    ([], [], "no handle points"),
    ([(10, 10), (20, 20)], [(12, 10)], "2 handle(s) but 1 target(s)"),
    ([(10, 10, 3)], [(12, 10)], "exactly two coordinates"),
])
def test_bad_points_are_refused_clearly(generator, latent, handles, targets, message):
    with pytest.raises(PointError, match=message.replace("(", r"\(").replace(")", r"\)")):
        DragRun(generator, latent, handles, targets)


def test_bad_masks_are_refused_clearly(generator, latent):
    with pytest.raises(PointError, match=r"mask has shape \(32, 32\), expected \(64, 64\)"):
        DragRun(generator, latent, [HANDLE], [TARGET], mask=np.ones((32, 32)))
    with pytest.raises(PointError, match="NaN"):
        DragRun(generator, latent, [HANDLE], [TARGET], mask=np.full((64, 64), np.nan))
    # numpy, torch and bool masks of the right size are accepted
    for mask in (np.ones((64, 64), bool), torch.ones(64, 64), torch.ones(1, 1, 64, 64)):
        DragRun(generator, latent, [HANDLE], [TARGET], mask=mask)
    assert isinstance(PointError("x"), ValueError)


def test_point_strings_parse_and_fail_clearly():
    assert parse_points("1,2->3,4; 5.5,6->7,8.25;") == ([(1, 2), (5.5, 6)], [(3, 4), (7, 8.25)])
    for bad in ("", "1,2", "1,2->3", "a,b->1,2", "1,2->3,4->5,6"):
        with pytest.raises(PointError):
            parse_points(bad)


def test_config_round_trips_and_validates():
    config = DragConfig(method="freedrag", lr=0.01, max_steps=50, params={"l": 0.2})
    assert DragConfig.from_dict(config.to_dict()) == config
    for bad in ({"method": "nope"}, {"lr": -1}, {"lr": "fast"}, {"max_steps": 0}, {"max_steps": 2.5},
                {"stop_distance": math.nan}, {"params": {"bogus": 1}}, {"unknown_field": 1},
                {"method": "freedrag", "params": {"l": 50}}):
        with pytest.raises(ValueError):
            DragConfig.from_dict(bad)


def test_methods_describe_themselves():
    assert DEFAULT_METHOD in METHODS and {"draggan", "freedrag"} <= set(METHODS)
    for name, cls in METHODS.items():
        info = cls.describe()
        assert info["name"] == name and info["label"]
        assert info["defaults"]["lr"] > 0
        for param in info["params"].values():
            assert param["min"] <= param["default"] <= param["max"]


# ----------------------------------------------------------------- behaviour
def test_handle_on_target_is_done_without_changing_anything(generator, latent):
    run = DragRun(generator, latent, [HANDLE, (20, 30)], [HANDLE, (20.3, 30)])
    assert run.done and run.converged
    step = run.step(render=True)
    assert step.done and step.step == 0 and step.remaining < 0.5
    assert torch.equal(run.latent.code, latent.code)
    steps = list(drag(generator, latent, [HANDLE], [HANDLE]))
    assert len(steps) == 1 and steps[0].done


@pytest.fixture(scope="session")
def moved(generator, latent):
    """The default method dragging a real feature (an eye corner) 5 px to the right."""
    run = DragRun(generator, latent, [HANDLE], [TARGET], config=DragConfig(max_steps=150))
    last = finish(run)
    return run, last


def test_drag_moves_the_content_under_the_handle(moved, original):
    run, last = moved
    with torch.no_grad():
        after = to_uint8(run.render())
    found, score = ncc_locate(original, after, HANDLE)
    start_gap = np.linalg.norm(np.subtract(TARGET, HANDLE))
    end_gap = np.linalg.norm(found - np.array(TARGET))
    assert score > 0.6, "the handle's content should still exist somewhere near"
    assert end_gap <= 0.5 * start_gap, f"content found at {found}, target {TARGET}, start {HANDLE}"
    assert last.remaining < start_gap


@pytest.mark.parametrize("method", ["template", "draggan"])
def test_outside_the_mask_barely_changes(generator, latent, original, method):
    """Methods that optimise keep the rest by the mask term (the warp by its field: test_drag_methods)."""
    yy, xx = np.mgrid[0:64, 0:64]
    mask = (np.hypot(xx - 39, yy - 30) <= 9).astype(np.float32)
    run = DragRun(generator, latent, [HANDLE], [TARGET], mask=mask, config=DragConfig(method=method, max_steps=60))
    finish(run)
    with torch.no_grad():
        after = to_uint8(run.render()).astype(float)
    change = np.abs(after - original.astype(float)).mean(axis=2)
    inside, outside = change[mask > 0].mean(), change[mask == 0].mean()
    assert inside > 3 * outside, f"inside {inside:.2f} vs outside {outside:.2f} (grey levels)"
    assert outside < 6.0


def test_render_matches_the_tracked_points(generator, latent):
    run = DragRun(generator, latent, [HANDLE], [TARGET], config=DragConfig(max_steps=40))
    for i in range(3):
        step = run.step(render=(i == 2))
    assert step.image is not None and step.handles == run.handles
    with torch.no_grad():
        fresh = generator.render(run.latent)
    assert torch.allclose(step.image, fresh, atol=1e-5)
    assert torch.allclose(run.render(), fresh, atol=1e-5)


def test_cancel_then_resume_with_new_points(generator, latent):
    run = DragRun(generator, latent, [HANDLE], [TARGET], config=DragConfig(method="template", max_steps=300))
    for _ in range(5):
        run.step()
    paused = run.latent
    here = run.handles
    run.set_points(here, [(here[0][0], here[0][1] + 4)])   # the user changes the target midway
    assert torch.equal(run.latent.code, paused.code), "set_points must not move the latent"
    assert run.targets[0][1] == pytest.approx(here[0][1] + 4)
    before = run.step_count
    step = run.step()
    assert step.step == before + 1 and not torch.equal(run.latent.code, paused.code)
    with pytest.raises(PointError):
        run.set_points([(1, 1)], [])


def test_set_lr_keeps_the_drag(generator, latent):
    run = DragRun(generator, latent, [HANDLE], [TARGET], config=DragConfig(method="template", max_steps=300))
    for _ in range(4):
        run.step()
    code, handles = run.latent.code.clone(), run.handles
    moments = [s["exp_avg"].clone() for s in run.optimizer.state.values()]
    run.set_lr(run.lr / 2)
    assert torch.equal(run.latent.code, code) and run.handles == handles
    assert all(torch.equal(a, s["exp_avg"]) for a, s in zip(moments, run.optimizer.state.values()))
    assert all(g["lr"] <= run.lr for g in run.optimizer.param_groups)
    run.step()
    assert run.step_count == 5
    with pytest.raises(ValueError):
        run.set_lr(-1)


@pytest.mark.parametrize("method", ["draggan", "freedrag"])
def test_every_method_runs_as_an_iterator(generator, latent, method):
    steps = list(drag(generator, latent, [HANDLE], [TARGET], config=DragConfig(method=method, max_steps=12),
                      render_every=5))
    assert steps and steps[-1].done and len(steps) <= 12
    assert [s.step for s in steps] == list(range(1, len(steps) + 1))
    assert [s.image is not None for s in steps[:-1]] == [(s.step % 5 == 0) for s in steps[:-1]]
    assert steps[-1].image is not None and steps[-1].image.shape == (1, 3, 64, 64)


def test_binomial_blur_removes_the_checkerboard():
    checker = torch.tensor([[(-1.0) ** (x + y) for x in range(8)] for y in range(8)])[None, None]
    assert fx.binomial_blur(checker, 1)[..., 1:-1, 1:-1].abs().max() < 1e-6


@pytest.mark.parametrize("passes", [1, 2])
def test_binomial_blur_is_the_separable_filter_with_edges_repeated(passes):
    """The blur against scipy: [1, 2, 1] / 4 along each axis, the edge value repeated outside."""
    from scipy import ndimage

    x = torch.randn(1, 3, 9, 7, generator=torch.Generator().manual_seed(passes))
    expected = x[0].numpy().astype("float64")
    for _ in range(passes):
        for axis in (1, 2):
            expected = ndimage.correlate1d(expected, [0.25, 0.5, 0.25], axis=axis, mode="nearest")
    torch.testing.assert_close(fx.binomial_blur(x, passes)[0].double(), torch.from_numpy(expected),
                               rtol=0, atol=1e-6)
