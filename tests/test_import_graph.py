"""The project's import graph runs one way (issue 20, structure).

Layers, bottom up: ``core`` (the scenario schema, the ledger, the market processes, the clearing and the
random streams), ``agents`` (behaviour), ``model`` (the step, the cascade, metrics, counterfactual runs),
``experiments`` (sweeps, calibration, named experiments, the visualiser's parts), and on top the entry
points ``run.py`` and ``app.py``, which nothing imports. Every import, also one inside a function, must
point to the same layer or one below, and the modules must not import each other in a circle. Imports
made only for type hints (under ``if TYPE_CHECKING:``) do not run and are not counted.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("core", "agents", "model", "experiments", "top")  # bottom up
TOP = {"run", "app"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    found = {module_name(p): p for layer in LAYERS[:-1] for p in (ROOT / layer).rglob("*.py")}
    found.update({name: ROOT / f"{name}.py" for name in TOP})
    return found


def layer_of(module: str) -> int:
    head = module.split(".")[0]
    return LAYERS.index("top") if head in TOP else LAYERS.index(head)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported(path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``path`` imports when it runs (module level and inside functions)."""
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from pkg import module` imports pkg.module where that is a module of ours
            names = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                for a in node.names
            ]
        elif (  # importlib.import_module("name") with a literal name
            isinstance(node, ast.Call)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", ""))
            == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names = [node.args[0].value]
        else:
            names = []
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                out.add(name)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return out


def graph() -> nx.DiGraph:
    modules = project_modules()
    g = nx.DiGraph()
    for name, path in modules.items():
        g.add_node(name)
        for target in imported(path, modules):
            if target != name and not name.startswith(target + "."):  # a package's own __init__
                g.add_edge(name, target)
    return g


def test_every_import_points_to_the_same_layer_or_below() -> None:
    upward = [f"{a} -> {b}" for a, b in graph().edges if layer_of(b) > layer_of(a) or b.split(".")[0] in TOP]
    assert upward == [], "imports that point up (or into an entry point):\n" + "\n".join(upward)


def test_no_modules_import_each_other_in_a_circle() -> None:
    cycles = sorted(" -> ".join(c) for c in nx.simple_cycles(graph()))
    assert cycles == [], "import circles:\n" + "\n".join(cycles[:20])


def test_the_checker_sees_an_upward_import_and_a_circle(tmp_path: Path) -> None:
    """The checks can fail: a core module importing the model, a lazy import_module of the command line,
    and two modules importing each other."""
    source = tmp_path / "mod.py"
    source.write_text(
        "from model.model import GPUCreditModel\nimport core.world\n"
        "def f():\n    import importlib\n    return importlib.import_module('run')\n",
        encoding="utf-8",
    )
    modules = project_modules()
    found = imported(source, modules)
    assert found == {"model.model", "core.world", "run"}
    assert layer_of("model.model") > layer_of("core.world")
    g = nx.DiGraph([("a", "b"), ("b", "a")])
    assert list(nx.simple_cycles(g))
