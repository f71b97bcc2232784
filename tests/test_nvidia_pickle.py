"""NVIDIA StyleGAN2/-ADA network pickles: read safely, built exactly, refused when hostile.

The pickles are written by ``stylegan_pickles`` with the format's structure and random
weights; every ``module_src`` they carry would create a marker file if executed, and each
test checks that the marker never appears.
"""

from __future__ import annotations

import json
import os
import pickle
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import stylegan_pickles as sp  # noqa: E402

from dragwalk.cli import main as cli_main  # noqa: E402
from dragwalk.models import ModelError, load_model, save_model  # noqa: E402
from dragwalk.models.nvidia_pickle import NetworkPickleError, load_network_pickle  # noqa: E402


def _label(kw: dict, index: int, batch: int) -> torch.Tensor | None:
    if not kw["c_dim"]:
        return None
    return torch.nn.functional.one_hot(torch.full([batch], index), kw["c_dim"]).float()


CONFIGS = {
    "64-unconditional": (dict(synthesis_kwargs=dict(channel_base=1024, channel_max=32)), {}),
    "64-conditional": (dict(c_dim=10, mapping_kwargs=dict(num_layers=4),
                            synthesis_kwargs=dict(channel_base=1024, channel_max=32)), {}),
    "64-fp16-layers": (dict(synthesis_kwargs=dict(channel_base=1024, channel_max=32, num_fp16_res=2,
                                                  conv_clamp=256)),
                       dict(fp16_storage=True, flat_kwargs=True, protocol=4)),
    "128-narrow": (dict(img_resolution=128, w_dim=24, synthesis_kwargs=dict(channel_base=1024, channel_max=16)), {}),
    "32-resnet": (dict(img_resolution=32, synthesis_kwargs=dict(channel_base=512, channel_max=16,
                                                                architecture="resnet", conv_clamp=2)), {}),
    "32-orig": (dict(img_resolution=32, synthesis_kwargs=dict(channel_base=512, channel_max=16,
                                                              architecture="orig")), {}),
    "1024-tiny": (dict(img_resolution=1024, mapping_kwargs=dict(num_layers=2),
                       synthesis_kwargs=dict(channel_base=1024, channel_max=8, num_fp16_res=4, conv_clamp=256)),
                  dict(fp16_storage=True)),
}


@pytest.mark.parametrize("config", [pytest.param(k, marks=pytest.mark.slow) if k.startswith("1024") else k
                                    for k in CONFIGS])
def test_pickle_builds_a_generator_matching_the_reference(tmp_path, marker, config):
    overrides, options = CONFIGS[config]
    kw = sp.full_kwargs(**overrides)
    data, tensors = sp.network_pickle(kw, marker, seed=3, **options)
    model = load_network_pickle(sp.write_pickle(tmp_path, data, "net.pkl"))
    assert model.resolution == kw["img_resolution"]
    assert model.num_ws == sp.num_ws(kw)
    assert model.latent_dim == kw["w_dim"] and model.c_dim == kw["c_dim"]
    batch = 1 if kw["img_resolution"] > 128 else 2
    z = torch.randn(batch, kw["z_dim"], generator=torch.Generator().manual_seed(1))
    c = _label(kw, 7, batch)
    with torch.no_grad():
        ws = model.mapping(z, c, truncation_psi=0.7, truncation_cutoff=5)
        image = model.synthesis(ws)
    ref_ws = sp.reference_mapping(tensors, kw, z, c, model.num_ws, psi=0.7, cutoff=5)
    ref = sp.reference_synthesis(tensors, kw, ref_ws)
    assert image.shape == (batch, 3, kw["img_resolution"], kw["img_resolution"])
    assert (ws - ref_ws).abs().max() < 1e-5
    assert ref.std() > 0.05, "the reference image is flat: the comparison would prove little"
    assert (image - ref).abs().max() < 1e-3


