"""The import rules of docs/architecture.md, checked on the source (every import, function-level ones included;
imports only for type checkers are not run and do not count):

- the toolkit never imports the scene world (`hadpo.world`, which holds the demo too);
- the three wings (pairs, train, evaluate) stand alone: none imports another, and the modules they share
  (records, errors, text, config, inference, models, judge) import no wing;
- the layers that chain the wings (the rounds driver, the command line) sit above them: no wing and no shared
  module imports them;
- the world reaches the toolkit through public names only;
- no import cycle exists anywhere in the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "hadpo"
WORLD = "hadpo.world"
TOOLKIT = (
    "hadpo.progress",
    "hadpo.records",
    "hadpo.files",
    "hadpo.errors",
    "hadpo.text",
    "hadpo.config",
    "hadpo.inference",
    "hadpo.models",
    "hadpo.judge",
    "hadpo.pairs",
    "hadpo.train",
    "hadpo.evaluate",
    "hadpo.rounds",
    "hadpo.cli",
)
WINGS = ("hadpo.pairs", "hadpo.train", "hadpo.evaluate")
SHARED = (
    "hadpo.progress",
    "hadpo.records",
    "hadpo.files",
    "hadpo.errors",
    "hadpo.text",
    "hadpo.config",
    "hadpo.inference",
    "hadpo.models",
    "hadpo.judge",
)
ABOVE_THE_WINGS = ("hadpo.rounds", "hadpo.cli")


def module_names(package: Path) -> dict[str, Path]:
    """{dotted module name: file} for every module under `package` (a package is named by its __init__)."""
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _type_checking_only(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name | ast.Attribute) and ast.unparse(node.test).endswith("TYPE_CHECKING")


def imports(path: Path, modules: set[str]) -> list[tuple[str, str]]:
    """(imported module, imported name or "") for every import of the package's own modules in a file."""
    found: list[tuple[str, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, "") for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.append((submodule, "") if submodule in modules else (node.module, alias.name))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return [(module, name) for module, name in found if module in modules]


def import_graph(package: Path) -> dict[str, list[tuple[str, str]]]:
    files = module_names(package)
    return {name: imports(path, set(files)) for name, path in files.items()}


def find_cycle(graph: dict[str, list[tuple[str, str]]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once all it imports is explored

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = "open"
        for target, _ in graph.get(module, []):
            if state.get(target) == "open":
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target, path + [target])):
                return cycle
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module, [module])):
            return cycle
    return None


def violations(graph: dict[str, list[tuple[str, str]]]) -> list[str]:
    """Every import that breaks the rules, as "importer -> imported"."""
    broken = []
    for module, targets in graph.items():
        for target, name in targets:
            if within(target, WORLD) and not within(module, WORLD):
                broken.append(f"{module} -> {target} (the toolkit never imports the world)")
            wing, other = (next((w for w in WINGS if within(m, w)), None) for m in (module, target))
            if wing and other and wing != other:
                broken.append(f"{module} -> {target} (the wings stand alone)")
            shared = any(within(module, layer) for layer in SHARED)
            above = any(within(target, layer) for layer in ABOVE_THE_WINGS)
            if shared and (other or above):
                broken.append(f"{module} -> {target} (the shared modules import no wing)")
            if wing and above:
                broken.append(f"{module} -> {target} (the wings never import the layers above them)")
            if within(module, WORLD) and not within(target, WORLD) and name.startswith("_"):
                broken.append(f"{module} -> {target}.{name} (the world uses the toolkit's public names only)")
    return broken


@pytest.fixture(scope="module")
def graph():
    return import_graph(PACKAGE)


def test_every_module_is_in_the_toolkit_or_the_world(graph):
    layers = (*TOOLKIT, WORLD)
    assert [m for m in graph if m != "hadpo" and not any(within(m, layer) for layer in layers)] == []


def test_the_toolkit_never_imports_the_world_and_the_wings_stand_alone(graph):
    assert violations(graph) == []


def test_no_import_cycle(graph):
    assert find_cycle(graph) is None


def test_the_checks_catch_a_forbidden_import_and_a_cycle(tmp_path):
    package = tmp_path / "hadpo"
    for folder in ("pairs", "evaluate", "world", "rounds", "train"):
        (package / folder).mkdir(parents=True)
        (package / folder / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "pairs" / "build.py").write_text("def f():\n    from hadpo.world.demo import load\n")
    (package / "world" / "demo.py").write_text("from hadpo.pairs import build\nfrom hadpo.evaluate import _x\n")
    (package / "evaluate" / "__init__.py").write_text("import hadpo.pairs.build\n")
    (package / "text.py").write_text("from hadpo.evaluate import chair\n")
    (package / "rounds" / "driver.py").write_text("from hadpo.pairs import build\nfrom hadpo.train import run\n")
    (package / "train" / "run.py").write_text("from hadpo.rounds.driver import train_model\n")
    (package / "world" / "typing_only.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from hadpo.world.demo import load\n"
    )
    graph = import_graph(package)
    assert find_cycle(graph) == ["hadpo.pairs.build", "hadpo.world.demo", "hadpo.pairs.build"]
    assert ("hadpo.pairs.build", "") in graph["hadpo.rounds.driver"]  # the rounds driver may chain the wings
    assert violations(graph) == [
        "hadpo.evaluate -> hadpo.pairs.build (the wings stand alone)",
        "hadpo.pairs.build -> hadpo.world.demo (the toolkit never imports the world)",
        "hadpo.text -> hadpo.evaluate (the shared modules import no wing)",
        "hadpo.train.run -> hadpo.rounds.driver (the wings never import the layers above them)",
        "hadpo.world.demo -> hadpo.evaluate._x (the world uses the toolkit's public names only)",
    ]
    assert graph["hadpo.world.typing_only"] == []


def test_the_world_s_verbs_reach_the_command_line_through_the_entry_point_group():
    from hadpo.cli import build_parser

    verbs = build_parser()._subparsers._group_actions[0].choices
    assert {"pairs", "train", "eval", "report", "rounds", "world", "demo"} <= set(verbs)
