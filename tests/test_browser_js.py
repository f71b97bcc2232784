"""The page's JavaScript without a browser: every module parses, and the pure helpers
(frame header, coordinates, points, backoff, throttle, mask) pass their node unit tests."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NODE = shutil.which("node") or shutil.which("nodejs")


@pytest.fixture(autouse=True)
def _node_is_installed():
    """scripts/setup.sh --test installs node; without it these tests fail, they never skip."""
    assert NODE is not None, "node is not installed: run scripts/setup.sh --test (installs nodejs)"


def test_every_module_parses():
    modules = sorted((ROOT / "frontend" / "js").rglob("*.js"))
    assert len(modules) >= 10
    for module in modules:
        result = subprocess.run([NODE, "--check", str(module)], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"{module.relative_to(ROOT)}:\n{result.stderr}"


def test_js_unit_tests_pass():
    result = subprocess.run([NODE, "--test", str(ROOT / "tests" / "js")], capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout


def test_page_references_existing_files():
    """Every script and stylesheet the page loads exists (a typo would only show in a browser)."""
    html = (ROOT / "frontend" / "index.html").read_text()
    for ref in ("css/editor.css", "js/main.js"):
        assert ref in html and (ROOT / "frontend" / ref).is_file()
    for module in (ROOT / "frontend" / "js").rglob("*.js"):
        for line in module.read_text().splitlines():
            if line.startswith("import ") and " from \"" in line:
                target = line.split(" from \"", 1)[1].split("\"", 1)[0]
                assert (module.parent / target).resolve().is_file(), f"{module.name} imports missing {target}"
