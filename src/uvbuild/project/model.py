"""The uv project as uvbuild sees it: pyproject.toml, its workspace, and its uv.lock.

`read_project` reads the project once into frozen data and refuses a project whose
uv.lock is missing or out of date, so a build never starts only to have
`uv sync --locked` fail in the builder. The staleness check is `project.lockcheck`:
pure Python, no uv needed on the host.
"""

from __future__ import annotations

import copy
import glob
import marshal
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
from uvbuild.project import memo
from uvbuild.project.lockcheck import check_lock
from uvbuild.project.lockfile import LockedPackage, locked_packages
from uvbuild.project.pep508 import normalize_name
from uvbuild.project.tables import Table, is_package, table
from uvbuild.project.tomlshape import check as check_shape


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
    # Where uv.lock is: the project's folder, or the workspace root of a member.
    workspace_root: Path | None = None  # None: `root`
    # The build context: the common folder of the workspace root and every local package
    # the build needs (path dependencies may lie outside the project). Files the builder
    # gets (manifest_files, shipped_files) are relative to it.
    context: Path | None = None  # None: `root`
    package: str | None = None  # `uv sync --package` for a member of another root's workspace
    path_dependencies: tuple[str, ...] = ()  # folders (or files) relative to `context`
    shipped_files: tuple[str, ...] | None = None  # what the project step reads; None: all
    # What `builder.sync` may name (project.selections), as written: the extras of
    # [project.optional-dependencies] (None: dynamic, or not read), and the groups uv
    # takes for this project (None: not read), see dependency_groups.
    extras: tuple[str, ...] | None = None
    groups: tuple[str, ...] | None = None

    @property
    def lock_root(self) -> Path:
        """The folder of the uv.lock that pins this project (a workspace root, maybe)."""
        return self.workspace_root or self.root

    @property
    def context_root(self) -> Path:
        return self.context or self.root

    def in_context(self, folder: Path) -> str:
        """`folder` relative to the build context, posix ("" for the context itself)."""
        return _relative(self.context_root, folder)


@dataclass(frozen=True, kw_only=True, slots=True)
class LocalPackage:
    """A package of uv.lock that comes from the local disk: the project, a workspace
    member or a path dependency."""

    name: str  # normalized
    path: Path  # absolute, resolved
    kind: str  # the uv.lock source key: "editable", "virtual", "directory" or "path"
    # Where uv.lock says it is, when a symlink on the way makes that another place.
    linked_from: Path | None = None


