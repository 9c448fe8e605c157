"""TOML tables as uvbuild reads them, shared by the project reader and the lock check.

Both `project.model` and `project.lockcheck` read pyproject.toml tables the same way;
the readers live here so that neither has to import the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from uvbuild.errors import ProjectError

Table = dict[str, Any]


def is_package(doc: Table) -> bool:
    """uv's rule: `[tool.uv] package` if set, else whether a `[build-system]` table exists."""
    package = doc.get("tool", {}).get("uv", {}).get("package")
    if isinstance(package, bool):
        return package
    return isinstance(doc.get("build-system"), dict)


def table(parent: Table, key: str, where: str | Path) -> Table:
    """`parent[key]` as a table ({} when absent); anything else is a ProjectError."""
    value = parent.get(key, {})
    if not isinstance(value, dict):
        raise ProjectError(f"{where}: {key} must be a table")
    return value
