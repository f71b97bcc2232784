"""A drag step computes only the feature cells it reads (``Generator.synthesize_window``), and the
modulated convolution may put the styles on the activations: both must give the numbers the
whole pass gives, so a windowed drag ends where a whole-map drag ends."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from dragwalk.drag import DragConfig, DragRun
from dragwalk.models.base import Settings
from dragwalk.models.stylegan2 import StyleGAN2Generator
from dragwalk.models.stylegan2.ops import conv2d_up2, modulated_conv2d, setup_filter
from dragwalk.models.window import Window, conv_input, crop, feature_window, up_conv_input, zero_outside


@pytest.fixture(scope="module")
def sg128() -> StyleGAN2Generator:
    """A narrow 128 px StyleGAN2 (features at b64): windows span several blocks. Visible noise,
    so a noise map read at the wrong cells shows."""
    torch.manual_seed(0)
    g = StyleGAN2Generator(z_dim=32, w_dim=32, img_resolution=128, mapping_kwargs={"num_layers": 2},
                           synthesis_kwargs={"channel_base": 512, "channel_max": 32}).eval().requires_grad_(False)
    for module in g.synthesis.modules():
        if hasattr(module, "noise_strength"):
            module.noise_strength.data.fill_(0.5)
    return g


def _part(out: torch.Tensor, at: Window, box: Window) -> torch.Tensor:
    """Cells ``box`` of ``out``, a map that covers ``at`` (zeros where it does not reach)."""
    return crop(out, Window(box.top - at.top, box.bottom - at.top, box.left - at.left, box.right - at.left))


def _random_boxes(n: int, hw: tuple[int, int], seed: int, longest: int = 20):
    rng = random.Random(seed)
    for _ in range(n):
        top, left = rng.randint(-3, hw[0] - 1), rng.randint(-3, hw[1] - 1)
        yield Window(top, max(top + rng.randint(1, longest), 1), left, max(left + rng.randint(1, longest), 1))


@pytest.mark.parametrize("taps", [[1, 3, 3, 1], [1, 1], [1, 2, 1], [1, 3, 3, 3, 3, 1]])
def test_an_upsampling_convolution_reads_exactly_the_window_it_is_given(taps):
    """On the input part :func:`up_conv_input` names (zeros outside the map), the upsampling
    convolution gives the numbers it gives on the whole input, in the box; one row fewer on any
    side does not."""
    torch.manual_seed(1)
    f = setup_filter(taps)
    x, w = torch.randn(1, 3, 9, 7), torch.randn(4, 3, 3, 3)
    whole = conv2d_up2(x, w, f)
    for box in _random_boxes(60, (18, 14), seed=len(taps)):
        read = up_conv_input(box, 3, tuple(f.shape))
        out, at = conv2d_up2(crop(x, read), w, f), read.doubled()
        got = zero_outside(_part(out, at, box), box, (18, 14))
        torch.testing.assert_close(got, crop(whole, box), rtol=0, atol=1e-5)
    box = Window(6, 10, 5, 9)                    # inside, far from the edges
    read = up_conv_input(box, 3, tuple(f.shape))
    for short in (Window(read.top + 1, read.bottom, read.left, read.right),
                  Window(read.top, read.bottom - 1, read.left, read.right),
                  Window(read.top, read.bottom, read.left + 1, read.right),
                  Window(read.top, read.bottom, read.left, read.right - 1)):
        got = _part(conv2d_up2(crop(x, short), w, f), short.doubled(), box)
        assert not torch.allclose(got, crop(whole, box), atol=1e-5)
    same = F.conv2d(x, w, padding=1)
    read = conv_input(Window(2, 5, 0, 4), 3)
    torch.testing.assert_close(F.conv2d(crop(x, read), w), crop(same, Window(2, 5, 0, 4)), rtol=0, atol=1e-5)


def test_a_read_lands_inside_the_feature_window_of_its_box():
    """Bilinear reads at the box's corners (grid_sample, the drag's own reader) touch only cells
    inside :func:`feature_window`: a map that is zero outside the window reads the same there."""
    from dragwalk.drag import features as fx

    torch.manual_seed(2)
    feats = torch.randn(1, 5, 32, 32)
    for x0, y0, x1, y1 in [(3.2, 7.9, 20.5, 11.0), (0.0, 0.0, 4.0, 4.0), (60.1, 55.5, 63.0, 63.0), (31.5, 31.5, 31.5, 31.5)]:
        win = feature_window((x0, y0, x1, y1), (64, 64), (32, 32))
        only = torch.zeros_like(feats)
        only[..., win.top:win.bottom, win.left:win.right] = feats[..., win.top:win.bottom, win.left:win.right]
        xs, ys = torch.linspace(x0, x1, 9), torch.linspace(y0, y1, 9)
        points = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(-1, 2)
        torch.testing.assert_close(fx.sample(only, points, 64), fx.sample(feats, points, 64), rtol=0, atol=0)


@pytest.mark.parametrize("settings", [Settings(), Settings(noise_mode="random", noise_seed=3)], ids=["const", "seeded"])
def test_windowed_features_are_the_whole_pass_features_there(sg128, settings):
    """Inside the window: the whole pass's features (with an offset on a block below, and the
    noise of the latent's settings); outside: zeros, i.e. those cells were never computed. The
    gradient of a loss on the window reaches w+ as through the whole pass."""
    g, layer = sg128, sg128.default_feature_layer
    hw = g.layer(layer).hw
    latent = g.convert(g.sample(0, settings=settings), "w+")
    latent.offsets["b32"] = torch.randn(1, g.layer("b32").channels, 32, 32) * 0.5
    whole = g.synthesize(latent, layer, stop_at_feature=True).features
    windowed = 0
    for window in _random_boxes(12, hw, seed=5):
        got = g.synthesize_window(latent, layer, window).features
        box = window.clipped(hw)
        torch.testing.assert_close(crop(got, box), crop(whole, box), rtol=0, atol=1e-5)
        outside = torch.ones(hw, dtype=torch.bool)
        outside[box.top:box.bottom, box.left:box.right] = False
        windowed += bool(got[..., outside].abs().max() == 0)
    assert windowed == 12

    window = Window(20, 34, 10, 30)
    weights = torch.linspace(-1, 1, 20)

    def gradient(run):
        ws = latent.code.clone().requires_grad_(True)
        feats = run(latent.derive(ws))
        (feats[..., 20:34, 10:30] * weights).sum().backward()
        return ws.grad

    full = gradient(lambda lat: g.synthesize(lat, layer, stop_at_feature=True).features)
    part = gradient(lambda lat: g.synthesize_window(lat, layer, window).features)
    torch.testing.assert_close(part, full, rtol=1e-4, atol=1e-6 * float(full.abs().max()))


def test_a_windowed_drag_ends_where_a_whole_map_drag_ends(sg128, monkeypatch):
    """DragGAN on the CPU computes only the window its tracking and loss read
    (:meth:`DragGAN.reads`); the same drag on whole maps tracks the same points and ends on the
    same latent. A window missing part of what the method reads would feed it zeros there."""
    g = sg128
    start = g.convert(g.sample(4), "w+")
    handles, targets = [[40.0, 50.0], [90.0, 70.0]], [[52.0, 44.0], [84.0, 80.0]]
    config = DragConfig(method="draggan", max_steps=6, lr=0.01, params={"r2": 8})
    windowed = DragRun(g, start, handles, targets, config=config)
    assert windowed.window() is not None
    steps_a = [windowed.step() for _ in range(6)]
    monkeypatch.setattr(g, "computes_windows", False)
    whole = DragRun(g, start, handles, targets, config=config)
    assert whole.window() is None
    steps_b = [whole.step() for _ in range(6)]
    assert max(abs(a - b) for sa, sb in zip(steps_a, steps_b) for p, q in zip(sa.handles, sb.handles)
               for a, b in zip(p, q)) < 1e-3
    moved = float((whole.latent.code - start.code).abs().max())
    assert moved > 1e-3
    torch.testing.assert_close(windowed.latent.code, whole.latent.code, rtol=0, atol=1e-4 * moved)


@pytest.mark.parametrize("method, params", [("draggan", {}), ("draggan", {"smooth": 1, "patch": 4, "r2": 10}),
                                            ("template", {"r1": 8}), ("freedrag", {"sub_steps": 1})],
                         ids=["draggan", "draggan-blur-patch", "template", "freedrag-line-search"])
def test_every_read_of_a_step_sees_the_whole_pass_values(sg128, monkeypatch, method, params):
    """Every feature position a step's tracking and loss read (recorded from
    ``features.sample_each``, which ``features.sample`` calls) reads the same numbers from the run's windowed map as from the whole
    map, after the feature blur: the method's box (:meth:`DragGAN.reads`, which Template and the
    warp's refinement inherit; FreeDrag's own, with a line search in this step) holds its reads,
    and the run's window holds that box's cells and the blur's reach."""
    from dragwalk.drag import features as fx

    g = sg128
    run = DragRun(g, g.convert(g.sample(6), "w+"), [[40.0, 50.0], [100.0, 90.0]], [[60.0, 41.0], [93.0, 99.0]],
                  config=DragConfig(method=method, lr=0.01, params=params))
    run.step()
    assert not run.done
    latent, smooth = run.variables.latent().detach(), int(run.method.values["smooth"])
    whole = fx.binomial_blur(g.synthesize(latent, run.feature_layer, stop_at_feature=True).features, smooth)
    part = fx.binomial_blur(g.synthesize_window(latent, run.feature_layer, run.window()).features, smooth)
    assert float((part == 0).float().mean()) > 0.3          # much of the map was never computed
    reads, sample_each = [], fx.sample_each              # every read, fx.sample's too, goes through it
    monkeypatch.setattr(fx, "sample_each", lambda f, points, res: reads.append(points.detach())
                        or sample_each(f, points, res))
    handles, targets = run._handles.clone(), run._targets
    box = run.method.reads(handles, targets)          # before tracking moves the method's state
    moved = run.method.track(whole, handles, targets)
    run.method.loss(whole, moved, targets, torch.ones(2, dtype=torch.bool))
    assert len(reads) >= 3
    inside = torch.cat([p.reshape(-1, 2) for p in reads])
    assert box[0] <= float(inside[:, 0].min()) and float(inside[:, 0].max()) <= box[2]
    assert box[1] <= float(inside[:, 1].min()) and float(inside[:, 1].max()) <= box[3]
    for points in reads:
        torch.testing.assert_close(sample_each(part, points, 128), sample_each(whole, points, 128), rtol=0, atol=1e-5)