def read_project(folder: Path) -> Project:
    """Read the uv project in `folder`; raise `ProjectError` if it cannot be built as it is.

    Checks that pyproject.toml is valid, that uv.lock exists, and that uv.lock is up to
    date with pyproject.toml (and every workspace member's) as far as pure Python can tell.
    `folder` may also be a member of a workspace whose root (maybe virtual, without a
    [project]) holds uv.lock; the path dependencies uv.lock names must exist in a folder
    the build may read.
    """
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
    own_doc = load_toml(pyproject)
    lock_root = root if (root / "uv.lock").is_file() else _workspace_root(root)
    doc = own_doc if lock_root == root else load_toml(lock_root / "pyproject.toml")
    project = _project_table(own_doc, pyproject)
    workspace = _workspace(lock_root, doc)
    members = tuple(member for member, _ in workspace)
    lock_path = lock_root / "uv.lock"
    if lock_path.exists() and not lock_path.is_file():
        raise ProjectError(f"{lock_path} is not a file", hint=f"run `uv lock` in {lock_root}")
    if not lock_path.is_file():
        raise ProjectError(
            f"{lock_path} not found", hint=f"run `uv lock` in {root} and commit uv.lock"
        )
    lock = load_toml(lock_path)
    name, version = project["name"], _version(project, lock, pyproject)
    requires_python = project.get("requires-python")
    if not isinstance(requires_python, (str, type(None))):
        raise ProjectError(f"{pyproject}: project.requires-python must be a string")
    member_docs = {member.path: member_doc for member, member_doc in workspace}
    # Judged once per content (project/memo.py): an unchanged rebuild asks no more. The
    # key is the bytes of what it reads: uv.lock and every pyproject.toml of the workspace.
    code = _code("lockcheck", "lockfile", "pep508", "tables")
    judged = None
    if code is not None:
        read = [lock_path, lock_root / "pyproject.toml",
                *(lock_root / member.path / "pyproject.toml" for member, _ in workspace)]
        try:
            judged = memo.key(code, *(part for path in read
                                      for part in (str(path).encode(), path.read_bytes())))
        except OSError:
            judged = None
    if not memo.seen("lock-current", judged):
        check_lock(lock_root, doc, member_docs, lock)
        memo.remember("lock-current", judged)
    local = local_packages(lock_root, lock)
    needed = needed_packages(lock, normalize_name(name))
    in_workspace = {lock_root, *(lock_root / m.path for m in members)}
    path_deps = tuple(p for p in local if p.path not in in_workspace)
    for dep in path_deps:
        _check_path_dependency(root, dep)
    context = Path(os.path.commonpath([lock_root, *(p.path for p in path_deps)]))
    if context == Path(context.anchor):
        raise ProjectError(
            f"{root}: the project and its path dependencies have no common folder but "
            f"{context}: {', '.join(str(p.path) for p in path_deps)}",
            hint="keep path dependencies in the same repository as the project")
    def rel(path: Path) -> str:
        return _relative(context, path)

    manifests = [_join(rel(lock_root), f) for f in _manifest_files(lock_root, members)]
    manifests += [_join(rel(p.path), "pyproject.toml") for p in path_deps
                  if p.path.is_dir() and (p.path / "pyproject.toml").is_file()]
    manifests += [rel(p.path) for p in path_deps if p.path.is_file()]
    shipped = _shipped_files(root, lock_root, context, members,
                             [p for p in path_deps if p.name in needed], needed)
    return Project(
        root=root,
        name=name,
        normalized_name=normalize_name(name),
        version=version,
        is_package=is_package(own_doc),
        scripts=tuple(table(project, "scripts", pyproject)),
        requires_python=requires_python,
        workspace_members=members,
        manifest_files=tuple(manifests),
        # None where they are the project's own folder: a plain project reads as before.
        workspace_root=None if lock_root == root else lock_root,
        context=None if context == root else context,
        package=name if lock_root != root else None,
        path_dependencies=tuple(rel(p.path) for p in path_deps),
        shipped_files=None if context == root == lock_root and not path_deps
        else tuple(sorted(set(shipped) | set(manifests))),
        extras=_extras(project, pyproject),
        # A member may name the workspace root's groups too (uv 0.13 takes them).
        groups=tuple(dict.fromkeys(dependency_groups(own_doc) + (
            dependency_groups(doc) if lock_root != root else ()))),
    )


def _extras(project: Table, path: Path) -> tuple[str, ...] | None:
    """[project.optional-dependencies]'s names as written; None when they are dynamic
    (known only once the project is built)."""
    if "optional-dependencies" in project.get("dynamic", []):
        return None
    return tuple(table(project, "optional-dependencies", path))


def dependency_groups(doc: Table) -> tuple[str, ...]:
    """The groups of one pyproject.toml that `uv sync --group` takes, as written: those of
    [dependency-groups], and `dev` where [tool.uv] sets dev-dependencies (uv's legacy dev
    group; an empty list defines it too)."""
    names = list(doc.get("dependency-groups", {}))
    if "dev-dependencies" in doc.get("tool", {}).get("uv", {}):
        names.append("dev")
    return tuple(names)


# Folders no project's path dependency may come from: the build would copy the host's
# system files into the builder.
SYSTEM_FOLDERS = ("/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/boot",
                  "/dev", "/proc", "/sys", "/run", "/var/lib", "/var/log", "/var/cache")


def _check_path_dependency(root: Path, dep: LocalPackage) -> None:
    """A path dependency must exist, not be reached through a symlink, and not be part
    of the host's system folders."""
    if dep.linked_from is not None:
        # The builder gets its files where they are (the symlink's target): uv there
        # looks where uv.lock says, and would not find them.
        raise ProjectError(
            f"{root}: path dependency {dep.name!r} is reached through a symlink: uv.lock "
            f"has it at {dep.linked_from}, which is {dep.path}",
            hint=f"point tool.uv.sources at {dep.path} (or replace the symlink with the "
            "folder), then run `uv lock`")
    if not dep.path.exists():
        raise ProjectError(
            f"{root}: path dependency {dep.name!r} at {dep.path} not found",
            hint="uv.lock names it; check out the folder, or fix tool.uv.sources and run "
            "`uv lock`")
    # A checkout may itself live in such a folder (/var/lib/jenkins/...): only a
    # dependency in a system folder the project is not in is refused.
    if dep.path == Path(dep.path.anchor) or any(
            _under(dep.path, Path(system)) and not _under(root, Path(system))
            for system in SYSTEM_FOLDERS):
        raise ProjectError(
            f"{root}: path dependency {dep.name!r} is {dep.path}, a system folder of this "
            "host; uvbuild will not copy it into the build",
            hint="keep path dependencies in the project's repository, beside the project")
    if dep.path.is_dir() and not any((dep.path / f).is_file()
                                     for f in ("pyproject.toml", "setup.py", "setup.cfg")):
        raise ProjectError(
            f"{root}: path dependency {dep.name!r} at {dep.path} is not a Python project "
            "(no pyproject.toml)", hint="check tool.uv.sources, then run `uv lock`")


