"""``dragwalk bench step``: one DragGAN step three ways on the same network, side by side.

* ``headless``: the project's step without a frame (``DragRun.step()``): a forward pass
  that stops at the feature layer, loss on the feature map at its own size, backward; on the
  CPU a StyleGAN2 computes only the cells the step reads (``Generator.synthesize_window``);
* ``editor``: the project's step with a frame (``DragRun.step(render=True)``), as the
  editor runs it: the same, plus the frame in inference mode (the rest of the network, or
  with a window, one whole pass);
* ``reference``: the structure of the official DragGAN step, written here from the paper:
  one full forward with autograd (image and features), the features resized bilinearly
  to the image, point tracking by L2 nearest neighbour in a window of that map, motion
  supervision (L1 between the map at ``q`` held fixed and at ``q + d``) over a disc,
  backward, Adam on w+ rows 0..5;
* ``frame``: one full forward in inference mode, the image alone. Every optimised row of w+
  reaches every layer, so a step that shows the user its frame costs at least this much:
  reference / frame is the most any editor step can gain over the reference (printed as
  "bound").

All three drag the same handle towards the same far target (so none arrives) with the
same radii and learning rate (``--method`` times another method's steps as headless and
editor, with the model's settings for it), and the kinds run interleaved, one step each in turn, so
load on the machine hits them alike. Printed: the median ms per step of each, the ratio
of the reference to each, and peak memory per step, two ways:

* ``peak MB``: the most tensor memory a step holds at once above what was held before it, the
  largest of three steps: ``torch.cuda.max_memory_allocated`` on a GPU, and on the CPU the same
  quantity from the profiler's allocation events (each carries the allocator's running total);
* ``RSS MB`` (CPU): the resident set's high-water mark (``VmHWM``, reset before each kind's
  steps through ``/proc/self/clear_refs``) over the resident set before them, with freed heap
  memory handed back first. It adds what the C allocator keeps of freed memory between the
  step's allocations, which depends on what the process did before as much as on the step.

``--variants bf16,fp16+cl,fp16+cl+compile`` adds the headless and editor
steps under other runtimes (:mod:`dragwalk.runtime`: precision, ``cl`` = channels-last,
``compile[=MODE]``), each on its own copy of the network, interleaved with the rest; the
ratios are all against the same fp32 reference. ``--batch N`` then also times N editor
steps of N drags one after another against one batched step of all N
(:func:`~dragwalk.drag.batch.step_together`): total steps per second, side by side.

No real checkpoint can be downloaded here: ``--ffhq-like RES`` builds a StyleGAN2 with
the FFHQ configuration's layout (z and w 512-d, 8 mapping layers, channels up to 512) and
seeded random weights; timing and memory do not depend on what the weights learned.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

KINDS = ("reference", "frame", "headless", "editor")
#: DragGAN's radii at 512 px (scaled with the resolution) and its learning rate for StyleGAN
R1_512, R2_512, LR = 3.0, 12.0, 2e-3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..cli import add_model_arguments

    add_model_arguments(parser)
    parser.add_argument("--ffhq-like", type=int, default=0, metavar="RES",
                        help="a StyleGAN2 of this resolution with FFHQ's layout and random weights, "
                             "instead of --model")
    parser.add_argument("--steps", type=int, default=10, help="timed steps of each kind (after one warm-up)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = leave as is)")
    parser.add_argument("--layer", default=None, help="feature layer (default: the model's)")
    parser.add_argument("--method", default="draggan",
                        help="the drag method whose steps are timed as headless and editor (default draggan, "
                             "with the reference's radii and lr; others with the model's settings, as "
                             "name:key=value); the reference is always the official DragGAN structure")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    parser.add_argument("--variants", default="",
                        help="extra runtimes to time, comma-separated: a precision (fp32, bf16, fp16) "
                             "with optional +cl (channels-last) and +compile[=MODE], e.g. bf16,fp16+cl")
    parser.add_argument("--profile", type=int, default=0, metavar="STEPS",
                        help="profile this many editor steps and print where the time goes (top ops, host syncs)")
    parser.add_argument("--batch", type=int, default=0, metavar="N",
                        help="also time N drags stepped one by one against one batched step of all N")


def ffhq_like(resolution: int, seed: int = 0):
    """StyleGAN2 with the layout of NVIDIA's FFHQ networks at ``resolution`` (random weights)."""
    from ..models.stylegan2 import StyleGAN2Generator

    if resolution < 16 or resolution & (resolution - 1):
        raise ValueError(f"--ffhq-like needs a power of two >= 16, got {resolution}")
    torch.manual_seed(seed)
    model = StyleGAN2Generator(z_dim=512, w_dim=512, img_resolution=resolution,
                               mapping_kwargs={"num_layers": 8},
                               synthesis_kwargs={"channel_base": 16384 if resolution <= 256 else 32768,
                                                 "channel_max": 512},
                               name=f"ffhq-like-{resolution}")
    return model.eval().requires_grad_(False)


