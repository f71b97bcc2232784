"""rosinality stylegan2-pytorch checkpoints: converted exactly, refused when hostile.

Checkpoints are written by ``rosinality_ckpt`` from the repository's state-dict layout with
random weights and compared with that helper's forward, written on the file's own names.
"""

from __future__ import annotations

import argparse
import fractions
import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import rosinality_ckpt as rc  # noqa: E402

from dragwalk.models import ModelError, load_model, save_model  # noqa: E402
from dragwalk.models.rosinality import CheckpointError, load_rosinality  # noqa: E402

CONFIGS = {
    "16px": dict(size=16, style_dim=16, n_mlp=3, channels={4: 16, 8: 16, 16: 8}),
    "32px-blur121": dict(size=32, style_dim=24, n_mlp=2, channels={4: 16, 8: 16, 16: 16, 32: 8},
                         blur=(1, 2, 1)),
    "64px-lr002": dict(size=64, style_dim=16, n_mlp=4, channels={4: 8, 8: 8, 16: 8, 32: 8, 64: 4},
                       lr_mlp=0.02),
}


def _write(tmp_path: Path, cfg: dict, with_avg: bool = True, name: str = "g.pt", **extra) -> tuple[Path, dict]:
    sd = rc.state_dict(seed=5, **cfg)
    ckpt = {"g_ema": sd, "g": rc.state_dict(seed=6, **cfg),
            "args": argparse.Namespace(size=cfg["size"], n_mlp=cfg["n_mlp"]), **extra}
    if with_avg:
        ckpt["latent_avg"] = torch.randn(cfg["style_dim"], generator=torch.Generator().manual_seed(9))
    path = tmp_path / name
    torch.save(ckpt, path)
    return path, ckpt


@pytest.mark.parametrize("config", list(CONFIGS))
def test_checkpoint_matches_the_reference_forward(tmp_path, config):
    cfg = CONFIGS[config]
    path, ckpt = _write(tmp_path, cfg)
    lr = cfg.get("lr_mlp", 0.01)
    model = load_rosinality(path, lr_mlp=lr)
    assert model.resolution == cfg["size"] and model.num_ws == 2 * int(torch.log2(torch.tensor(cfg["size"]))) - 2
    z = torch.randn(2, cfg["style_dim"], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ws = model.mapping(z, None, truncation_psi=0.6)
        image = model.synthesis(ws, noise_mode="const")
    sd = ckpt["g_ema"]
    ref_ws = rc.reference_mapping(sd, z, ckpt["latent_avg"], 0.6, model.num_ws, lr)
    ref = rc.reference_synthesis(sd, ref_ws)
    assert (ws - ref_ws).abs().max() <= 1e-4
    assert image.shape == ref.shape == (2, 3, cfg["size"], cfg["size"])
    assert ref.abs().max() > 0.1
    assert (image - ref).abs().max() <= 1e-4


def test_wrong_lr_multiplier_changes_the_mapping(tmp_path):
    path, ckpt = _write(tmp_path, CONFIGS["64px-lr002"])
    z = torch.randn(1, 16)
    ref = rc.reference_mapping(ckpt["g_ema"], z, ckpt["latent_avg"], 1.0, 1, 0.02)[:, 0]
    assert (load_rosinality(path, lr_mlp=0.02).mapping(z, None, broadcast=False) - ref).abs().max() < 1e-4
    assert (load_rosinality(path).mapping(z, None, broadcast=False) - ref).abs().max() > 1e-2


def test_missing_latent_avg_is_estimated_from_seeded_samples(tmp_path):
    cfg = CONFIGS["16px"]
    path, ckpt = _write(tmp_path, cfg, with_avg=False)
    model = load_rosinality(path)
    z = torch.randn(20000, cfg["style_dim"], generator=torch.Generator().manual_seed(123))
    mean = rc.reference_mapping(ckpt["g_ema"], z, torch.zeros(cfg["style_dim"]), 1.0, 1)[:, 0].mean(0)
    spread = rc.reference_mapping(ckpt["g_ema"], z[:100], torch.zeros(16), 1.0, 1)[:, 0].std(0).mean()
    # two sample means of 10k/20k draws agree to a few standard errors
    assert (model.mapping.w_avg - mean).abs().max() < 0.1 * spread
    assert model.mapping.w_avg.abs().max() > 0


def test_registry_loads_pt_and_round_trips_the_own_format(tmp_path):
    path, _ = _write(tmp_path, CONFIGS["16px"])
    model = load_model(str(path))
    assert model.loader == "rosinality"
    latent = model.sample(3, truncation=0.7)
    own = load_model(str(save_model(model, tmp_path / "own.safetensors")))
    assert torch.equal(own.render(latent), model.render(latent))


def test_code_in_the_checkpoint_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"g_ema": rc.state_dict(16, 16, 1, {4: 8, 8: 8, 16: 8}), "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match=r"refused .*references (posix|os)\.system"):
        load_model(str(path))
    assert not marker.exists()


def test_unexpected_globals_are_refused_by_name(tmp_path):
    path = tmp_path / "fraction.pt"
    torch.save({"g_ema": rc.state_dict(16, 16, 1, {4: 8, 8: 8, 16: 8}), "f": fractions.Fraction(1, 3)}, path)
    with pytest.raises(CheckpointError, match="references fractions.Fraction"):
        load_rosinality(path)


def test_truncated_and_foreign_files_are_clear_errors(tmp_path):
    path, _ = _write(tmp_path, CONFIGS["16px"])
    data = path.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_rosinality(cut)
    other = tmp_path / "other.pt"
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}}, other)
    with pytest.raises(CheckpointError, match="no rosinality StyleGAN2 generator"):
        load_rosinality(other)
    with pytest.raises(ModelError):
        load_model(str(tmp_path / "absent.pt"))


@pytest.mark.parametrize("edit, message", [
    (lambda sd: sd.__setitem__("convs.0.conv.weight", torch.zeros(1, 8, 5, 3, 3)), r"convs.0.conv.weight \(as synthesis.b8.conv0.weight\) has shape \[8, 5, 3, 3\]"),
    (lambda sd: sd.__setitem__("to_rgb1.conv.weight", torch.zeros(3, 8, 1, 1)), "to_rgb1.conv.weight has shape"),
    (lambda sd: sd.pop("noises.noise_2"), "lacks noises.noise_2"),
    (lambda sd: sd.__setitem__("extra.weight", torch.zeros(2)), r"unexpected tensors \['extra.weight'\]"),
    (lambda sd: sd.__setitem__("convs.0.conv.blur.kernel", torch.ones(4, 4)), "not a normalised separable FIR"),
    (lambda sd: sd.__setitem__("to_rgbs.0.upsample.kernel", rc.make_kernel((1, 2, 1)) * 4), "differs from"),
    (lambda sd: sd.__setitem__("conv1.activate.bias", torch.zeros(8, dtype=torch.long)), "not a floating-point"),
])
def test_mismatched_tensors_are_named(tmp_path, edit, message):
    sd = rc.state_dict(16, 16, 1, {4: 8, 8: 8, 16: 8})
    edit(sd)
    path = tmp_path / "bad.pt"
    torch.save({"g_ema": sd}, path)
    with pytest.raises(CheckpointError, match=message):
        load_rosinality(path)
