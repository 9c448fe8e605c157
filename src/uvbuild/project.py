"""The uv project as uvbuild sees it: pyproject.toml, its workspace, and its uv.lock.

`read_project` reads the project once into frozen data and refuses a project whose
uv.lock is missing or out of date, so a build never starts only to have
`uv sync --locked` fail in the builder. The staleness check is `uvbuild.lockcheck`:
pure Python, no uv needed on the host.
"""

from __future__ import annotations

import copy
import glob
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from uvbuild.errors import ProjectError
from uvbuild.pep508 import normalize_name
from uvbuild.tomlshape import check as check_shape

Table = dict[str, Any]


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkspaceMember:
    """A `[tool.uv.workspace]` member other than the root project."""

    name: str  # as written in its pyproject.toml
    path: str  # relative to the workspace root, posix
    is_package: bool


@dataclass(frozen=True, kw_only=True, slots=True)
class Project:
    """What uvbuild needs to know about a uv project, read from pyproject.toml and uv.lock."""

    root: Path  # absolute folder holding pyproject.toml and uv.lock
    name: str  # as written
    normalized_name: str  # PEP 503
    version: str | None  # None: dynamic and not recorded in uv.lock
    is_package: bool  # uv installs it (built), rather than treating it as virtual
    scripts: tuple[str, ...]  # names in [project.scripts]
    requires_python: str | None
    workspace_members: tuple[WorkspaceMember, ...]
    manifest_files: tuple[str, ...]  # what `uv sync --no-install-project` reads, posix, relative


@dataclass(frozen=True, kw_only=True, slots=True)
class LockedPackage:
    """One `[[package]]` of uv.lock, as an SBOM component."""

    name: str
    version: str | None  # None for a dynamic-version workspace package
    source: str  # "registry+https://pypi.org/simple", "editable+.", "virtual+.", "git+..."
    hashes: tuple[str, ...]  # "sha256:..." of the sdist then each wheel, as locked


def read_project(folder: Path) -> Project:
    """Read the uv project in `folder`; raise `ProjectError` if it cannot be built as it is.

    Checks that pyproject.toml is valid, that uv.lock exists, and that uv.lock is up to
    date with pyproject.toml (and every workspace member's) as far as pure Python can tell.
    """
    from uvbuild.lockcheck import check_lock  # here, not at the top: lockcheck imports us

    root = folder.resolve()
    try:
        found = root.is_dir()
    except OSError as exc:  # e.g. a parent folder uvbuild may not enter
        raise ProjectError(f"project folder {root} cannot be read: {exc.strerror}") from None
    if not found:
        raise ProjectError(
            f"project folder {root} not found"
            + (" (it is a file)" if root.exists() else ""),
            hint="`project:` in the recipe is relative to the recipe file's folder",
        )
    pyproject = root / "pyproject.toml"
    doc = load_toml(pyproject)
    project = _project_table(doc, pyproject)
    workspace = _workspace(root, doc)
    members = tuple(member for member, _ in workspace)
    lock_path = root / "uv.lock"
    if lock_path.exists() and not lock_path.is_file():
        raise ProjectError(f"{lock_path} is not a file", hint=f"run `uv lock` in {root}")
    if not lock_path.is_file():
        raise ProjectError(
            f"{lock_path} not found", hint=f"run `uv lock` in {root} and commit uv.lock"
        )
    lock = load_toml(lock_path)
    name, version = project["name"], _version(project, lock, pyproject)
    requires_python = project.get("requires-python")
    if not isinstance(requires_python, (str, type(None))):
        raise ProjectError(f"{pyproject}: project.requires-python must be a string")
    check_lock(root, doc, {member.path: member_doc for member, member_doc in workspace}, lock)
    return Project(
        root=root,
        name=name,
        normalized_name=normalize_name(name),
        version=version,
        is_package=is_package(doc),
        scripts=tuple(table(project, "scripts", pyproject)),
        requires_python=requires_python,
        workspace_members=members,
        manifest_files=_manifest_files(root, members),
    )


_parsed: dict[bytes, Table] = {}


def uv_lock_packages(project: Project) -> tuple[LockedPackage, ...]:
    """Every `[[package]]` of the project's uv.lock, in the lock's order."""
    lock = load_toml(project.root / "uv.lock")
    return tuple(_locked_package(entry) for entry in lock.get("package", []))


