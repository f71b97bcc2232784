"""How the network runs (``dragwalk.runtime``): precision, channels-last, gradient scaling.

* a bf16 drag really computes the synthesis in bf16, keeps the latent and optimiser in
  fp32, and ends near the fp32 drag;
* fp16 is refused on a CPU with a clear error, unknown settings likewise;
* channels-last changes the layout of every activation and nothing about the image;
* the fp16 gradient scaler's path (scale, unscale, step) takes the same optimiser step as
  the plain one, alone and in a batched step.
"""

from __future__ import annotations

import copy

import pytest
import torch

from dragwalk.drag import DragConfig, DragRun
from dragwalk.drag.batch import step_together
from dragwalk.models.stylegan2.layers import SynthesisLayer
from dragwalk.runtime import Runtime, check_precision, prepare

HANDLES = [[12.0, 16.0]]
TARGETS = [[18.0, 16.0]]


def _run(generator, precision="fp32", seed=3):
    config = DragConfig(method="draggan", max_steps=50, precision=precision)
    return DragRun(generator, generator.convert(generator.sample(seed), "w+"), HANDLES, TARGETS, config=config)


def _beside_fp32(net, precision: str, steps: int = 4):
    """The same drag run at fp32 and at ``precision``: the half-precision run, its last step (with
    a frame), the dtypes its synthesis layers produced, and how each run moved the latent."""
    exact, half = _run(net), _run(net, precision)
    seen = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
             for m in net.modules() if isinstance(m, SynthesisLayer)]
    try:
        for _ in range(steps):
            exact.step()
            step = half.step(render=True)
    finally:
        for h in hooks:
            h.remove()
    start = _run(net).latent.code
    return half, step, seen, (half.latent.code - start).flatten(), (exact.latent.code - start).flatten()


def test_a_bf16_drag_runs_the_network_in_bf16_and_ends_near_fp32(sg32):
    half, step, seen, moved_half, moved_exact = _beside_fp32(sg32, "bf16")
    assert seen and all(d == torch.bfloat16 for d in seen[-3:])
    assert step.image.dtype == torch.float32                         # what the page gets is fp32
    assert all(p.dtype == torch.float32 for p in half.variables.params)
    assert moved_half.norm() > 1e-3                                  # the bf16 drag optimised
    # ...the way the fp32 one did (Adam's per-coordinate steps flip where gradients are tiny)
    assert torch.nn.functional.cosine_similarity(moved_half, moved_exact, dim=0) > 0.9


def test_unusable_settings_are_refused_clearly(sg32):
    with pytest.raises(ValueError, match="fp16 needs a GPU"):
        _run(sg32, "fp16")
    with pytest.raises(ValueError, match="unknown precision"):
        DragConfig(precision="fp8")
    with pytest.raises(ValueError, match="unknown compile mode"):
        Runtime(compile="fastest")
    assert check_precision("bf16", "cpu") == "bf16"
    assert DragConfig.from_dict(DragConfig(precision="bf16").to_dict()).precision == "bf16"


def test_channels_last_changes_the_layout_and_not_the_image(sg32):
    latent = sg32.convert(sg32.sample(5), "w+")
    plain = sg32.render(latent)
    nhwc = prepare(copy.deepcopy(sg32), Runtime(channels_last=True))
    layouts = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: layouts.append(
        out.is_contiguous(memory_format=torch.channels_last)))
        for m in nhwc.modules() if isinstance(m, SynthesisLayer)]
    image = nhwc.render(latent)
    for h in hooks:
        h.remove()
    assert layouts and all(layouts[1:])          # every layer after the first activation
    torch.testing.assert_close(image, plain, rtol=0, atol=1e-5)
    assert prepare(nhwc, Runtime(channels_last=True)) is nhwc         # idempotent
    with pytest.raises(ValueError, match="already prepared"):
        prepare(nhwc, Runtime(compile="default"))


def test_the_gradient_scaler_path_takes_the_plain_step(sg32):
    plain, scaled = _run(sg32), _run(sg32)
    scaled.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12)
    for _ in range(3):
        plain.step()
        scaled.step()
    torch.testing.assert_close(scaled.latent.code, plain.latent.code, rtol=0, atol=1e-6)
    assert scaled.scaler.get_scale() == 2.0 ** 12                     # no overflow, no skipped step
    # the batched path scales each run's loss with its own scaler
    alone, together = [_run(sg32, seed=s) for s in (3, 4)], [_run(sg32, seed=s) for s in (3, 4)]
    for run in together:
        run.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)
    for _ in range(3):
        for run in alone:
            run.step()
        step_together(together)
    for a, b in zip(alone, together):
        torch.testing.assert_close(b.latent.code, a.latent.code, rtol=0, atol=1e-5)


