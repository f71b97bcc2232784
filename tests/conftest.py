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
