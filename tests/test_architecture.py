"""The import graph follows the package's layers (README, "Development"): no cycles, and lower layers never reach up."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "actionmoe"

# What each part may never import (every import counts, also those inside functions).
FORBIDDEN = {
    "config": {"acquire", "data", "models", "engine", "evaluation", "inference", "workflows", "cli", "web", "notebook"},
    "errors": {
        "config",
        "files",
        "acquire",
        "data",
        "models",
        "engine",
        "evaluation",
        "inference",
        "cli",
        "web",
        "notebook",
    },
    "files": {"config", "acquire", "data", "models", "engine", "evaluation", "inference", "cli", "web", "notebook"},
    "data": {"acquire", "models", "engine", "evaluation", "inference", "workflows", "cli", "web", "notebook"},
    "models": {"acquire", "data", "engine", "evaluation", "inference", "workflows", "cli", "web", "notebook"},
    "acquire": {"models", "engine", "evaluation", "inference", "workflows", "cli", "web", "notebook"},
    "engine": {"acquire", "evaluation", "inference", "workflows", "cli", "web", "notebook"},
    "evaluation": {"acquire", "inference", "workflows", "cli", "web", "notebook"},
    "inference": {"workflows", "cli", "web", "notebook"},
    "web": {"cli", "workflows", "notebook"},
    "notebook": {"cli", "web"},
    "workflows": {"cli", "web", "notebook"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every ``actionmoe`` module that ``path`` imports, at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("actionmoe"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("actionmoe"))
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()}


def part(module: str) -> str:
    """``actionmoe.data.dataset`` -> ``data``."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else ""


def test_lower_layers_never_import_higher_ones(graph):
    offences = [
        f"{module} imports {target}"
        for module, targets in graph.items()
        for target in targets
        if part(target) in FORBIDDEN.get(part(module), set())
    ]
    assert offences == []


def test_the_module_graph_has_no_cycle(graph):
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return [*path, module, target]
            if target not in state and (cycle := visit(target, [*path, module])):
                return cycle
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            assert visit(module, []) is None


def test_the_checker_sees_lazy_imports(graph):
    assert "actionmoe.workflows" in graph["actionmoe.cli"]  # imported inside a command function
