"""PEP 508 requirements and PEP 440 versions, read by `packaging` (PyPA's own library),
cut down to what comparing pyproject.toml with uv.lock needs.

`packaging` parses; this module decides what counts as "the same" the way uv does
(sorted clauses, 1.0 == 1.0.0, only markers uv cannot rewrite are compared) and says
so (returns None) when a string is not valid, so callers can decline to judge rather
than judge wrongly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

# `packaging` is imported where it parses, not here: its regular expressions take a
# tenth of an unchanged rebuild's start-up, which reads uv.lock but (its lock check
# remembered: project/memo.py) parses no requirement.
if TYPE_CHECKING:
    from packaging.specifiers import Specifier
    from packaging.version import Version

_EXTRA_IN_MARKER = re.compile(r"\bextra\s*==\s*['\"]([^'\"]*)['\"]")
# Marker variables uv judges itself (extras) or against requires-python (the Python
# version), plus the marker language's own words: not compared (see has_env_marker).
_NOT_ENVIRONMENT = {"extra", "and", "or", "not", "in", "python_version", "python_full_version"}

PythonRange = tuple[object, object, frozenset[str]]


def normalize_name(name: str) -> str:
    """Return the PEP 503 normalized form of a distribution, extra or group name (as
    packaging's canonicalize_name: runs of -, _ and . as one -, lower case)."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True, kw_only=True, slots=True)
class Requirement:
    """A requirement cut down to what uv.lock lets us compare; `shown` is for messages."""

    name: str  # PEP 503
    extras: tuple[str, ...]  # sorted, normalized
    specifier: tuple[str, ...] | None  # sorted clauses; None where a source (path, git...) decides
    has_marker: bool  # tests more than `extra` and the Python version (see `has_env_marker`)
    shown: str = field(compare=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class ParsedRequirement:
    """A PEP 508 string split into its parts."""

    name: str
    extras: tuple[str, ...]
    specifier: str  # or "@ url" for a direct reference
    marker: str


def parse_requirement(text: str) -> ParsedRequirement | None:
    """Split a PEP 508 requirement string; None if it is not one."""
    from packaging.requirements import InvalidRequirement
    from packaging.requirements import Requirement as Pep508Requirement

    try:
        parsed = Pep508Requirement(text)
    except InvalidRequirement:
        return None
    return ParsedRequirement(
        name=parsed.name,
        extras=tuple(sorted(parsed.extras)),
        specifier=f"@ {parsed.url}" if parsed.url else str(parsed.specifier),
        marker=str(parsed.marker) if parsed.marker else "",
    )


def requirement(
    name: str, extras: tuple[str, ...], specifier: str | None, marker: str, shown: str
) -> Requirement:
    """A comparable `Requirement`; `specifier` None when a source decides the version."""
    return Requirement(
        name=normalize_name(name),
        extras=tuple(sorted({normalize_name(e) for e in extras})),
        specifier=None if specifier is None else normalize_specifier(specifier),
        has_marker=has_env_marker(marker),
        shown=shown,
    )


def normalize_specifier(text: str) -> tuple[str, ...]:
    """A version specifier as sorted clauses, versions normalized (`< 3 , >=1.0` -> `<3`, `>=1`).

    Equal versions compare equal (`==2.0` is `==2.0.0`), as uv judges them; a wildcard
    keeps its release as written (`==2.0.*` is not `==2.*`). A specifier `packaging`
    cannot read is kept as written, so it differs from any other.
    """
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    bare = re.sub(r"\s+", "", text)
    if bare.startswith("(") and bare.endswith(")"):
        bare = bare[1:-1]
    try:
        specifiers = SpecifierSet(bare)
    except InvalidSpecifier:
        return (bare,) if bare else ()
    return tuple(sorted(_clause(spec) for spec in specifiers))


def _clause(spec: Specifier) -> str:
    if spec.operator == "===":
        return str(spec)
    if spec.version.endswith(".*"):
        return spec.operator + (normalize_version(spec.version[:-2]) or spec.version[:-2]) + ".*"
    return spec.operator + (version_key(spec.version) or spec.version)


def has_env_marker(marker: str) -> bool:
    """Whether a marker tests anything but `extra` and the Python version.

    uv rewrites markers into its own form (platform_system == 'Linux' becomes
    sys_platform == 'linux') and judges Python version markers against requires-python
    (under ">=3.10", "python_version >= '3.8'" is no marker at all), so only this much
    of a marker can be compared without false alarms.
    """
    bare = re.sub(r"'[^']*'|\"[^\"]*\"", " ", marker)
    return bool(set(re.findall(r"[A-Za-z_][\w.]*", bare)) - _NOT_ENVIRONMENT)


def extras_in_marker(marker: str) -> list[str]:
    """The extras a marker names with `extra == 'x'`, normalized."""
    return [normalize_name(e) for e in _EXTRA_IN_MARKER.findall(marker)]


def _version(text: str) -> Version | None:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(text.strip())
    except InvalidVersion:
        return None


def normalize_version(text: str) -> str | None:
    """PEP 440 normal form, as uv writes versions; None if `text` is not a version."""
    version = _version(text)
    return None if version is None else str(version)


def version_key(text: str) -> str | None:
    """The normal form without trailing ".0"s: 1.0 and 1.0.0 are one version to PEP 440."""
    version = _version(text)
    if version is None:
        return None
    release = list(version.release)
    while len(release) > 1 and release[-1] == 0:
        release.pop()
    out = f"{version.epoch}!" if version.epoch else ""
    out += ".".join(map(str, release))
    if version.pre is not None:
        out += f"{version.pre[0]}{version.pre[1]}"
    if version.post is not None:
        out += f".post{version.post}"
    if version.dev is not None:
        out += f".dev{version.dev}"
    if version.local is not None:
        out += f"+{version.local}"
    return out


def python_range(specifiers: list[str]) -> PythonRange | None:
    """The intersection of requires-python specifiers as (lower, upper, other clauses).

    uv reorders and merges bounds (">=3.9,<4,>=3.10" is locked as ">=3.10, <4") and
    spells "~=3.10" as ">=3.10, <4"; equal ranges give equal results. None when a
    specifier is not valid or holds a clause this reading does not order (`===`).
    """
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    lowers: list[tuple[tuple[int, ...], bool]] = []  # (version, strict)
    uppers: list[tuple[tuple[int, ...], bool]] = []  # (version, inclusive)
    others = set()
    for text in specifiers:
        try:
            specifier_set = SpecifierSet(re.sub(r"\s+", "", text))
        except InvalidSpecifier:
            return None
        for spec in specifier_set:
            op, star = spec.operator, spec.version.endswith(".*")
            version = _version(spec.version[:-2] if star else spec.version)
            if op == "===" or version is None:
                return None
            numbers = version.release
            if star or op in ("==", "!="):
                others.add(str(spec))
            elif op == "~=" and len(numbers) >= 2:
                lowers.append((_padded(numbers), False))
                uppers.append((_padded((*numbers[:-2], numbers[-2] + 1)), False))
            elif op in (">=", ">"):
                lowers.append((_padded(numbers), op == ">"))
            elif op in ("<", "<="):
                uppers.append((_padded(numbers), op == "<="))
            else:
                return None
    return (max(lowers, default=None), min(uppers, default=None), frozenset(others))


def _padded(numbers: tuple[int, ...]) -> tuple[int, ...]:
    return (*numbers, 0, 0, 0, 0)[:4]
