"""`dragwalk drag` and `dragwalk bench drag` end to end, as a user runs them.

The first drag and the benches run the command in a process of its own (forked from the test
servers' fork server, :func:`server_harness.run_dragwalk`: no Python and torch start-up, seconds on
the 2-core machine); the quick checks call the same entry point (``dragwalk.cli.main``) in this
process."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from PIL import Image

from server_harness import run_dragwalk


def run_cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return run_dragwalk(list(args), timeout=timeout)


def run_main(capsys, *args: str) -> subprocess.CompletedProcess:
    """``dragwalk ARGS`` through the command's entry point in this process."""
    from dragwalk.cli import main

    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["dragwalk", *args], code, out, err)


def test_drag_command_writes_image_and_animation(tmp_path, capsys):
    out, gif, lat = tmp_path / "out.png", tmp_path / "drag.gif", tmp_path / "final.npz"
    result = run_cli("drag", "--seed", "0", "--points", "36.4,30.1->40.4,30.1",
                     "--steps", "20", "-o", str(out), "--animation", str(gif), "--frame-every", "5",
                     "--save-latent", str(lat), "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout
    with Image.open(out) as image:
        assert image.size == (64, 64)
        before = np.asarray(image.convert("RGB"), float)
    with Image.open(gif) as anim:
        assert anim.n_frames >= 3 and anim.size == (256, 256)
    assert lat.stat().st_size > 0
    # resuming from the saved latent with a handle already on its target is a no-op drag
    again = tmp_path / "again.png"
    result = run_main(capsys, "drag", "--latent", str(lat), "--points", "10,10->10,10",
                      "-o", str(again), "--quiet", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "nothing to move after 0 steps" in result.stdout
    with Image.open(again) as image:
        assert np.abs(np.asarray(image.convert("RGB"), float) - before).max() <= 1


@pytest.mark.parametrize("points, message", [
    ("36,30->90,30", "outside the 64x64 image"),
    ("36,30", 'not of the form "x,y->x,y"'),
    ("nan,30->36,30", "not a finite number"),
])
def test_drag_command_rejects_bad_points(capsys, tmp_path, points, message):
    result = run_main(capsys, "drag", "--seed", "0", "--points", points, "-o", str(tmp_path / "x.png"),
                      "--device", "cpu")
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "x.png").exists()


def test_drag_command_rejects_a_mask_of_the_wrong_size(capsys, tmp_path):
    mask = tmp_path / "mask.png"
    Image.new("L", (32, 32), 255).save(mask)
    result = run_main(capsys, "drag", "--seed", "0", "--points", "36,30->40,30", "--mask", str(mask),
                      "-o", str(tmp_path / "x.png"), "--device", "cpu")
    assert result.returncode == 2 and "mask has shape (32, 32)" in result.stderr


@pytest.mark.slow
def test_bench_drag_runs_and_writes_json(tmp_path):
    report = tmp_path / "bench.json"
    result = run_cli("bench", "drag", "--pairs", "1", "--points", "1,5", "--max-steps", "25",
                     "--methods", "draggan,template", "--timing-steps", "3", "--threads", "1",
                     "--json", str(report), "--no-progress", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "MD/none" in result.stdout and "full forward" in result.stdout
    data = json.loads(report.read_text())
    assert data["pairs"] == 1 and data["settings"] == [1, 5]
    for method in ("draggan", "template"):
        for n in ("1", "5"):
            row = data["methods"][method][n]
            assert row["edits"] == 1 and row["md"] >= 0 and 0 <= row["converged"] <= 1
            assert row["md_rel"] == pytest.approx(row["md"] / data["no_edit"][n])
        timing = data["step_timing"][method]
        assert timing["truncated_ms"] > 0 and timing["full_forward_ms"] > 0


def test_bench_drag_semantic_measures_what_users_see(tmp_path):
    """Semantic drags on a held-out face: the default warp moves the content (by the image
    measure) and keeps the rest; DragGAN's word "converged" is never given to content that stayed."""
    report = tmp_path / "semantic.json"
    result = run_cli("bench", "drag", "--semantic", "--faces", "1", "--methods", "warp,draggan",
                     "--max-steps", "30", "--threads", "1", "--json", str(report), "--no-progress",
                     "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "motion" in result.stdout and "agree" in result.stdout
    data = json.loads(report.read_text())
    warp, draggan = data["methods"]["warp"], data["methods"]["draggan"]
    assert warp["edits"] == draggan["edits"] >= 5
    assert warp["motion"] > 0.6 and warp["far"] < 1.0
    assert warp["motion"] > draggan["motion"] + 0.3
    for edits in data["edits"].values():
        for e in edits:
            assert e["converged"] == (e["reason"] == "converged")
            if e["converged"]:
                assert e["motion_min"] > 0.5, e
    assert data["edits"]["warp"][0]["seed"] >= 5000        # held-out faces
    assert warp["edit_min"] >= warp["motion_min"]
    # the reference row: the face's own image moved by the warp's field, the measures' ceiling
    ideal = data["reference"]["ideal image warp"]
    assert ideal["edits"] == warp["edits"] and ideal["converged"] is None
    assert ideal["motion"] > 0.8 and ideal["far"] < 0.5
    assert "(ideal image warp)" in result.stdout
    # the control row: the whole image shifted by the drag's mean motion keeps every shape
    rigid = data["reference"]["whole image shifted"]
    assert rigid["edits"] == warp["edits"] and rigid["converged"] is None
    assert rigid["identity_1"] < 0.2 and "(whole image shifted)" in result.stdout


def test_bench_drag_semantic_on_a_random_stylegan2_draws_the_reference_rows(tmp_path, capsys):
    """Without faces the bench still draws each latent's own image moved by the warp's field and
    shifted whole, so the warp's motion can be read against what the measure allows there."""
    report = tmp_path / "random.json"
    result = run_main(capsys, "bench", "drag", "--semantic", "--random-stylegan2", "32", "--faces", "1",
                      "--methods", "warp", "--threads", "1", "--json", str(report), "--no-progress",
                      "--device", "cpu")
    assert result.returncode == 0, result.stderr
    data = json.loads(report.read_text())
    warp = data["methods"]["warp"]
    for name in ("ideal image warp", "whole image shifted"):
        row = data["reference"][name]
        assert row["edits"] == warp["edits"] > 0 and row["converged"] is None and row["agree"] is None
        assert f"({name})" in result.stdout
    ideal, rigid = data["reference"]["ideal image warp"], data["reference"]["whole image shifted"]
    assert ideal["motion"] > 0.2 and ideal["far"] < rigid["far"]
    assert all(e["agree"] for e in data["edits"]["warp"])


def test_the_control_row_shifts_the_whole_image_by_the_mean_motion():
    """``whole image shifted`` moves every pixel by the drag's mean motion: checked against numpy
    slicing for a whole-pixel shift (edges repeat)."""
    import numpy as np

    from dragwalk.bench.drag_semantic import rigid_shift

    image = np.random.default_rng(0).integers(0, 256, (64, 48, 3), dtype=np.uint8)
    handles, targets = np.array([[10.0, 10.0], [20.0, 30.0]]), np.array([[13.0, 8.0], [21.0, 30.0]])
    moved = rigid_shift(None, image, handles, targets)                  # mean motion (+2, -1)
    assert moved.shape == image.shape and moved.dtype == np.uint8
    np.testing.assert_array_equal(moved[:-1, 2:], image[1:, :-2])       # out[y, x] = in[y + 1, x - 2]
    np.testing.assert_array_equal(moved[:-1, :2], np.repeat(image[1:, :1], 2, axis=1))



def test_semantic_faces_need_only_the_dragged_features_inside():
    """The default protocol takes faces whose eyes, brows, nose and mouth lie the margin inside; the
    first protocol (all 68 landmarks inside) refuses this model's typical face, whose chin sits at
    the bottom edge, and takes a later, smaller one."""
    from dragwalk.bench.drag_semantic import INSIDE, find_faces
    from dragwalk.bench.semantic import CHIN
    from dragwalk.faces import face_analyzer
    from dragwalk.models.registry import load_model

    generator, analyzer = load_model(), face_analyzer()
    assert CHIN not in INSIDE["features"] and {19, 24, 30, 37, 44, 48, 54, 57} <= set(INSIDE["features"])
    typical = find_faces(generator, analyzer, 1, 5000, 4.0)[0]
    small = find_faces(generator, analyzer, 1, 5000, 4.0, inside=INSIDE["all68"])[0]
    features = typical["face"].landmarks[list(INSIDE["features"])]
    assert (features >= 4.0).all() and (features <= 59.0).all()
    whole = typical["face"].landmarks
    assert (whole < 4.0).any() or (whole > 59.0).any()           # the first protocol refuses it
    assert small["seed"] > typical["seed"]
    assert (small["face"].landmarks >= 4.0).all() and (small["face"].landmarks <= 59.0).all()
