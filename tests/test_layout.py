"""The layout keeps its shape: imports point down (no cycles between modules or between packages), only the
CLI imports the CLI, few loose modules, small modules, each with a docstring, and a light `import refcal`.

The import graph is read from the source with `ast`: imports inside functions count, `if TYPE_CHECKING:`
blocks do not, and `from refcal.x import name` is an edge to the submodule `refcal.x.name` when there is one
(else to `refcal.x`). See docs/architecture.md.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

import refcal

ROOT = Path(refcal.__file__).parent
MAX_LINES = 500
MAX_LOOSE_MODULES = 10


def _modules() -> tuple[dict[str, Path], dict[str, str]]:
    """Dotted module name → file, and → source, for every .py file under src/refcal (a package is its
    __init__.py). Read once, so every test sees the same snapshot of the tree."""
    modules, sources = {}, {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        try:
            sources[".".join(parts)] = path.read_text(encoding="utf-8")
        except FileNotFoundError:  # removed while the tree was being read
            continue
        modules[".".join(parts)] = path
    return modules, sources


MODULES, SOURCES = _modules()


def _resolve(name: str) -> str | None:
    """The module of `name`, or of its nearest parent that is one."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:  # the else branch runs
                skipped.update(id(child) for child in ast.walk(inner))
    return skipped


def _imports(module: str, path: Path) -> set[str]:
    """The refcal modules `module` imports at run time (at any depth of its code)."""
    tree = ast.parse(SOURCES[module])
    skipped = _type_checking_nodes(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(t for alias in node.names if alias.name.split(".")[0] == "refcal"
                         and (t := _resolve(alias.name)))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            if source.split(".")[0] != "refcal":
                continue
            for alias in node.names:
                full = f"{source}.{alias.name}"
                target = full if full in MODULES else _resolve(source)
                if target:
                    found.add(target)
    found.discard(module)
    return found


EDGES: dict[str, set[str]] = {module: _imports(module, path) for module, path in MODULES.items()}


def _package(module: str) -> str:
    """`refcal.X` of a module (a loose module is its own package)."""
    return ".".join(module.split(".")[:2])


def _cycles(nodes: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
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


def _describe(cycles: list[list[str]], edges: dict[str, set[str]]) -> str:
    lines = []
    for cycle in cycles:
        members = set(cycle)
        lines.append(f"{len(cycle)} in a cycle: {', '.join(cycle)}")
        lines += [f"    {node} -> {', '.join(sorted(edges[node] & members))}" for node in cycle]
    return "\n".join(lines)


def test_the_graph_sees_the_project() -> None:
    assert "refcal.run.session" in MODULES and "refcal.records" in MODULES
    assert "refcal.records" in EDGES["refcal.run.session"]
    assert not any(edge.startswith("refcal.cli") for edge in EDGES["refcal.run.session"])


def test_cycles_are_found() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(["a", "b", "c", "d"], edges) == [["a", "b", "c"]]
    assert _cycles(["a", "b"], {"a": {"b"}}) == []


def test_no_import_cycle_between_modules() -> None:
    cycles = _cycles(sorted(MODULES), EDGES)
    assert not cycles, "import cycles between modules:\n" + _describe(cycles, EDGES)


def test_no_import_cycle_between_packages() -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    for module, targets in EDGES.items():
        edges[_package(module)].update(_package(t) for t in targets if _package(t) != _package(module))
    cycles = _cycles(sorted({_package(module) for module in MODULES}), edges)
    assert not cycles, "import cycles between packages (refcal.X):\n" + _describe(cycles, edges)


def test_only_the_cli_imports_the_cli() -> None:
    offenders = {module: sorted(t for t in targets if _package(t) == "refcal.cli")
                 for module, targets in EDGES.items() if _package(module) != "refcal.cli"}
    offenders = {module: targets for module, targets in offenders.items() if targets}
    assert not offenders, f"modules outside refcal.cli import it: {offenders}"


def test_few_loose_modules() -> None:
    loose = sorted(path.name for path in ROOT.glob("*.py") if path.name != "__init__.py")
    assert len(loose) <= MAX_LOOSE_MODULES, f"{len(loose)} loose modules in src/refcal: {loose}"


def test_no_module_is_too_long() -> None:
    long = {module: lines for module, source in SOURCES.items() if (lines := len(source.splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_every_module_has_a_docstring() -> None:
    missing = [module for module, source in SOURCES.items() if not ast.get_docstring(ast.parse(source))]
    assert not missing, f"modules without a docstring: {missing}"


@pytest.mark.parametrize("heavy", ["torch", "transformers", "fastapi", "typer"])
def test_import_refcal_is_light(heavy: str) -> None:
    result = subprocess.run([sys.executable, "-c", "import refcal, sys, json; print(json.dumps(sorted(sys.modules)))"],
                            capture_output=True, text=True, check=True)
    loaded = json.loads(result.stdout)
    assert not [name for name in loaded if name.split(".")[0] == heavy], f"`import refcal` loads {heavy}"
