"""The import graph runs one way: the command line (``run.py``) sits on top and nothing below imports
it. Checked from the source (every import statement, at module level or inside a function, and every
``importlib.import_module("...")`` with a literal name), so a lazy import counts as much as a top one.
Tests may import run.py to test the command line; the layers under it may not."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMMAND_LINE = "run"


def imported_modules(source: str) -> set[str]:
    """Every module a Python source imports, by absolute dotted name (relative imports are left out:
    they stay inside their package)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return found


def importers_of(module: str, folder: Path) -> list[str]:
    """The files under ``folder`` (relative to it) that import ``module`` or one of its submodules."""
    return sorted(
        str(path.relative_to(folder))
        for path in folder.rglob("*.py")
        if any(m == module or m.startswith(module + ".") for m in imported_modules(path.read_text()))
    )


def test_nothing_under_experiments_imports_the_command_line():
    assert importers_of(COMMAND_LINE, ROOT / "experiments") == []


@pytest.mark.parametrize(
    ("source", "imports_run"),
    [
        ("import run", True),
        ("from run import main", True),
        ("def f():\n    import run\n    return run.main([])", True),
        ("import importlib\nimportlib.import_module('run')", True),
        ("from importlib import import_module\nimport_module('run')", True),
        ("import runpy", False),
        ("from experiments import runner", False),
        ("from experiments.runner import execute_run", False),
        ("from . import run", False),  # relative: a sibling module named run, not the command line
    ],
)
def test_the_check_sees_every_kind_of_import(tmp_path, source, imports_run):
    folder = tmp_path / "layer"
    folder.mkdir()
    (folder / "module.py").write_text(source + "\n")
    assert importers_of(COMMAND_LINE, folder) == (["module.py"] if imports_run else [])