def test_no_window_where_the_step_reads_the_whole_map(sg128):
    """The mask term compares every cell with the first frame, so a masked drag computes the
    whole map; so does a drag whose method does not say where it reads. Features read from the
    image itself take the whole pass, window or not."""
    g = sg128
    start = g.convert(g.sample(4), "w+")
    mask = torch.zeros(128, 128)
    mask[30:70, 30:70] = 1
    masked = DragRun(g, start, [[40.0, 50.0]], [[52.0, 44.0]], mask=mask, config=DragConfig(method="draggan"))
    assert masked.window() is None
    plain = DragRun(g, start, [[40.0, 50.0]], [[52.0, 44.0]], config=DragConfig(method="draggan"))
    assert plain.window() is not None
    plain.method.reads = lambda handles, targets: None          # a method that cannot say
    assert plain.window() is None
    on_image = DragRun(g, start, [[40.0, 50.0]], [[52.0, 44.0]],
                       config=DragConfig(method="draggan", feature_layer="image"))
    assert on_image.window() is not None and on_image.step(render=True).image is not None


@pytest.mark.parametrize("up", [False, True])
def test_styles_on_the_activations_are_styles_on_the_weights(up):
    """Small maps take the activation form of the modulated convolution (styles scale the input,
    demodulation scales the output); it must equal the paper's form, written here per sample:
    kernel times styles, each output kernel normalised, then the convolution."""
    torch.manual_seed(3)
    n, cin, cout, side = 3, 16, 8, 5                 # 25 cells < 8 * 9: the activation form
    x, weight = torch.randn(n, cin, side, side), torch.randn(cout, cin, 3, 3)
    styles, f = torch.randn(n, cin).requires_grad_(True), setup_filter([1, 3, 3, 1])
    got = modulated_conv2d(x, weight, styles, demodulate=True, up=up, f=f)
    rows = []
    for i in range(n):
        w = weight * styles[i].reshape(1, cin, 1, 1)
        w = w / (w.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        rows.append(conv2d_up2(x[i:i + 1], w, f) if up else F.conv2d(x[i:i + 1], w, padding=1))
    want = torch.cat(rows)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    g1, = torch.autograd.grad((got * want.detach()).sum(), styles)
    g2, = torch.autograd.grad((want * want.detach()).sum(), styles)
    torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-5)


