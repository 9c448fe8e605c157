"""The Python a project asks for, and whether a builder base can give it.

A project asks with `.python-version` (its folder's, else its workspace root's) or,
without one, with `requires-python`. uvbuild checks the request against the Python a
bootstrapped Debian suite ships, and against a `builder.python` whose version its name
or the suite tells, before any container is made: a project pinned to 3.12 is never
built on 3.11 without a word. Without `builder.python`, uv is handed the request itself
(`uv sync --python REQUEST`) so that it finds that interpreter on the base's PATH. With
it, uv is handed that interpreter and reads no `.python-version`: the pin is then held
to it by uvbuild, in the builder (`Wanted`, incontainer/pythoncheck.py), since only
there are its patch version, implementation and build known.
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
# The request forms uv documents (docs/concepts/python-versions.md) that name a version:
# 3.12, 3.12.3, 3.13t, 3.13+freethreaded, 3.14+gil, 3.12d, cpython@3.12, cp312,
# pypy3.10, cpython-3.12.3-linux-x86_64-gnu; and python3.12, an executable name that
# means the version as well.
_IMPLEMENTATIONS = {"cpython": "cpython", "cp": "cpython", "pypy": "pypy", "pp": "pypy",
                    "graalpy": "graalpy", "gp": "graalpy", "python": None}
_IMPLEMENTATION = "|".join(sorted(_IMPLEMENTATIONS, key=len, reverse=True))
_PINNED = re.compile(
    rf"(?:(?P<implementation>{_IMPLEMENTATION})(?P<separator>[@-]?))?"
    r"(?P<version>[0-9]+(?:\.[0-9]+){0,2})"
    r"(?P<variant>t|d|td|\+freethreaded|\+gil|\+debug|\+freethreaded\+debug)?"
    r"(?P<key>-[^-\s]+-[^-\s]+-[^-\s]+)?", re.IGNORECASE)
_RANGED = re.compile(rf"(?P<implementation>{_IMPLEMENTATION})?(?P<clauses>[<>=!~].*)",
                     re.IGNORECASE)
_ONLY_IMPLEMENTATION = re.compile(_IMPLEMENTATION, re.IGNORECASE)
FREE_THREADED_SINCE = (3, 13)  # uv refuses a free-threaded request for an older Python


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


@dataclass(frozen=True, kw_only=True, slots=True)
class Clause:
    """One version clause: `==3.11` (any 3.11.x), `>=3.11.4`, `!=3.12.*`..."""

    op: str
    version: tuple[int, ...]
    star: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class Wanted:
    """A request read as what an interpreter must be to meet it, as uv reads it."""

    implementation: str | None = None  # sys.implementation.name: cpython, pypy, graalpy
    clauses: tuple[Clause, ...] = ()  # all must hold for the interpreter's X.Y.Z
    # True: a free-threaded build (3.13t); False: one with the GIL (3.14+gil); None:
    # either (uv's default variant, left to uv and the user's choice of builder.python).
    free_threaded: bool | None = None
    debug: bool = False  # a debug build (3.12d)


def read_request(request: PythonRequest) -> Wanted | None:
    """What `request` asks of an interpreter; None for a form uvbuild does not read (a
    path or an executable name, a pre-release, `any`): left to uv."""
    text = request.text.strip()
    if not request.pinned:
        clauses = _clauses(text)
        return Wanted(clauses=clauses) if clauses else None
    if _ONLY_IMPLEMENTATION.fullmatch(text):
        implementation = _IMPLEMENTATIONS[text.lower()]
        return Wanted(implementation=implementation) if implementation else None
    ranged = _RANGED.fullmatch(text)
    if ranged:
        clauses = _clauses(ranged["clauses"])
        return Wanted(implementation=_implementation(ranged["implementation"]),
                      clauses=clauses) if clauses else None
    match = _PINNED.fullmatch(text)
    if match is None or match["key"] and match["separator"] != "-":
        return None
    version = match["version"]
    if "." not in version and len(version) > 1:
        if (match["implementation"] or "").lower() == "python":
            return None  # python312: an executable's name, left to uv
        version = f"{version[0]}.{version[1:]}"  # 312 and cp312 are 3.12 to uv
    variant = (match["variant"] or "").lower()
    return Wanted(
        implementation=_implementation(match["implementation"]),
        # As uv: 3.11 is any 3.11.x, 3.11.9 that one release.
        clauses=(Clause(op="==", version=tuple(int(n) for n in version.split("."))),),
        free_threaded=True if variant.startswith(("t", "+freethreaded")) else
        False if variant == "+gil" else None,
        debug=variant in ("d", "td", "+debug", "+freethreaded+debug"))


def _implementation(text: str | None) -> str | None:
    return _IMPLEMENTATIONS[text.lower()] if text else None


def _clauses(text: str) -> tuple[Clause, ...]:
    """Comma-separated version clauses; () if one of them cannot be read."""
    parts = [c.strip() for c in text.split(",") if c.strip()]
    matches = [_CLAUSE.fullmatch(part) for part in parts]
    return tuple(Clause(op=m[1] or "==", version=tuple(int(n) for n in m[2].split(".")),
                        star=bool(m[3]))
                 for m in matches if m) if parts and all(matches) else ()


def meets(wanted: Wanted, version: tuple[int, int, int]) -> bool:
    """Whether Python X.Y.Z meets every version clause of `wanted`."""
    return all(_holds(clause, version) for clause in wanted.clauses)


def allowed_versions(wanted: Wanted) -> tuple[str, ...]:
    """The Python 3 versions that meet `wanted`'s clauses, as prefixes of X.Y.Z: "3.12"
    for every 3.12.x, "3.11.9" for that release alone (for the builder's check)."""
    allowed: list[str] = []
    for minor in range(40):
        patches = [patch for patch in range(100) if meets(wanted, (3, minor, patch))]
        if len(patches) == 100:
            allowed.append(f"3.{minor}")
        else:
            allowed += [f"3.{minor}.{patch}" for patch in patches]
    return tuple(allowed)


def impossible(wanted: Wanted) -> str | None:
    """Why no interpreter can meet `wanted`, if uvbuild can tell: a free-threaded build
    of a Python older than 3.13 (uv refuses such a request: "Invalid version request")."""
    if wanted.free_threaded and not any(
            meets(wanted, (3, minor, patch)) for minor in range(FREE_THREADED_SINCE[1], 40)
            for patch in range(100)):
        since = ".".join(map(str, FREE_THREADED_SINCE))
        return f"free-threaded builds of Python start at {since} (uv refuses the request)"
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
    """Whether a CPython `version` (X.Y, any patch) meets the request; None if unreadable
    or if it asks for another implementation (a fact the version does not tell)."""
    if not re.fullmatch(r"[0-9]+\.[0-9]+(\.[0-9]+)?", version):
        return None
    wanted = read_request(request)
    if wanted is None or wanted.implementation not in (None, "cpython"):
        return None
    major, minor = (int(n) for n in version.split(".")[:2])
    # Some patch release of X.Y must meet every clause.
    return any(meets(wanted, (major, minor, patch)) for patch in range(100))


def _holds(clause: Clause, have: tuple[int, ...]) -> bool:
    op, wanted = clause.op, clause.version
    if clause.star or op in ("==", "!=", "===") and len(wanted) < 3:
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
    wanted = read_request(request)
    why = impossible(wanted) if wanted is not None else None
    if why is not None:
        # Known now, whatever the base: uv would refuse the request in the builder, and
        # no builder.python can meet it.
        raise ProjectError(
            f"{project.name} asks for Python {request.text} ({request.source}), which "
            f"{where} cannot meet, nor any other interpreter: {why}",
            hint="pin a free-threaded 3.13 or later (3.13t), or drop the `t` for a build "
            "with the GIL")
    if have is not None and satisfies(request, have) is False:
        raise ProjectError(
            f"{project.name} asks for Python {request.text} ({request.source}), but "
            f"{where} has Python {have}",
            hint="use a base whose Python meets the request (e.g. suite: trixie has 3.13), "
            "or change the project's request" + (
                " (.python-version is the project's truth: builder.python must agree)"
                if request.pinned and configured else ""))
    return None if configured else request.text
