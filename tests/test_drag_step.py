"""The editor's drag step: a frame costs an inference pass, never a bigger autograd graph.

* ``Synthesis.resume`` (the rest of the network from a pass that stopped at the feature
  layer) gives the same image as a full forward, on the DCGAN and on a StyleGAN2 with
  block and skip-image offsets;
* a step that renders a frame saves exactly as many tensors for backward as one that
  does not (counted with autograd's saved-tensor hooks), and takes the same optimiser step;
* the frame is the image of the latent the step's points belong to.
"""

from __future__ import annotations

import pytest
import torch

from dragwalk.drag import DragConfig, DragRun
from dragwalk.models.base import Latent

HANDLES = [[30.0, 40.0]]
TARGETS = [[30.0, 34.0]]


def _with_offsets(generator, latent: Latent, names: list[str]) -> Latent:
    gen = torch.Generator().manual_seed(3)
    offsets = {n: 0.3 * torch.randn(1, *generator.offset_shape(n), generator=gen) for n in names}
    return Latent(latent.space, latent.code, offsets)


def test_resume_renders_what_a_full_forward_renders_dcgan(generator):
    latent = _with_offsets(generator, generator.sample(4), ["b1", "b3"])
    for layer in ("b1", "b2", "b3"):
        part = generator.synthesize(latent, layer, stop_at_feature=True)
        assert part.image is None and part.resume is not None
        full = generator.synthesize(latent, layer)
        torch.testing.assert_close(part.features, full.features)
        with torch.no_grad():
            torch.testing.assert_close(part.resume(), full.image, rtol=0, atol=1e-6)


def test_resume_renders_what_a_full_forward_renders_stylegan2(sg32):
    blocks = [info.name for info in sg32.layers if info.name != "image"]
    base = sg32.convert(sg32.sample(2), "w+")
    latent = _with_offsets(sg32, base, [blocks[1], blocks[1] + ":rgb", blocks[2]])
    with torch.no_grad():
        full_image = sg32.render(latent)
    for layer in blocks:
        part = sg32.synthesize(latent, layer, stop_at_feature=True)
        with torch.no_grad():
            # float rounding only: on the CPU a frame runs channels-last and the pass up to the
            # feature layer (with autograd) does not, so their sums run in other orders
            torch.testing.assert_close(part.resume(), full_image, rtol=0, atol=1e-5)
    # an offset changes the resumed image: the continuation reads the latent's offsets
    plain = sg32.synthesize(base, blocks[1], stop_at_feature=True)
    with torch.no_grad():
        assert (plain.resume() - full_image).abs().max() > 1e-3
    # the continuation keeps what the pass saw: changing the latent in place afterwards (as an
    # optimiser step does before the frame is rendered) changes nothing in it
    mutable = Latent("w+", latent.code.clone(), {k: v.clone() for k, v in latent.offsets.items()})
    part = sg32.synthesize(mutable, blocks[1], stop_at_feature=True)
    with torch.no_grad():
        mutable.code.add_(0.5)
        for value in mutable.offsets.values():
            value.add_(0.5)
        torch.testing.assert_close(part.resume(), full_image, rtol=0, atol=1e-5)


def _count_saved(run: DragRun, render: bool) -> tuple[int, object]:
    saved = []

    def pack(t):
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step = run.step(render=render)
    return sum(saved), step


@pytest.mark.parametrize("method", ["draggan", "template"])
def test_a_frame_adds_nothing_to_the_graph(generator, method):
    config = DragConfig(method=method, max_steps=20)
    latent = generator.sample(7)
    quiet = DragRun(generator, latent, HANDLES, TARGETS, config=config)
    shown = DragRun(generator, latent, HANDLES, TARGETS, config=config)
    for _ in range(3):
        n_quiet, _ = _count_saved(quiet, render=False)
        n_shown, step = _count_saved(shown, render=True)
        assert n_quiet > 0
        assert n_shown == n_quiet
        # the frame shows the latent the reported points were tracked on
        with torch.no_grad():
            torch.testing.assert_close(step.image, generator.render(shown.latent), rtol=0, atol=1e-6)
    # and rendering changed nothing about the optimisation
    torch.testing.assert_close(shown.latent.code, quiet.latent.code, rtol=0, atol=1e-6)
    for name, value in quiet.latent.offsets.items():
        torch.testing.assert_close(shown.latent.offsets[name], value, rtol=0, atol=1e-6)


def test_bench_step_times_all_three_kinds_on_one_network(sg32, capsys):
    """`dragwalk bench step` on a tiny StyleGAN2: every kind runs, the reference really optimises."""
    from dragwalk.bench import step as bench

    kinds = bench.make_steps(sg32, sg32.default_feature_layer)
    assert list(kinds) == ["reference", "frame", "headless", "editor"]
    reference = kinds["reference"]
    head = reference.head.detach().clone()
    reference()
    assert reference.head.grad is not None and float(reference.head.grad.abs().max()) > 0
    assert not torch.equal(reference.head.detach(), head)
    result = bench.measure(sg32, sg32.default_feature_layer, steps=2)
    assert set(result["ms"]) == set(bench.KINDS) and all(v > 0 for v in result["ms"].values())
    assert set(result["speedup"]) == {"frame", "headless", "editor"}
    assert all(v >= 0 for v in result["peak_mb"].values())
    text = bench.format_result(result)
    assert "x faster than reference" in text and "editor peak memory / headless" in text
    assert f"at most {result['speedup']['frame']:.2f}x" in text


