"""Shared fixtures (the real default model, loaded once per test process), and how the suite
runs in parallel.

``scripts/test.sh`` runs the suite in pytest-xdist workers (``-n 2 --dist loadfile`` on two
cores) with one torch thread each: each test file runs whole, in order, on one worker, so its
module-scoped fixtures (a server, a browser page, a trained model) are built once. (Grouping finer
than files, ``--dist loadgroup``, is broken with pytest 9.2's node ids: pytest-xdist issue 1386.)
A test marked ``serial`` (it times a drag, a link or the server's answers against a bound) runs
alone: the other workers wait until it ends (:func:`_machine_lock`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"


def pytest_configure(config):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # two workers on two cores: one thread each (OMP_NUM_THREADS=1 from scripts/test.sh
        # reaches the servers and commands the tests start), else they would oversubscribe
        import torch
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))


@contextlib.contextmanager
def _machine_lock(base: Path, exclusive: bool) -> Iterator[None]:
    """A readers-writer lock over the workers of one run (files ``base``.gate and .lock): every
    test holds it shared, a ``serial`` test exclusively. A serial test first closes the gate (no
    other test starts), then waits for the tests already running to end."""
    with open(f"{base}.gate", "a+") as gate, open(f"{base}.lock", "a+") as lock:
        if exclusive:
            fcntl.flock(gate, fcntl.LOCK_EX)
            fcntl.flock(lock, fcntl.LOCK_EX)
        else:
            fcntl.flock(gate, fcntl.LOCK_SH)
            fcntl.flock(lock, fcntl.LOCK_SH)
            fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            fcntl.flock(gate, fcntl.LOCK_UN)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Under xdist: set-up, call and tear-down of each test hold :func:`_machine_lock`."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if not run:
        yield
        return
    # xdist gives each worker the base temp folder <run's folder>/popen-gwN
    shared = Path(item.config.option.basetemp).parent if item.config.option.basetemp else Path(tempfile.gettempdir())
    with _machine_lock(shared / f"dragwalk-tests-{run}", exclusive=item.get_closest_marker("serial") is not None):
        yield


@pytest.fixture(scope="session")
def generator():
    from dragwalk.models import load_model
    return load_model("digiface-dcgan64", "cpu")


@pytest.fixture(scope="module")
def sg32():
    """A tiny StyleGAN2 (32 px, seeded random weights): drags on the StyleGAN path in milliseconds."""
    import torch

    from dragwalk.models.stylegan2 import StyleGAN2Generator

    torch.manual_seed(1)
    model = StyleGAN2Generator(z_dim=32, w_dim=32, img_resolution=32, mapping_kwargs={"num_layers": 2},
                               synthesis_kwargs={"channel_base": 512, "channel_max": 32}, name="tiny-sg2-32")
    return model.eval().requires_grad_(False)


@pytest.fixture
def marker(tmp_path) -> Path:
    """A file that code smuggled in a model file (a pickle's ``module_src``) would create: the
    fixtures of the pickle tests write such code, and every test checks it never ran."""
    path = tmp_path / "code-was-executed"
    yield path
    assert not path.exists(), "code carried by the pickle was executed"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def dragwalk_exe() -> list[str]:
    """The installed console script, falling back to ``python -m dragwalk``."""
    exe = Path(sys.executable).with_name("dragwalk")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "dragwalk"]


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Caches and stores written by the code under test go to a temporary DRAGWALK_HOME."""
    if "DRAGWALK_HOME" not in os.environ:
        monkeypatch.setenv("DRAGWALK_HOME", str(tmp_path_factory.getbasetemp() / "dragwalk-home"))
