"""``dragwalk walk`` / ``dragwalk directions ...`` end to end on the default model, through the
command's entry point (``dragwalk.cli.main``) in the test process."""

from __future__ import annotations

import numpy as np
from PIL import Image

from dragwalk.cli import main


def test_walk_writes_a_changed_png_and_strip(tmp_path, capsys):
    plain, walked, strip = tmp_path / "plain.png", tmp_path / "walked.png", tmp_path / "strip.png"
    assert main(["generate", "--seed", "3", "-o", str(plain)]) == 0
    assert main(["walk", "--seed", "3", "--direction", "sefa:0", "--amount", "2", "-o", str(walked)]) == 0
    a = np.asarray(Image.open(plain), dtype=np.float32)
    b = np.asarray(Image.open(walked), dtype=np.float32)
    assert a.shape == b.shape == (64, 64, 3)
    assert np.abs(a - b).mean() > 3  # a visible change (0..255 scale)
    # "--strip -3:3:7" with a leading minus parses; the middle image is the unwalked face
    assert main(["walk", "--seed", "3", "--direction", "sefa:0", "--strip", "-3:3:7", "-o", str(strip)]) == 0
    s = np.asarray(Image.open(strip), dtype=np.float32)
    assert s.shape == (64, 64 * 7, 3)
    assert np.abs(s[:, 3 * 64:4 * 64] - a).max() <= 1
    assert np.abs(s[:, :64] - s[:, -64:]).mean() > 3


def test_walk_from_latent_file_with_two_sliders_and_a_region(tmp_path, generator):
    from dragwalk.latent_io import save_latent

    latent = tmp_path / "start.npz"
    save_latent(generator.sample(1), latent, generator.name)
    out = tmp_path / "out.png"
    saved = tmp_path / "walked.json"
    assert main(["walk", "--latent", str(latent), "--direction", "sefa:1", "--amount", "1",
                 "--direction", "reds:0", "--amount", "3", "--region", "18,45,46,57",
                 "--save-latent", str(saved), "-o", str(out)]) == 0
    assert out.is_file() and saved.is_file()


def test_compute_list_and_augment(tmp_path, capsys):
    assert main(["directions", "list", "--json"]) == 0
    assert '"reds"' in capsys.readouterr().out
    assert main(["directions", "compute", "--method", "sfvq", "--param", "bits=3",
                 "--param", "samples=1000", "--cache", str(tmp_path / "cache")]) == 0
    assert "sfvq: 7 directions" in capsys.readouterr().out
    out = tmp_path / "aug"
    assert main(["directions", "augment", "--segment", "1", "--count", "3", "--param", "bits=3",
                 "--param", "samples=1000", "--cache", str(tmp_path / "cache"), "--latents",
                 "-o", str(out)]) == 0
    assert len(list(out.glob("*.png"))) == 3 and len(list(out.glob("*.npz"))) == 3


def test_bad_direction_exits_2_with_a_clear_message(tmp_path, capsys):
    for args, needle in ((["--direction", "sefa:99"], "index 99 is out of range"),
                         (["--direction", "nope:0"], "unknown direction method 'nope'"),
                         (["--direction", "reds:0"], "needs a region")):
        capsys.readouterr()
        assert main(["walk", "--seed", "0", *args, "-o", str(tmp_path / "x.png")]) == 2
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err
        assert not (tmp_path / "x.png").exists()
