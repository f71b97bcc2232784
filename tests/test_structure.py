"""The house: every module imports on its own, no import cycles (function-level imports
included), no process-wide settings changed by library code, no docstring pointing outside
the repository."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BACKEND = ROOT / "backend"
PACKAGE = BACKEND / "dragwalk"


def modules() -> dict[str, tuple[Path, bool]]:
    """``dotted name -> (file, is_package)`` for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(BACKEND).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports, wherever the import statement sits (a
    function-level import hides a cycle from the interpreter, not from this graph).

    ``from .pkg import name`` is an edge to ``pkg.name`` when that is a module, else to ``pkg``.
    """
    mods = modules()
    graph: dict[str, set[str]] = {name: set() for name in mods}
    for name, (path, is_package) in mods.items():
        here = name.split(".") if is_package else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here[:len(here) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in mods else source for a in node.names]
            for target in targets:
                while target not in mods and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in mods and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_package_has_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 50 and "dragwalk.directions.walks" in graph
    assert "dragwalk.directions.base" in graph["dragwalk.directions.walks"]
    found = cycles(graph)
    assert not found, "import cycles (move the shared piece to the module it belongs to): " + "; ".join(
        " -> ".join(c) for c in found)


#: run in one fresh interpreter: third-party libraries are loaded once, then each package module
#: is imported in its own forked child that has no dragwalk module loaded before it
_IMPORT_EACH = r"""
import importlib, json, os, sys, traceback
for heavy in ("torch", "numpy", "PIL.Image", "safetensors.torch", "fastapi", "pydantic", "starlette", "uvicorn",
              "httpx", "psycopg"):
    importlib.import_module(heavy)
assert not [m for m in sys.modules if m.split(".")[0] == "dragwalk"], "dragwalk loaded before the test"
failures = {}
for name in json.loads(sys.argv[1]):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            importlib.import_module(name)
            message = b""
        except BaseException:
            message = traceback.format_exc().encode()
        os.write(write, message)
        os._exit(0)
    os.close(write)
    chunks = []
    while True:
        chunk = os.read(read, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    text = b"".join(chunks).decode()
    if text or status != 0:
        failures[name] = text or f"child exited with status {status}"
print(json.dumps(failures))
"""


def test_every_module_imports_on_its_own():
    names = sorted(n for n in modules() if n != "dragwalk.__main__")  # __main__ runs the CLI
    env = {"PYTHONPATH": str(BACKEND), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", _IMPORT_EACH, json.dumps(names)], capture_output=True,
                            text=True, timeout=300, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-4000:]
    failures = json.loads(result.stdout.strip().splitlines()[-1])
    assert not failures, "\n\n".join(f"{name}:\n{text}" for name, text in failures.items())


def _calls(tree: ast.AST, attribute: str) -> list[int]:
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute) and node.func.attr == attribute]


def test_library_code_leaves_process_wide_threads_to_the_commands():
    """Only a command (a ``cli.py`` or a ``bench`` command) owns the process and may set threads."""
    offenders = []
    for name, (path, _) in modules().items():
        if path.name == "cli.py" or name.startswith("dragwalk.bench."):
            continue
        for attribute in ("set_num_threads", "set_num_interop_threads"):
            offenders += [f"{path.relative_to(ROOT)}:{line}" for line in _calls(ast.parse(path.read_text()), attribute)]
    assert not offenders, offenders


def test_docstrings_point_inside_the_repository():
    outside = []
    for path, _ in modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node) or ""
                if "/work/" in doc or "/home/" in doc or "/tmp/" in doc:
                    outside.append(f"{path.relative_to(ROOT)}: {getattr(node, 'name', 'module')}")
    assert not outside, outside
