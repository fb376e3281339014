"""The package's import graph, read from the source (every import statement, function-level
ones included): train/, evaluate/ and export/ never import one another, metrics/ imports
only data/, models/ never reaches up, and the top-level packages form no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import sphereface2

ROOT = Path(sphereface2.__file__).parent
PACKAGE = "sphereface2"
#: The three floors that must not know one another.
SIBLINGS = ("train", "evaluate", "export")
#: What each floor may import besides itself (top-level names under sphereface2).
BASE = {"config", "config_options", "registry"}
ALLOWED = {
    "data": set(),
    "metrics": {"data"},
    "backbones": {"registry", "config_options"},
    "distributed": set(),
    "heads": {"registry", "config_options", "distributed"},
    "models": BASE | {"data", "backbones", "heads", "distributed"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every sphereface2 module named by an import in ``path`` (relative ones resolved)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return _imports_in(path.read_text(encoding="utf-8"), package)


def _imports_in(source: str, package: str) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {m for m in found if m == PACKAGE or m.startswith(PACKAGE + ".")}


def _floor(module: str) -> str | None:
    """The top-level module or package under sphereface2 that ``module`` lies in."""
    parts = module.split(".")
    if len(parts) < 2:
        return None
    exists = (ROOT / parts[1]).is_dir() or (ROOT / f"{parts[1]}.py").is_file()
    return parts[1] if exists else None


def _graph() -> dict[str, set[str]]:
    """Top-level name under sphereface2 -> the top-level names its modules import."""
    graph: dict[str, set[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        floor = _floor(_module_name(path))
        if floor is None or floor == "__main__":
            continue
        targets = {_floor(m) for m in _imports(path)} - {None, floor}
        graph.setdefault(floor, set()).update(t for t in targets if t is not None)
    return graph


def _offences(floor: str, forbidden: set[str]) -> list[str]:
    out = []
    for path in sorted((ROOT / floor).rglob("*.py")):
        for module in sorted(_imports(path)):
            if _floor(module) in forbidden:
                out.append(f"{path.relative_to(ROOT)} imports {module}")
    return out


@pytest.mark.parametrize("floor", SIBLINGS)
def test_train_evaluate_export_never_import_one_another(floor):
    assert _offences(floor, set(SIBLINGS) - {floor}) == []


@pytest.mark.parametrize("floor", sorted(ALLOWED))
def test_lower_floors_import_only_what_lies_below(floor):
    graph = _graph()
    known = set(graph) | {f for targets in graph.values() for f in targets}
    forbidden = known - ALLOWED[floor] - {floor}
    assert _offences(floor, forbidden) == []


def test_top_level_packages_form_no_cycle():
    graph = _graph()
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            cycle = path[path.index(node) :] + [node]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if node in done:
            return
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, [*path, node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])


def test_the_walker_sees_function_level_and_relative_imports():
    source = (
        "import os\n"
        "def f():\n    from sphereface2.evaluate import runner\n"
        "from ..export import common\n"
        "from . import sibling\n"
    )
    found = _imports_in(source, "sphereface2.train")
    assert {"sphereface2.evaluate", "sphereface2.export", "sphereface2.train.sibling"} <= found
    assert "os" not in found
    assert _offences("train", {"evaluate", "export"}) == []  # the real tree is clean
