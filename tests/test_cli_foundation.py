"""The command line on the real default model."""

from __future__ import annotations

import json
import subprocess

import numpy as np
from PIL import Image


def run(exe, *args, check=True):
    proc = subprocess.run([*exe, *args], capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_generate_writes_a_64px_face(dragwalk_exe, tmp_path, generator):
    out = tmp_path / "f.png"
    run(dragwalk_exe, "generate", "--model", "digiface-dcgan64", "--seed", "1", "-o", str(out), "--device", "cpu")
    image = np.asarray(Image.open(out))
    assert image.shape == (64, 64, 3)
    from dragwalk.imaging import to_uint8
    assert np.array_equal(image, to_uint8(generator.render(generator.sample(1))))


def test_models_list_and_info(dragwalk_exe):
    assert "digiface-dcgan64" in run(dragwalk_exe, "models", "list").stdout
    info = json.loads(run(dragwalk_exe, "models", "info", "digiface-dcgan64").stdout)
    assert info["resolution"] == 64 and info["parameters"] > 3_000_000


def test_bad_model_is_one_clear_line(dragwalk_exe, tmp_path):
    proc = run(dragwalk_exe, "generate", "--model", "nope", "--seed", "1", "-o", str(tmp_path / "x.png"), check=False)
    assert proc.returncode == 2
    assert "unknown model 'nope'" in proc.stderr
    assert "Traceback" not in proc.stderr
