"""``dragwalk models import`` / ``models info`` on every supported checkpoint format."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import rosinality_ckpt as rc  # noqa: E402
import sg3_pickles as s3  # noqa: E402
import stylegan_pickles as sp  # noqa: E402
import tf_pickles as tp  # noqa: E402

from dragwalk.cli import main  # noqa: E402
from dragwalk.models import load_model  # noqa: E402


def _run(capsys, *argv) -> tuple[int, dict | str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 else err)


def _sources(tmp: Path) -> dict[str, Path]:
    ros = tmp / "ros.pt"
    torch.save({"g_ema": rc.state_dict(16, 16, 2, {4: 8, 8: 8, 16: 8}), "latent_avg": torch.zeros(16)}, ros)
    tf = tmp / "tf.pkl"
    tf.write_bytes(tp.tf_pickle(*tp.variables(16)))
    sg3 = tmp / "sg3.pkl"
    sg3.write_bytes(s3.network_pickle(s3.kwargs(c_dim=4), tmp / "marker")[0])
    sg2 = tmp / "sg2.pkl"
    kw = sp.full_kwargs(img_resolution=16, synthesis_kwargs=dict(channel_base=128, channel_max=8, num_fp16_res=1))
    sg2.write_bytes(sp.network_pickle(kw, tmp / "marker")[0])
    return {"rosinality": ros, "tf-stylegan2": tf, "nvidia-stylegan3": sg3, "nvidia-stylegan2": sg2}


EXPECTED = {"rosinality": ("stylegan2", 0), "tf-stylegan2": ("stylegan2", 0),
            "nvidia-stylegan3": ("stylegan3", 4), "nvidia-stylegan2": ("stylegan2", 0)}


def test_info_and_import_every_format(tmp_path, capsys):
    fp16 = {}
    for loader, path in _sources(tmp_path).items():
        arch, c_dim = EXPECTED[loader]
        code, info = _run(capsys, "models", "info", str(path))
        assert code == 0, info
        assert info["loader"] == loader and info["own_architecture"] == arch and info["c_dim"] == c_dim
        assert info["resolution"] == 16 and info["latent_spaces"] == ["z", "w", "w+"]
        out = tmp_path / f"{loader}.safetensors"
        code, result = _run(capsys, "models", "import", str(path), "-o", str(out))
        assert code == 0, result
        assert result["check_max_abs_diff"] <= 1e-5 and out.is_file()
        assert json.loads(out.with_suffix(".json").read_text())["architecture"] == arch
        code, again = _run(capsys, "models", "info", str(out))
        assert again["loader"] == "dragwalk-safetensors" and again["own_architecture"] == arch
        assert again["fp16_layers"] == info["fp16_layers"]
        fp16[loader] = info["fp16_layers"]
        latent = load_model(str(path)).sample(2)
        assert torch.equal(load_model(str(out)).render(latent), load_model(str(path)).render(latent))
    assert fp16["nvidia-stylegan2"] == ["b16"] and fp16["rosinality"] == []
    assert fp16["nvidia-stylegan3"] and all(n.startswith("L") for n in fp16["nvidia-stylegan3"])


def test_import_refuses_bad_outputs_and_bad_inputs(tmp_path, capsys):
    src = _sources(tmp_path)["rosinality"]
    code, err = _run(capsys, "models", "import", str(src), "-o", str(tmp_path / "x.bin"))
    assert code == 2 and "ends in .safetensors" in err
    out = tmp_path / "y.safetensors"
    assert _run(capsys, "models", "import", str(src), "-o", str(out))[0] == 0
    code, err = _run(capsys, "models", "import", str(src), "-o", str(out))
    assert code == 2 and "exists" in err
    assert _run(capsys, "models", "import", str(src), "-o", str(out), "--force", "--lr-mlp", "0.02")[0] == 0
    code, err = _run(capsys, "models", "import", str(tmp_path / "tf.pkl"), "-o", str(out), "--force",
                     "--lr-mlp", "0.02")
    assert code == 2 and "rosinality" in err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    code, err = _run(capsys, "models", "import", str(bad), "-o", str(tmp_path / "z.safetensors"))
    assert code == 2 and "not a torch.save archive" in err and not (tmp_path / "z.safetensors").exists()