def test_a_weight_changed_in_place_is_read_again(sg128):
    """Forms of a weight made once (its per-channel energy, its transposed layout) follow an
    in-place change of that weight, as loading new weights into a network does."""
    import copy

    g = copy.deepcopy(sg128)
    layer = g.synthesis.b16.conv0
    x, w = torch.randn(1, layer.weight.shape[1], 8, 8), torch.randn(1, 32)
    before = layer(x, w)
    with torch.no_grad():
        layer.weight.mul_(-2.0).add_(0.3)
    fresh = copy.deepcopy(layer)          # a new weight tensor: nothing derived from it is held
    torch.testing.assert_close(layer(x, w), fresh(x, w), rtol=0, atol=1e-6)
    assert not torch.allclose(layer(x, w), before, atol=1e-3)


def test_windowed_runs_are_not_batched(sg128):
    """A windowed step alone costs a fraction of a whole-map pass shared by a batch, so such runs
    have no batch key (the server's scheduler steps them alone) and ``step_together`` steps them
    one after the other: exactly what stepping each does."""
    from dragwalk.drag.batch import batch_key, step_together

    g = sg128
    make = lambda seed: DragRun(g, g.convert(g.sample(seed), "w+"), [[40.0, 50.0]], [[52.0, 44.0]],
                                config=DragConfig(method="draggan", lr=0.01))
    together, alone = [make(1), make(2)], [make(1), make(2)]
    assert [batch_key(run) for run in together] == [None, None]
    for _ in range(2):
        step_together(together, render=True)
        for run in alone:
            run.step(render=True)
    for a, b in zip(together, alone):
        assert torch.equal(a.latent.code, b.latent.code) and a.handles == b.handles


