"""The package's layers (README, "Layout"): every module placed, imports pointing one way only, no cycles.

``LAYERS`` lists the parts from the bottom up. A module may import its own part and any part of a
lower layer; parts that share a layer never import each other (``data`` and ``models``). Every
import counts, also those inside functions. A new file is refused until it is placed here.
"""

import ast
import re
import shutil
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "actionmoe"

LAYERS = [
    ["errors"],  # every exception a user can cause
    ["files"],  # atomic writes, output-path checks, JSON lines
    ["config"],  # frozen dataclasses, TOML, overrides
    ["data", "models"],  # files on disk -> clips; clips -> logits (never each other)
    ["acquire"],  # getting a dataset onto disk (uses data's split parsing)
    ["runtime"],  # what training, evaluation and prediction share; compat reads old runs
    ["evaluation"],  # metrics, the evaluation loop, reports
    ["engine"],  # training
    ["predict"],  # everything that uses a trained model; never imports engine
    ["web", "notebook", "workflows", "bench"],  # services and whole jobs
    ["ablation"],  # runs workflows over variants and seeds
    ["cli"],  # one module per command group
    ["__main__"],
]
# The root package holds the version (read by every layer) and re-exports the Predictor lazily.
ROOT_REEXPORTS = {"actionmoe.predict.predictor"}
MAX_TOP_LEVEL_MODULES = 9  # __init__ and __main__ included


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
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


def part(module: str) -> str:
    """``actionmoe.data.dataset`` -> ``data``; the root package -> ``""``."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else ""


def layer_of(module: str) -> int | None:
    if module == "actionmoe":
        return -1  # below everything: its only upward import is the lazy re-export
    return next((index for index, parts in enumerate(LAYERS) if part(module) in parts), None)


def unplaced_modules(package: Path) -> list[str]:
    return sorted(name for p in package.rglob("*.py") if layer_of(name := module_name(p, package)) is None)


def build_graph(package: Path) -> dict[str, set[str]]:
    modules = {module_name(p, package): p for p in package.rglob("*.py")}
    return {name: {m for m in imports_of(path) if m in modules and m != name} for name, path in modules.items()}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return build_graph(PACKAGE)


def test_every_module_is_placed_in_a_layer():
    assert unplaced_modules(PACKAGE) == []


def test_a_new_module_fails_until_it_is_placed(tmp_path):
    copy = tmp_path / "actionmoe"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "helpers.py").write_text("X = 1\n")
    (copy / "gadgets").mkdir()
    (copy / "gadgets" / "__init__.py").write_text("")
    assert unplaced_modules(copy) == ["actionmoe.gadgets", "actionmoe.helpers"]


def test_imports_point_down_the_layers(graph):
    offences = []
    for module, targets in graph.items():
        for target in targets:
            if module == "actionmoe" and target in ROOT_REEXPORTS or part(module) == part(target):
                continue
            if target == "actionmoe":  # the version, from anywhere
                continue
            if layer_of(target) >= layer_of(module):
                offences.append(f"{module} imports {target}")
    assert offences == []


def test_the_checker_sees_lazy_imports_and_upward_imports(graph):
    assert "actionmoe.workflows" in graph["actionmoe.cli.training"]  # imported inside a command function
    assert layer_of("actionmoe.engine.run") > layer_of("actionmoe.runtime.restore")
    assert layer_of("actionmoe.predict.timeline") > layer_of("actionmoe.engine.run")  # so the next test is needed


def test_prediction_and_evaluation_never_import_training(graph):
    training = [
        f"{module} imports {target}"
        for module, targets in graph.items()
        if part(module) in ("runtime", "evaluation", "predict", "web", "notebook")
        for target in targets
        if part(target) == "engine"
    ]
    assert training == []


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


def test_the_top_level_holds_few_modules():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_no_module_calls_private_methods_of_the_predictor():
    """Timeline, service, notebook and batch prediction use its public seam (video_probs, rank, predict...)."""
    source = PACKAGE / "predict" / "predictor.py"
    predictor = next(
        node
        for node in ast.parse(source.read_text()).body
        if isinstance(node, ast.ClassDef) and node.name == "Predictor"
    )
    private = {node.name for node in predictor.body if isinstance(node, ast.FunctionDef) and node.name.startswith("_")}
    private -= {"__init__"}
    assert private  # the check below has something to look for
    offences = [
        f"{path.relative_to(PACKAGE)}: .{name}"
        for path in PACKAGE.rglob("*.py")
        if path != source
        for name in private
        if re.search(rf"\.{name}\b", path.read_text())
    ]
    assert offences == []
