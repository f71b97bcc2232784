"""Shared fixtures: the real default model, loaded once per test run."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"


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
