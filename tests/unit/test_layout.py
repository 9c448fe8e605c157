"""The package layout reads as the architecture: few top-level modules, no import cycles,
no module reaching into another's private names.

The import graph is read from the sources with `ast` (nothing is imported or run), so a
cycle hidden behind a function-level import counts as much as one at the top of a file.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import uvbuild

PACKAGE_DIR = Path(uvbuild.__file__).parent
MAX_TOP_LEVEL_MODULES = 10


@dataclass(frozen=True)
class Import:
    """One `import`/`from ... import` of a uvbuild module, as written in a source file."""

    target: str  # the module imported, e.g. "uvbuild.plan.planner"
    names: tuple[str, ...]  # the names taken from it ("" for the module itself)
    bound: str | None  # the local name bound to the module, when the module itself is bound
    type_checking_only: bool


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def _type_checking_lines(tree: ast.Module) -> set[int]:
    """Line numbers of statements under `if TYPE_CHECKING:` (imports for annotations only)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    guarded = _type_checking_lines(tree)
    is_package = path.name == "__init__.py"
    found: list[Import] = []
    for node in ast.walk(tree):
        only_typing = getattr(node, "lineno", 0) in guarded
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    bound = alias.asname or (alias.name if "." not in alias.name else None)
                    found.append(Import(alias.name, ("",), bound, only_typing))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source not in modules:
                continue
            plain = []
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                if submodule in modules:
                    found.append(Import(submodule, ("",), alias.asname or alias.name, only_typing))
                else:
                    plain.append(alias.name)
            if plain:
                found.append(Import(source, tuple(plain), None, only_typing))
    return found


def import_graph(*, with_type_checking: bool) -> dict[str, set[str]]:
    modules = all_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for imp in imports_of(name, path, modules):
            if imp.target != name and (with_type_checking or not imp.type_checking_only):
                graph[name].add(imp.target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path that ends where it starts, or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        for nxt in sorted(graph.get(node, ())):
            cycle = visit(nxt, path + [node])
            if cycle:
                return cycle
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start, [])
        if cycle:
            return cycle
    return None


def subpackage_of(module: str) -> str:
    """The layer a module belongs to: `uvbuild.plan.inputs` → `uvbuild.plan`."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 else module


def test_at_most_ten_modules_at_the_top() -> None:
    top = sorted(path.name for path in PACKAGE_DIR.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_every_subpackage_says_what_it_is_for() -> None:
    for init in PACKAGE_DIR.glob("*/__init__.py"):
        assert ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))), init


def test_the_graph_reader_sees_imports() -> None:
    """Guard against a reader that finds nothing, which would pass every cycle test."""
    graph = import_graph(with_type_checking=True)
    assert "uvbuild.engine.cmd" in graph["uvbuild.engine.buildah"]
    assert "uvbuild.plan.planner" in graph["uvbuild.build.executor"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle_between_modules() -> None:
    """Not even through imports made only for type annotations (`if TYPE_CHECKING:`)."""
    assert find_cycle(import_graph(with_type_checking=True)) is None


def test_no_import_cycle_between_subpackages() -> None:
    """recipe → project → plan → build → engine/output: layers only look upstream."""
    layers: dict[str, set[str]] = {}
    for module, targets in import_graph(with_type_checking=True).items():
        layer = subpackage_of(module)
        layers.setdefault(layer, set()).update(
            subpackage_of(t) for t in targets if subpackage_of(t) != layer)
    assert find_cycle(layers) is None


def test_no_module_uses_another_modules_private_names() -> None:
    modules = all_modules()
    offences = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        bound_modules = set()
        for imp in imports_of(name, path, modules):
            if imp.target == name:
                continue
            offences += [f"{name}: from {imp.target} import {n}" for n in imp.names
                         if n.startswith("_") and not n.startswith("__")]
            if imp.bound:
                bound_modules.add(imp.bound)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in bound_modules and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                offences.append(f"{name}: {node.value.id}.{node.attr}")
    assert offences == []
