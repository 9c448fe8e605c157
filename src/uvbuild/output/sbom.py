"""A CycloneDX 1.5 SBOM of the Python packages an image actually holds, and its summary.

The document lists the uv.lock packages found installed in the image's venv; the project
itself is `metadata.component`, not one of `components`. It is reproducible: the same
project, lock, installed set and SOURCE_DATE_EPOCH give the same bytes, serial number
included (a UUID derived from the content rather than a random one). Images carry it at
`SBOM_PATH`.

Decisions a reader of the SBOM should know (spec: https://cyclonedx.org/docs/1.5/json/):

- `purl` is `pkg:pypi/<normalized name>@<version>` only for packages that came from an
  index (with a `repository_url` qualifier when the index is not PyPI), a git repository
  (`vcs_url`) or a URL (`download_url`). Workspace members and editable, directory, path
  or virtual sources get no purl: they are not the PyPI project of that name, and a purl
  would let scanners match them against it. Every component has the property
  `uvbuild:source` with uv.lock's source as written (`editable+.`, `registry+https://...`).
- `hashes` are those uv.lock pins for the package: the sdist's and every wheel's. The
  artifact that was installed is one of them; which one depends on the platform.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from uvbuild import __version__
from uvbuild.project.lockfile import LockedPackage
from uvbuild.project.model import Project
from uvbuild.project.pep508 import normalize_name, version_key

SBOM_PATH = "/app/sbom.cdx.json"
SPEC_VERSION = "1.5"
SOURCE_PROPERTY = "uvbuild:source"
_WIDTH = 88  # of summary lines

_PYPI_INDEXES = {"https://pypi.org/simple", "https://pypi.org/simple/"}
_LOCAL_SOURCES = {"editable", "directory", "path", "virtual", "workspace"}
# uv.lock writes "<algorithm>:<hex>"; CycloneDX spells the algorithms its own way.
_HASH_ALGORITHMS = {"md5": "MD5", "sha1": "SHA-1", "sha256": "SHA-256", "sha384": "SHA-384",
                    "sha512": "SHA-512", "blake2b": "BLAKE2b-512"}
# Fixed namespace for serial numbers: uuid5(NAMESPACE_URL, "https://uvbuild/sbom").
_SERIAL_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://uvbuild/sbom")


@dataclass(frozen=True, kw_only=True, slots=True)
class SbomSummary:
    """What `summarize` reports of an SBOM: its format and the packages it lists."""

    spec_version: str
    subject: str  # "name version" of metadata.component, or ""
    packages: tuple[tuple[str, str], ...]  # (name, version) sorted by name


def make_sbom(project: Project, packages: Sequence[LockedPackage], installed: Mapping[str, str],
              *, timestamp: int) -> bytes:
    """The CycloneDX 1.5 JSON document (UTF-8, ending in a newline) for an image.

    `packages` are uv.lock's; `installed` maps normalized names to the versions found in
    the image's venv, and a lock package is listed iff its name is there. With an empty
    `installed` every lock package except virtual ones is listed. `timestamp` is the
    build's SOURCE_DATE_EPOCH.
    """
    components: dict[tuple[str, str], dict[str, Any]] = {}
    for package in _listed(project, packages, installed):
        component = _component(package, installed.get(normalize_name(package.name)))
        components[(component["name"], component.get("version", ""))] = component
    document: dict[str, Any] = {
        "$schema": "http://cyclonedx.org/schema/bom-1.5.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "version": 1,
        "metadata": {
            "timestamp": iso_timestamp(timestamp),
            "tools": {"components": [
                {"type": "application", "name": "uvbuild", "version": __version__},
            ]},
            "component": _subject(project, packages, installed),
        },
        "components": [components[key] for key in sorted(components)],
    }
    document["serialNumber"] = f"urn:uuid:{_serial(document)}"
    return (json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def iso_timestamp(timestamp: int) -> str:
    """SOURCE_DATE_EPOCH as ISO 8601 UTC, to the second: 2024-01-02T03:04:05Z."""
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_sbom(sbom: bytes) -> SbomSummary | None:
    """The facts `summarize` shows, or None when `sbom` is not a CycloneDX JSON document."""
    try:
        document = json.loads(sbom)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(document, dict) or document.get("bomFormat") != "CycloneDX":
        return None
    subject = (document.get("metadata") or {}).get("component") or {}
    found: list[tuple[str, str]] = []
    for component in document.get("components") or ():
        if isinstance(component, dict) and component.get("type") == "library":
            found.append((str(component.get("name", "?")), str(component.get("version", ""))))
    return SbomSummary(
        spec_version=str(document.get("specVersion", "?")),
        subject=" ".join(str(subject[k]) for k in ("name", "version") if subject.get(k)),
        packages=tuple(sorted(found)),
    )


def summarize(sbom: bytes) -> str:
    """A short human summary: "CycloneDX 1.5, 3 Python packages: anyio 4.4.0, ..."."""
    summary = read_sbom(sbom)
    if summary is None:
        return "not a CycloneDX JSON document"
    count = len(summary.packages)
    head = f"CycloneDX {summary.spec_version}, {count} Python package{'' if count == 1 else 's'}"
    if summary.subject:
        head += f" for {summary.subject}"
    if not count:
        return head
    # Wrapped between packages, never inside "name version".
    lines: list[str] = []
    line = f"{head}:"
    for name, version in summary.packages:
        item = f"{name} {version}".strip()
        if len(line) + 1 + len(item) + 1 > _WIDTH:
            lines.append(line)
            line = " "
        line += f" {item},"
    lines.append(line.rstrip(","))
    return "\n".join(lines)


def _listed(project: Project, packages: Sequence[LockedPackage],
            installed: Mapping[str, str]) -> list[LockedPackage]:
    """The lock packages that are in the image, the project itself aside.

    A forked resolution can lock several versions of one name; only the installed one is
    kept when the venv's version matches one of them.
    """
    listed: list[LockedPackage] = []
    for package in packages:
        name = normalize_name(package.name)
        if name == project.normalized_name:
            continue
        if installed:
            if name in installed:
                listed.append(package)
        elif _kind(package.source) != "virtual":
            listed.append(package)
    matching = {normalize_name(p.name) for p in listed if _same_version(p, installed)}
    return [p for p in listed
            if normalize_name(p.name) not in matching or _same_version(p, installed)]


def _same_version(package: LockedPackage, installed: Mapping[str, str]) -> bool:
    found = installed.get(normalize_name(package.name))
    if not found or not package.version:
        return False
    return (version_key(found) or found) == (version_key(package.version) or package.version)


def _component(package: LockedPackage, installed_version: str | None) -> dict[str, Any]:
    name = normalize_name(package.name)
    version = package.version or installed_version
    component: dict[str, Any] = {"type": "library", "name": name}
    if version:
        component["version"] = version
    purl = _purl(name, version, package.source)
    component["bom-ref"] = purl or f"uvbuild:local/{name}@{version or ''}"
    if purl:
        component["purl"] = purl
    hashes = [_hash(digest) for digest in package.hashes]
    if any(hashes):
        component["hashes"] = [h for h in hashes if h]
    reference = _external_reference(package.source)
    if reference:
        component["externalReferences"] = [reference]
    component["properties"] = [{"name": SOURCE_PROPERTY, "value": package.source}]
    return component


def _subject(project: Project, packages: Sequence[LockedPackage],
             installed: Mapping[str, str]) -> dict[str, Any]:
    """metadata.component: the project the image was built from."""
    subject: dict[str, Any] = {"type": "application", "name": project.name,
                               "bom-ref": f"uvbuild:project/{project.normalized_name}"}
    locked = next((p for p in packages if normalize_name(p.name) == project.normalized_name),
                  None)
    version = (project.version or (locked.version if locked else None)
               or installed.get(project.normalized_name))
    if version:
        subject["version"] = version
    if locked:
        subject["properties"] = [{"name": SOURCE_PROPERTY, "value": locked.source}]
    return subject


def _kind(source: str) -> str:
    return source.partition("+")[0]


def _purl(name: str, version: str | None, source: str) -> str | None:
    """pkg:pypi purl for index, git and URL sources; None for local ones (see module doc)."""
    kind, _, where = source.partition("+")
    if kind in _LOCAL_SOURCES or not version:
        return None
    qualifiers: dict[str, str] = {}
    if kind == "registry" and where not in _PYPI_INDEXES:
        qualifiers["repository_url"] = where
    elif kind == "git":
        qualifiers["vcs_url"] = _vcs_url(where)
    elif kind == "url":
        qualifiers["download_url"] = where
    elif kind != "registry":
        return None
    purl = f"pkg:pypi/{quote(name, safe='')}@{quote(version, safe='')}"
    if qualifiers:
        purl += "?" + "&".join(f"{key}={quote(value, safe=':/')}"
                               for key, value in sorted(qualifiers.items()))
    return purl


def _vcs_url(where: str) -> str:
    """uv's `https://host/repo?rev=main#<commit>` as purl's `git+https://host/repo@<commit>`."""
    parts = urlsplit(where)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return f"git+{base}@{parts.fragment}" if parts.fragment else f"git+{base}"


def _external_reference(source: str) -> dict[str, str] | None:
    kind, _, where = source.partition("+")
    if kind == "registry":
        return {"type": "distribution", "url": where}
    if kind == "git":
        return {"type": "vcs", "url": f"git+{where}"}
    if kind == "url":
        return {"type": "distribution", "url": where}
    return None


def _hash(digest: str) -> dict[str, str] | None:
    algorithm, _, content = digest.partition(":")
    name = _HASH_ALGORITHMS.get(algorithm.lower())
    return {"alg": name, "content": content.lower()} if name and content else None


def _serial(document: Mapping[str, Any]) -> uuid.UUID:
    """A UUID from the document's canonical JSON: same content, same serial number."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return uuid.uuid5(_SERIAL_NAMESPACE, hashlib.sha256(canonical.encode()).hexdigest())