def load_toml(path: Path) -> Table:
    """Parse a TOML file, turning a missing or malformed file into a `ProjectError`.

    A build reads uv.lock three times (project, lock check, SBOM): the parse of the
    same bytes is reused (a copy, so callers cannot change each other's tables).
    """
    try:
        data = path.read_bytes()
        parsed = _parsed.get(data)
        if parsed is None:
            # A leading byte-order mark (Windows editors write one) is fine with uv too.
            parsed = tomllib.loads(data.decode("utf-8-sig"))
            check_shape(parsed, path)  # every key uvbuild reads has the type it expects
            _parsed[data] = parsed
        return copy.deepcopy(parsed)
    except FileNotFoundError:
        raise ProjectError(
            f"{path} not found",
            hint="`project:` must name the folder holding pyproject.toml and uv.lock",
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ProjectError(f"{path} is not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProjectError(f"{path} cannot be read: {exc}") from None


def is_package(doc: Table) -> bool:
    """uv's rule: `[tool.uv] package` if set, else whether a `[build-system]` table exists."""
    package = doc.get("tool", {}).get("uv", {}).get("package")
    if isinstance(package, bool):
        return package
    return isinstance(doc.get("build-system"), dict)


def _project_table(doc: Table, path: Path) -> Table:
    project = doc.get("project")
    if not isinstance(project, dict):
        raise ProjectError(
            f"{path} has no [project] table",
            hint="uvbuild builds projects with a [project] table; "
            "a virtual workspace root without one is not supported",
        )
    if not isinstance(project.get("name"), str) or not project["name"]:
        raise ProjectError(f"{path} has no project.name")
    return project


def table(parent: Table, key: str, where: str | Path) -> Table:
    """`parent[key]` as a table ({} when absent); anything else is a ProjectError."""
    value = parent.get(key, {})
    if not isinstance(value, dict):
        raise ProjectError(f"{where}: {key} must be a table")
    return value


def _version(project: Table, lock: Table, path: Path) -> str | None:
    """The static version, else the one uv.lock recorded for a dynamic version, if any."""
    if "version" in project.get("dynamic", []):
        wanted = normalize_name(project["name"])
        for entry in lock.get("package", []):
            if normalize_name(str(entry.get("name", ""))) == wanted:
                version = entry.get("version")
                return version if isinstance(version, str) else None
        return None
    version = project.get("version")
    if not isinstance(version, str):
        raise ProjectError(
            f"{path}: project.version is not set",
            hint='set `version = "..."` in [project], or list "version" in project.dynamic',
        )
    return version


def _workspace(root: Path, doc: Table) -> tuple[tuple[WorkspaceMember, Table], ...]:
    """Members from `[tool.uv.workspace]` globs minus `exclude`: folders with a pyproject.toml.

    Each comes with its parsed pyproject.toml; the root project is not among them.
    """
    workspace = doc.get("tool", {}).get("uv", {}).get("workspace", {})
    include = _globbed(root, workspace.get("members", []))
    exclude = _globbed(root, workspace.get("exclude", []))
    members = []
    for path in sorted(include - exclude - {"."}):
        pyproject = root / path / "pyproject.toml"
        if pyproject.is_file():
            member_doc = load_toml(pyproject)
            name = _project_table(member_doc, pyproject)["name"]
            member = WorkspaceMember(name=name, path=path, is_package=is_package(member_doc))
            members.append((member, member_doc))
    return tuple(members)


def _globbed(root: Path, patterns: Any) -> set[str]:
    """Folders matched by workspace globs, as normalized posix paths relative to root."""
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        raise ProjectError(
            f"{root / 'pyproject.toml'}: tool.uv.workspace members and exclude "
            "must be lists of strings"
        )
    found = set()
    for pattern in patterns:
        for match in glob.glob(pattern, root_dir=root, recursive=True):
            if (root / match).is_dir():
                found.add(Path(os.path.relpath(root / match, root)).as_posix())
    return found


def _manifest_files(root: Path, members: tuple[WorkspaceMember, ...]) -> tuple[str, ...]:
    """The files a dependency-only `uv sync --no-install-project` reads."""
    files = ["pyproject.toml", "uv.lock"]
    files += sorted(f"{m.path}/pyproject.toml" for m in members)
    files += [name for name in (".python-version", "uv.toml") if (root / name).is_file()]
    return tuple(files)


def _locked_package(entry: Table) -> LockedPackage:
    source = entry.get("source", {})
    kind, value = next(iter(source.items()), ("unknown", ""))
    hashes: list[str] = []
    for artifact in [entry.get("sdist", {}), *entry.get("wheels", [])]:
        digest = artifact.get("hash") if isinstance(artifact, dict) else None
        if isinstance(digest, str) and digest not in hashes:
            hashes.append(digest)
    version = entry.get("version")
    return LockedPackage(
        name=str(entry.get("name", "")),
        version=version if isinstance(version, str) else None,
        source=f"{kind}+{value}",
        hashes=tuple(hashes),
    )