def _points(resolution: int) -> tuple[list[list[float]], list[list[float]]]:
    """One handle dragged across most of the image: no kind arrives within the timed steps."""
    return [[0.3 * resolution, 0.5 * resolution]], [[0.8 * resolution, 0.5 * resolution]]


class ReferenceStep:
    """The official step's structure (see the module docstring), one call per step."""

    def __init__(self, generator, latent, layer: str, handles, targets, r1: float, r2: float):
        from ..models.base import Latent

        self.g, self.layer, self.Latent = generator, layer, Latent
        ws = generator.ws(latent).detach()
        self.head = ws[:, :6].clone().requires_grad_(True)
        self.tail = ws[:, 6:]
        self.opt = torch.optim.Adam([self.head], lr=LR)
        self.res = generator.resolution
        self.r1, self.r2 = int(round(r1)), int(round(r2))
        device = generator.device
        self.handles = torch.tensor(handles, dtype=torch.float32, device=device)
        self.targets = torch.tensor(targets, dtype=torch.float32, device=device)
        with torch.no_grad():
            first = self._feature_map(ws)
        self.templates = torch.stack([first[0, :, int(y), int(x)] for x, y in self.handles.tolist()])
        d = torch.arange(-self.r1, self.r1 + 1, dtype=torch.float32)
        yy, xx = torch.meshgrid(d, d, indexing="ij")
        inside = xx.pow(2) + yy.pow(2) <= self.r1 ** 2
        self.disc = torch.stack([xx[inside], yy[inside]], dim=1).to(device)  # [P, 2]

    def _feature_map(self, ws: torch.Tensor) -> torch.Tensor:
        out = self.g.synthesize(self.Latent("w+", ws), self.layer)          # the full forward, image too
        return F.interpolate(out.features, size=(self.res, self.res), mode="bilinear", align_corners=False)

    def _sample(self, fm: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
        grid = (xy + 0.5) * (2.0 / self.res) - 1.0
        return F.grid_sample(fm, grid[None, None], mode="bilinear", align_corners=False)[0, :, 0]   # [C, P]

    def __call__(self) -> None:
        fm = self._feature_map(torch.cat([self.head, self.tail], dim=1))
        device = fm.device
        with torch.no_grad():                                               # tracking: L2 nearest neighbour
            for i, (x, y) in enumerate(self.handles.round().long().tolist()):
                x0, y0 = max(0, x - self.r2), max(0, y - self.r2)
                window = fm[0, :, y0:y + self.r2 + 1, x0:x + self.r2 + 1]
                cost = (window - self.templates[i][:, None, None]).norm(dim=0)
                k = int(cost.argmin())
                self.handles[i] = torch.tensor([x0 + k % cost.shape[1], y0 + k // cost.shape[1]],
                                               dtype=torch.float32, device=device)
        loss = fm.sum() * 0
        for h, t in zip(self.handles, self.targets):
            d = (t - h) / (t - h).norm().clamp_min(1e-6)
            q = self.disc + h
            loss = loss + F.l1_loss(self._sample(fm, q + d), self._sample(fm.detach(), q))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()


class FrameStep:
    """The image of a latent, nothing else: the floor under any step that renders its frame."""

    def __init__(self, generator, latent):
        self.g, self.latent = generator, latent

    def __call__(self) -> None:
        with torch.inference_mode():
            self.g.synthesize(self.latent)


def parse_variant(text: str):
    """``bf16+cl+compile=reduce-overhead`` -> a :class:`~dragwalk.runtime.Runtime`."""
    from ..runtime import Runtime

    precision, channels_last, mode = "fp32", False, "none"
    for token in filter(None, text.strip().split("+")):
        if token in ("cl", "channels_last", "channels-last"):
            channels_last = True
        elif token == "compile":
            mode = "default"
        elif token.startswith("compile="):
            mode = token.split("=", 1)[1]
        else:
            precision = token
    return Runtime(precision, channels_last, mode)


def _drag_run(generator, layer: str, precision: str = "fp32", seed: int = 0, method: str = "draggan"):
    """A drag of :func:`_points`: DragGAN with the reference's settings (radii, lr), or any other
    method spec (``name:key=value``, as ``bench drag --methods``) with the model's own settings."""
    from ..drag import DragConfig, DragRun
    from .drag import parse_method_spec

    res = generator.resolution
    handles, targets = _points(res)
    if method == "draggan":
        config = DragConfig(method="draggan", lr=LR, feature_layer=layer, max_steps=10000, precision=precision,
                            mode="w+:first6" if "w+:first6" in generator.drag_modes else None,
                            params={"r1": R1_512 * res / 512, "r2": R2_512 * res / 512, "smooth": 0})
    else:
        name, settings = parse_method_spec(method)
        config = DragConfig(method=name, feature_layer=layer, max_steps=10000, precision=precision, **settings)
    return DragRun(generator, _start(generator, seed), handles, targets, config=config)


def _start(generator, seed: int = 0):
    latent = generator.sample(seed)
    return generator.convert(latent, "w+") if "w+" in generator.latent_spaces else latent


def make_steps(generator, layer: str, variants: Sequence = (), method: str = "draggan"
               ) -> dict[str, Callable[[], None]]:
    """One step callable per kind, all dragging the same point with the same settings.

    Each of ``variants`` (:class:`~dragwalk.runtime.Runtime`) adds ``headless@V`` and
    ``editor@V`` on a prepared copy of ``generator`` (a copy whenever layout or
    compilation change the network, since those apply in place)."""
    from ..runtime import prepare

    steps: dict[str, Callable[[], None]] = {}
    if "w+" in generator.latent_spaces:
        res = generator.resolution
        handles, targets = _points(res)
        steps["reference"] = ReferenceStep(generator, _start(generator), layer, handles, targets,
                                           R1_512 * res / 512, R2_512 * res / 512)
        steps["frame"] = FrameStep(generator, _start(generator))
    runs = {kind: _drag_run(generator, layer, method=method) for kind in ("headless", "editor")}
    for variant in variants:
        net = generator
        if variant.channels_last or variant.compile != "none":
            net = prepare(copy.deepcopy(generator), variant)
        for kind in ("headless", "editor"):
            runs[f"{kind}@{variant.describe()}"] = _drag_run(net, layer, variant.precision, method=method)
    for name, run in runs.items():
        steps[name] = (lambda r=run, show=name.startswith("editor"): _live_step(r, show))
    return steps


def _live_step(run, render: bool) -> None:
    """One step of a run that has not ended: an ended run's "steps" only report, and would
    time nothing."""
    if run.done:
        raise SystemExit(f"the {run.method.name} drag ended ({run.reason}) after {run.step_count} steps, "
                         "so its steps can no longer be timed (a warp refines only with refine=N)")
    run.step(render=render)


def measure_batch(generator, layer: str, n: int, steps: int, method: str = "draggan") -> dict:
    """Total drag steps per second of ``n`` drags, one by one against all in one batch."""
    from ..drag.batch import batch_key, step_together

    alone = [_drag_run(generator, layer, seed=s, method=method) for s in range(n)]
    together = [_drag_run(generator, layer, seed=s, method=method) for s in range(n)]
    kinds = {"one by one": lambda: [run.step(render=True) for run in alone],
             "batched": lambda: step_together(together, render=True)}
    times = time_interleaved(kinds, generator.device, steps)
    rate = {k: n / statistics.median(v) for k, v in times.items()}
    return {"sessions": n, "steps_per_s": rate, "batched_over_one_by_one": rate["batched"] / rate["one by one"],
            "windowed": batch_key(together[0]) is None}


def profile_editor(generator, layer: str, steps: int, method: str = "draggan") -> str:
    """torch.profiler's table of ``steps`` editor steps, and how many host syncs each step makes."""
    from torch.profiler import ProfilerActivity, profile

    run = _drag_run(generator, layer, method=method)
    run.step(render=True)
    cuda = generator.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            run.step(render=True)
        _sync(generator.device)()
    events = prof.key_averages()
    syncs = {e.key: e.count for e in events
             if e.key in ("aten::_local_scalar_dense", "aten::item", "cudaStreamSynchronize", "cudaDeviceSynchronize",
                          "cudaMemcpyAsync")}
    sort = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    per_step = ", ".join(f"{k} {v / steps:.1f}" for k, v in syncs.items()) or "none"
    launches = sum(e.count for e in events if e.key in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC"))
    return (events.table(sort_by="self_cpu_time_total", row_limit=12)
            + (events.table(sort_by=sort, row_limit=12) if cuda else "")
            + f"\nper editor step: host syncs {per_step}; kernel launches {launches / steps:.0f}")


def _sync(device: torch.device) -> Callable[[], None]:
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def _status_kb(field: str) -> int:
    """A ``/proc/self/status`` memory figure (``VmRSS``, ``VmHWM``) in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _release_free_heap() -> None:
    """Hand freed heap memory back to the system (glibc keeps it otherwise, and a step that
    reuses it would not show in the resident set)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_memory_mb(step: Callable[[], None], device: torch.device, repeats: int = 3) -> float:
    """Tensor memory a step holds at once above what is held before it: the largest of
    ``repeats`` steps (see the module docstring)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        for _ in range(repeats):
            step()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2 ** 20
    return _profiled_peak_mb(step, repeats)


def _profiled_peak_mb(step: Callable[[], None], repeats: int) -> float:
    """:func:`peak_memory_mb` on the CPU, from the profiler's allocation events. One unmeasured
    step runs first under the profiler: a free of memory allocated before profiling started is
    not reported (its size is unknown), so the measured steps' frees must find their allocations
    recorded. ``nan`` where this torch's profiler lacks the (experimental) event tree."""
    from torch.profiler import ProfilerActivity, profile, record_function

    try:
        from torch._C._profiler import _EventType

        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            step()
            for _ in range(repeats):
                with record_function("dragwalk measured step"):
                    step()
        events = list(_event_tree(prof.profiler.kineto_results.experimental_event_tree()))
    except (ImportError, AttributeError, RuntimeError):
        return float("nan")
    steps = [(e.start_time_ns, e.end_time_ns) for e in events if e.name == "dragwalk measured step"]
    allocations = sorted((e.start_time_ns, e.extra_fields.alloc_size, e.extra_fields.total_allocated)
                         for e in events if e.tag == _EventType.Allocation)
    peak = 0
    for start, end in steps:
        inside = [a for a in allocations if start <= a[0] <= end]
        if inside:
            before = inside[0][2] - inside[0][1]          # the running total before the first event
            peak = max(peak, max(total for _, _, total in inside) - before)
    return peak / 2 ** 20


def _event_tree(nodes):
    for node in nodes:
        yield node
        yield from _event_tree(node.children)


def peak_rss_mb(step: Callable[[], None], repeats: int = 3) -> float:
    """The resident set's high-water mark over ``repeats`` steps above the resident set before
    them (CPU; see the module docstring)."""
    _release_free_heap()
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")                     # resets VmHWM to the current resident set
    except OSError:
        return float("nan")
    base = _status_kb("VmRSS")
    for _ in range(repeats):
        step()
    return (_status_kb("VmHWM") - base) / 1024


def time_interleaved(kinds: dict[str, Callable[[], object]], device: torch.device,
                     steps: int) -> dict[str, list[float]]:
    """Seconds of each of ``steps`` calls of every kind, the kinds taking turns (after one warm-up
    call each: first-call allocations, lazy inits), so load on the machine hits them alike."""
    sync = _sync(device)
    for step in kinds.values():
        step()
    times: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(steps):
        for kind, step in kinds.items():
            sync()
            started = time.perf_counter()
            step()
            sync()
            times[kind].append(time.perf_counter() - started)
    return times


def measure(generator, layer: str, steps: int, variants: Sequence = (), method: str = "draggan") -> dict:
    device = generator.device
    kinds = make_steps(generator, layer, variants, method)
    times = {k: [1000 * t for t in v] for k, v in time_interleaved(kinds, device, steps).items()}
    memory = {kind: peak_memory_mb(step, device) for kind, step in kinds.items()}
    medians = {k: statistics.median(v) for k, v in times.items()}
    out = {"method": method, "model": generator.name, "resolution": generator.resolution, "layer": layer,
           "device": str(device),
           "threads": torch.get_num_threads(), "steps": steps, "ms": medians, "peak_mb": memory, "all_ms": times}
    if "reference" in medians:
        out["speedup"] = {k: medians["reference"] / medians[k] for k in medians if k != "reference"}
    out["editor_memory_over_headless"] = _ratio(memory["editor"], memory["headless"])
    if device.type == "cpu":
        rss = {kind: peak_rss_mb(step) for kind, step in kinds.items()}
        out["rss_mb"] = rss
        out["editor_rss_over_headless"] = _ratio(rss["editor"], rss["headless"])
    return out


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


def format_result(r: dict) -> str:
    width = max(11, *(len(k) + 2 for k in r["ms"]))
    rss = r.get("rss_mb")
    lines = [f"{r.get('method', 'draggan')} step on {r['model']} ({r['resolution']} px, feature layer {r['layer']}, {r['device']}, "
             f"{r['threads']} threads, median of {r['steps']} interleaved steps)",
             f"{'kind':<{width}}{'ms/step':>9}{'x faster than reference':>26}{'peak MB':>10}"
             + (f"{'RSS MB':>10}" if rss else "")]
    for kind, ms in r["ms"].items():
        ratio = r.get("speedup", {}).get(kind)
        lines.append(f"{kind:<{width}}{ms:>9.1f}{'' if ratio is None else f'{ratio:.2f}x':>26}"
                     f"{r['peak_mb'][kind]:>10.1f}" + (f"{rss[kind]:>10.1f}" if rss else ""))
    lines.append(f"editor peak memory / headless: {r['editor_memory_over_headless']:.2f} (tensors)"
                 + (f", {r['editor_rss_over_headless']:.2f} (RSS)" if rss else ""))
    if "frame" in r.get("speedup", {}):
        lines.append(f"bound: a step that renders its frame is at most {r['speedup']['frame']:.2f}x faster than "
                     "the reference (reference / frame)")
    if "batch" in r:
        b = r["batch"]
        rates = ", ".join(f"{k} {v:.1f}" for k, v in b["steps_per_s"].items())
        lines.append(f"{b['sessions']} drags, total editor steps/s: {rates}; "
                     f"batched / one by one: {b['batched_over_one_by_one']:.2f}x"
                     + (" (these drags compute windows, so they step alone: not batched)" if b.get("windowed") else ""))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..cli import open_model
    from ..device import pick_device

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.steps < 1:
        raise SystemExit("--steps must be >= 1")
    if args.batch < 0 or args.batch > 64:
        raise SystemExit("--batch must be in 0..64")
    try:
        variants = [parse_variant(v) for v in args.variants.split(",") if v.strip()]
    except ValueError as exc:
        raise SystemExit(f"--variants: {exc}") from None
    generator = ffhq_like(args.ffhq_like).to(pick_device(args.device)) if args.ffhq_like else open_model(args)
    layer = args.layer or generator.default_feature_layer
    if args.profile:
        print(profile_editor(generator, layer, args.profile, args.method))
    result = measure(generator, layer, args.steps, variants, args.method)
    if args.batch:
        result["batch"] = measure_batch(generator, layer, args.batch, args.steps, args.method)
    print(format_result(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
        print(f"wrote {args.json}")
    return 0