def test_loader_takes_g_ema_and_falls_back_to_g(tmp_path, marker):
    kw = sp.full_kwargs(img_resolution=16, synthesis_kwargs=dict(channel_base=128, channel_max=8))
    data, tensors = sp.network_pickle(kw, marker)
    model = load_network_pickle(sp.write_pickle(tmp_path, data, "snap.pkl"))
    assert torch.equal(model.mapping.w_avg, tensors["mapping.w_avg"])  # G_ema, not G
    data_g, _ = sp.network_pickle(kw, marker, keys=("G", "D"))
    model_g = load_network_pickle(sp.write_pickle(tmp_path, data_g, "g.pkl"))
    g_tensors = sp.random_generator_tensors(kw, seed=1)  # what network_pickle puts in 'G'
    assert torch.equal(model_g.mapping.w_avg, g_tensors["mapping.w_avg"])


def test_truncation_zero_gives_w_avg(tmp_path, marker):
    kw = sp.full_kwargs(img_resolution=16, synthesis_kwargs=dict(channel_base=128, channel_max=8))
    data, tensors = sp.network_pickle(kw, marker)
    model = load_network_pickle(sp.write_pickle(tmp_path, data, "net.pkl"))
    w_avg = tensors["mapping.w_avg"]
    assert w_avg.abs().max() > 0.1
    assert torch.allclose(model.sample(5, truncation=0.0, space="w").code[0], w_avg, atol=1e-6)
    ws = model.sample(5, truncation=0.0).code
    assert torch.allclose(ws, w_avg.expand_as(ws), atol=1e-6)
    assert not torch.allclose(model.sample(5, truncation=1.0, space="w").code[0], w_avg, atol=1e-2)


def test_registry_and_own_format_round_trip(tmp_path, marker):
    kw = sp.full_kwargs(c_dim=3, img_resolution=16, synthesis_kwargs=dict(channel_base=128, channel_max=8,
                                                                          conv_clamp=256))
    data, _ = sp.network_pickle(kw, marker)
    path = sp.write_pickle(tmp_path, data, "net.pkl")
    model = load_model(str(path), "cpu")
    assert load_model(str(path), "cpu") is model  # cached
    saved = save_model(model, tmp_path / "own")
    assert json.loads(saved.with_suffix(".json").read_text())["architecture"] == "stylegan2"
    again = load_model(str(saved), "cpu")
    assert again.config() == model.config()
    latent = model.sample(2)
    assert torch.equal(again.render(latent), model.render(latent))


