"""The `[[package]]` entries of uv.lock, read once into one type.

The SBOM lists them (name, version, source, hashes); lockcheck compares a workspace
package's entry ([package.metadata]: what it was resolved from) with its pyproject.toml.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from uvbuild.project.pep508 import Requirement, extras_in_marker, normalize_name, requirement
from uvbuild.project.tables import Table

# The keys uv.lock writes, in a requirement table, for a source that replaces a specifier.
LOCKED_SOURCES = frozenset({"editable", "path", "directory", "git", "url", "virtual"})
# ...and the key of an explicit index: a source too, one that keeps the specifier.
INDEX = "index"
# A workspace package's source key: one uv builds and installs, or one it does not.
WORKSPACE_KINDS = ("editable", "virtual")

Buckets = Mapping[str, frozenset[Requirement]]  # "": dependencies; "extra 'x'"


@dataclass(frozen=True, kw_only=True, slots=True)
class LockedPackage:
    """One `[[package]]` of uv.lock."""

    name: str  # as uv.lock writes it
    version: str | None  # None for a dynamic-version workspace package
    source: str  # "registry+https://pypi.org/simple", "editable+.", "virtual+.", "git+..."
    hashes: tuple[str, ...]  # "sha256:..." of the sdist then each wheel, as locked
    # [package.metadata], which uv writes for workspace packages only (empty otherwise):
    # what the package was resolved from, by bucket, by dependency group, its extras.
    requirements: Buckets = field(default_factory=dict)
    groups: Buckets = field(default_factory=dict)  # by normalized group name
    extras: frozenset[str] = frozenset()  # normalized
    # name → (source key, its value), e.g. ("directory", "libs/x"), ("index", URL), for
    # the requirements above that name a source (the others come from the default index).
    sources: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def kind(self) -> str | None:
        """"editable" or "virtual" for a workspace package, None for any other."""
        kind = self.source.partition("+")[0]
        return kind if kind in WORKSPACE_KINDS else None


def locked_packages(lock: Table, *, metadata: bool = True) -> tuple[LockedPackage, ...]:
    """Every `[[package]]` of a parsed uv.lock, in the lock's order. Without
    `metadata`, the [package.metadata] tables are left out (`requirements`,
    `groups`, `extras` and `sources` empty): names, versions, sources and hashes are
    read without parsing a requirement, or importing `packaging` (the SBOM and the plan
    need no more; the lock check reads them all)."""
    return tuple(locked_package(entry, metadata=metadata)
                 for entry in lock.get("package", []))


def locked_package(entry: Table, *, metadata: bool = True) -> LockedPackage:
    """One `[[package]]` table of uv.lock as a LockedPackage (see locked_packages)."""
    wanted = metadata
    source = entry.get("source", {})
    kind, value = next(iter(source.items()), ("unknown", ""))
    hashes: list[str] = []
    for artifact in [entry.get("sdist", {}), *entry.get("wheels", [])]:
        digest = artifact.get("hash") if isinstance(artifact, dict) else None
        if isinstance(digest, str) and digest not in hashes:
            hashes.append(digest)
    table = entry.get("metadata", {}) if wanted else {}
    requirements: dict[str, set[Requirement]] = {}
    for item in table.get("requires-dist", []):
        buckets = [f"extra {e!r}" for e in extras_in_marker(item.get("marker", ""))]
        for bucket in buckets or [""]:
            requirements.setdefault(bucket, set()).add(locked_requirement(item))
    sources: dict[str, tuple[str, str]] = {}
    items = [*table.get("requires-dist", []),
             *(item for group in table.get("requires-dev", {}).values() for item in group)]
    for item in items:
        key = next((k for k in sorted((LOCKED_SOURCES | {INDEX}) & item.keys())), None)
        if key is not None:
            sources[normalize_name(str(item.get("name", "")))] = (key, str(item[key]))
    version = entry.get("version")
    return LockedPackage(
        name=str(entry.get("name", "")),
        version=version if isinstance(version, str) else None,
        source=f"{kind}+{value}",
        hashes=tuple(hashes),
        requirements={bucket: frozenset(reqs) for bucket, reqs in requirements.items()},
        groups={normalize_name(group): frozenset(locked_requirement(item) for item in items)
                for group, items in table.get("requires-dev", {}).items()},
        extras=frozenset(normalize_name(e) for e in table.get("provides-extras", [])),
        sources=sources,
    )


def locked_requirement(item: Table) -> Requirement:
    """A uv.lock requirement table (`{ name = ..., specifier = ... }`) as a requirement."""
    name, extras = str(item.get("name", "")), tuple(item.get("extras", []))
    source = next((f" @ {k} {item[k]}" for k in sorted(LOCKED_SOURCES & item.keys())), None)
    specifier, marker = str(item.get("specifier", "")), str(item.get("marker", ""))
    shown = name + (f"[{','.join(extras)}]" if extras else "") + (source or specifier)
    shown += f"; {marker}" if marker else ""
    return requirement(name, extras, None if source else specifier, marker, shown)