def test_bench_step_times_variants_and_a_batch(sg32):
    from dragwalk.bench import step as bench

    variant = bench.parse_variant("bf16+cl")
    assert variant == Runtime("bf16", True, "none")
    assert bench.parse_variant("fp32+compile=max-autotune-no-cudagraphs").compile == "max-autotune-no-cudagraphs"
    with pytest.raises(ValueError, match="unknown compile mode"):
        bench.parse_variant("fp16+compile=reduce-overhead")          # CUDA graphs per layer: see runtime
    result = bench.measure(sg32, sg32.default_feature_layer, steps=1, variants=[variant])
    assert {"headless@bf16+channels_last", "editor@bf16+channels_last"} <= set(result["ms"])
    assert "editor@bf16+channels_last" in result["speedup"]
    batch = bench.measure_batch(sg32, sg32.default_feature_layer, n=3, steps=1)
    assert set(batch["steps_per_s"]) == {"one by one", "batched"} and batch["batched_over_one_by_one"] > 0
    # a StyleGAN2's drags compute windows on the CPU, so the bench says they stepped alone
    assert batch["windowed"] and "step alone" in bench.format_result({**result, "batch": batch})


def test_the_server_takes_its_runtime_from_flags_and_records_precision_in_drags(tmp_path):
    from types import SimpleNamespace

    from dragwalk import drag
    from dragwalk.server.config import Settings
    from dragwalk.server.hub import Hub
    from dragwalk.server.ops_drag import DragCommands

    settings = Settings.from_args(env={"DRAGWALK_PRECISION": "bf16", "DRAGWALK_CHANNELS_LAST": "1"})
    assert (settings.precision, settings.channels_last, settings.compile) == ("bf16", True, "none")
    settings.device, settings.store = "cpu", str(tmp_path / "sessions.sqlite3")
    hub = Hub(settings)
    assert hub.runtime == Runtime("bf16", True, "none")
    live = SimpleNamespace(generator=SimpleNamespace(layers=[], drag_modes=()))
    config = DragCommands(hub)._drag_config(live, drag, SimpleNamespace(params={}, method="draggan"))
    assert config.precision == "bf16"
    for bad in ({"precision": "fp16"}, {"compile": "fastest"}, {"precision": "double"}):
        with pytest.raises(ValueError):
            Hub(Settings(device="cpu", store=str(tmp_path / "other.sqlite3"), **bad))


# ----------------------------------------------------------------- on a GPU, when there is one
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_a_half_precision_drag_on_cuda_follows_the_fp32_drag(sg32, precision):
    half, step, seen, a, b = _beside_fp32(copy.deepcopy(sg32).cuda(), precision)
    assert (half.scaler is not None) == (precision == "fp16")
    assert seen and all(d == {"fp16": torch.float16, "bf16": torch.bfloat16}[precision] for d in seen[-3:])
    assert step.image.dtype == torch.float32 and step.image.is_cuda
    assert a.norm() > 1e-3 and torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.9


@pytest.fixture()
def no_tf32():
    """fp32 maths on a GPU: without TF32's 10-bit mantissas in convolutions and matmuls."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@cuda
def test_channels_last_and_compiled_layers_on_cuda_compute_the_same_drag(sg32, no_tf32):
    net = copy.deepcopy(sg32).cuda()
    fast = prepare(copy.deepcopy(net), Runtime(channels_last=True, compile="default"))
    plain, compiled = _run(net), _run(fast)
    for _ in range(4):
        a, b = plain.step(render=True), compiled.step(render=True)
        torch.testing.assert_close(b.image, a.image, rtol=0, atol=1e-4)
    torch.testing.assert_close(compiled.latent.code, plain.latent.code, rtol=0, atol=1e-4)


@cuda
def test_batched_drags_on_cuda_end_where_single_drags_end(sg32, no_tf32):
    net = copy.deepcopy(sg32).cuda()
    alone, together = [_run(net, seed=s) for s in (3, 4, 5)], [_run(net, seed=s) for s in (3, 4, 5)]
    for _ in range(4):
        for run in alone:
            run.step()
        step_together(together)
    for a, b in zip(alone, together):
        torch.testing.assert_close(torch.tensor(b.handles), torch.tensor(a.handles), rtol=0, atol=1e-3)
        torch.testing.assert_close(b.latent.code, a.latent.code, rtol=0, atol=1e-5)
