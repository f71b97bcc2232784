"""The command line on the real default model: ``generate`` as the installed command in a
process of its own, the other checks through the same entry point (``dragwalk.cli.main``) in the
test process (each process start costs seconds of Python and torch start-up)."""

from __future__ import annotations

import json
import subprocess

import numpy as np
from PIL import Image

from dragwalk.cli import main


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


def test_models_list_and_info(capsys):
    capsys.readouterr()
    assert main(["models", "list"]) == 0
    assert "digiface-dcgan64" in capsys.readouterr().out
    assert main(["models", "info", "digiface-dcgan64"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["resolution"] == 64 and info["parameters"] > 3_000_000


def test_bad_model_is_one_clear_line(capsys, tmp_path):
    capsys.readouterr()
    assert main(["generate", "--model", "nope", "--seed", "1", "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'nope'" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
