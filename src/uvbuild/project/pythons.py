"""The Python a project asks for, and whether a builder base can give it.

A project asks with `.python-version` (its folder's, else its workspace root's) or,
without one, with `requires-python`. uvbuild checks the request against the Python a
bootstrapped Debian suite ships, and against a `builder.python` whose version its name
or the suite tells, before any container is made: a project pinned to 3.12 is never
built on 3.11 without a word. Without `builder.python`, uv is handed the request itself
(`uv sync --python REQUEST`) so that it finds that interpreter on the base's PATH.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from uvbuild.errors import ProjectError
from uvbuild.project.model import Project
from uvbuild.recipe.model import Base, BootstrapBase, Recipe

# The python3 each Debian suite ships (what `packages: [python3]` installs).
SUITE_PYTHON = {"buster": "3.7", "bullseye": "3.9", "bookworm": "3.11", "trixie": "3.13",
                "forky": "3.13"}

_CLAUSE = re.compile(r"(~=|==|!=|<=|>=|<|>|===)?\s*([0-9]+(?:\.[0-9]+)*)(\.\*)?")
_PINNED = re.compile(r"(?:c?python[-@]?)?([0-9]+(?:\.[0-9]+){0,2})t?", re.IGNORECASE)


@dataclass(frozen=True, kw_only=True, slots=True)
class PythonRequest:
    """What the project asks for, and where it says so (for messages)."""

    text: str  # "3.12" (.python-version) or ">=3.12" (requires-python)
    source: str  # "/path/.python-version" or "requires-python in /path/pyproject.toml"
    pinned: bool  # from .python-version: a version to use, not a range to fit in


def python_request(project: Project) -> PythonRequest | None:
    """`.python-version` (the project's folder, then the workspace root), else
    requires-python; None when the project says nothing."""
    for folder in dict.fromkeys((project.root, project.lock_root)):
        path = folder / ".python-version"
        if path.is_file():
            lines = [line.strip() for line in path.read_text(errors="replace").splitlines()]
            wanted = next((line for line in lines if line and not line.startswith("#")), "")
            if wanted:
                return PythonRequest(text=wanted, source=str(path), pinned=True)
    if project.requires_python:
        return PythonRequest(text=project.requires_python, pinned=False,
                             source=f"requires-python in {project.root / 'pyproject.toml'}")
    return None


def suite_python(base: Base) -> str | None:
    """The Python version a bootstrapped Debian base has, if uvbuild knows the suite."""
    if isinstance(base, BootstrapBase) and base.distribution == "debian":
        return SUITE_PYTHON.get(base.suite)
    return None


def named_version(python: str) -> str | None:
    """The X.Y a `builder.python` spells in its name (/usr/bin/python3.12), if any."""
    match = re.search(r"python([0-9]+\.[0-9]+)$", Path(python).name)
    return match[1] if match else None


def satisfies(request: PythonRequest, version: str) -> bool | None:
    """Whether Python `version` (X.Y, any patch) meets the request; None if unreadable."""
    if not re.fullmatch(r"[0-9]+\.[0-9]+(\.[0-9]+)?", version):
        return None
    have = tuple(int(n) for n in version.split("."))[:2]
    if request.pinned:
        match = _PINNED.fullmatch(request.text)
        if match is None:
            return None  # "pypy@3.10" and the like: left to uv
        wanted = tuple(int(n) for n in match[1].split("."))
        return wanted[:2] == have if len(wanted) > 1 else wanted[0] == have[0]
    clauses = [c.strip() for c in request.text.split(",") if c.strip()]
    parsed = [_CLAUSE.fullmatch(c) for c in clauses]
    if not clauses or any(m is None for m in parsed):
        return None
    # Some patch release of X.Y must meet every clause.
    return any(all(_holds(m, (*have, patch)) for m in parsed if m) for patch in range(100))


def _holds(match: re.Match[str], have: tuple[int, ...]) -> bool:
    op, text, star = match[1] or "==", match[2], match[3]
    wanted = tuple(int(n) for n in text.split("."))
    if star or op in ("==", "!=", "===") and len(wanted) < 3:
        same = have[:len(wanted)] == wanted
        return same if op != "!=" else not same
    padded = (*wanted, 0, 0)[:3]
    if op == "~=":
        upper = (*wanted[:-2], wanted[-2] + 1) if len(wanted) >= 2 else wanted
        return have >= padded and have[:len(upper)] < upper
    return {"==": have == padded, "===": have == padded, "!=": have != padded,
            ">=": have >= padded, ">": have > padded, "<=": have <= padded,
            "<": have < padded}[op]


def check_made_venv(request: PythonRequest | None, version: str, where: str) -> None:
    """After the dependency sync: the venv's Python (X.Y) must meet the request too.

    The check for bases whose Python is known only inside a container (an image base
    with a `builder.python` whose name does not tell its version).
    """
    if request is not None and satisfies(request, version) is False:
        raise ProjectError(
            f"the project asks for Python {request.text} ({request.source}), but {where} "
            f"is Python {version}",
            hint="set builder.python to an interpreter that meets the request, use another "
            "base, or change the project's request")


def check_python(recipe: Recipe, project: Project) -> str | None:
    """Raise ProjectError if the builder cannot give the Python the project asks for
    (as far as the recipe tells before any container); return the request to hand to
    `uv sync --python` when `builder.python` is not set, else None."""
    configured = recipe.builder.python
    have = (named_version(configured) if configured else None) or suite_python(
        recipe.builder.base)
    where = f"builder.python {configured}" if configured else "the builder base"
    if isinstance(recipe.builder.base, BootstrapBase):
        where += f" (Debian {recipe.builder.base.suite})"
    runtime = suite_python(recipe.runtime.base)
    if have is not None and runtime is not None and have != runtime:
        # The venv's interpreter is the builder's: found missing in the runtime only
        # after both bases are made, unless the suites tell it now.
        suite = recipe.runtime.base.suite if isinstance(recipe.runtime.base,
                                                        BootstrapBase) else "?"
        raise ProjectError(
            f"the venv is made with Python {have} ({where}), but the runtime base "
            f"(Debian {suite}) has Python {runtime}: the image's venv would not run",
            hint="use the same Debian suite (the same Python) for builder and runtime")
    request = python_request(project)
    if request is None:
        return None
    if have is not None and satisfies(request, have) is False:
        raise ProjectError(
            f"{project.name} asks for Python {request.text} ({request.source}), but "
            f"{where} has Python {have}",
            hint="use a base whose Python meets the request (e.g. suite: trixie has 3.13), "
            "or change the project's request" + (
                " (.python-version is the project's truth: builder.python must agree)"
                if request.pinned and configured else ""))
    return None if configured else request.text
