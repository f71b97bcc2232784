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


#: parses each file named on the command line as an ES module (what ``node --check`` does to one
#: file of this ``"type": "module"`` folder) in one node process: one start instead of one a file
_PARSE_MODULES = """
import vm from "node:vm";
import fs from "node:fs";
let failed = 0;
for (const file of process.argv.slice(1)) {
  try { new vm.SourceTextModule(fs.readFileSync(file, "utf8"), { identifier: file }); }
  catch (error) { failed += 1; console.error(`${file}: ${error}`); }
}
console.log(`parsed ${process.argv.length - 1 - failed} of ${process.argv.length - 1}`);
process.exit(failed ? 1 : 0);
"""


def test_every_module_parses():
    modules = sorted((ROOT / "frontend" / "js").rglob("*.js"))
    assert len(modules) >= 10
    result = subprocess.run([NODE, "--experimental-vm-modules", "--input-type=module", "-e", _PARSE_MODULES,
                             *map(str, modules)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["parsed", str(len(modules)), "of", str(len(modules))], result.stdout


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