def test_cli_describes_and_renders_a_pickle(tmp_path, marker, capsys):
    kw = sp.full_kwargs(img_resolution=32, synthesis_kwargs=dict(channel_base=256, channel_max=8))
    data, _ = sp.network_pickle(kw, marker)
    path = sp.write_pickle(tmp_path, data, "cli.pkl")
    assert cli_main(["models", "info", str(path)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["architecture"] == "StyleGAN2Generator" and info["resolution"] == 32
    assert info["num_ws"] == 8 and info["latent_spaces"] == ["z", "w", "w+"]
    out = tmp_path / "seed3.png"
    assert cli_main(["generate", "--model", str(path), "--seed", "3", "--device", "cpu", "-o", str(out)]) == 0
    from PIL import Image
    import numpy as np
    pixels = np.asarray(Image.open(out).convert("RGB"))
    assert pixels.shape == (32, 32, 3)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # a picture, not a flat fill


# ------------------------------------------------------------------ hostile and broken files
class _RunsCommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_the_payloads_are_real(tmp_path):
    """The marker checks can fail: executing the payloads does leave the marker."""
    ran = tmp_path / "ran"
    exec(compile(sp.evil_source(ran), "module_src", "exec"), {})
    assert ran.exists()
    ran.unlink()
    pickle.loads(pickle.dumps(_RunsCommand(ran)))  # what an ordinary unpickler would do
    assert ran.exists()


def test_reduce_to_os_system_is_refused_and_never_runs(tmp_path, marker):
    path = sp.write_pickle(tmp_path, pickle.dumps({"G_ema": _RunsCommand(marker)}), "evil.pkl")
    with pytest.raises(NetworkPickleError, match=r"references (posix|nt)\.system, which is not a network component"):
        load_network_pickle(path)


def test_hostile_object_hidden_inside_a_real_snapshot_is_refused(tmp_path, marker):
    kw = sp.full_kwargs(img_resolution=8, synthesis_kwargs=dict(channel_base=64, channel_max=4))
    data, _ = sp.network_pickle(kw, marker, keys=("G_ema",))
    # a valid generator beside an augment_pipe whose state carries the payload
    evil = sp._module("AugmentPipe", sp.evil_source(marker), {}, {}, {}, payload=_RunsCommand(marker))
    snapshot = sp.dumps({"G_ema": sp.generator_record(kw, sp.random_generator_tensors(kw), sp.evil_source(marker)),
                         "augment_pipe": evil})
    with pytest.raises(NetworkPickleError, match=r"(posix|nt)\.system"):
        load_network_pickle(sp.write_pickle(tmp_path, snapshot, "hidden.pkl"))
    assert load_network_pickle(sp.write_pickle(tmp_path, data, "clean.pkl")).resolution == 8


@pytest.mark.parametrize("module,name", [("builtins", "eval"), ("subprocess", "Popen"),
                                         ("torch_utils.persistence", "persistent_class"),
                                         ("torch", "load")])
def test_unknown_globals_are_refused_by_name(tmp_path, marker, module, name):
    data = sp.dumps({"G_ema": sp.GlobalRef(module, name)})
    with pytest.raises(NetworkPickleError, match=rf"references {module}\.{name}"):
        load_network_pickle(sp.write_pickle(tmp_path, data, "x.pkl"))


def test_storage_bytes_carrying_code_are_refused(tmp_path, marker):
    """Tensor storages are decoded by torch's weights-only loader, which refuses code as well."""
    class EvilStorage:
        def __reduce__(self):
            return sp.GlobalRef("torch.storage", "_load_from_bytes"), (pickle.dumps(_RunsCommand(marker), protocol=2),)

    data = sp.dumps({"G_ema": EvilStorage()})
    with pytest.raises(NetworkPickleError, match="tensor storage could not be read"):
        load_network_pickle(sp.write_pickle(tmp_path, data, "storage.pkl"))


def test_truncated_and_corrupt_files_are_clear_errors(tmp_path, marker):
    kw = sp.full_kwargs(img_resolution=8, synthesis_kwargs=dict(channel_base=64, channel_max=4))
    data, _ = sp.network_pickle(kw, marker, keys=("G_ema",))
    with pytest.raises(NetworkPickleError, match="truncated"):
        load_network_pickle(sp.write_pickle(tmp_path, data[: len(data) // 2], "cut.pkl"))
    with pytest.raises(NetworkPickleError, match="not a readable pickle"):
        load_network_pickle(sp.write_pickle(tmp_path, b"\x00garbage" * 10, "junk.pkl"))
    torch.save({"weight": torch.zeros(2)}, tmp_path / "archive.pkl")
    with pytest.raises(NetworkPickleError, match="zip archive"):
        load_network_pickle(tmp_path / "archive.pkl")
    with pytest.raises(ModelError, match="no model file"):
        load_model(str(tmp_path / "missing.pkl"))


def test_pickles_without_a_stylegan2_generator_are_refused(tmp_path, marker):
    with pytest.raises(NetworkPickleError, match="holds a list, not a network dict"):
        load_network_pickle(sp.write_pickle(tmp_path, pickle.dumps([1, 2, 3]), "list.pkl"))
    with pytest.raises(NetworkPickleError, match=r"no generator network \('G_ema' or 'G'\); keys: D, training"):
        load_network_pickle(sp.write_pickle(tmp_path, pickle.dumps({"D": 1, "training_set_kwargs": {}}), "d.pkl"))
    src = sp.evil_source(marker)
    sg3 = sp._module("Generator", src, {}, {}, {
        "mapping": sp._module("MappingNetwork", src, {}, {}, {}),
        "synthesis": sp._module("SynthesisNetwork", src, {}, {}, {
            "input": sp._module("SynthesisInput", src, {}, {}, {})})},
        dict(z_dim=8, c_dim=0, w_dim=8, img_resolution=16, img_channels=3))
    with pytest.raises(NetworkPickleError, match="a StyleGAN3 alias-free network: pickles.load_pickle"):
        load_network_pickle(sp.write_pickle(tmp_path, sp.dumps({"G_ema": sg3}), "sg3.pkl"))
    with pytest.raises(NetworkPickleError, match="tensors do not match the architecture"):
        load_model(str(tmp_path / "sg3.pkl"))  # the registry builds StyleGAN3, which needs its tensors


def test_unsupported_options_and_mismatched_tensors_are_named(tmp_path, marker):
    kw = sp.full_kwargs(img_resolution=8, synthesis_kwargs=dict(channel_base=64, channel_max=4))
    odd = sp.full_kwargs(img_resolution=8, synthesis_kwargs=dict(channel_base=64, channel_max=4, magic=3))
    src = sp.evil_source(marker)
    data = sp.dumps({"G_ema": sp.generator_record(odd, sp.random_generator_tensors(kw), src)})
    with pytest.raises(NetworkPickleError, match="unsupported generator option\\(s\\) magic"):
        load_network_pickle(sp.write_pickle(tmp_path, data, "odd.pkl"))
    tensors = sp.random_generator_tensors(kw)
    tensors["synthesis.b8.conv1.weight"] = torch.zeros(4, 4, 1, 1)
    data = sp.dumps({"G_ema": sp.generator_record(kw, tensors, src)})
    with pytest.raises(NetworkPickleError, match=r"synthesis\.b8\.conv1\.weight has shape \[4, 4, 1, 1\]"):
        load_network_pickle(sp.write_pickle(tmp_path, data, "shape.pkl"))


def test_a_non_square_pickle_loads_with_its_aspect(tmp_path, marker):
    """A 2:1 network (StyleGAN-Human's full-body shape) says its aspect in its constant input's
    shape: the loader builds the network of that shape, which renders what the network it was
    written from renders; a shape no network has is refused by name."""
    from dragwalk.models.stylegan2 import StyleGAN2Generator

    kw = sp.full_kwargs(z_dim=16, w_dim=16, img_resolution=32, mapping_kwargs={"num_layers": 2},
                        synthesis_kwargs={"channel_base": 256, "channel_max": 16})
    torch.manual_seed(3)
    source = StyleGAN2Generator(**{**kw, "synthesis_kwargs": {**kw["synthesis_kwargs"], "init_res": (4, 2)}})
    tensors = {k: v.clone() for k, v in source.state_dict().items()}
    for k in ("synthesis.b4.const", "mapping.w_avg"):
        tensors[k] = torch.randn(tensors[k].shape)                      # not the constructor's values
    source.load_state_dict(tensors)
    path = sp.write_pickle(tmp_path, sp.dumps({"G_ema": sp.generator_record(kw, tensors, sp.evil_source(marker))}), "portrait.pkl")
    model = load_network_pickle(path)
    assert model.image_size == (32, 16) and model.describe()["width"] == 16
    latent = source.sample(4, truncation=0.7)
    torch.testing.assert_close(model.render(model.sample(4, truncation=0.7)), source.render(latent), rtol=0, atol=1e-6)
    assert not marker.exists()
    bad = dict(tensors, **{"synthesis.b4.const": torch.randn(16, 4, 3)})
    path = sp.write_pickle(tmp_path, sp.dumps({"G_ema": sp.generator_record(kw, bad, sp.evil_source(marker))}), "odd.pkl")
    with pytest.raises(NetworkPickleError, match="init_res"):
        load_network_pickle(path)
