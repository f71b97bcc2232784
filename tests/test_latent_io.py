"""Latent files round-trip exactly and bad files are refused with a reason."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dragwalk import load_latent, save_latent
from dragwalk.latent_io import LatentFileError, latent_from_dict, latent_to_dict


@pytest.fixture()
def spatial_latent(generator):
    latent = generator.sample(5)
    latent.offsets["b1"] = torch.randn(1, 256, 8, 8, generator=torch.Generator().manual_seed(0))
    return latent


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_round_trip_keeps_code_offsets_and_image(generator, spatial_latent, tmp_path, suffix):
    path = save_latent(spatial_latent, tmp_path / f"l{suffix}", model=generator.name)
    loaded = load_latent(path, generator)
    assert loaded.space == spatial_latent.space
    assert torch.equal(loaded.code, spatial_latent.code)
    assert torch.equal(loaded.offsets["b1"], spatial_latent.offsets["b1"])
    with torch.no_grad():
        assert torch.equal(generator.render(loaded), generator.render(spatial_latent))


def test_npy_holds_the_code_only(generator, spatial_latent, tmp_path):
    plain = generator.sample(6)
    loaded = load_latent(save_latent(plain, tmp_path / "z.npy"), generator)
    assert loaded.space == generator.default_space and torch.equal(loaded.code, plain.code)
    with pytest.raises(LatentFileError, match="offsets"):
        save_latent(spatial_latent, tmp_path / "bad.npy")


def test_bad_files_are_refused_with_a_reason(generator, tmp_path):
    (tmp_path / "text.npy").write_text("not numpy")
    with pytest.raises(LatentFileError, match="not a NumPy"):
        load_latent(tmp_path / "text.npy", generator)
    np.save(tmp_path / "short.npy", np.zeros(7, dtype=np.float32))
    with pytest.raises(LatentFileError, match="shape"):
        load_latent(tmp_path / "short.npy", generator)
    np.save(tmp_path / "nan.npy", np.full(generator.latent_dim, np.nan, dtype=np.float32))
    with pytest.raises(LatentFileError, match="NaN"):
        load_latent(tmp_path / "nan.npy", generator)
    with pytest.raises(LatentFileError, match="not found"):
        load_latent(tmp_path / "missing.npz", generator)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(LatentFileError, match="JSON"):
        load_latent(tmp_path / "broken.json", generator)
    data = latent_to_dict(generator.sample(1))
    data["offsets"] = {"b9": [[0.0]]}
    with pytest.raises(LatentFileError, match="b9"):
        latent_from_dict(json.loads(json.dumps(data)), generator)
    data = latent_to_dict(generator.sample(1))
    data["space"] = "w+"
    with pytest.raises(LatentFileError, match="space"):
        latent_from_dict(data, generator)
