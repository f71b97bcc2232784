"""Issue 16 item 4: direction sets computed in the background at server start (server/precompute.py).

The background work lands in the server's direction cache (memory and disk), pauses while the
compute worker has interactive jobs, stops at shutdown without writing a half-done set, and is
switched by a flag and its environment variable.
"""

from __future__ import annotations

import time

import pytest
import torch

from dragwalk.directions import DirectionCache
from dragwalk.models.dcgan import DCGANGenerator
from dragwalk.server.config import Settings
from dragwalk.server.precompute import Precompute

#: cheap settings on a tiny model (the defaults are what the server uses); every Precompute here
#: runs at nice 0: at nice 19 a loaded shared machine may give the thread no CPU at all
SMALL = {"sefa": {}, "ganspace": {"num": 4, "samples": 400}, "sfvq": {"bits": 2, "samples": 300, "pcs": 4}}


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(3)
    return DCGANGenerator(nz=8, ngf=4, resolution=16, name="tiny-precompute").eval().requires_grad_(False)


def _wait_until(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_sets_land_in_the_cache_and_a_second_start_reads_them_from_disk(tiny, tmp_path):
    cache = DirectionCache(tmp_path)
    first = Precompute([("tiny", tiny)], cache, busy=lambda: False, methods=SMALL, nice=0).start()
    assert first.wait(120)
    states = first.summary()["models"]["tiny"]
    assert {m: s["state"] for m, s in states.items()} == {m: "ready" for m in SMALL}
    assert not any(s["from_disk"] for s in states.values())
    for method, params in SMALL.items():
        assert cache.on_disk(tiny, method, **params)
        # the page's request is answered from memory: the very object the background made
        assert cache.get(tiny, method, **params) is cache._sets[next(k for k in cache._sets
                                                                    if cache._sets[k].method == method)]
    again = Precompute([("tiny", tiny)], DirectionCache(tmp_path), busy=lambda: False, methods=SMALL, nice=0).start()
    assert again.wait(60)
    assert all(s["state"] == "ready" and s["from_disk"] for s in again.summary()["models"]["tiny"].values())


def test_it_waits_while_the_worker_is_busy(tiny, tmp_path):
    busy = [True]
    cache = DirectionCache(tmp_path)
    job = Precompute([("tiny", tiny)], cache, busy=lambda: busy[0], methods=SMALL, nice=0).start()
    _wait_until(lambda: job.summary()["models"]["tiny"]["sefa"]["state"] == "paused")
    time.sleep(0.3)
    assert all(s["state"] in ("paused", "queued") for s in job.summary()["models"]["tiny"].values())
    assert not list(tmp_path.rglob("*.safetensors"))             # nothing computed while paused
    busy[0] = False
    assert job.wait(120)
    assert all(s["state"] == "ready" for s in job.summary()["models"]["tiny"].values())


@pytest.mark.parametrize("held, asked", [
    # the very set the background computes (the cache's per-key lock)
    ({"dplase": {"k": 2, "iters": 400, "batch": 4, "refine": False, "time_limit": None, "tol": 0}},
     ("dplase", {"k": 2, "iters": 400, "batch": 4, "refine": False, "time_limit": None, "tol": 0})),
    # another set built on what the background holds (GANSpace's PCA, which SFVQ shares)
    ({"ganspace": {"num": 4, "samples": 600}}, ("sfvq", {"bits": 2, "samples": 600, "pcs": 4})),
])
def test_a_page_never_waits_for_a_computation_paused_for_drags(tiny, tmp_path, held, asked):
    """Drags pause the background in the middle of a computation, holding its locks; a page that
    asks for what it holds must get its set while the drags go on (the background steps aside and
    reads the page's result after), not when the drags end."""
    import threading

    calls, busy = [0], [False]

    def worker_busy() -> bool:           # drags start once the background is under way
        calls[0] += 1
        return busy[0] or calls[0] > 3

    cache = DirectionCache(tmp_path)
    job = Precompute([("tiny", tiny)], cache, busy=worker_busy, methods=held, nice=0).start()
    (name,) = held
    _wait_until(lambda: job.summary()["models"]["tiny"][name]["state"] == "paused")
    busy[0] = True                                                  # the drags go on
    got: dict = {}
    page = threading.Thread(target=lambda: got.update(set=cache.get(tiny, asked[0], **asked[1])), daemon=True)
    page.start()
    page.join(30)
    assert not page.is_alive(), "the page waited for a computation the drags paused"
    assert got["set"].method == asked[0] and len(got["set"]) > 0
    _wait_until(lambda: job.summary()["models"]["tiny"][name].get("yielded"))
    busy[0], calls[0] = False, -10 ** 9
    assert job.wait(60)
    entry = job.summary()["models"]["tiny"][name]
    assert entry["state"] == "ready" and entry["yielded"]
    if asked[0] == name:           # the background took the page's set, not a second computation
        assert cache.get(tiny, *held, **held[name]) is got["set"]


def test_a_page_waiting_for_another_pages_lock_does_not_stop_the_search(tiny, tmp_path):
    """Between two sets the search holds nothing: a page blocked on a lock another page holds is
    no reason to give anything up, and the search goes on once the worker is free."""
    import threading

    from dragwalk.directions import progress

    busy, held = [True], threading.Lock()
    held.acquire()                                         # "another page" holds it
    blocked = threading.Thread(target=lambda: progress.acquire(held).__enter__(), daemon=True)
    blocked.start()
    _wait_until(lambda: progress.someone_waits() == 1)
    job = Precompute([("tiny", tiny)], DirectionCache(tmp_path), busy=lambda: busy[0], methods=SMALL, nice=0).start()
    _wait_until(lambda: job.summary()["models"]["tiny"]["sefa"]["state"] == "paused")
    busy[0] = False
    assert job.wait(120)
    assert all(s["state"] == "ready" for s in job.summary()["models"]["tiny"].values())
    held.release()
    blocked.join(10)
    _wait_until(lambda: progress.someone_waits() == 0)


def test_it_pauses_while_a_page_computes_a_set(tiny, tmp_path, monkeypatch):
    """A page's own computation (any set, in its own thread) gets the cores: the background search
    pauses while one runs, and goes on after it; ``compute_directions`` marks a page's computation."""
    from dragwalk.directions import compute_directions, progress, sefa

    long = {"dplase": {"k": 2, "iters": 5000, "batch": 4, "refine": False, "time_limit": None, "tol": 0}}
    job = Precompute([("tiny", tiny)], DirectionCache(tmp_path), busy=lambda: False, methods=long, nice=0).start()
    state = lambda: job.summary()["models"]["tiny"]["dplase"]["state"]       # noqa: E731
    _wait_until(lambda: state() == "running")
    with progress.computing():
        _wait_until(lambda: state() == "paused", timeout=30)
    _wait_until(lambda: state() == "running", timeout=30)
    seen = []
    original = sefa.compute
    monkeypatch.setattr(sefa, "compute", lambda *a, **k: (seen.append(progress.pages_computing()), original(*a, **k))[1])
    compute_directions(tiny, "sefa", num=2)
    assert seen == [1] and progress.pages_computing() == 0
    assert job.stop(timeout=10)


def test_stop_cancels_a_long_computation_and_writes_nothing(tiny, tmp_path):
    long = {"dplase": {"k": 2, "iters": 5000, "batch": 4, "refine": False, "time_limit": None}}
    job = Precompute([("tiny", tiny)], DirectionCache(tmp_path), busy=lambda: False, methods=long, nice=0).start()
    _wait_until(lambda: job.summary()["models"]["tiny"]["dplase"]["state"] == "running")
    time.sleep(0.3)
    began = time.monotonic()
    assert job.stop(timeout=10)
    assert time.monotonic() - began < 2.0
    assert job.summary()["models"]["tiny"]["dplase"]["state"] == "cancelled"
    assert not list(tmp_path.rglob("*.safetensors"))


def test_a_failing_method_does_not_stop_the_others(tiny, tmp_path):
    methods = {"ganspace": {"num": 4, "samples": 400, "layer": "no-such-layer"}, "sefa": {}}
    job = Precompute([("tiny", tiny)], DirectionCache(tmp_path), busy=lambda: False, methods=methods, nice=0).start()
    assert job.wait(60)
    states = job.summary()["models"]["tiny"]
    assert states["ganspace"]["state"] == "failed" and states["ganspace"]["error"]
    assert states["sefa"]["state"] == "ready"


def test_the_flag_and_variable_switch_it():
    from dragwalk.server.config import OPTIONS, add_serve_arguments
    import argparse

    assert Settings().precompute_directions is False                       # in-process apps (tests)
    assert Settings.from_args(env={}).precompute_directions is True         # dragwalk serve
    assert Settings.from_args(env={"DRAGWALK_PRECOMPUTE_DIRECTIONS": "0"}).precompute_directions is False
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    args = parser.parse_args(["--no-precompute-directions"])
    assert Settings.from_args(args, env={"DRAGWALK_PRECOMPUTE_DIRECTIONS": "1"}).precompute_directions is False
    assert any(o.flag == "--no-precompute-directions" for o in OPTIONS)


def test_the_server_reports_progress_and_stops_it_at_shutdown(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from dragwalk.server import precompute
    from dragwalk.server.app import create_app

    monkeypatch.setattr(precompute, "ORDER", ("sefa",))
    monkeypatch.setattr(precompute, "_set_nice", lambda nice: None)          # this machine is shared
    with TestClient(create_app(Settings(device="cpu", store=str(tmp_path / "s.sqlite3"),
                                        precompute_directions=True)), base_url="http://127.0.0.1") as client:
        app = client.app
        assert app.state.precompute.wait(60)
        ready = client.get("/api/directions/ready").json()
        assert ready["enabled"] and not ready["running"]
        assert [(m, s["state"]) for m, s in ready["models"]["digiface-dcgan64"].items()] == [("sefa", "ready")]
        # the page's compute_directions goes through the same cache: the set is already there
        assert app.state.editor.direction_cache(None)._sets
    with TestClient(create_app(Settings(device="cpu", store=str(tmp_path / "t.sqlite3"))),
                    base_url="http://127.0.0.1") as client:
        assert client.get("/api/directions/ready").json() == {"enabled": False}


def test_a_time_limit_is_a_budget_not_part_of_the_cache_key(tiny, tmp_path):
    """The background DP-LaSE runs without a time limit; the page's default request (limit 240 s)
    must find that set, in memory and on disk."""
    small = {"k": 2, "iters": 20, "batch": 4, "refine": False}
    cache = DirectionCache(tmp_path)
    full = cache.get(tiny, "dplase", time_limit=None, **small)
    assert not full.params["truncated"]
    assert cache.get(tiny, "dplase", **small) is full
    assert DirectionCache(tmp_path).on_disk(tiny, "dplase", time_limit=120.0, **small)
    assert cache.path(tiny, "dplase", **small) != cache.path(tiny, "dplase", **{**small, "k": 3})
    # a run cut short is kept nowhere: the next call under the same key runs in full
    other = {**small, "iters": 3000}
    short = cache.get(tiny, "dplase", time_limit=0.05, **other)
    assert short.params["truncated"]
    assert cache.get(tiny, "dplase", time_limit=0.05, **other) is not short
