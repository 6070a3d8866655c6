"""The modules of jetfm.codae import on their own and import each other without a cycle."""
from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import jetfm.codae

PACKAGE = "jetfm.codae"
MODULES = sorted(m.name for m in pkgutil.iter_modules(jetfm.codae.__path__))


def _package_imports(path: Path) -> set[str]:
    """The modules of the package that ``path`` imports anywhere, at the top or inside a
    function: a deferred import still makes a cycle, it only hides it until the call."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n.split(".")[2] for n in names if n.startswith(PACKAGE + ".")}
    return found & set(MODULES)


def test_the_package_is_found():
    assert {"model", "config", "checkpoint", "training", "scoring", "report",
            "export"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_alone(module):
    """Each module imports first in a fresh interpreter (an import cycle at module level fails
    here for the module that starts it)."""
    run = subprocess.run([sys.executable, "-c", f"import {PACKAGE}.{module}"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr.strip().splitlines()[-1:]


def test_no_import_cycle():
    root = Path(jetfm.codae.__file__).parent
    graph = {m: _package_imports(root / f"{m}.py") - {m} for m in MODULES}
    state: dict[str, str] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = "open"
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                cycle = path[path.index(n):] + [m, n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n, path + [m])
        state[m] = "done"

    for m in MODULES:
        if m not in state:
            visit(m, [])