def test_bench_step_memory_is_what_a_step_holds_at_once():
    """The bench's CPU peak counts the tensors a step holds at the same time, above what was held
    before it: 8 MB held while 4 MB more is made and freed is 12 MB, whatever was held before."""
    from dragwalk.bench import step as bench

    before = torch.ones(1 << 20)                          # 4 MB held before: not counted

    def step():
        a = torch.ones(2 << 20)                           # 8 MB
        b = torch.ones(1 << 20)                           # 4 MB more at once
        del b
        c = torch.ones(1 << 19)                           # 2 MB, in the 4 MB freed
        return float(a[0] + c[0] + before[0])

    peak = bench.peak_memory_mb(step, torch.device("cpu"))
    assert 11.9 < peak < 12.5


def test_bench_step_times_any_method_and_refuses_to_time_an_ended_drag(sg32):
    """``--method``: the headless and editor kinds run that method's own steps; a drag that has
    ended (a warp without refinement steps ends after its first) stops the bench with a reason
    instead of timing reports that do no work."""
    from dragwalk.bench import step as bench

    kinds = bench.make_steps(sg32, sg32.default_feature_layer, method="template:patch=2")
    run = kinds["headless"].__defaults__[0]
    assert run.method.name == "template" and run.method.values["patch"] == 2
    for _ in range(2):
        kinds["headless"]()
    assert run.step_count == 2 and not run.done
    ended = bench.make_steps(sg32, sg32.default_feature_layer, method="warp")["headless"]
    ended()
    with pytest.raises(SystemExit, match="warp drag ended"):
        ended()


def test_a_frame_rendered_after_the_optimiser_step_shows_the_tracked_latent(generator):
    """The frame is rendered once the backward pass has freed the graph, i.e. after Adam changed
    the latent in place; it must still be the image of the latent the points were tracked on.
    Here the optimised offset lies after the feature layer (features ``b1``, offsets on ``b2``,
    pulled by the offset decay), so the rest of the network reads the very tensor Adam changes."""
    config = DragConfig(method="template", mode="z+b2", feature_layer="b1", max_steps=20)
    latent = _with_offsets(generator, generator.sample(5), ["b2"])
    run = DragRun(generator, latent, HANDLES, TARGETS, config=config)
    for _ in range(3):
        before = run.variables.latent().detach()
        step = run.step(render=True)
        after = run.variables.latent().detach()
        assert not torch.equal(after.offsets["b2"], before.offsets["b2"])   # the step moved the offset
        with torch.no_grad():
            torch.testing.assert_close(run.latent.offsets["b2"], before.offsets["b2"])
            torch.testing.assert_close(step.image, generator.render(run.latent), rtol=0, atol=1e-6)


# ----------------------------------------------------------------- several sessions, one batch
def _runs(generator):
    from dragwalk.drag import DragConfig

    mask = torch.zeros(64, 64)
    mask[20:50, 15:50] = 1
    specs = [
        (3, [[30.0, 40.0]], [[30.0, 34.0]], None, DragConfig(method="draggan", max_steps=12)),
        (5, [[22.0, 30.0], [42.0, 30.0]], [[20.0, 26.0], [44.0, 26.0]], None, DragConfig(method="template", max_steps=12)),
        (8, [[32.0, 44.0]], [[32.0, 48.0]], mask, DragConfig(method="freedrag", max_steps=12)),
        (9, [[26.0, 26.0]], [[26.0, 22.0]], None, DragConfig(method="warp", params={"refine": 4})),
    ]
    return [DragRun(generator, generator.sample(seed), h, t, m, c) for seed, h, t, m, c in specs]


def test_batched_drags_end_where_single_drags_end(generator):
    from dragwalk.drag.batch import step_together

    alone, together = _runs(generator), _runs(generator)
    for k in range(14):
        renders = [k % 2 == 0, True, False, k % 3 == 0]
        singles = [run.step(render=r) for run, r in zip(alone, renders)]
        batched = step_together(together, renders)
        for a, b, r in zip(singles, batched, renders):
            # float rounding only: a batched matrix product may sum in another order
            torch.testing.assert_close(torch.tensor(b.handles), torch.tensor(a.handles), rtol=0, atol=1e-4)
            assert a.done == b.done and a.reason == b.reason
            if r:
                torch.testing.assert_close(b.image, a.image, rtol=0, atol=1e-5)
    assert all(run.done for run in together)
    assert sum(run.step_count for run in together) > 20
    for a, b in zip(alone, together):
        torch.testing.assert_close(b.latent.code, a.latent.code, rtol=0, atol=1e-5)
        assert set(a.latent.offsets) == set(b.latent.offsets)
        for name, value in a.latent.offsets.items():
            torch.testing.assert_close(b.latent.offsets[name], value, rtol=0, atol=1e-5)
        assert b.converged == a.converged


