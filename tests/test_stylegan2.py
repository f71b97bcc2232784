"""StyleGAN2 behind the generator interface: spaces, truncation, layers, drag variables, SeFa map.

The model is a small StyleGAN2 with random weights read from an NVIDIA-structured pickle
(see ``stylegan_pickles``); the behaviour checked here does not depend on training.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import stylegan_pickles as sp  # noqa: E402

from dragwalk.models import Latent, Settings  # noqa: E402
from dragwalk.models.nvidia_pickle import build_generator, generator_record, read_network_pickle  # noqa: E402
from dragwalk.models.stylegan2 import StyleGAN2Generator  # noqa: E402
from dragwalk.models.stylegan2 import ops  # noqa: E402

KW = sp.full_kwargs(img_resolution=64, c_dim=4, mapping_kwargs=dict(num_layers=3),
                    synthesis_kwargs=dict(channel_base=512, channel_max=16, conv_clamp=256))


@pytest.fixture(scope="module")
def sg(tmp_path_factory):
    data, _ = sp.network_pickle(KW, tmp_path_factory.mktemp("sg") / "marker", keys=("G_ema",), seed=11)
    return build_generator(generator_record(read_network_pickle(data)), "test-sg64")


def test_describes_itself(sg):
    info = sg.describe()
    assert info["latent_spaces"] == ["z", "w", "w+"] and info["default_space"] == "w+"
    assert info["num_ws"] == 10 and info["latent_dim"] == 32
    assert [(l["name"], l["size"]) for l in info["layers"]] == [
        ("b4", 4), ("b8", 8), ("b16", 16), ("b32", 32), ("b64", 64), ("image", 64)]
    assert info["drag_modes"][0] == "w+:first6"


def test_default_feature_layer_follows_draggan():
    """Sixth block (b128) where it exists, like DragGAN; half resolution on smaller models."""
    tiny = dict(channel_base=1024, channel_max=4)
    assert StyleGAN2Generator(8, 0, 8, 1024, synthesis_kwargs=tiny).default_feature_layer == "b128"
    assert StyleGAN2Generator(8, 0, 8, 256, synthesis_kwargs=tiny).default_feature_layer == "b128"
    assert StyleGAN2Generator(8, 0, 8, 64, synthesis_kwargs=tiny).default_feature_layer == "b32"


def test_sampling_is_reproducible_and_spaces_agree(sg):
    z = sg.sample(3, space="z")
    assert torch.equal(z.code, sg.sample(3, space="z").code)
    w = sg.sample(3, space="w")
    ws = sg.sample(3)
    assert ws.space == "w+" and ws.code.shape == (1, 10, 32)
    with torch.no_grad():
        assert torch.allclose(sg.convert(z, "w").code, w.code, atol=1e-6)
        assert torch.allclose(sg.convert(z, "w+").code, ws.code, atol=1e-6)
    assert torch.equal(sg.convert(w, "w+").code, ws.code)
    assert torch.equal(sg.convert(ws, "w").code, w.code)
    edited = ws.code.clone()
    edited[:, 0] += 1
    with pytest.raises(ValueError, match="cannot convert a 'w\\+' latent to 'w'"):
        sg.convert(Latent("w+", edited), "w")
    assert not torch.equal(sg.sample(4).code, ws.code)
    batch = sg.sample_codes(5, seed=3, space="w")
    assert batch.code.shape == (5, 32) and torch.allclose(batch.code[:1], w.code, atol=1e-6)


def test_truncation_pulls_towards_w_avg_and_cutoff_limits_rows(sg):
    w_avg = sg.mapping.w_avg
    full = sg.sample(2, space="w").code
    half = sg.sample(2, truncation=0.5, space="w").code
    assert torch.allclose(half, w_avg + 0.5 * (full - w_avg), atol=1e-5)
    cut = sg.sample(2, truncation=0.0, settings=Settings(truncation_cutoff=4))
    ws = cut.code
    assert cut.settings.truncation_cutoff == 4 and sg.sample(2).settings.truncation_cutoff is None
    assert torch.allclose(ws[0, :4], w_avg.expand(4, -1), atol=1e-6)
    assert torch.allclose(ws[0, 4:], full.expand(6, -1), atol=1e-6)
    for bad in (0, 11):
        with pytest.raises(ValueError, match=f"truncation cutoff {bad} outside 1..10"):
            sg.sample(2, settings=Settings(truncation_cutoff=bad))


def test_images_and_features(sg):
    latent = sg.sample(1)
    out = sg.synthesize(latent, feature_layer="b16")
    assert out.image.shape == (1, 3, 64, 64) and out.features.shape == (1, 16, 16, 16)
    with torch.no_grad():
        raw = sg.synthesis(latent.code)
    assert torch.equal(out.image, raw.clamp(-1, 1))
    assert torch.equal(sg.render(latent), out.image)
    assert torch.equal(sg.synthesize(latent, feature_layer="image").features, out.image)
    with pytest.raises(ValueError, match="no layer named 'b128'"):
        sg.synthesize(latent, feature_layer="b128")
    with pytest.raises(ValueError, match=r"must be \[N, 10, 32\]"):
        sg.synthesize(Latent("w+", torch.zeros(1, 3, 32)))


def test_stop_at_feature_skips_later_blocks(sg):
    calls: list[str] = []
    hooks = [b.conv1.register_forward_hook(lambda m, i, o, n=n: calls.append(n)) for n, b in sg.synthesis.blocks()]
    try:
        out = sg.synthesize(sg.sample(1), feature_layer="b16", stop_at_feature=True)
    finally:
        for h in hooks:
            h.remove()
    assert out.image is None and out.features.shape == (1, 16, 16, 16)
    assert calls == ["b4", "b8", "b16"]


def test_noise_modes_and_offsets(sg):
    latent = sg.sample(6)
    const = sg.render(latent)
    assert torch.equal(const, sg.render(latent))
    for block in ("b8", "b32"):          # the fixture's noise strengths are random, never zero
        assert getattr(sg.synthesis, block).conv1.noise_strength.abs() > 1e-3
    a = sg.render(latent.with_settings(Settings(class_index=0, noise_mode="random", noise_seed=1)))
    b = sg.render(latent.with_settings(Settings(class_index=0, noise_mode="random", noise_seed=2)))
    assert (a - b).abs().max() > 1e-3 and (a - const).abs().max() > 1e-3
    again = sg.render(latent.with_settings(Settings(class_index=0, noise_mode="random", noise_seed=1)))
    assert torch.equal(a, again)                       # random with a seed is reproducible
    none = sg.render(latent.with_settings(Settings(class_index=0, noise_mode="none")))
    assert (none - const).abs().max() > 1e-3 and (none - a).abs().max() > 1e-3
    # the independent reference: the network with its const noise maps replaced by the seeded draws
    from dragwalk.models.stylegan2.layers import seeded_noise
    layers = [l for _, blk in sg.synthesis.blocks() for l in (getattr(blk, "conv0", None), blk.conv1) if l]
    saved = [l.noise_const.clone() for l in layers]
    try:
        for k, layer in enumerate(layers):
            gen = torch.Generator().manual_seed(1 * 64 + k)
            layer.noise_const.copy_(torch.randn(*layer.noise_const.shape, generator=gen))
        reference = sg.render(latent)
    finally:
        for layer, kept in zip(layers, saved):
            layer.noise_const.copy_(kept)
    assert torch.equal(reference, a) and seeded_noise(1, 0, (2, 2)).shape == (2, 2)
    assert torch.equal(sg.render(latent), const)        # nothing of that stuck to the shared model
    info = sg.layer("b16")
    zero = torch.zeros(1, info.channels, info.size, info.size)
    assert torch.equal(sg.render(Latent("w+", latent.code, {"b16": zero})), const)
    bumped = sg.render(Latent("w+", latent.code, {"b16": zero + 0.5}))
    assert (bumped - const).abs().mean() > 1e-3
    with pytest.raises(ValueError, match="noise_mode must be one of"):
        Settings.from_dict({"noise_mode": "loud"})
    with pytest.raises(ValueError, match="noise_seed must be in"):
        Settings.from_dict({"noise_mode": "random", "noise_seed": -1})
    with pytest.raises(ValueError, match="unknown generator setting"):
        Settings.from_dict({"noise": "random"})


def test_class_label_changes_the_image(sg):
    base = sg.sample(2)
    other = sg.sample(2, class_index=3)
    assert base.settings.class_index == 0 and other.settings.class_index == 3
    assert (base.code - other.code).abs().max() > 1e-3
    assert torch.equal(sg.sample(2, settings=Settings(class_index=3)).code, other.code)
    assert torch.equal(sg.sample(2).code, base.code)         # no class stuck to the shared model
    # the label reaches the mapping: z of class 3 converts to class 3's w, whatever was sampled before
    z3 = sg.sample(2, space="z", settings=Settings(class_index=3))
    with torch.no_grad():
        assert torch.allclose(sg.convert(z3, "w+").code, other.code, atol=1e-6)
    with pytest.raises(ValueError, match="class index 4 outside 0..3"):
        sg.sample(2, class_index=4)
    with pytest.raises(ValueError, match="class index 4 outside 0..3"):
        sg.render(base.with_settings(Settings(class_index=4)))
    plain = StyleGAN2Generator(8, 0, 8, 8, synthesis_kwargs=dict(channel_base=32, channel_max=4))
    with pytest.raises(ValueError, match="unconditional"):
        plain.sample(1, class_index=1)


def test_drag_variables_first6_train_only_the_first_rows(sg):
    latent = sg.sample(7)
    variables = sg.drag_variables(latent)
    (head,) = variables.params
    assert head.shape == (1, 6, 32) and head.requires_grad
    rebuilt = variables.latent()
    assert rebuilt.space == "w+" and torch.equal(rebuilt.code, latent.code)
    target = sg.synthesize(latent, "b16", stop_at_feature=True).features.roll(2, dims=3)
    opt = torch.optim.Adam(variables.params, lr=0.02)
    losses = []
    for _ in range(8):
        feats = sg.synthesize(variables.latent(), "b16", stop_at_feature=True).features
        loss = (feats - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    final = variables.latent().code
    assert torch.equal(final[:, 6:], latent.code[:, 6:])
    assert (final[:, :6] - latent.code[:, :6]).abs().max() > 1e-3
    assert all(p.grad is None for p in sg.parameters())  # the network itself stays frozen
    start = sg.sample(7, space="w")
    w_vars = sg.drag_variables(start, "w")
    # DragGAN's "w" mode: one vector shared by the first six rows; the other rows stay at the start
    assert w_vars.params[0].shape == (1, 32) and w_vars.latent().space == "w+"
    with torch.no_grad():
        w_vars.params[0].add_(0.5)
    code = w_vars.latent().code
    assert torch.allclose(code[:, :6], code[:, :1].expand(-1, 6, -1))
    assert torch.equal(code[:, 6:], start.code[:, None].expand(-1, sg.num_ws - 6, -1))
    assert not torch.equal(code[:, 0], start.code)
    with pytest.raises(ValueError, match="unknown drag mode"):
        sg.drag_variables(latent, "z+b1")


def test_first_linear_map_stacks_style_affines(sg):
    block8 = sg.synthesis.b8
    m = sg.first_linear_map([1, 2])  # rows of b8.conv0 and b8.conv1
    expected = torch.cat([block8.conv0.affine.weight.T, block8.conv1.affine.weight.T], dim=1) / 32 ** 0.5
    assert torch.allclose(m, expected)
    # 9 conv rows (input widths 16 x 8, then 8 for b64.conv1) + the last ToRGB row (8)
    assert sg.first_linear_map().shape == (32, 16 * 8 + 8 + 8)
    assert sg.first_linear_map([9]).shape == (32, 8)
    with pytest.raises(ValueError, match="outside"):
        sg.first_linear_map([10])


def test_upfirdn_matches_its_definition():
    """Zero insertion, padding and FIR filtering written out sample by sample."""
    x = torch.randn(1, 2, 3, 4, generator=torch.Generator().manual_seed(0))
    f = ops.setup_filter([1, 2, 5, 1])  # asymmetric: catches a missing flip
    got = ops.upfirdn2d(x, f, up=2, padding=(2, 1, 1, 2), gain=4)
    up = torch.zeros(1, 2, 6, 8)
    up[:, :, ::2, ::2] = x
    pad = torch.nn.functional.pad(up, [2, 1, 1, 2])
    out = torch.zeros(1, 2, pad.shape[2] - 3, pad.shape[3] - 3)
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            for a in range(4):
                for b in range(4):  # a true convolution: the filter runs backwards
                    out[:, :, i, j] += 4 * f[3 - a, 3 - b] * pad[:, :, i + a, j + b]
    assert got.shape == out.shape and torch.allclose(got, out, atol=1e-6)
    plain = ops.upfirdn2d(x, f, padding=(1, 2, 2, 1))
    ref = torch.nn.functional.conv2d(torch.nn.functional.pad(x, [1, 2, 2, 1]),
                                     f.flip([0, 1])[None, None].repeat(2, 1, 1, 1), groups=2)
    assert torch.allclose(plain, ref, atol=1e-6)
    flat = ops.upsample2d(torch.ones(1, 1, 8, 8), ops.setup_filter([1, 3, 3, 1]))
    assert torch.allclose(flat[:, :, 2:-2, 2:-2], torch.ones(1, 1, 12, 12))  # keeps a flat image flat


def test_bias_act_gain_and_clamp():
    x = torch.tensor([[-2.0, 0.5, 300.0]]).reshape(1, 3, 1, 1)
    y = ops.bias_act(x, torch.tensor([0.0, 0.5, 0.0]), act="lrelu", clamp=256).flatten()
    assert torch.allclose(y, torch.tensor([-0.4 * 2 ** 0.5, 2 ** 0.5, 256.0]))
    with pytest.raises(ValueError, match="unsupported activation"):
        ops.bias_act(x, act="swish")


def test_fp16_blocks_compute_in_half_precision_close_to_fp32(tmp_path):
    """The half-precision path (used on CUDA) runs the flagged blocks in fp16 and stays close."""
    kw = sp.full_kwargs(img_resolution=32, synthesis_kwargs=dict(channel_base=512, channel_max=16,
                                                                 num_fp16_res=2, conv_clamp=256))
    data, _ = sp.network_pickle(kw, tmp_path / "marker", keys=("G_ema",))
    model = build_generator(generator_record(read_network_pickle(data)), "fp16")
    assert [n for n, b in model.synthesis.blocks() if b.use_fp16] == ["b16", "b32"]
    ws = model.sample(1).code
    dtypes = {}
    hooks = [b.conv1.register_forward_hook(lambda m, i, o, n=n: dtypes.__setitem__(n, o.dtype))
             for n, b in model.synthesis.blocks()]
    try:
        with torch.no_grad():
            full = model.synthesis(ws)
            half = model.synthesis(ws, fp16=True)
    finally:
        for h in hooks:
            h.remove()
    assert dtypes == {"b4": torch.float32, "b8": torch.float32, "b16": torch.float16, "b32": torch.float16}
    assert half.dtype == torch.float32
    assert (half - full).abs().max() < 0.02 * full.abs().max()
    assert (half - full).abs().max() > 0  # it really ran in another precision


@pytest.mark.parametrize("architecture", ["skip", "orig", "resnet"])
def test_a_cpu_frame_runs_channels_last_and_renders_the_reference_image(tmp_path, monkeypatch, architecture):
    """Frames (no autograd) on the CPU run channels-last, for speed: the image must still be the
    independent reference's (written from the format, tests/stylegan_pickles.py), in every
    architecture, and ToRGB's 1x1 convolution, a product over the pixels there, must be
    PyTorch's convolution."""
    from dragwalk.models.stylegan2 import generator as sg2

    kw = sp.full_kwargs(img_resolution=32, synthesis_kwargs=dict(channel_base=512, channel_max=32,
                                                                 architecture=architecture))
    data, tensors = sp.network_pickle(kw, tmp_path / "marker", keys=("G_ema",), seed=5)
    model = build_generator(generator_record(read_network_pickle(data)), "cl-frame")
    latent = model.sample(3)
    layouts = []
    last = model.synthesis.blocks()[-1][1]
    hook = last.torgb.register_forward_pre_hook(lambda _, args: layouts.append(ops.channels_last(args[0])))
    with torch.no_grad():
        frame = model.render(latent)
        monkeypatch.setattr(sg2, "FRAMES_CHANNELS_LAST", False)
        plain = model.render(latent)
    hook.remove()
    assert layouts == [True, False]
    reference = sp.reference_synthesis(tensors, kw, model.ws(latent)).clamp(-1, 1)
    assert reference.std() > 0.05
    assert (frame - reference).abs().max() < 1e-3
    torch.testing.assert_close(frame, plain, rtol=0, atol=1e-5)
    # the 1x1 product over a channels-last map against PyTorch's convolution
    x = torch.randn(1, 8, 5, 7).contiguous(memory_format=torch.channels_last)
    weight, styles = torch.randn(3, 8, 1, 1), torch.rand(1, 8) + 0.5
    expected = torch.nn.functional.conv2d(x.contiguous(), weight * styles.reshape(1, 8, 1, 1))
    torch.testing.assert_close(ops.modulated_conv2d(x, weight, styles, demodulate=False), expected,
                               rtol=1e-5, atol=1e-5)
