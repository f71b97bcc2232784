"""The compute worker batches drags of several sessions on one model, and stays fair.

* fake jobs: jobs with equal ``batch_key`` run in one ``step_batch`` call, each advancing by
  exactly one step per round; other jobs keep their round-robin turn;
* real drags (``DragSteps`` on the default model): batched through the worker, four
  sessions end on the same latents and points as the same drags run unbatched.
"""

from __future__ import annotations

import threading

import torch

from dragwalk.drag import DragConfig, DragRun
from dragwalk.server.jobs import DragControl, DragSteps
from dragwalk.server.scheduler import Scheduler


class FakeSteps:
    """``n`` steps; records how it was advanced (alone or in a batch of how many)."""

    calls: list[tuple[str, int]] = []

    def __init__(self, name: str, n: int, key: str | None):
        self.name, self.left, self.key = name, n, key

    def __iter__(self):
        return self

    def __next__(self):
        if self.left == 0:
            raise StopIteration
        self.left -= 1
        FakeSteps.calls.append((self.name, 1))
        return self.name

    def batch_key(self):
        return self.key if self.left > 0 else None

    @staticmethod
    def step_batch(items):
        out = []
        for item in items:
            item.left -= 1
            FakeSteps.calls.append((item.name, len(items)))
            out.append(item.name)
        return out


def _run_all(scheduler: Scheduler, jobs: list) -> dict[str, int]:
    counts: dict[str, int] = {}
    done = threading.Event()
    remaining = [len(jobs)]
    lock = threading.Lock()

    def on_done(reason, error):
        assert error is None, error
        with lock:
            remaining[0] -= 1
            if remaining[0] == 0:
                done.set()

    gate = threading.Event()

    def hold():
        yield gate.wait(30)

    blocker = scheduler.submit(hold(), owner="gate")   # hold the worker until all are queued
    for steps in jobs:
        scheduler.submit(steps, owner=steps.name,
                         on_step=lambda _, n=steps.name: counts.__setitem__(n, counts.get(n, 0) + 1),
                         on_done=on_done)
    gate.set()
    assert done.wait(60)
    blocker.finished.wait(5)
    return counts


def test_jobs_with_equal_keys_share_each_step_and_keep_their_turn():
    FakeSteps.calls = []
    scheduler = Scheduler("test")
    try:
        jobs = [FakeSteps("a", 3, "m"), FakeSteps("b", 3, "m"), FakeSteps("x", 3, None), FakeSteps("c", 2, "m")]
        counts = _run_all(scheduler, jobs)
    finally:
        scheduler.shutdown()
    assert counts == {"a": 3, "b": 3, "x": 3, "c": 2}
    batched = [c for c in FakeSteps.calls if c[1] > 1]
    assert {name for name, _ in batched} == {"a", "b", "c"} and max(size for _, size in batched) == 3
    assert all(size == 1 for name, size in FakeSteps.calls if name == "x")
    # fairness: within each round every job advances once; x is never starved by the batch
    first_round = [name for name, _ in FakeSteps.calls[:4]]
    assert sorted(first_round) == ["a", "b", "c", "x"]


def test_batching_off_runs_every_step_alone():
    FakeSteps.calls = []
    scheduler = Scheduler("test", batching=False)
    try:
        _run_all(scheduler, [FakeSteps("a", 2, "m"), FakeSteps("b", 2, "m")])
    finally:
        scheduler.shutdown()
    assert all(size == 1 for _, size in FakeSteps.calls)


SESSIONS = [
    (11, [[30.0, 40.0]], [[30.0, 35.0]], "draggan"),
    (12, [[24.0, 30.0], [40.0, 30.0]], [[22.0, 27.0], [42.0, 27.0]], "template"),
    (13, [[32.0, 44.0]], [[32.0, 48.0]], "freedrag"),
    (14, [[28.0, 26.0]], [[28.0, 22.0]], "draggan"),
]


def _drag_jobs(generator):
    jobs = []
    for seed, handles, targets, method in SESSIONS:
        config = DragConfig(method=method, max_steps=10)
        latent = generator.sample(seed)
        control = DragControl(frame_wanted=lambda: True)
        steps = DragSteps(lambda l=latent, h=handles, t=targets, c=config: DragRun(generator, l, h, t, None, c),
                          control)
        steps.name = method + str(seed)
        jobs.append(steps)
    return jobs


def test_batched_sessions_end_where_unbatched_ones_end(generator):
    results = {}
    for batching in (False, True):
        FakeSteps.calls = []
        scheduler = Scheduler("test", batching=batching)
        batches = []
        original = DragSteps.step_batch

        def spy(items, original=original):
            batches.append(len(items))
            return original(items)

        DragSteps.step_batch = staticmethod(spy)
        try:
            jobs = _drag_jobs(generator)
            counts = _run_all(scheduler, jobs)
        finally:
            DragSteps.step_batch = staticmethod(original)
            scheduler.shutdown()
        assert (max(batches) >= 3) if batching else not batches
        results[batching] = ({s.name: s.control.run.latent for s in jobs},
                             {s.name: s.control.run.handles for s in jobs}, counts)
    (lat_a, pts_a, counts_a), (lat_b, pts_b, counts_b) = results[False], results[True]
    assert counts_a == counts_b
    assert pts_a.keys() == pts_b.keys()
    for name in pts_a:       # to float rounding: a batched matrix product may sum in another order
        torch.testing.assert_close(torch.tensor(pts_b[name]), torch.tensor(pts_a[name]), rtol=0, atol=1e-4)
    for name in lat_a:
        torch.testing.assert_close(lat_b[name].code, lat_a[name].code, rtol=0, atol=1e-5)
        for key, value in lat_a[name].offsets.items():
            torch.testing.assert_close(lat_b[name].offsets[key], value, rtol=0, atol=1e-5)


def test_no_batch_drags_flag_and_environment_turn_batching_off():
    from dragwalk.cli import build_parser
    from dragwalk.server.config import Settings

    parser = build_parser()
    assert Settings.from_args(parser.parse_args(["serve"]), env={}).batch_drags is True
    assert Settings.from_args(parser.parse_args(["serve", "--no-batch-drags"]), env={}).batch_drags is False
    assert Settings.from_args(parser.parse_args(["serve"]), env={"DRAGWALK_BATCH_DRAGS": "0"}).batch_drags is False