def test_batched_draggan_sessions_track_as_one_batch_and_end_where_single_ones_end(generator, monkeypatch):
    """DragGAN sessions with the same settings and as many points blur, track and compute their
    losses as one batch (``advance_together``); each must still end where it ends alone, also
    when one arrives early, one has a mask, and one with more points (another group) joins."""
    from dragwalk.drag import DragConfig
    from dragwalk.drag.batch import step_together
    from dragwalk.drag.draggan import DragGAN

    mask = torch.zeros(64, 64)
    mask[18:48, 14:50] = 1

    def runs():
        specs = [(3, [[30.0, 40.0]], [[30.0, 33.0]], None, 14), (4, [[24.0, 30.0]], [[25.0, 29.0]], None, 14),
                 (6, [[36.0, 38.0]], [[40.0, 34.0]], mask, 9), (7, [[28.0, 44.0]], [[28.0, 50.0]], None, 14),
                 (8, [[22.0, 30.0], [42.0, 30.0]], [[20.0, 26.0], [44.0, 26.0]], None, 14)]
        return [DragRun(generator, generator.sample(seed), h, t, m, DragConfig(method="draggan", max_steps=n))
                for seed, h, t, m, n in specs]

    sizes = []
    together_track = DragGAN.track_together
    monkeypatch.setattr(DragGAN, "track_together", staticmethod(
        lambda methods, *a: sizes.append(len(methods)) or together_track(methods, *a)))
    alone, together = runs(), runs()
    for k in range(16):
        singles = [run.step(render=k % 2 == 0) for run in alone]
        batched = step_together(together, render=k % 2 == 0)
        for a, b in zip(singles, batched):
            torch.testing.assert_close(torch.tensor(b.handles), torch.tensor(a.handles), rtol=0, atol=1e-4)
            assert a.done == b.done and a.reason == b.reason and a.step == b.step
    assert sizes[0] == 4 and min(sizes) < 4                 # one batch of four, smaller once some ended
    assert all(run.done for run in together) and len({run.step_count for run in together}) > 1
    for a, b in zip(alone, together):
        torch.testing.assert_close(b.latent.code, a.latent.code, rtol=0, atol=1e-5)
        for name, value in a.latent.offsets.items():
            torch.testing.assert_close(b.latent.offsets[name], value, rtol=0, atol=1e-5)
        assert b.converged == a.converged


def test_batched_step_gives_each_run_its_own_gradient(generator):
    """Zeroing one run's loss must leave it unmoved while the others move (no cross-talk)."""
    from dragwalk.drag.batch import step_together

    runs = _runs(generator)[:3]
    before = [run.latent for run in runs]
    runs[0].method.loss = lambda feats, *a, **k: feats.sum() * 0     # this run has nothing to learn
    step_together(runs)
    step_together(runs)
    moved = [float((run.variables.latent().code.detach() - b.code).abs().max()) for run, b in zip(runs, before)]
    assert moved[0] == 0.0
    assert moved[1] > 1e-4 and moved[2] > 1e-4


def test_drags_on_different_layers_are_not_batched(generator):
    from dragwalk.drag import DragConfig
    from dragwalk.drag.batch import step_together

    a = DragRun(generator, generator.sample(1), [[30.0, 40.0]], [[30.0, 34.0]], config=DragConfig(method="draggan"))
    b = DragRun(generator, generator.sample(2), [[30.0, 40.0]], [[30.0, 34.0]],
                config=DragConfig(method="draggan", feature_layer="b2"))
    with pytest.raises(ValueError, match="cannot share a batch"):
        step_together([a, b])


def test_a_step_reads_from_the_device_twice_at_most(generator, monkeypatch):
    """On a GPU every read of a tensor's value (``tolist``, ``item``, ``float()``, ``bool()``)
    waits for all queued work: a DragGAN/Template step reads the arrival check and its report,
    nothing else (the H200 profile in docs/benchmarks showed 9 such waits per step before).
    Counted: reads made by the project's code (torch's Adam reads its step counter, a CPU
    scalar even when the latent is on a GPU)."""
    import sys

    reads = []
    for name in ("tolist", "item", "__float__", "__bool__", "__int__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, **kwargs):
            if "dragwalk" in sys._getframe(1).f_code.co_filename:
                reads.append(sys._getframe(1).f_code.co_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    for method in ("draggan", "template"):
        run = DragRun(generator, generator.sample(7), HANDLES, TARGETS, config=DragConfig(method=method, max_steps=50))
        run.step()
        reads.clear()
        for _ in range(3):
            step = run.step(render=True)
        count = len(reads)
        assert not step.done and count <= 2 * 3, (method, reads)
