"""CPU frames compute their wide 3x3 convolutions by Winograd's F(4x4, 3x3)
(``models/stylegan2/winograd.py``): the convolution must be the direct one (checked against
scipy in float64), on any map size and however the tiles are chunked, and a frame that takes
it must still draw the format's reference image."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.signal import correlate2d

sys.path.insert(0, str(Path(__file__).parent))
import stylegan_pickles as sp  # noqa: E402

from dragwalk.models.nvidia_pickle import build_generator, generator_record, read_network_pickle  # noqa: E402
from dragwalk.models.stylegan2 import ops, winograd  # noqa: E402


def _scipy_conv(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``F.conv2d(x, w, padding=1)`` for one map, written with scipy: each output channel sums
    the cross-correlations of the input channels with their kernels, zero-padded ('same')."""
    out = np.zeros((w.shape[0],) + x.shape[1:])
    for o in range(w.shape[0]):
        for i in range(w.shape[1]):
            out[o] += correlate2d(x[i], w[o, i], mode="same", boundary="fill")
    return out


@pytest.mark.parametrize("hw", [(8, 8), (9, 13), (4, 5), (17, 6)])
@pytest.mark.parametrize("chunk", [1, 64])
def test_winograd_convolution_is_the_direct_one(hw, chunk, monkeypatch):
    monkeypatch.setattr(winograd, "CHUNK_TILES", chunk)
    gen = torch.Generator().manual_seed(hw[0] * 31 + hw[1])
    x = torch.randn(1, 6, *hw, generator=gen).contiguous(memory_format=torch.channels_last)
    w = torch.randn(5, 6, 3, 3, generator=gen)
    got = winograd.conv3x3(x, winograd.transform_weight(w))
    want = _scipy_conv(x[0].double().numpy(), w.double().numpy())
    assert got.shape == (1, 5, *hw) and got.is_contiguous(memory_format=torch.channels_last) == (hw[1] % 4 == 0)
    scale = float(np.abs(want).max())
    np.testing.assert_allclose(got[0].double().numpy(), want, rtol=0, atol=2e-5 * scale)
    # and the float32 direct convolution agrees as closely: F(4x4, 3x3) costs little precision
    direct = F.conv2d(x, w, padding=1)
    assert float((got - direct).abs().max()) < 2e-5 * scale


def test_the_kernel_transform_maps_a_delta_to_its_interpolation():
    """G g G^T of a kernel with one tap is the outer product of two columns of G: the
    transform is separable, as the construction says."""
    g = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    g[0, 0, 1, 2] = 1
    u = winograd.transform_weight(g).reshape(6, 6)
    columns = torch.tensor(winograd._G, dtype=torch.float64)
    torch.testing.assert_close(u.double(), torch.outer(columns[:, 1], columns[:, 2]), rtol=0, atol=1e-7)


def test_only_a_frames_wide_maps_take_it():
    x = torch.randn(1, 128, 16, 16).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert winograd.applies(x, 128)
        assert not winograd.applies(x, 64)                                  # too few channels
        assert not winograd.applies(x[:, :, :8, :8], 128)                   # too small a map
        assert not winograd.applies(x.contiguous(), 128)                    # not a frame's layout
        assert not winograd.applies(torch.cat([x, x]), 128)                 # a batch
    assert not winograd.applies(x, 128)                                     # autograd on


def test_a_modulated_convolution_in_a_frame_takes_it_and_keeps_its_numbers(monkeypatch):
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 8)
    monkeypatch.setattr(winograd, "MIN_CELLS", 16)
    calls = []
    original = winograd.conv3x3
    monkeypatch.setattr(winograd, "conv3x3", lambda x, u: calls.append(x.shape) or original(x, u))
    torch.manual_seed(3)
    x = torch.randn(1, 8, 12, 12).contiguous(memory_format=torch.channels_last)
    weight, styles, noise = torch.randn(16, 8, 3, 3), torch.rand(1, 8) + 0.5, torch.randn(12, 12)
    with torch.no_grad():
        got = ops.modulated_conv2d(x, weight, styles, noise=noise)
        assert calls == [(1, 8, 12, 12)]
        monkeypatch.setattr(winograd, "ENABLED", False)
        direct = ops.modulated_conv2d(x, weight, styles, noise=noise)
    assert len(calls) == 1
    # the paper's per-sample form: modulate, demodulate, convolve
    w = weight * styles.reshape(1, 8, 1, 1)
    w = w * (w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).rsqrt()
    want = F.conv2d(x.double(), w.double(), padding=1) + noise.double()
    torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-4)
    torch.testing.assert_close(got, direct, rtol=0, atol=1e-4)


def test_a_frame_with_winograd_draws_the_reference_image(tmp_path, monkeypatch):
    kw = sp.full_kwargs(img_resolution=32, synthesis_kwargs=dict(channel_base=512, channel_max=32))
    data, tensors = sp.network_pickle(kw, tmp_path / "marker", keys=("G_ema",), seed=8)
    model = build_generator(generator_record(read_network_pickle(data)), "winograd")
    monkeypatch.setattr(winograd, "MIN_CHANNELS", 16)
    monkeypatch.setattr(winograd, "MIN_CELLS", 16)
    calls = []
    original = winograd.conv3x3
    monkeypatch.setattr(winograd, "conv3x3", lambda x, u: calls.append(x.shape[1:]) or original(x, u))
    latent = model.sample(2)
    with torch.no_grad():
        frame = model.render(latent)
        monkeypatch.setattr(winograd, "ENABLED", False)
        direct = model.render(latent)
    assert len(calls) >= 3                                                  # b8, b16, b32 conv1
    reference = sp.reference_synthesis(tensors, kw, model.ws(latent)).clamp(-1, 1)
    assert reference.std() > 0.05
    assert (frame - reference).abs().max() < 1e-3
    torch.testing.assert_close(frame, direct, rtol=0, atol=1e-4)
