"""TF-era StyleGAN2 pickles: read as data (never executing them), converted exactly, refused
when hostile. Pickles come from ``tf_pickles`` (the format's layout, random weights) and are
compared with that helper's forward on the TF names and layouts."""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import stylegan_pickles as sp  # noqa: E402
import tf_pickles as tp  # noqa: E402

from dragwalk.models import load_model, save_model  # noqa: E402
from dragwalk.models.nvidia_pickle import NetworkPickleError  # noqa: E402
from dragwalk.models.pickles import load_pickle  # noqa: E402
from dragwalk.models.tf_pickle import TFPickleError  # noqa: E402


CONFIGS = {
    "16-skip": dict(res=16),
    "32-skip-wide": dict(res=32, z_dim=24, w_dim=24, n_dense=4, fmap_base=512, fmap_max=32),
    "16-orig": dict(res=16, arch="orig"),
    "32-resnet": dict(res=32, arch="resnet"),
}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_tf_pickle_matches_the_tf_graph(tmp_path, marker, config):
    cfg = CONFIGS[config]
    mv, sv, gv = tp.variables(seed=2, **cfg)
    model = load_pickle(sp.write_pickle(tmp_path, tp.tf_pickle(mv, sv, gv, sp.evil_source(marker)), "net.pkl"))
    res = cfg["res"]
    assert model.resolution == res and model.loader == "tf-stylegan2"
    z = torch.randn(2, cfg.get("z_dim", 16), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ws = model.mapping(z, None, truncation_psi=0.7, truncation_cutoff=3)
        image = model.synthesis(ws)
    ref_ws = tp.reference_mapping(mv, gv, z, 0.7, 3, model.num_ws)
    ref = tp.reference_synthesis(sv, ref_ws, cfg.get("arch", "skip"))
    assert (ws - ref_ws).abs().max() <= 1e-4
    assert image.shape == ref.shape == (2, 3, res, res) and ref.abs().max() > 0.1
    assert (image - ref).abs().max() <= 1e-4


def test_registry_and_own_format_round_trip(tmp_path, marker):
    mv, sv, gv = tp.variables(16)
    model = load_model(str(sp.write_pickle(tmp_path, tp.tf_pickle(mv, sv, gv, sp.evil_source(marker), protocol=4), "net.pkl")))
    latent = model.sample(1, truncation=0.5)
    own = load_model(str(save_model(model, tmp_path / "own.safetensors")))
    assert torch.equal(own.render(latent), model.render(latent))


def test_code_in_a_tf_pickle_is_refused_and_never_runs(tmp_path, marker):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    mv, sv, gv = tp.variables(16)
    sv["4x4/Conv/bias"] = Evil()
    with pytest.raises(NetworkPickleError, match=r"references (posix|os)\.system"):
        load_pickle(sp.write_pickle(tmp_path, tp.tf_pickle(mv, sv, gv), "net.pkl"))


@pytest.mark.parametrize("module, name", [("tensorflow", "Variable"), ("dnnlib.tflib.network", "Evil"),
                                          ("builtins", "eval")])
def test_unexpected_globals_are_refused(tmp_path, marker, module, name):
    mv, sv, gv = tp.variables(16)
    gv["extra"] = sp.GlobalRef(module, name)
    with pytest.raises(NetworkPickleError, match=f"references {module}.{name}"):
        load_pickle(sp.write_pickle(tmp_path, tp.tf_pickle(mv, sv, gv), "net.pkl"))


def test_truncated_tf_pickle_is_a_clear_error(tmp_path, marker):
    mv, sv, gv = tp.variables(16)
    data = tp.tf_pickle(mv, sv, gv, sp.evil_source(marker))
    with pytest.raises(NetworkPickleError, match="truncated"):
        load_pickle(sp.write_pickle(tmp_path, data[: len(data) // 2], "net.pkl"))


@pytest.mark.parametrize("edit, message", [
    (lambda m, s, g: s.__setitem__("8x8/Conv1/weight", np.zeros((3, 3, 5, 16), np.float32)),
     r"synthesis/8x8/Conv1/weight \(as synthesis.b8.conv1.weight\) has shape \[16, 5, 3, 3\]"),
    (lambda m, s, g: s.pop("noise2"), "synthesis network lacks noise2"),
    (lambda m, s, g: s.__setitem__("8x8/Conv1/bias", np.zeros(16, np.int64)), "not a floating-point array"),
    (lambda m, s, g: s.__setitem__("16x16/Extra/weight", np.zeros(2, np.float32)), "unexpected variables"),
    (lambda m, s, g: m.__setitem__("LabelConcat/weight", np.zeros((4, 16), np.float32)), "conditional TF models"),
    (lambda m, s, g: g.pop("dlatent_avg"), "Gs network lacks dlatent_avg"),
])
def test_mismatched_variables_are_named(tmp_path, marker, edit, message):
    mv, sv, gv = tp.variables(16)
    edit(mv, sv, gv)
    with pytest.raises(TFPickleError, match=message):
        load_pickle(sp.write_pickle(tmp_path, tp.tf_pickle(mv, sv, gv, sp.evil_source(marker)), "net.pkl"))


def test_the_network_record_is_needed(tmp_path):
    data = pickle.dumps((1, 2, 3))
    with pytest.raises(NetworkPickleError, match="not a network dict"):
        load_pickle(sp.write_pickle(tmp_path, data, "net.pkl"))
