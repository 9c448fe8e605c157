"""The image SBOM: which packages it lists, how it names them, and that it is reproducible."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from uvbuild import __version__
from uvbuild.output.sbom import SBOM_PATH, iso_timestamp, make_sbom, read_sbom, summarize
from uvbuild.project.lockfile import LockedPackage
from uvbuild.project.model import Project, uv_lock_packages

EPOCH = 1_700_000_000  # 2023-11-14T22:13:20Z

# Trimmed from a uv 0.13.9 lock: a registry package with sdist + wheel, one with a wheel
# only, a private index, a git source, a URL source, a workspace member, an editable root,
# and a dev-only package that the image does not install.
LOCK = """\
version = 1
revision = 3
requires-python = ">=3.11"

[manifest]
members = ["my-app", "my-lib"]

[[package]]
name = "anyio"
version = "4.4.0"
source = { registry = "https://pypi.org/simple" }
sdist = { url = "https://files.pythonhosted.org/anyio-4.4.0.tar.gz", hash = "sha256:5aadc6a1bbb7cdb0bede386cac5e2940f5e2ff3aa20277e991cf028e0585ce94", size = 1 }
wheels = [
    { url = "https://files.pythonhosted.org/anyio-4.4.0-py3-none-any.whl", hash = "sha256:c1b2d8f46a8a812513012e1107cb0e68c17159a7a594208005a57dc776e1bdc7", size = 1 },
]

[[package]]
name = "Click"
version = "8.1.7"
source = { registry = "https://pypi.org/simple" }
wheels = [
    { url = "https://files.pythonhosted.org/click-8.1.7-py3-none-any.whl", hash = "sha256:AE74FB96C20A0277A1D615F1E4D73C8414F5A98DB8B799A7931D1582F3390C28", size = 1 },
]

[[package]]
name = "internal-tools"
version = "1.2.0+corp.1"
source = { registry = "https://pypi.corp.example/simple" }
wheels = [
    { url = "https://pypi.corp.example/internal_tools-1.2.0-py3-none-any.whl", hash = "sha256:1111111111111111111111111111111111111111111111111111111111111111", size = 1 },
]

[[package]]
name = "gitdep"
version = "0.3.0"
source = { git = "https://github.com/example/gitdep?rev=main#0123456789abcdef0123456789abcdef01234567" }

[[package]]
name = "urldep"
version = "2.0.0"
source = { url = "https://example.com/urldep-2.0.0-py3-none-any.whl" }
wheels = [
    { url = "https://example.com/urldep-2.0.0-py3-none-any.whl", hash = "sha256:2222222222222222222222222222222222222222222222222222222222222222" },
]

[[package]]
name = "my-lib"
version = "0.1.0"
source = { editable = "packages/my-lib" }

[[package]]
name = "my-app"
version = "0.2.0"
source = { editable = "." }

