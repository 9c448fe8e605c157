"""Is uv.lock up to date with pyproject.toml? A pure-Python stand-in for `uv lock --check`.

uv.lock records, per workspace package, what it was resolved from ([package.metadata]
requires-dist and requires-dev, provides-extras, the version) and, for the workspace,
requires-python, the members, constraints and overrides. `check_lock` compares those
with the root pyproject.toml and every member's, so that a build does not start only to
have `uv sync --locked` fail in the builder. It errs towards "current": a false "out of
date" would send the user to `uv lock` and back again with no way out, while a miss is
still caught by `uv sync --locked`.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uvbuild.errors import ProjectError
from uvbuild.project.lockfile import INDEX, LockedPackage, locked_package, locked_requirement
from uvbuild.project.pep508 import (
    Requirement,
    extras_in_marker,
    normalize_name,
    parse_requirement,
    python_range,
    requirement,
    version_key,
)
from uvbuild.project.tables import Table, is_package, table

Buckets = Mapping[str, AbstractSet[Requirement]]  # "": [project] dependencies, "extra 'x'"...
# The uv.lock source keys a declared source may be locked as, and the value they must
# hold where it can be told (a path relative to the workspace root, a URL).
Source = tuple[frozenset[str], str | None]

# [tool.uv.sources] kinds that replace a specifier (uv.lock's are lockfile.LOCKED_SOURCES).
_DECLARED_SOURCES = {"workspace", "path", "git", "url"}
_KINDS = {"editable": "a package", "virtual": "virtual (not a package)", None: "?"}


@dataclass(frozen=True, kw_only=True, slots=True)
class _Declared:
    """One workspace package as pyproject.toml declares it (uv.lock's: LockedPackage)."""

    version: str | None
    kind: str | None  # "editable" (a package uv builds) or "virtual"
    requirements: Buckets | None  # None: dynamic, decided by the build backend
    extras: frozenset[str] | None  # None: dynamic
    groups: Buckets  # by normalized group name
    # name → the source its [tool.uv.sources] entry gives it (see _declared_source), or
    # None where that is not judged; a name it requires that is not here has no source.
    sources: Mapping[str, Source | None]


def check_lock(root: Path, doc: Table, member_docs: dict[str, Table], lock: Table) -> None:
    """Raise `ProjectError` saying why, if uv.lock is out of date with the pyproject.toml files.

    `doc` and `lock` are the parsed root pyproject.toml and uv.lock; `member_docs` maps
    each workspace member's folder (relative to root, posix) to its parsed pyproject.toml.
    """
    try:
        reason = next(stale_reasons(doc, member_docs, lock), None)
    except ProjectError as exc:  # a malformed pyproject.toml, named relative to root
        raise ProjectError(f"{root}/{exc.message}", hint=exc.hint) from None
    if reason is not None:
        raise ProjectError(
            f"{root / 'uv.lock'} is out of date: {reason}",
            hint=f"run `uv lock` in {root} and commit uv.lock",
        )


def stale_reasons(doc: Table, member_docs: dict[str, Table], lock: Table) -> Iterator[str]:
    """Every reason uv.lock is out of date, most telling first; none when it is current."""
    packages = {normalize_name(str(p.get("name", ""))): p for p in lock.get("package", [])}
    members = {f"{p}/pyproject.toml": d for p, d in member_docs.items()}
    # A virtual workspace root (no [project]) is only the members' container.
    virtual_root = not isinstance(doc.get("project"), dict)
    docs = members if virtual_root else {"pyproject.toml": doc, **members}
    if not virtual_root:
        yield from _root_reasons(doc, packages)
    yield from _member_reasons(list(docs.values()), lock)
    yield from _python_reasons(docs, lock)
    yield from _manifest_reasons(doc, lock.get("manifest", {}), packages)
    root_sources = _source_table(doc)
    for where, package_doc in docs.items():
        entry = packages.get(normalize_name(package_doc["project"]["name"]))
        if entry is not None:  # else already reported as a missing project or member
            declared = _declared_package(where, package_doc, root_sources)
            yield from _package_reasons(where, declared, locked_package(entry))


def _root_reasons(doc: Table, packages: dict[str, Table]) -> Iterator[str]:
    name = normalize_name(doc["project"]["name"])
    if name not in packages:
        made_for = [p["name"] for p in packages.values() if "." in p.get("source", {}).values()]
        if made_for:
            yield f"it was made for project {made_for[0]!r}, not {name!r}"
        else:
            yield f"project {name!r} is not in it"
        return


def _member_reasons(docs: list[Table], lock: Table) -> Iterator[str]:
    wanted = {normalize_name(d["project"]["name"]) for d in docs}
    recorded = lock.get("manifest", {}).get("members")  # absent for a lone project
    if not docs:
        return
    if recorded:
        have = {normalize_name(str(name)) for name in recorded}
    else:
        have = {normalize_name(docs[0]["project"]["name"])}
    for name in sorted(wanted - have):
        yield f"workspace member {name!r} is not in it"
    for name in sorted(have - wanted):
        yield f"it still has workspace member {name!r}, which the workspace no longer has"


def _python_reasons(docs: dict[str, Table], lock: Table) -> Iterator[str]:
    """The lock's requires-python is the intersection of every member's."""
    declared = {w: d["project"].get("requires-python") for w, d in docs.items()}
    declared = {w: text for w, text in declared.items() if isinstance(text, str)}
    locked = lock.get("requires-python")
    if not declared or not isinstance(locked, str):
        return
    wanted, have = python_range(list(declared.values())), python_range([locked])
    if wanted is not None and have is not None and wanted != have:
        said = " and ".join(f"{text!r} in {where}" for where, text in declared.items())
        yield f"requires-python is {said}, {locked!r} in uv.lock"


def _manifest_reasons(doc: Table, manifest: Table, packages: dict[str, Table]) -> Iterator[str]:
    """Constraints and overrides; uv leaves out those naming a package it never resolved."""
    uv = doc.get("tool", {}).get("uv", {})
    for noun, declared_key, locked_key in (
        ("constraint", "constraint-dependencies", "constraints"),
        ("override", "override-dependencies", "overrides"),
    ):
        locked = {locked_requirement(item) for item in manifest.get(locked_key, [])}
        known = packages.keys() | {req.name for req in locked}
        texts = _strings(uv.get(declared_key, []), "pyproject.toml", f"tool.uv.{declared_key}")
        declared = {_declared(t, set(), "pyproject.toml")[0] for t in texts}
        declared = {req for req in declared if req.name in known}
        yield from _compare(f"{noun} {{}}", "pyproject.toml", declared, locked)


def _package_reasons(where: str, declared: _Declared, locked: LockedPackage) -> Iterator[str]:
    if _versions_differ(declared.version, locked.version):
        yield f"version is {declared.version!r} in {where}, {locked.version!r} in uv.lock"
    if locked.kind is not None and declared.kind != locked.kind:
        yield f"{where} makes it {_KINDS[declared.kind]}, uv.lock has it {_KINDS[locked.kind]}"
    if declared.requirements is not None and locked.requirements is not None:
        yield from _bucket_reasons(where, declared.requirements, locked.requirements)
    yield from _bucket_reasons(where, _group_buckets(declared), _group_buckets(locked))
    yield from _names_reasons("dependency group", where, set(declared.groups), set(locked.groups))
    if declared.extras is not None and locked.extras is not None:
        yield from _names_reasons("extra", where, set(declared.extras), set(locked.extras))
    yield from _source_reasons(where, declared, locked)


def _versions_differ(declared: str | None, locked: str | None) -> bool:
    """Missing or unreadable versions are not judged."""
    if declared is None or locked is None:
        return False
    key = version_key(declared)
    return key is not None and key != version_key(locked)


def _group_buckets(package: _Declared | LockedPackage) -> Buckets:
    return {f"group {name!r}": requirements for name, requirements in package.groups.items()}


def _bucket_reasons(where: str, declared: Buckets, locked: Buckets) -> Iterator[str]:
    for bucket in sorted(declared.keys() | locked.keys()):
        noun = f"dependency {{}} ({bucket})" if bucket else "dependency {}"
        yield from _compare(noun, where, declared.get(bucket, set()), locked.get(bucket, set()))


def _names_reasons(noun: str, where: str, declared: set[str], locked: set[str]) -> Iterator[str]:
    for name in sorted(declared - locked):
        yield f"{noun} {name!r} in {where} is not in uv.lock"
    for name in sorted(locked - declared):
        yield f"uv.lock still has {noun} {name!r}, which {where} does not declare"


def _compare(
    noun: str, where: str, declared: AbstractSet[Requirement], locked: AbstractSet[Requirement]
) -> Iterator[str]:
    """Reasons from one set of requirements; `noun` is e.g. "dependency {} (group 'dev')"."""
    for req in sorted(declared - locked, key=_shown):
        was = [r.shown for r in sorted(locked, key=_shown) if r.name == req.name]
        if was:
            said = noun.format(repr(req.shown))
            yield f"{said} in {where} is {' and '.join(map(repr, was))} in uv.lock"
        else:
            yield f"{noun.format(repr(req.name))} in {where} is not in uv.lock"
    for req in sorted(locked - declared, key=_shown):
        if not any(r.name == req.name for r in declared):
            yield f"uv.lock still has {noun.format(repr(req.name))}, which {where} does not list"


def _shown(req: Requirement) -> str:
    return req.shown


def _declared_package(where: str, doc: Table, root_sources: Table) -> _Declared:
    own_sources = _source_table(doc)
    project, sources = doc["project"], _sourced_names(root_sources) | _sourced_names(own_sources)
    dynamic = {"dependencies", "optional-dependencies"} & set(project.get("dynamic", []))
    lists: list[tuple[str, Iterable[str]]] = []
    lists.append(("", _strings(project.get("dependencies", []), where, "project.dependencies")))
    extras = table(project, "optional-dependencies", where)
    for extra, texts in extras.items():
        key = f"project.optional-dependencies.{extra}"
        lists.append((f"extra {normalize_name(extra)!r}", _strings(texts, where, key)))
    requirements: dict[str, set[Requirement]] = {"": set()}
    for bucket, texts in lists:
        for text in texts:
            req, marker = _declared(text, sources, where)
            for name in [f"extra {e!r}" for e in extras_in_marker(marker)] or [bucket]:
                requirements.setdefault(name, set()).add(req)
    groups = {
        group: {_declared(text, sources, where)[0] for text in texts}
        for group, texts in _dependency_groups(where, doc).items()
    }
    named = [req for reqs in [*requirements.values(), *groups.values()] for req in reqs]
    base = posixpath.dirname(where)  # the package's folder, relative to the workspace root
    declared_sources: dict[str, Source | None] = {}
    for req in named:
        if req.name in own_sources:
            declared_sources[req.name] = _declared_source(own_sources[req.name], base)
        elif req.name in root_sources:
            declared_sources[req.name] = _declared_source(root_sources[req.name], "")
        elif req.specifier is None:  # a direct reference (name @ URL): not judged
            declared_sources[req.name] = None
    version = project.get("version")
    return _Declared(
        version=version if isinstance(version, str) else None,
        kind="editable" if is_package(doc) else "virtual",
        requirements=None if dynamic else requirements,
        extras=None if dynamic else frozenset(normalize_name(e) for e in extras),
        groups=groups,
        sources=declared_sources,
    )


def _declared_source(entry: object, base: str) -> Source | None:
    """What uv.lock may record for a [tool.uv.sources] entry of the package in folder
    `base`; None where this does not judge (several or conditional entries)."""
    if not isinstance(entry, dict) or entry.keys() & {"marker", "extra", "group"}:
        return None
    if entry.get("workspace") is True:
        return frozenset({"editable", "virtual", "directory"}), None
    path = entry.get("path")
    if isinstance(path, str):
        where = None if posixpath.isabs(path) else posixpath.normpath(posixpath.join(base, path))
        if entry.get("editable") is True:
            return frozenset({"editable", "virtual"}), where
        return frozenset({"directory", "path", "virtual"}), where
    if isinstance(entry.get("git"), str):
        return frozenset({"git"}), None
    if isinstance(entry.get("url"), str):
        return frozenset({"url"}), str(entry["url"])
    if isinstance(entry.get("index"), str):
        return frozenset({INDEX}), None
    return None


def _source_reasons(where: str, declared: _Declared, locked: LockedPackage) -> Iterator[str]:
    """A dependency's source (a path, editable or not, an index...) as uv.lock has it."""
    for name in sorted(declared.sources.keys() | (locked.sources.keys() & _named(declared))):
        spec = declared.sources.get(name, (frozenset(), None))
        have = locked.sources.get(name)
        if spec is None:
            continue
        keys, value = spec
        if have is None:
            if keys:
                yield f"{where} gives {name!r} a source, uv.lock has it from the index"
            continue
        key, held = have
        if not keys:
            yield f"uv.lock has {name!r} from {key} {held!r}, {where} gives it no source"
        elif key not in keys or value is not None and value != (
                posixpath.normpath(held) if key != "url" else held):
            yield f"{where} gives {name!r} another source than uv.lock's {key} {held!r}"


def _named(package: _Declared) -> set[str]:
    """The names a declared package requires, in any bucket or group."""
    buckets = [*(package.requirements or {}).values(), *package.groups.values()]
    return {req.name for reqs in buckets for req in reqs}


def _dependency_groups(where: str, doc: Table) -> dict[str, list[str]]:
    """[dependency-groups] with include-group expanded, plus legacy [tool.uv] dev-dependencies."""
    raw = table(doc, "dependency-groups", where)
    groups = {normalize_name(k): v for k, v in raw.items() if isinstance(v, list)}

    def expand(name: str, seen: frozenset[str]) -> list[str]:
        found: list[str] = []
        for item in groups[name]:
            if isinstance(item, str):
                found.append(item)
            elif isinstance(item, dict) and isinstance(item.get("include-group"), str):
                included = normalize_name(item["include-group"])
                if included not in groups:
                    raise ProjectError(
                        f"{where}: dependency group {name!r} includes group {included!r}, "
                        "which [dependency-groups] does not define"
                    )
                if included not in seen:
                    found += expand(included, seen | {included})
        return found

    expanded = {name: expand(name, frozenset({name})) for name in groups}
    uv = doc.get("tool", {}).get("uv", {})
    if "dev-dependencies" in uv:  # an empty list too: uv locks it as `dev = []`
        legacy = _strings(uv["dev-dependencies"], where, "dev-dependencies")
        expanded["dev"] = [*expanded.get("dev", []), *legacy]
    return expanded


def _declared(text: str, sources: set[str], where: str) -> tuple[Requirement, str]:
    """A pyproject.toml requirement string as a comparable requirement, and its marker."""
    parsed = parse_requirement(text)
    if parsed is None:
        raise ProjectError(f"{where}: {text!r} is not a valid requirement")
    sourced = parsed.specifier.startswith("@") or normalize_name(parsed.name) in sources
    specifier = None if sourced else parsed.specifier
    shown = " ".join(text.split())
    return requirement(parsed.name, parsed.extras, specifier, parsed.marker, shown), parsed.marker


def _source_table(doc: Table) -> Table:
    """A pyproject.toml's [tool.uv.sources], by normalized name."""
    sources = doc.get("tool", {}).get("uv", {}).get("sources", {})
    return {normalize_name(str(k)): v for k, v in sources.items()} if isinstance(
        sources, dict) else {}


def _sourced_names(sources: Table) -> set[str]:
    """Names whose [tool.uv.sources] entry is a path, git, url or workspace source."""
    names = set()
    for name, entries in sources.items():
        for entry in entries if isinstance(entries, list) else [entries]:
            if isinstance(entry, dict) and _DECLARED_SOURCES & entry.keys():
                names.add(normalize_name(name))
    return names



def _strings(value: Any, where: str, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProjectError(f"{where}: {key} must be a list of strings")
    return tuple(value)