def _under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _relative(context: Path, path: Path) -> str:
    """`path` relative to `context`, posix ("" for the context itself)."""
    rel = Path(os.path.relpath(path, context)).as_posix()
    return "" if rel == "." else rel


def _join(prefix: str, rel: str) -> str:
    return f"{prefix}/{rel}" if prefix else rel


def _workspace_root(member: Path) -> Path:
    """The folder above `member` whose uv.lock and workspace include it; else `member`
    itself (whose uv.lock is then missing)."""
    for parent in member.parents:
        if not (parent / "uv.lock").is_file() or not (parent / "pyproject.toml").is_file():
            continue
        doc = load_toml(parent / "pyproject.toml")
        members = {parent / m.path for m, _ in _workspace(parent, doc)}
        if member in members:
            return parent
        if "workspace" in doc.get("tool", {}).get("uv", {}):
            raise ProjectError(
                f"{member} has no uv.lock, and the workspace at {parent} does not include "
                "it", hint=f"add it to tool.uv.workspace.members in {parent / 'pyproject.toml'}"
                " and run `uv lock` there")
    return member


def local_packages(lock_root: Path, lock: Table) -> tuple[LocalPackage, ...]:
    """The packages uv.lock takes from the local disk, their paths resolved."""
    found = []
    for entry in lock.get("package", []):
        source = entry.get("source", {})
        for kind in ("editable", "virtual", "directory", "path"):
            where = source.get(kind) if isinstance(source, dict) else None
            if isinstance(where, str):
                path = Path(os.path.normpath(lock_root / where))
                resolved = path.resolve() if path.exists() else path
                found.append(LocalPackage(name=normalize_name(str(entry.get("name", ""))),
                                          path=resolved, kind=kind,
                                          linked_from=path if resolved != path else None))
    return tuple(found)


def needed_packages(lock: Table, start: str) -> frozenset[str]:
    """`start` and every package of uv.lock it may need: dependencies, extras and groups
    (a superset of what one sync installs; it picks which local files the builder gets)."""
    graph: dict[str, set[str]] = {}
    for entry in lock.get("package", []):
        names = graph.setdefault(normalize_name(str(entry.get("name", ""))), set())
        lists = [entry.get("dependencies", [])]
        for key in ("optional-dependencies", "dev-dependencies"):
            extra = entry.get(key, {})
            lists += list(extra.values()) if isinstance(extra, dict) else []
        for items in lists:
            names.update(normalize_name(str(d.get("name", ""))) for d in items
                         if isinstance(d, dict))
    seen, todo = {start}, [start]
    while todo:
        for name in graph.get(todo.pop(), ()):
            if name not in seen:
                seen.add(name)
                todo.append(name)
    return frozenset(seen)


def _shipped_files(root: Path, lock_root: Path, context: Path,
                   members: tuple[WorkspaceMember, ...], path_deps: list[LocalPackage],
                   needed: frozenset[str]) -> list[str]:
    """The files the project step copies into the builder, relative to the context: the
    workspace's (without the members the project does not need) and the needed path
    dependencies'."""
    from uvbuild.project.sources import (  # sources imports errors only; no cycle
        container_ignore,
        docker_excludes,
        source_files,
    )

    left_out = [m.path + "/" for m in members if normalize_name(m.name) not in needed]
    files = list(source_files(lock_root))
    for member in members:
        # A member's own .containerignore (.dockerignore) excludes from its folder, as
        # when the member is a project of its own: what a user keeps out of the member's
        # image (a local .env) must not ship because the build went through the root.
        rules = container_ignore(lock_root / member.path)
        inside = member.path + "/"
        if rules:
            files = [f for f in files if not (f.startswith(inside)
                                              and docker_excludes(rules, f[len(inside):]))]
    if lock_root != root:  # a member: the root's own files only if it is needed
        root_name = load_toml(lock_root / "pyproject.toml").get("project", {}).get("name")
        if not isinstance(root_name, str) or normalize_name(root_name) not in needed:
            kept = tuple(m.path + "/" for m in members if normalize_name(m.name) in needed)
            files = [f for f in files if f.startswith(kept)]
    prefix = _relative(context, lock_root)
    shipped = [_join(prefix, f) for f in files if not f.startswith(tuple(left_out))]
    for dep in path_deps:
        where = _relative(context, dep.path)
        if dep.path.is_dir():
            shipped += [_join(where, f) for f in source_files(dep.path)]
        else:
            shipped.append(where)
    return shipped