[[package]]
name = "pytest"
version = "8.3.2"
source = { registry = "https://pypi.org/simple" }
wheels = [
    { url = "https://files.pythonhosted.org/pytest-8.3.2-py3-none-any.whl", hash = "sha256:4ba08f9ae7dcf84ded419494d229b48d0903ea6407b030eaec46df5e6a73bba5", size = 1 },
]
"""

INSTALLED = {
    "anyio": "4.4.0",
    "click": "8.1.7",
    "internal-tools": "1.2.0+corp.1",
    "gitdep": "0.3.0",
    "urldep": "2.0.0",
    "my-lib": "0.1.0",
    "my-app": "0.2.0",
}


def project(root: Path, *, version: str | None = "0.2.0") -> Project:
    return Project(root=root, name="My_App", normalized_name="my-app", version=version,
                   is_package=True, scripts=("myapp",), requires_python=">=3.11",
                   workspace_members=(), manifest_files=("pyproject.toml", "uv.lock"))


@pytest.fixture
def app(tmp_path: Path) -> Project:
    (tmp_path / "uv.lock").write_text(LOCK)
    return project(tmp_path)


def sbom(app: Project, installed: dict[str, str] = INSTALLED, **kw: int) -> dict:
    data = make_sbom(app, uv_lock_packages(app), installed, timestamp=kw.get("timestamp", EPOCH))
    return json.loads(data)


def by_name(document: dict) -> dict[str, dict]:
    return {c["name"]: c for c in document["components"]}


def test_the_documented_path_in_images() -> None:
    assert SBOM_PATH == "/app/sbom.cdx.json"


def test_header_metadata_and_tool(app: Project) -> None:
    document = sbom(app)
    assert document["bomFormat"] == "CycloneDX"
    assert document["specVersion"] == "1.5"
    assert document["version"] == 1
    assert document["$schema"] == "http://cyclonedx.org/schema/bom-1.5.schema.json"
    metadata = document["metadata"]
    assert metadata["timestamp"] == "2023-11-14T22:13:20Z"
    assert metadata["tools"] == {"components": [
        {"type": "application", "name": "uvbuild", "version": __version__}]}
    assert metadata["component"] == {
        "type": "application", "name": "My_App", "version": "0.2.0",
        "bom-ref": "uvbuild:project/my-app",
        "properties": [{"name": "uvbuild:source", "value": "editable+."}],
    }


def test_identical_inputs_give_identical_bytes(app: Project) -> None:
    packages = uv_lock_packages(app)
    first = make_sbom(app, packages, INSTALLED, timestamp=EPOCH)
    # Same facts in another order: the lock's order and the venv's order do not matter.
    second = make_sbom(app, tuple(reversed(packages)), dict(reversed(INSTALLED.items())),
                       timestamp=EPOCH)
    assert first == second
    assert first.endswith(b"}\n")
    assert first == (json.dumps(json.loads(first), sort_keys=True, indent=2) + "\n").encode()


def test_serial_number_is_a_uuid_derived_from_the_content(app: Project) -> None:
    serial = sbom(app)["serialNumber"]
    assert re.fullmatch(
        r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", serial)
    assert sbom(app)["serialNumber"] == serial
    assert sbom(app, timestamp=EPOCH + 1)["serialNumber"] != serial
    fewer = {k: v for k, v in INSTALLED.items() if k != "anyio"}
    assert sbom(app, fewer)["serialNumber"] != serial


def test_only_installed_packages_are_listed_and_the_project_is_the_subject(app: Project) -> None:
    names = [c["name"] for c in sbom(app)["components"]]
    # Sorted; pytest (dev group, not installed) absent; my-app is metadata.component instead.
    assert names == ["anyio", "click", "gitdep", "internal-tools", "my-lib", "urldep"]


def test_without_an_installed_list_every_non_virtual_lock_package_is_listed(
        tmp_path: Path) -> None:
    (tmp_path / "uv.lock").write_text(LOCK.replace('editable = "."', 'virtual = "."'))
    app = project(tmp_path)
    names = [c["name"] for c in sbom(app, {})["components"]]
    assert names == ["anyio", "click", "gitdep", "internal-tools", "my-lib", "pytest", "urldep"]


def test_hashes_come_from_the_lock(app: Project) -> None:
    components = by_name(sbom(app))
    assert components["anyio"]["hashes"] == [
        {"alg": "SHA-256",
         "content": "5aadc6a1bbb7cdb0bede386cac5e2940f5e2ff3aa20277e991cf028e0585ce94"},
        {"alg": "SHA-256",
         "content": "c1b2d8f46a8a812513012e1107cb0e68c17159a7a594208005a57dc776e1bdc7"},
    ]
    # Lower-cased, as CycloneDX's hash pattern and every scanner expect.
    assert components["click"]["hashes"] == [{"alg": "SHA-256", "content":
        "ae74fb96c20a0277a1d615f1e4d73c8414f5a98db8b799a7931d1582f3390c28"}]
    # A git source has no artifact hash in uv.lock, and no empty list is written.
    assert "hashes" not in components["gitdep"]


def test_purls_name_the_source(app: Project) -> None:
    components = by_name(sbom(app))
    assert components["anyio"]["purl"] == "pkg:pypi/anyio@4.4.0"
    assert components["click"]["purl"] == "pkg:pypi/click@8.1.7"  # normalized name
    assert components["internal-tools"]["purl"] == (
        "pkg:pypi/internal-tools@1.2.0%2Bcorp.1"
        "?repository_url=https://pypi.corp.example/simple")
    assert components["gitdep"]["purl"] == (
        "pkg:pypi/gitdep@0.3.0?vcs_url=git%2Bhttps://github.com/example/gitdep"
        "%400123456789abcdef0123456789abcdef01234567")  # "@" is a purl separator: encoded
    assert components["urldep"]["purl"] == (
        "pkg:pypi/urldep@2.0.0"
        "?download_url=https://example.com/urldep-2.0.0-py3-none-any.whl")
    for component in components.values():
        assert component["bom-ref"] == component.get("purl", component["bom-ref"])


def test_local_packages_have_no_purl_but_say_where_they_came_from(app: Project) -> None:
    lib = by_name(sbom(app))["my-lib"]
    assert "purl" not in lib
    assert lib["bom-ref"] == "uvbuild:local/my-lib@0.1.0"
    assert lib["properties"] == [{"name": "uvbuild:source", "value": "editable+packages/my-lib"}]
    assert "externalReferences" not in lib


def test_sources_are_properties_and_external_references(app: Project) -> None:
    components = by_name(sbom(app))
    assert components["anyio"]["type"] == "library"
    assert components["anyio"]["properties"] == [
        {"name": "uvbuild:source", "value": "registry+https://pypi.org/simple"}]
    assert components["anyio"]["externalReferences"] == [
        {"type": "distribution", "url": "https://pypi.org/simple"}]
    assert components["gitdep"]["externalReferences"] == [{
        "type": "vcs", "url": "git+https://github.com/example/gitdep"
        "?rev=main#0123456789abcdef0123456789abcdef01234567"}]


def test_a_forked_lock_lists_only_the_installed_version(tmp_path: Path) -> None:
    app = project(tmp_path)
    packages = (
        LockedPackage(name="numpy", version="1.26.4", source="registry+https://pypi.org/simple",
                      hashes=("sha256:" + "a" * 64,)),
        LockedPackage(name="numpy", version="2.1.0", source="registry+https://pypi.org/simple",
                      hashes=("sha256:" + "b" * 64,)),
    )
    document = json.loads(make_sbom(app, packages, {"numpy": "2.1"}, timestamp=EPOCH))
    assert [(c["name"], c["version"]) for c in document["components"]] == [("numpy", "2.1.0")]


def test_a_dynamic_version_falls_back_to_the_installed_one(tmp_path: Path) -> None:
    app = project(tmp_path, version=None)
    packages = (LockedPackage(name="my-app", version=None, source="editable+.", hashes=()),
                LockedPackage(name="member", version=None, source="editable+member", hashes=()))
    document = json.loads(make_sbom(app, packages, {"my-app": "1.0", "member": "0.4"},
                                    timestamp=EPOCH))
    assert document["metadata"]["component"]["version"] == "1.0"
    assert document["components"][0]["version"] == "0.4"
    assert document["components"][0]["bom-ref"] == "uvbuild:local/member@0.4"


@pytest.mark.parametrize(("epoch", "expected"), [
    (0, "1970-01-01T00:00:00Z"),
    (EPOCH, "2023-11-14T22:13:20Z"),
    (1_735_689_599, "2024-12-31T23:59:59Z"),
])
def test_timestamps_are_iso8601_utc(epoch: int, expected: str) -> None:
    assert iso_timestamp(epoch) == expected


def test_summary_lists_packages(app: Project) -> None:
    data = make_sbom(app, uv_lock_packages(app), INSTALLED, timestamp=EPOCH)
    assert summarize(data) == (
        "CycloneDX 1.5, 6 Python packages for My_App 0.2.0: anyio 4.4.0, click 8.1.7,\n"
        "  gitdep 0.3.0, internal-tools 1.2.0+corp.1, my-lib 0.1.0, urldep 2.0.0")
    summary = read_sbom(data)
    assert summary is not None and summary.packages[0] == ("anyio", "4.4.0")


def test_summary_of_an_empty_or_foreign_document() -> None:
    empty = json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.5", "components": []})
    assert summarize(empty.encode()) == "CycloneDX 1.5, 0 Python packages"
    one = json.dumps({"bomFormat": "CycloneDX", "specVersion": "1.4", "components": [
        {"type": "library", "name": "six", "version": "1.16.0"}]})
    assert summarize(one.encode()) == "CycloneDX 1.4, 1 Python package: six 1.16.0"
    assert summarize(b'{"spdxVersion": "SPDX-2.3"}') == "not a CycloneDX JSON document"
    assert summarize(b"\xff not json") == "not a CycloneDX JSON document"
    assert read_sbom(b"[]") is None


def test_a_long_summary_wraps_between_packages() -> None:
    components = [{"type": "library", "name": f"package-number-{i:02}", "version": f"{i}.0.0"}
                  for i in range(30)]
    document = {"bomFormat": "CycloneDX", "specVersion": "1.5", "components": components}
    lines = summarize(json.dumps(document).encode()).splitlines()
    assert len(lines) > 3
    assert all(len(line) <= 88 for line in lines)
    assert all(line.startswith("  package-number-") for line in lines[1:])
    assert lines[-1].endswith("package-number-29 29.0.0")
