"""Just enough of PEP 508 requirements and PEP 440 versions to compare pyproject.toml with uv.lock.

The `packaging` library would do this properly but is not a dependency; this reads the
forms uv writes and the forms people write, and says so (returns None) when a string is
beyond it, so callers can decline to judge rather than judge wrongly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_REQUIREMENT = re.compile(
    r"\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[(?P<extras>[^\]]*)\])?"
    r"\s*(?P<rest>[^;]*?)\s*(?:;(?P<marker>.*))?"
)
_EXTRA_IN_MARKER = re.compile(r"\bextra\s*==\s*['\"]([^'\"]*)['\"]")
_CLAUSE = re.compile(r"(~=|===|==|!=|<=|>=|<|>)(.*?)(\.\*)?")
_PYTHON_CLAUSE = re.compile(r"(~=|===|==|!=|<=|>=|<|>)(\d+(?:\.\d+)*)(\.\*)?")
_PEP440 = re.compile(
    r"v?(?:(?P<epoch>\d+)!)?(?P<release>\d+(?:\.\d+)*)"
    r"(?:[-_.]?(?P<pre>alpha|beta|preview|pre|rc|a|b|c)[-_.]?(?P<pre_n>\d+)?)?"
    r"(?:-(?P<post_implicit>\d+)|[-_.]?(?P<post>post|rev|r)[-_.]?(?P<post_n>\d+)?)?"
    r"(?:[-_.]?(?P<dev>dev)[-_.]?(?P<dev_n>\d+)?)?"
    r"(?:\+(?P<local>[a-z0-9]+(?:[-_.][a-z0-9]+)*))?",
    re.IGNORECASE,
)
_PRE = {"alpha": "a", "beta": "b", "c": "rc", "pre": "rc", "preview": "rc"}
_NOT_ENVIRONMENT = {"extra", "and", "or", "not", "in", "python_version", "python_full_version"}

PythonRange = tuple[object, object, frozenset[str]]


def normalize_name(name: str) -> str:
    """Return the PEP 503 normalized form of a distribution, extra or group name."""
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
    """A PEP 508 string split into its parts, as written but for spacing."""

    name: str
    extras: tuple[str, ...]
    specifier: str  # or "@ url" for a direct reference
    marker: str


def parse_requirement(text: str) -> ParsedRequirement | None:
    """Split a PEP 508 requirement string; None if it is not one."""
    match = _REQUIREMENT.fullmatch(text)
    if match is None:
        return None
    extras = tuple(e.strip() for e in (match["extras"] or "").split(",") if e.strip())
    return ParsedRequirement(
        name=match["name"], extras=extras, specifier=match["rest"], marker=match["marker"] or ""
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
    """A version specifier as sorted clauses, versions normalized (`< 3 , >=1.0` -> `<3`, `>=1`)."""
    clauses = set()
    for clause in re.sub(r"\s+", "", text).strip("()").split(","):
        match = _CLAUSE.fullmatch(clause)
        if match and match[1] != "===":
            version = normalize_version(match[2]) if match[3] else version_key(match[2])
            clause = match[1] + (version or match[2]) + (match[3] or "")
        if clause:
            clauses.add(clause)
    return tuple(sorted(clauses))


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


def normalize_version(text: str) -> str | None:
    """PEP 440 normal form, as uv writes versions; None if `text` is not a version."""
    m = _PEP440.fullmatch(text.strip())
    if m is None:
        return None
    out = f"{int(m['epoch'])}!" if m["epoch"] and int(m["epoch"]) else ""
    out += ".".join(str(int(part)) for part in m["release"].split("."))
    if m["pre"]:
        out += _PRE.get(m["pre"].lower(), m["pre"].lower()) + str(int(m["pre_n"] or 0))
    if m["post_implicit"] is not None or m["post"]:
        out += f".post{int(m['post_implicit'] or m['post_n'] or 0)}"
    if m["dev"]:
        out += f".dev{int(m['dev_n'] or 0)}"
    if m["local"]:
        out += "+" + re.sub(r"[-_]", ".", m["local"].lower())
    return out


def version_key(text: str) -> str | None:
    """The normal form without trailing ".0"s: 1.0 and 1.0.0 are one version to PEP 440."""
    match = re.fullmatch(r"((?:\d+!)?)(\d+(?:\.\d+)*)(.*)", normalize_version(text) or "")
    if match is None:
        return None
    release = match[2].split(".")
    while len(release) > 1 and release[-1] == "0":
        release.pop()
    return match[1] + ".".join(release) + match[3]


def python_range(specifiers: list[str]) -> PythonRange | None:
    """The intersection of requires-python specifiers as (lower, upper, other clauses).

    uv reorders and merges bounds (">=3.9,<4,>=3.10" is locked as ">=3.10, <4") and
    spells "~=3.10" as ">=3.10, <4"; equal ranges give equal results. None when a clause
    is beyond this simple reading.
    """
    lowers: list[tuple[tuple[int, ...], bool]] = []  # (version, strict)
    uppers: list[tuple[tuple[int, ...], bool]] = []  # (version, inclusive)
    others = set()
    for clause in re.sub(r"\s+", "", ",".join(specifiers)).split(","):
        match = _PYTHON_CLAUSE.fullmatch(clause)
        if match is None:
            if clause:
                return None
            continue
        op, version, star = match.groups()
        numbers = tuple(int(n) for n in version.split("."))
        if star or op in ("==", "!=", "==="):
            others.add(clause)
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
