"""The package's import graph, read from the source (imports inside functions included): no circle, and each
layer imports only the layers below it (the table of the architecture in docs/architecture.md)."""

import ast
from pathlib import Path

import pytest

import learnrecon

PACKAGE = Path(learnrecon.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The learnrecon modules ``path`` imports anywhere in its body: ``from a.b import c`` counts as ``a.b.c``
    when that is a module, else as ``a.b``."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module for a in node.names
            ]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


GRAPH = {name: _imports(path, _modules()) - {name} for name, path in _modules().items()}


def _cycle() -> list[str] | None:
    """One import circle of :data:`GRAPH`, as the list of modules around it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(GRAPH):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_has_no_circle():
    cycle = _cycle()
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_graph_sees_imports_inside_functions():
    # cli imports the training package only inside its command functions
    assert "learnrecon.training" in GRAPH["learnrecon.cli"]


#: Layers that must never be imported by the modules of a lower one (prefix -> forbidden prefixes).
FORBIDDEN = {
    "learnrecon.operators": ("learnrecon.solvers", "learnrecon.models", "learnrecon.data", "learnrecon.training"),
    "learnrecon.io": ("learnrecon.models", "learnrecon.training", "learnrecon.data", "learnrecon.benchmark"),
    "learnrecon.solvers": ("learnrecon.models", "learnrecon.training", "learnrecon.benchmark"),
    "learnrecon.models": ("learnrecon.training", "learnrecon.benchmark", "learnrecon.cli", "learnrecon.data"),
    "learnrecon.evaluation": ("learnrecon.training", "learnrecon.benchmark", "learnrecon.cli"),
    "learnrecon.training": ("learnrecon.benchmark", "learnrecon.cli"),
    "learnrecon.robustness": ("learnrecon.training", "learnrecon.benchmark", "learnrecon.cli"),
    "learnrecon.report": ("learnrecon.training", "learnrecon.benchmark", "learnrecon.models"),
}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_each_layer_imports_only_layers_below_it(layer):
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if module == layer or module.startswith(layer + ".")
        for target in targets
        if target.startswith(FORBIDDEN[layer])
    )
    assert not wrong, "; ".join(wrong)


def test_every_package_imports_first_in_a_fresh_interpreter():
    """The graph above is of modules; a circle through packages' ``__init__`` files (``import learnrecon.x`` runs
    ``learnrecon/x/__init__.py`` first) shows only when that package is the first one imported."""
    import subprocess
    import sys

    packages = sorted(name for name, path in _modules().items() if path.name == "__init__.py")
    script = (
        "import importlib, sys\n"
        f"for name in {packages!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'learnrecon' or m.startswith('learnrecon.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as err:\n"
        "        print(f'{name}: {err!r}')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and not proc.stdout, proc.stdout + proc.stderr
    assert len(packages) > 10
