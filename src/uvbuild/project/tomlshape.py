"""The shape of what uvbuild reads from pyproject.toml and uv.lock, checked once at load.

TOML gives any key any type: `tool = 5` or `package = "notalist"` parse fine, and code
that reads `doc["tool"]["uv"]` would fail with a traceback far from the file. Every key
uvbuild reads is declared here with its type; `check` runs when a file is loaded (see
project.load_toml) and names the file and the key path of the first value of the wrong
type. Keys uvbuild does not read are not checked (uv judges them).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uvbuild.errors import ProjectError


@dataclass(frozen=True, slots=True)
class Table:
    """A table; the listed keys, when present, have the given shapes."""

    fields: Mapping[str, Shape]


@dataclass(frozen=True, slots=True)
class TableOf:
    """A table whose every value has one shape (names → lists, for instance)."""

    value: Shape


@dataclass(frozen=True, slots=True)
class ListOf:
    """An array whose every item has one shape."""

    item: Shape


@dataclass(frozen=True, slots=True)
class OneOf:
    """Any of several shapes."""

    options: tuple[Shape, ...]


Shape = type | Table | TableOf | ListOf | OneOf
ANY_TABLE = Table({})

_REQUIREMENT = Table({"name": str, "specifier": str, "marker": str, "extras": ListOf(str)})

PYPROJECT = Table({
    "project": Table({
        "name": str, "version": str, "dynamic": ListOf(str), "requires-python": str,
        "dependencies": ListOf(str), "optional-dependencies": TableOf(ListOf(str)),
        "scripts": TableOf(str),
    }),
    "build-system": ANY_TABLE,
    "dependency-groups": TableOf(ListOf(OneOf((str, Table({"include-group": str}))))),
    "tool": Table({"uv": Table({
        "package": bool,
        "workspace": Table({"members": ListOf(str), "exclude": ListOf(str)}),
        "sources": TableOf(OneOf((ANY_TABLE, ListOf(ANY_TABLE)))),
        "dev-dependencies": ListOf(str),
        "constraint-dependencies": ListOf(str),
        "override-dependencies": ListOf(str),
    })}),
})

UV_LOCK = Table({
    "version": int, "revision": int, "requires-python": str,
    "manifest": Table({"members": ListOf(str), "constraints": ListOf(_REQUIREMENT),
                       "overrides": ListOf(_REQUIREMENT)}),
    "package": ListOf(Table({
        "name": str, "version": str, "source": ANY_TABLE,
        "sdist": Table({"hash": str}), "wheels": ListOf(Table({"hash": str})),
        "metadata": Table({"requires-dist": ListOf(_REQUIREMENT),
                           "requires-dev": TableOf(ListOf(_REQUIREMENT)),
                           "provides-extras": ListOf(str)}),
    })),
})

SHAPES = {"pyproject.toml": PYPROJECT, "uv.lock": UV_LOCK}


def check(doc: Mapping[str, Any], path: Path) -> None:
    """Raise ProjectError naming `path` and the key if `doc` (pyproject.toml or uv.lock,
    by file name) has a value of the wrong type where uvbuild reads it."""
    shape = SHAPES.get(path.name)
    if shape is None:
        return
    for key, expected, found in _problems(doc, shape, ""):
        fix = ("run `uv lock` to write it again" if path.name == "uv.lock"
               else "fix the value (see the pyproject.toml specification and uv's settings)")
        raise ProjectError(f"{path}: {key or 'the file'}: expected {expected}, found {found}",
                           hint=fix)


def _problems(value: Any, shape: Shape, key: str) -> Iterator[tuple[str, str, str]]:
    if not _fits(value, shape):
        yield key, _describe(shape), _kind(value)
        return
    if isinstance(shape, Table):
        for name, inner in shape.fields.items():
            if name in value:
                yield from _problems(value[name], inner, _join(key, name))
    elif isinstance(shape, TableOf):
        for name, item in value.items():
            yield from _problems(item, shape.value, _join(key, name))
    elif isinstance(shape, ListOf):
        for index, item in enumerate(value):
            yield from _problems(item, shape.item, f"{key}[{index}]")
    elif isinstance(shape, OneOf):
        fitting = next(option for option in shape.options if _fits(value, option))
        yield from _problems(value, fitting, key)


def _fits(value: Any, shape: Shape) -> bool:
    """Whether `value` has `shape` at its top level (what it holds is checked after)."""
    if isinstance(shape, (Table, TableOf)):
        return isinstance(value, dict)
    if isinstance(shape, ListOf):
        return isinstance(value, list)
    if isinstance(shape, OneOf):
        return any(_fits(value, option) for option in shape.options)
    if shape is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, shape)


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


_KINDS = {str: "a string", int: "an integer", bool: "a boolean (true or false)"}


def _describe(shape: Shape) -> str:
    if isinstance(shape, (Table, TableOf)):
        return "a table"
    if isinstance(shape, ListOf):
        return "a list of strings" if shape.item is str else \
            f"a list (each item {_describe(shape.item)})"
    if isinstance(shape, OneOf):
        return " or ".join(_describe(option) for option in shape.options)
    return _KINDS.get(shape, shape.__name__)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return f"{type(value).__name__} {value!r}"