def test_weight_forms_made_in_inference_mode_serve_a_drag_after():
    """A first image rendered under ``torch.inference_mode`` (as a caller of the Python API may)
    makes the weights' derived forms; a drag's autograd must still be able to save them."""
    torch.manual_seed(7)
    g = StyleGAN2Generator(z_dim=32, w_dim=32, img_resolution=64, mapping_kwargs={"num_layers": 2},
                           synthesis_kwargs={"channel_base": 512, "channel_max": 32}).eval().requires_grad_(False)
    latent = g.convert(g.sample(0), "w+")
    with torch.inference_mode():
        g.render(latent)
    run = DragRun(g, latent, [[20.0, 20.0]], [[30.0, 25.0]], config=DragConfig(method="draggan"))
    for _ in range(2):
        run.step(render=True)
    assert run.step_count == 2


def test_whole_map_runs_with_other_settings_never_share_a_batch(sg128, monkeypatch):
    """Where runs are batched (whole maps: a mask, a model without windows, an accelerator), a
    batch renders with one noise mode and class, so runs whose settings differ get different
    keys and ``step_together`` refuses them; with equal settings they share one."""
    from dragwalk.drag.batch import batch_key, step_together

    g = sg128
    monkeypatch.setattr(g, "computes_windows", False)
    make = lambda settings: DragRun(g, g.convert(g.sample(1, settings=settings), "w+"), [[40.0, 50.0]],
                                    [[52.0, 44.0]], config=DragConfig(method="draggan"))
    plain, noisy = make(Settings()), make(Settings(noise_mode="random", noise_seed=3))
    assert batch_key(plain) is not None and batch_key(plain) != batch_key(noisy)
    with pytest.raises(ValueError, match="cannot share a batch"):
        step_together([plain, noisy])
    assert batch_key(plain) == batch_key(make(Settings()))
