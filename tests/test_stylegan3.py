"""StyleGAN3 (configs T and R): pickles build the own alias-free network, which matches an
independent forward; the adapter keeps the generator interface; hostile pickles are refused."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import sg3_pickles as s3  # noqa: E402
import stylegan_pickles as sp  # noqa: E402

from dragwalk.models import Latent, load_model, save_model  # noqa: E402
from dragwalk.models.nvidia_pickle import NetworkPickleError  # noqa: E402
from dragwalk.models.pickles import load_pickle  # noqa: E402
from dragwalk.models.stylegan3 import StyleGAN3Generator  # noqa: E402


CONFIGS = {
    "T-16": dict(res=16),
    "T-32-conditional": dict(res=32, c_dim=5, num_layers=6),
    "R-16": dict(res=16, config="R"),
    "R-32": dict(res=32, config="R", num_layers=6, channel_base=256, channel_max=12),
}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_pickle_matches_the_reference_forward(tmp_path, marker, config):
    kw = s3.kwargs(**CONFIGS[config])
    data, tensors = s3.network_pickle(kw, marker, seed=4)
    model = load_pickle(sp.write_pickle(tmp_path, data, "sg3.pkl"))
    assert isinstance(model, StyleGAN3Generator) and model.loader == "nvidia-stylegan3"
    n_ws = kw["synthesis_kwargs"]["num_layers"] + 2
    assert model.num_ws == n_ws and model.resolution == kw["img_resolution"]
    z = torch.randn(2, kw["z_dim"], generator=torch.Generator().manual_seed(2))
    c = torch.nn.functional.one_hot(torch.tensor([3, 1]), kw["c_dim"]).float() if kw["c_dim"] else None
    with torch.no_grad():
        ws = model.mapping(z, c, truncation_psi=0.6, truncation_cutoff=3)
        image = model.synthesis(ws)
    ref_ws = sp.reference_mapping(tensors, kw, z, c, n_ws, psi=0.6, cutoff=3)
    ref = s3.reference_synthesis(tensors, kw, ref_ws)
    assert (ws - ref_ws).abs().max() <= 1e-4
    assert image.shape == ref.shape == (2, 3, kw["img_resolution"], kw["img_resolution"])
    assert ref.abs().max() > 0.05
    assert (image - ref).abs().max() <= 1e-4


@pytest.fixture(scope="module")
def sg3(tmp_path_factory) -> StyleGAN3Generator:
    tmp = tmp_path_factory.mktemp("sg3")
    data, _ = s3.network_pickle(s3.kwargs(res=32, c_dim=3, num_layers=6), tmp / "marker", seed=1)
    return load_model(str(sp.write_pickle(tmp, data, "sg3.pkl")))


def test_interface_features_offsets_and_resume(sg3):
    latent = sg3.sample(3)
    assert latent.space == "w+" and latent.code.shape == (1, sg3.num_ws, 16)
    full = sg3.synthesize(latent, feature_layer=sg3.default_feature_layer)
    info = sg3.layer(sg3.default_feature_layer)
    assert full.features.shape == (1, info.channels, info.size, info.size)
    assert full.image.shape == (1, 3, 32, 32) and full.image.abs().max() <= 1
    with torch.no_grad():
        assert torch.allclose(full.image, sg3.synthesis(latent.code).clamp(-1, 1), atol=1e-6)
    part = sg3.synthesize(latent, feature_layer=sg3.default_feature_layer, stop_at_feature=True)
    assert part.image is None and torch.equal(part.features, full.features)
    assert torch.equal(part.resume(), full.image)
    zero = torch.zeros(1, info.channels, info.size, info.size)
    name = sg3.default_feature_layer
    assert torch.equal(sg3.render(Latent("w+", latent.code, {name: zero})), full.image)
    bumped = sg3.render(Latent("w+", latent.code, {name: zero + 0.5}))
    assert (bumped - full.image).abs().mean() > 1e-3
    assert sg3.offset_shape(name) == (info.channels, info.size, info.size) and sg3.offset_shape("image") is None
    with pytest.raises(ValueError, match="unknown offset"):
        sg3.render(Latent("w+", latent.code, {"b64": zero}))


def test_class_labels_and_sefa_map(sg3):
    assert (sg3.sample(2).code - sg3.sample(2, class_index=2).code).abs().max() > 1e-3
    with pytest.raises(ValueError, match="class"):
        sg3.sample(2, class_index=3)
    m = sg3.first_linear_map()
    assert m.shape[0] == 16 and m.shape[1] == sum(l.in_channels for _, l in sg3.synthesis.layers())


def test_own_format_round_trip(sg3, tmp_path):
    latent = sg3.sample(5, truncation=0.7)
    own = load_model(str(save_model(sg3, tmp_path / "sg3.safetensors")))
    assert isinstance(own, StyleGAN3Generator)
    assert torch.equal(own.render(latent), sg3.render(latent))


def test_fresh_network_runs():
    g = StyleGAN3Generator(8, 0, 8, 16, synthesis_kwargs=dict(channel_base=64, channel_max=8, num_layers=4,
                                                              margin_size=2, conv_kernel=1,
                                                              use_radial_filters=True))
    image = g.render(g.sample(0))
    assert image.shape == (1, 3, 16, 16) and torch.isfinite(image).all()


def test_hostile_stylegan3_pickles(tmp_path, marker):
    kw = s3.kwargs()
    data, tensors = s3.network_pickle(kw, marker)
    with pytest.raises(NetworkPickleError, match="truncated"):
        load_pickle(sp.write_pickle(tmp_path, data[: len(data) * 2 // 3], "cut.pkl"))
    name = next(k for k in tensors if k.endswith("down_filter"))
    bad = dict(tensors)
    bad[name] = torch.ones(3)
    evil = sp.dumps({"G_ema": sp.generator_record(kw, bad, sp.evil_source(marker), flat_kwargs=True)}, 4)
    with pytest.raises(NetworkPickleError, match=f"{name} has shape \\[3\\]"):
        load_pickle(sp.write_pickle(tmp_path, evil, "shape.pkl"))
    kw2 = s3.kwargs()
    kw2["synthesis_kwargs"]["sneaky_option"] = 1
    odd = sp.dumps({"G_ema": sp.generator_record(kw2, tensors, sp.evil_source(marker), flat_kwargs=True)}, 4)
    with pytest.raises(NetworkPickleError, match="unsupported StyleGAN3 option"):
        load_pickle(sp.write_pickle(tmp_path, odd, "odd.pkl"))
    with_global = sp.dumps({"G_ema": sp.generator_record(kw, tensors, sp.evil_source(marker), flat_kwargs=True),
                            "x": sp.GlobalRef("subprocess", "Popen")}, 4)
    with pytest.raises(NetworkPickleError, match="references subprocess.Popen"):
        load_pickle(sp.write_pickle(tmp_path, with_global, "global.pkl"))
