"""A CPU frame computes its large top blocks a band of rows at a time (``models/stylegan2/bands.py``)
to bound its memory: the image must be the one the whole pass draws, and the one the format's
independent reference draws (``tests/stylegan_pickles.py``), at every band height, with any
noise and offsets, on square and portrait networks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import stylegan_pickles as sp  # noqa: E402

from dragwalk.models import Settings  # noqa: E402
from dragwalk.models.nvidia_pickle import build_generator, generator_record, read_network_pickle  # noqa: E402
from dragwalk.models.stylegan2 import StyleGAN2Generator, bands  # noqa: E402
from dragwalk.models.stylegan2 import generator as sg2  # noqa: E402


def _model(tmp_path: Path, seed: int = 5):
    """A 64 px network from a pickle, with noise that shows where it is read (in the model and
    in the tensors the reference reads)."""
    kw = sp.full_kwargs(img_resolution=64, synthesis_kwargs=dict(channel_base=1024, channel_max=16, conv_clamp=256))
    data, tensors = sp.network_pickle(kw, tmp_path / "marker", keys=("G_ema",), seed=seed)
    model = build_generator(generator_record(read_network_pickle(data)), "bands")
    for name, module in model.synthesis.named_modules():
        if hasattr(module, "noise_strength"):
            module.noise_strength.data.fill_(0.5)
            tensors[f"synthesis.{name}.noise_strength"] = torch.tensor(0.5)
    return model, kw, tensors


def _banded_and_whole(model, latent, monkeypatch, rows: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """The frame in bands of ``rows`` from the second block up, and the whole pass's."""
    monkeypatch.setattr(bands, "BAND_BYTES", 1)
    monkeypatch.setattr(bands, "BAND_ROWS", rows)
    heights: list[int] = []
    hook = model.synthesis.blocks()[-1][1].torgb.register_forward_pre_hook(
        lambda _, args: heights.append(args[0].shape[-2]))
    with torch.no_grad():
        banded = model.render(latent)
        monkeypatch.setattr(sg2, "BANDED_FRAMES", False)
        whole = model.render(latent)
    hook.remove()
    monkeypatch.setattr(sg2, "BANDED_FRAMES", True)
    return banded, whole, heights


@pytest.mark.parametrize("rows", [8, 12, 64])
def test_a_banded_frame_is_the_whole_pass_and_the_reference_image(tmp_path, monkeypatch, rows):
    model, kw, tensors = _model(tmp_path)
    latent = model.sample(3)
    banded, whole, heights = _banded_and_whole(model, latent, monkeypatch, rows)
    assert heights[:-1] == [min(rows, 64 - top) for top in range(0, 64, rows)]   # it really ran in bands
    assert heights[-1] == 64                                                       # and the whole pass did not
    torch.testing.assert_close(banded, whole, rtol=0, atol=1e-5)
    reference = sp.reference_synthesis(tensors, kw, model.ws(latent)).clamp(-1, 1)
    assert reference.std() > 0.05
    assert (banded - reference).abs().max() < 1e-3


def test_bands_read_seeded_noise_and_offsets_where_the_whole_pass_does(tmp_path, monkeypatch):
    """Random noise is drawn whole and read at each band's rows; an offset on a banded block's
    activation or skip image lands on the same rows."""
    model, _, _ = _model(tmp_path)
    latent = model.sample(4, settings=Settings(noise_mode="random", noise_seed=9))
    torch.manual_seed(0)
    for name in ("b16", "b64"):
        c, h, w = model.offset_shape(name)
        latent.offsets[name] = 0.3 * torch.randn(1, c, h, w)
        c, h, w = model.offset_shape(name + ":rgb")
        latent.offsets[name + ":rgb"] = 0.3 * torch.randn(1, c, h, w)
    banded, whole, _ = _banded_and_whole(model, latent, monkeypatch, 12)
    torch.testing.assert_close(banded, whole, rtol=0, atol=1e-5)
    plain, _, _ = _banded_and_whole(model, model.sample(4, settings=Settings(noise_mode="random", noise_seed=9)),
                                    monkeypatch, 12)
    assert (plain - banded).abs().max() > 0.05          # the offsets showed


def test_a_portrait_network_bands_its_rows(monkeypatch):
    torch.manual_seed(6)
    model = StyleGAN2Generator(z_dim=16, w_dim=16, img_resolution=64, mapping_kwargs={"num_layers": 2},
                               synthesis_kwargs={"channel_base": 512, "channel_max": 16, "init_res": (4, 2)}).eval()
    for module in model.synthesis.modules():
        if hasattr(module, "noise_strength"):
            module.noise_strength.data.fill_(0.5)
    banded, whole, heights = _banded_and_whole(model, model.sample(2), monkeypatch, 24)
    assert banded.shape[-2:] == (64, 32) and heights[:-1] == [24, 24, 16]
    torch.testing.assert_close(banded, whole, rtol=0, atol=1e-5)


def test_only_large_blocks_of_a_cpu_frame_run_in_bands(tmp_path):
    """The default threshold picks the blocks whose maps are large; autograd passes (a drag step,
    an inversion) and passes that want a banded block's whole map never band."""
    model, _, _ = _model(tmp_path)
    stages, _, _ = model._stages(model.sample(1))
    assert model._banded_from(stages, -1) is None                   # a 64 px test model: nothing large
    blocks = [block for (_, block), _ in stages]
    sizes = [block.out_channels * bands.block_hw(block)[0] * bands.block_hw(block)[1] * 4 for block in blocks]
    assert bands.first_banded(blocks) is None and max(sizes) < bands.BAND_BYTES


def test_autograd_and_feature_passes_do_not_band(tmp_path, monkeypatch):
    model, _, _ = _model(tmp_path)
    monkeypatch.setattr(bands, "BAND_BYTES", 1)
    stages, _, _ = model._stages(model.sample(1))
    with torch.no_grad():
        assert model._banded_from(stages, -1) == 1
        assert model._banded_from(stages, 2) == 3                      # above a wanted map only
        assert model._banded_from(stages, len(stages) - 1) is None
    with torch.enable_grad():
        assert model._banded_from(stages, -1) is None