_parsed: dict[bytes, Table | bytes] = {}  # a file's bytes → its table (or marshal's bytes)


def _code(*modules: str) -> bytes | None:
    """The source of uvbuild's `modules` (a memo key part: what judged an entry); None
    where it cannot be read (an install without sources): then nothing is memoized."""
    here = Path(__file__).parent
    try:
        return b"".join((here / f"{name}.py").read_bytes() for name in modules)
    except OSError:
        return None


def uv_lock_packages(project: Project) -> tuple[LockedPackage, ...]:
    """Every `[[package]]` of the project's uv.lock, in the lock's order: names,
    versions, sources and hashes (not what each requires: lockfile.locked_packages)."""
    lock = load_toml(project.lock_root / "uv.lock")
    return locked_packages(lock, metadata=False)


def load_toml(path: Path) -> Table:
    """Parse a TOML file, turning a missing or malformed file into a `ProjectError`.

    A build reads uv.lock three times (project, lock check, SBOM): the parse of the
    same bytes is reused (a copy, so callers cannot change each other's tables), and
    kept between runs (project/memo.py): an unchanged rebuild parses no TOML.
    """
    try:
        data = path.read_bytes()
        parsed = _parsed.get(data)
        if parsed is None:
            code = _code("tomlshape")
            entry = memo.key(data, code) if code is not None else None
            parsed = memo.recall("toml", entry)  # type: ignore[assignment]
            if not isinstance(parsed, dict):
                # A leading byte-order mark (Windows editors write one) is fine with uv.
                parsed = tomllib.loads(data.decode("utf-8-sig"))
                check_shape(parsed, path)  # every key uvbuild reads has its type
                memo.remember("toml", entry, parsed)
            try:
                parsed = marshal.dumps(parsed)  # (a copy is then a fast load)
            except ValueError:  # a TOML date or time: copied the slow way
                pass
            _parsed[data] = parsed
        if isinstance(parsed, bytes):
            return dict(marshal.loads(parsed))
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


def _project_table(doc: Table, path: Path) -> Table:
    project = doc.get("project")
    if not isinstance(project, dict):
        raise ProjectError(
            f"{path} has no [project] table",
            hint="uvbuild builds projects with a [project] table; for a virtual "
            "workspace root, let `project:` name the member folder to build",
        )
    if not isinstance(project.get("name"), str) or not project["name"]:
        raise ProjectError(f"{path} has no project.name")
    return project


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


def virtual_workspace_members(root: Path) -> tuple[tuple[WorkspaceMember, Table], ...]:
    """The members of the virtual workspace whose root is `root` (no [project] table),
    each with its pyproject.toml; () when `root` is not such a root."""
    path = root / "pyproject.toml"
    if not path.is_file():
        return ()
    doc = load_toml(path)
    if "project" in doc or not doc.get("tool", {}).get("uv", {}).get("workspace"):
        return ()
    return _workspace(root, doc)


def _workspace(root: Path, doc: Table) -> tuple[tuple[WorkspaceMember, Table], ...]:
    """Members from `[tool.uv.workspace]` globs minus `exclude`: folders with a pyproject.toml
    (an empty folder is skipped, any other is a ProjectError, as uv has it).

    Each comes with its parsed pyproject.toml; the root project is not among them.
    """
    workspace = doc.get("tool", {}).get("uv", {}).get("workspace", {})
    include = _globbed(root, workspace.get("members", []))
    exclude = _globbed(root, workspace.get("exclude", []))
    members = []
    for path in sorted(include - exclude - {"."}):
        pyproject = root / path / "pyproject.toml"
        if not pyproject.is_file():
            # As uv: an empty folder is skipped (a submodule not checked out), any other
            # is an error of the workspace, which `uv sync` would stop at in the builder.
            if any((root / path).iterdir()):
                raise ProjectError(
                    f"{root / path}: a folder tool.uv.workspace.members matches, with no "
                    "pyproject.toml (uv refuses such a workspace)",
                    hint=f"list it in tool.uv.workspace.exclude in {root / 'pyproject.toml'},"
                    " or give it a pyproject.toml")
            continue
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
