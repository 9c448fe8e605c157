"""Reading a uv project: pyproject.toml, its workspace, uv.lock, and whether the lock is current.

The uv.lock texts below were written by uv 0.13.9 (`uv lock`), trimmed of packages the
checks do not read. Every "out of date" case was first confirmed with `uv lock --check`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from uvbuild.errors import ProjectError
from uvbuild.project.lockfile import locked_packages
from uvbuild.project.model import (
    LockedPackage,
    Project,
    WorkspaceMember,
    is_package,
    load_toml,
    needed_packages,
    read_project,
    uv_lock_packages,
)
from uvbuild.project.pep508 import normalize_version, python_range, version_key

APP_PYPROJECT = """\
[project]
name = "My_App"
version = "0.2.0"
requires-python = ">=3.11"
dependencies = ["httpx >=0.27", "click[extra1]>=8; python_version >= '3.8'", "Requests"]

[project.optional-dependencies]
fast = ["orjson>=3"]

[dependency-groups]
dev = ["pytest>=8"]
lint = ["ruff"]

[project.scripts]
myapp = "my_app:main"
myapp-admin = "my_app.admin:main"

[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"
"""

APP_LOCK = """\
version = 1
revision = 5
requires-python = ">=3.11"

[[package]]
name = "certifi"
version = "2026.10.18"
source = { registry = "https://pypi.org/simple" }
sdist = { url = "https://files.pythonhosted.org/packages/7e/eb/a2aa1ac3ea30dd3f30ca57f40232138b6b0040719316ecb85daf61167771/certifi-2026.10.18.tar.gz", hash = "sha256:b9995d97b64d0431a5af837d8ca8cd6238104d1f319f04bd93ea43124d6c861e", upload-time = "2026-10-18T16:21:07.655Z" }
wheels = [
    { url = "https://files.pythonhosted.org/packages/08/ba/95dd616042484f7c83a06974388b37b837732740ee70bc5dc715b5fcd55a/certifi-2026.10.18-py3-none-any.whl", hash = "sha256:73191c47aaa79da394e8fee2dbc2ec827432cab56311122c9e47abf79e390f62", upload-time = "2026-10-18T16:21:06.276Z" },
]

[[package]]
name = "my-app"
version = "0.2.0"
source = { editable = "." }
dependencies = [
    { name = "click" },
    { name = "httpx" },
    { name = "requests" },
]

[package.optional-dependencies]
fast = [
    { name = "orjson" },
]

[package.dev-dependencies]
dev = [
    { name = "pytest" },
]
lint = [
    { name = "ruff" },
]

[package.metadata]
requires-dist = [
    { name = "click", extras = ["extra1"], marker = "python_full_version >= '3.8'", specifier = ">=8" },
    { name = "httpx", specifier = ">=0.27" },
    { name = "orjson", marker = "extra == 'fast'", specifier = ">=3" },
    { name = "requests" },
]
provides-extras = ["fast"]

[package.metadata.requires-dev]
dev = [{ name = "pytest", specifier = ">=8" }]
lint = [{ name = "ruff" }]
"""

WS_PYPROJECT = """\
[project]
name = "base_app"
version = "1.0"
requires-python = ">=3.10"
dependencies = ["a1>=1,<3", "a2[x]; python_version >= '3.8'", "a3; platform_system == 'Linux' and implementation_name == 'cpython'", "mem"]
[project.optional-dependencies]
web = ["a4>=1"]
[dependency-groups]
dev = ["a5", {include-group = "lint"}]
lint = ["a6==2.0"]
[tool.uv]
constraint-dependencies = ["a7<3"]
[tool.uv.workspace]
members = ["libs/*"]
exclude = ["libs/old"]
[tool.uv.sources]
mem = { workspace = true }
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"
"""

WS_MEMBER = """\
[project]
name = "mem"
version = "0.1"
requires-python = ">=3.11"
dependencies = ["a8"]
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"
"""

WS_LOCK = """\
version = 1
revision = 5
requires-python = ">=3.11"

[manifest]
members = [
    "base-app",
    "mem",
]
constraints = [{ name = "a7", specifier = "<3" }]

[[package]]
name = "a1"
version = "2.0"
source = { registry = "/tmp/uvl/wheels" }
wheels = [
    { path = "/tmp/uvl/wheels/a1-2.0-py3-none-any.whl" },
]

[[package]]
name = "base-app"
version = "1.0"
source = { editable = "." }
dependencies = [
    { name = "a1" },
    { name = "a2" },
    { name = "a3", marker = "implementation_name == 'cpython' and sys_platform == 'linux'" },
    { name = "mem" },
]

[package.optional-dependencies]
web = [
    { name = "a4" },
]

[package.dev-dependencies]
dev = [
    { name = "a5" },
    { name = "a6" },
]
lint = [
    { name = "a6" },
]

[package.metadata]
requires-dist = [
    { name = "a1", specifier = ">=1,<3" },
    { name = "a2", extras = ["x"], marker = "python_full_version >= '3.8'" },
    { name = "a3", marker = "implementation_name == 'cpython' and sys_platform == 'linux'" },
    { name = "a4", marker = "extra == 'web'", specifier = ">=1" },
    { name = "mem", editable = "libs/mem" },
]
provides-extras = ["web"]

[package.metadata.requires-dev]
dev = [
    { name = "a5" },
    { name = "a6", specifier = "==2.0" },
]
lint = [{ name = "a6", specifier = "==2.0" }]

[[package]]
name = "mem"
version = "0.1"
source = { editable = "libs/mem" }
dependencies = [
    { name = "a8" },
]

[package.metadata]
requires-dist = [{ name = "a8" }]
"""

# A virtual project with path, directory and index sources.
SOURCES_PYPROJECT = """\
[project]
name = "ps"
version = "1"
requires-python = ">=3.11"
dependencies = ["localpkg>=1", "other", "a1>=1"]
[tool.uv.sources]
localpkg = { path = "localpkg", editable = true }
other = { path = "other" }
a1 = { index = "mine" }
[[tool.uv.index]]
name = "mine"
url = "/tmp/uvl/wheels"
format = "flat"
explicit = true
"""

SOURCES_LOCK = """\
version = 1
revision = 5
requires-python = ">=3.11"

[[package]]
name = "a1"
version = "2.0"
source = { registry = "/tmp/uvl/wheels" }
wheels = [
    { path = "/tmp/uvl/wheels/a1-2.0-py3-none-any.whl" },
]

[[package]]
name = "localpkg"
version = "1"
source = { editable = "localpkg" }

[[package]]
name = "other"
version = "1"
source = { directory = "other" }

[[package]]
name = "ps"
version = "1"
source = { virtual = "." }
dependencies = [
    { name = "a1" },
    { name = "localpkg" },
    { name = "other" },
]

[package.metadata]
requires-dist = [
    { name = "a1", specifier = ">=1", index = "file:///tmp/uvl/wheels" },
    { name = "localpkg", editable = "localpkg" },
    { name = "other", directory = "other" },
]
"""

SOURCES_FILES = {
    "pyproject.toml": SOURCES_PYPROJECT, "uv.lock": SOURCES_LOCK,
    "localpkg/pyproject.toml": '[project]\nname = "localpkg"\nversion = "1"\n',
    "other/pyproject.toml": '[project]\nname = "other"\nversion = "1"\n',
}

# A workspace whose root version is dynamic: uv 0.13.9 records no version for it.
DYNAMIC_PYPROJECT = """\
[project]
name = "ws-root"
dynamic = ["version"]
requires-python = ">=3.11"
dependencies = []

[tool.uv.workspace]
members = ["packages/*"]

[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"
"""

DYNAMIC_LOCK = """\
version = 1
revision = 5
requires-python = ">=3.11"

[manifest]
members = [
    "tool-two",
    "ws-root",
]

[[package]]
name = "tool-two"
version = "0.2"
source = { virtual = "packages/tool-two" }

[[package]]
name = "ws-root"
source = { editable = "." }
"""

TOOL_TWO = """\
[project]
name = "tool-two"
version = "0.2"
dependencies = []
[tool.uv]
package = false
"""


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def app(tmp_path: Path) -> Path:
    return write(tmp_path, {"pyproject.toml": APP_PYPROJECT, "uv.lock": APP_LOCK})


def workspace(tmp_path: Path) -> Path:
    return write(
        tmp_path,
        {
            "pyproject.toml": WS_PYPROJECT,
            "uv.lock": WS_LOCK,
            "libs/mem/pyproject.toml": WS_MEMBER,
            "libs/old/pyproject.toml": '[project]\nname = "old"\nversion = "1"\n',
        },
    )


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def stale_reason(root: Path) -> str:
    with pytest.raises(ProjectError) as caught:
        read_project(root)
    prefix = f"{root.resolve() / 'uv.lock'} is out of date: "
    assert caught.value.message.startswith(prefix), caught.value.message
    assert caught.value.hint == f"run `uv lock` in {root.resolve()} and commit uv.lock"
    return caught.value.message[len(prefix) :]


# --- reading ---------------------------------------------------------------------------


def test_reads_a_single_package_project(tmp_path: Path) -> None:
    assert read_project(app(tmp_path)) == Project(
        root=tmp_path.resolve(),
        name="My_App",
        normalized_name="my-app",
        version="0.2.0",
        is_package=True,
        scripts=("myapp", "myapp-admin"),
        requires_python=">=3.11",
        workspace_members=(),
        manifest_files=("pyproject.toml", "uv.lock"),
        extras=("fast",),
        groups=("dev", "lint"),
    )


def test_reads_a_workspace_and_its_manifest_files(tmp_path: Path) -> None:
    root = workspace(tmp_path)
    write(root, {".python-version": "3.11\n", "uv.toml": "native-tls = true\n"})
    project = read_project(root)
    assert project.workspace_members == (
        WorkspaceMember(name="mem", path="libs/mem", is_package=True),
    )
    assert project.manifest_files == (
        "pyproject.toml",
        "uv.lock",
        "libs/mem/pyproject.toml",
        ".python-version",
        "uv.toml",
    )
    assert project.scripts == ()


def test_a_virtual_project_with_path_and_index_sources(tmp_path: Path) -> None:
    root = write(tmp_path, SOURCES_FILES)
    project = read_project(root)
    assert (project.is_package, project.version) == (False, "1")
    assert project.path_dependencies == ("localpkg", "other")



def test_dynamic_version_comes_from_the_lock_when_recorded(tmp_path: Path) -> None:
    files = {
        "pyproject.toml": DYNAMIC_PYPROJECT,
        "uv.lock": DYNAMIC_LOCK,
        "packages/tool-two/pyproject.toml": TOOL_TWO,
    }
    root = write(tmp_path, files)
    project = read_project(root)
    assert project.version is None
    assert project.workspace_members == (
        WorkspaceMember(name="tool-two", path="packages/tool-two", is_package=False),
    )
    edit(root / "uv.lock", 'name = "ws-root"\n', 'name = "ws-root"\nversion = "3.4.5"\n')
    assert read_project(root).version == "3.4.5"


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({}, False),
        ({"build-system": {"requires": ["hatchling"]}}, True),
        ({"tool": {"uv": {"package": False}}, "build-system": {}}, False),
        ({"tool": {"uv": {"package": True}}}, True),
        ({"tool": {"uv": {}}}, False),
    ],
)
def test_is_package_follows_uv(doc: dict[str, object], expected: bool) -> None:
    assert is_package(doc) is expected


def test_locked_packages_with_sources_and_hashes(tmp_path: Path) -> None:
    project = read_project(app(tmp_path))
    packages = locked_packages(load_toml(project.lock_root / "uv.lock"))
    assert packages == (
        LockedPackage(
            name="certifi",
            version="2026.10.18",
            source="registry+https://pypi.org/simple",
            hashes=(
                "sha256:b9995d97b64d0431a5af837d8ca8cd6238104d1f319f04bd93ea43124d6c861e",
                "sha256:73191c47aaa79da394e8fee2dbc2ec827432cab56311122c9e47abf79e390f62",
            ),
        ),
        LockedPackage(name="my-app", version="0.2.0", source="editable+.", hashes=(),
                      requirements=packages[1].requirements, groups=packages[1].groups,
                      extras=frozenset({"fast"})),
    )
    # One parse serves the SBOM and the lock check: the project's [package.metadata].
    app_package = packages[1]
    assert app_package.kind == "editable" and packages[0].kind is None
    assert {r.name for r in app_package.requirements[""]} == {"httpx", "click", "requests"}
    assert {r.name for r in app_package.requirements["extra 'fast'"]} == {"orjson"}
    # What the plan and the SBOM take: the same packages, without their metadata.
    light = uv_lock_packages(project)
    assert [(p.name, p.version, p.source, p.hashes) for p in light] == [
        (p.name, p.version, p.source, p.hashes) for p in packages]
    assert all(not p.requirements and not p.groups and not p.extras for p in light)


def test_locked_package_sources_of_every_kind(tmp_path: Path) -> None:
    root = write(tmp_path, SOURCES_FILES)
    sources = {p.name: p.source for p in uv_lock_packages(read_project(root))}
    assert sources == {
        "a1": "registry+/tmp/uvl/wheels",
        "localpkg": "editable+localpkg",
        "other": "directory+other",
        "ps": "virtual+.",
    }


def test_locked_package_without_version(tmp_path: Path) -> None:
    files = {
        "pyproject.toml": DYNAMIC_PYPROJECT,
        "uv.lock": DYNAMIC_LOCK,
        "packages/tool-two/pyproject.toml": TOOL_TWO,
    }
    packages = uv_lock_packages(read_project(write(tmp_path, files)))
    root_package = LockedPackage(name="ws-root", version=None, source="editable+.", hashes=())
    assert packages[-1] == root_package


# --- errors ----------------------------------------------------------------------------


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match=r"project folder .*/nowhere not found"):
        read_project(tmp_path / "nowhere")


def test_missing_pyproject(tmp_path: Path) -> None:
    with pytest.raises(ProjectError) as caught:
        read_project(tmp_path)
    assert caught.value.message == f"{tmp_path.resolve()}/pyproject.toml not found"


def test_invalid_toml_names_file_line_and_column(tmp_path: Path) -> None:
    write(tmp_path, {"pyproject.toml": '[project]\nname = "x"\nversion = 1.0.0\n'})
    with pytest.raises(ProjectError) as caught:
        read_project(tmp_path)
    message = caught.value.message
    assert message.startswith(f"{tmp_path.resolve()}/pyproject.toml is not valid TOML: ")
    assert "line 3, column" in message


def test_a_pyproject_with_a_byte_order_mark_reads_as_uv_reads_it(tmp_path: Path) -> None:
    expected = read_project(app(tmp_path / "plain"))
    root = app(tmp_path / "bom")
    (root / "pyproject.toml").write_bytes(b"\xef\xbb\xbf" + APP_PYPROJECT.encode())
    assert read_project(root).scripts == expected.scripts
    assert read_project(root).version == expected.version


def test_no_project_table(tmp_path: Path) -> None:
    write(tmp_path, {"pyproject.toml": "[tool.uv.workspace]\nmembers = []\n"})
    with pytest.raises(ProjectError) as caught:
        read_project(tmp_path)
    assert caught.value.message == f"{tmp_path.resolve()}/pyproject.toml has no [project] table"


def test_no_project_name(tmp_path: Path) -> None:
    write(tmp_path, {"pyproject.toml": '[project]\nversion = "1"\n'})
    with pytest.raises(ProjectError, match=r"pyproject.toml has no project.name"):
        read_project(tmp_path)


def test_missing_lock_says_to_run_uv_lock(tmp_path: Path) -> None:
    write(tmp_path, {"pyproject.toml": APP_PYPROJECT})
    with pytest.raises(ProjectError) as caught:
        read_project(tmp_path)
    root = tmp_path.resolve()
    assert caught.value.message == f"{root}/uv.lock not found"
    assert caught.value.hint == f"run `uv lock` in {root} and commit uv.lock"


def test_invalid_lock(tmp_path: Path) -> None:
    write(tmp_path, {"pyproject.toml": APP_PYPROJECT, "uv.lock": "version = \n"})
    with pytest.raises(ProjectError, match=r"/uv.lock is not valid TOML: .*line 1"):
        read_project(tmp_path)


def test_missing_version_without_dynamic(tmp_path: Path) -> None:
    app(tmp_path)
    edit(tmp_path / "pyproject.toml", 'version = "0.2.0"\n', "")
    with pytest.raises(ProjectError, match=r"/pyproject.toml: project.version is not set"):
        read_project(tmp_path)


def test_bad_requirement_names_the_member_file(tmp_path: Path) -> None:
    root = workspace(tmp_path)
    edit(root / "libs/mem/pyproject.toml", '["a8"]', '["-a8>=1"]')
    with pytest.raises(ProjectError) as caught:
        read_project(root)
    assert caught.value.message == (
        f"{root.resolve()}/libs/mem/pyproject.toml: '-a8>=1' is not a valid requirement"
    )


def test_include_of_an_unknown_group(tmp_path: Path) -> None:
    root = workspace(tmp_path)
    edit(root / "pyproject.toml", 'lint = ["a6==2.0"]', "")
    with pytest.raises(ProjectError) as caught:
        read_project(root)
    assert caught.value.message == (
        f"{root.resolve()}/pyproject.toml: dependency group 'dev' includes group 'lint', "
        "which [dependency-groups] does not define"
    )


# --- is uv.lock current? -----------------------------------------------------------------

# (file, old, new, reason) - each confirmed stale by `uv lock --check` (uv 0.13.9).
# fmt: off
STALE = {
    "dependency added": (
        "pyproject.toml", '"mem"]', '"mem", "a9"]',
        "dependency 'a9' in pyproject.toml is not in uv.lock",
    ),
    "dependency removed": (
        "pyproject.toml", '"a1>=1,<3", ', "",
        "uv.lock still has dependency 'a1', which pyproject.toml does not list",
    ),
    "specifier changed": (
        "pyproject.toml", "a1>=1,<3", "a1>=1,<2",
        "dependency 'a1>=1,<2' in pyproject.toml is 'a1>=1,<3' in uv.lock",
    ),
    "prerelease specifier": (
        "pyproject.toml", "a1>=1,<3", "a1>=1.0-RC1,<3",
        "dependency 'a1>=1.0-RC1,<3' in pyproject.toml is 'a1>=1,<3' in uv.lock",
    ),
    "marker added": (
        "pyproject.toml", '"mem"]', "\"mem; sys_platform != 'win32'\"]",
        "dependency \"mem; sys_platform != 'win32'\" in pyproject.toml"
        " is 'mem @ editable libs/mem' in uv.lock",
    ),
    "extra of a dependency": (
        "pyproject.toml", "a2[x]", "a2[x,y]",
        "dependency \"a2[x,y]; python_version >= '3.8'\" in pyproject.toml"
        " is \"a2[x]; python_full_version >= '3.8'\" in uv.lock",
    ),
    "url dependency": (
        "pyproject.toml", '"mem"]', '"mem", "a17 @ file:///w/a17-2.0-py3-none-any.whl"]',
        "dependency 'a17' in pyproject.toml is not in uv.lock",
    ),
    "extra marker in dependencies": (
        "pyproject.toml", '"mem"]', "\"mem\", \"a16; extra == 'web'\"]",
        "dependency 'a16' (extra 'web') in pyproject.toml is not in uv.lock",
    ),
    "new empty extra": (
        "pyproject.toml", 'web = ["a4>=1"]', 'web = ["a4>=1"]\nnone = []',
        "extra 'none' in pyproject.toml is not in uv.lock",
    ),
    "dependency of an extra": (
        "pyproject.toml", 'web = ["a4>=1"]', 'web = ["a4>=1", "a10"]',
        "dependency 'a10' (extra 'web') in pyproject.toml is not in uv.lock",
    ),
    "extra renamed": (
        "pyproject.toml", "web = [", "www = [",
        "uv.lock still has dependency 'a4' (extra 'web'), which pyproject.toml does not list",
    ),
    "dependency of a group": (
        "pyproject.toml", 'dev = ["a5"', 'dev = ["a5", "a11"',
        "dependency 'a11' (group 'dev') in pyproject.toml is not in uv.lock",
    ),
    "new empty group": (
        "pyproject.toml", 'lint = ["a6==2.0"]', 'lint = ["a6==2.0"]\ndocs = []',
        "dependency group 'docs' in pyproject.toml is not in uv.lock",
    ),
    "included group changed": (
        "pyproject.toml", "a6==2.0", "a6==1.0.0",
        "dependency 'a6==1.0.0' (group 'dev') in pyproject.toml is 'a6==2.0' in uv.lock",
    ),
    "wildcard": (
        "pyproject.toml", "a6==2.0", "a6==2.0.*",
        "dependency 'a6==2.0.*' (group 'dev') in pyproject.toml is 'a6==2.0' in uv.lock",
    ),
    "legacy dev-dependencies": (
        "pyproject.toml", "[tool.uv]\n", '[tool.uv]\ndev-dependencies = ["a15"]\n',
        "dependency 'a15' (group 'dev') in pyproject.toml is not in uv.lock",
    ),
    "requires-python raised": (
        "pyproject.toml", '">=3.10"', '">=3.12"',
        "requires-python is '>=3.12' in pyproject.toml and '>=3.11' in libs/mem/pyproject.toml,"
        " '>=3.11' in uv.lock",
    ),
    "member requires-python dropped": (
        "libs/mem/pyproject.toml", 'requires-python = ">=3.11"\n', "",
        "requires-python is '>=3.10' in pyproject.toml, '>=3.11' in uv.lock",
    ),
    "version bumped": (
        "pyproject.toml", 'version = "1.0"', 'version = "1.1"',
        "version is '1.1' in pyproject.toml, '1.0' in uv.lock",
    ),
    "prerelease version": (
        "pyproject.toml", 'version = "1.0"', 'version = "1.0-RC1"',
        "version is '1.0-RC1' in pyproject.toml, '1.0' in uv.lock",
    ),
    "member dependency": (
        "libs/mem/pyproject.toml", '["a8"]', '["a8>=1"]',
        "dependency 'a8>=1' in libs/mem/pyproject.toml is 'a8' in uv.lock",
    ),
    "member version": (
        "libs/mem/pyproject.toml", 'version = "0.1"', 'version = "0.2"',
        "version is '0.2' in libs/mem/pyproject.toml, '0.1' in uv.lock",
    ),
    "constraint changed": (
        "pyproject.toml", "a7<3", "a7<2",
        "constraint 'a7<2' in pyproject.toml is 'a7<3' in uv.lock",
    ),
    "constraint on a locked package": (
        "pyproject.toml", '"a7<3"', '"a7<3", "a1<2"',
        "constraint 'a1' in pyproject.toml is not in uv.lock",
    ),
    "project renamed": (
        "pyproject.toml", 'name = "base_app"', 'name = "other_app"',
        "it was made for project 'base-app', not 'other-app'",
    ),
    "no longer a package": (
        "pyproject.toml", "[tool.uv]\n", "[tool.uv]\npackage = false\n",
        "pyproject.toml makes it virtual (not a package), uv.lock has it a package",
    ),
    "member un-excluded": (
        "pyproject.toml", 'exclude = ["libs/old"]', "exclude = []",
        "workspace member 'old' is not in it",
    ),
}
# fmt: on


@pytest.mark.parametrize("case", list(STALE), ids=list(STALE))
def test_stale_lock_says_why(tmp_path: Path, case: str) -> None:
    file, old, new, reason = STALE[case]
    root = workspace(tmp_path)
    edit(root / file, old, new)
    assert stale_reason(root) == reason


# (file, old, new) - each confirmed current by `uv lock --check` (uv 0.13.9).
# fmt: off
CURRENT = {
    "specifier clauses reordered": ("pyproject.toml", "a1>=1,<3", "a1 < 3 , >= 1"),
    "name spelled differently": ("pyproject.toml", '"a1>=1', '"A1>=1'),
    "specifier in parentheses": ("pyproject.toml", "a1>=1,<3", "a1 (>=1,<3)"),
    "marker implied by requires-python dropped": (
        "pyproject.toml", "; python_version >= '3.8'", ""
    ),
    "marker implied by requires-python changed": (
        "pyproject.toml", "python_version >= '3.8'", "python_version >= '3.9'"
    ),
    "equal version in a specifier": ("pyproject.toml", "a6==2.0", "a6==2.0.0"),
    "equal project version": ("pyproject.toml", 'version = "1.0"', 'version = "1.0.0"'),
    "root requires-python below the intersection": ("pyproject.toml", '">=3.10"', '">=3.9"'),
    "requires-python spacing": ("libs/mem/pyproject.toml", '">=3.11"', '">= 3.11"'),
    "group name spelled differently": ("pyproject.toml", "lint = [", "Lint = ["),
    "specifier on a workspace source": ("pyproject.toml", '"mem"]', '"mem>=0.1"]'),
    "constraint on a package never resolved": ("pyproject.toml", '"a7<3"', '"a7<3", "a19<2"'),
    "override of a package never resolved": (
        "pyproject.toml", "[tool.uv]\n", '[tool.uv]\noverride-dependencies = ["a14>=1"]\n'
    ),
}
# fmt: on


@pytest.mark.parametrize("case", list(CURRENT), ids=list(CURRENT))
def test_equivalent_edits_keep_the_lock_current(tmp_path: Path, case: str) -> None:
    file, old, new = CURRENT[case]
    root = workspace(tmp_path)
    edit(root / file, old, new)
    assert read_project(root).name in ("base_app", "base-app")


# As uv 0.13.9 writes them: an empty legacy dev group is locked as `dev = []`.
EMPTY_DEV_PYPROJECT = """\
[project]
name = "root"
version = "0.1"
requires-python = ">=3.10"
dependencies = []
[tool.uv]
dev-dependencies = []
"""
EMPTY_DEV_LOCK = """\
version = 1
revision = 5
requires-python = ">=3.10"

[[package]]
name = "root"
version = "0.1"
source = { virtual = "." }

[package.metadata]

[package.metadata.requires-dev]
dev = []
"""


def test_an_empty_legacy_dev_group_is_a_group_as_uv_locks_it(tmp_path: Path) -> None:
    root = write(tmp_path, {"pyproject.toml": EMPTY_DEV_PYPROJECT, "uv.lock": EMPTY_DEV_LOCK})
    read_project(root)
    edit(root / "pyproject.toml", "dev-dependencies = []\n", "")
    assert stale_reason(root) == ("uv.lock still has dependency group 'dev', which "
                                  "pyproject.toml does not declare")


def test_app_lock_is_current_and_notices_a_new_dependency(tmp_path: Path) -> None:
    root = app(tmp_path)
    read_project(root)
    edit(root / "pyproject.toml", '"Requests"]', '"Requests", "httpx-sse"]')
    assert stale_reason(root) == "dependency 'httpx-sse' in pyproject.toml is not in uv.lock"


def test_lock_of_another_project(tmp_path: Path) -> None:
    root = write(tmp_path, {"pyproject.toml": APP_PYPROJECT, "uv.lock": SOURCES_LOCK})
    assert stale_reason(root) == "it was made for project 'ps', not 'my-app'"


def test_dynamic_dependencies_are_not_judged(tmp_path: Path) -> None:
    root = workspace(tmp_path)
    edit(
        root / "libs/mem/pyproject.toml",
        'dependencies = ["a8"]',
        'dynamic = ["dependencies"]',
    )
    read_project(root)


def test_a_member_folder_without_pyproject_is_refused_as_uv_does(tmp_path: Path) -> None:
    root = workspace(tmp_path)
    (root / "libs" / "empty").mkdir()  # skipped, as uv skips it
    read_project(root)
    write(root, {"libs/notes/README.md": "no pyproject.toml\n"})
    with pytest.raises(ProjectError, match=r"libs/notes: a folder tool.uv.workspace.members "
                                           r"matches, with no pyproject.toml") as caught:
        read_project(root)
    assert "tool.uv.workspace.exclude" in str(caught.value.hint)
    edit(root / "pyproject.toml", 'exclude = ["libs/old"]', 'exclude = ["libs/old", "libs/notes"]')
    read_project(root)


# (old, new, reason) on SOURCES_PYPROJECT: a dependency's source as uv.lock has it
# (each confirmed by tests/integration/test_lockcheck_uv.py, uv 0.13.9).
# fmt: off
SOURCE_EDITS = {
    "editable made non-editable": (
        'localpkg = { path = "localpkg", editable = true }', 'localpkg = { path = "localpkg" }',
        "pyproject.toml gives 'localpkg' another source than uv.lock's editable 'localpkg'"),
    "path moved": (
        'other = { path = "other" }', 'other = { path = "other2" }',
        "pyproject.toml gives 'other' another source than uv.lock's directory 'other'"),
    "index source dropped": (
        'a1 = { index = "mine" }\n', "",
        "uv.lock has 'a1' from index 'file:///tmp/uvl/wheels', pyproject.toml gives it no "
        "source"),
    "path spelled with ./": ('other = { path = "other" }', 'other = { path = "./other/" }', None),
    "non-editable said so": (
        'other = { path = "other" }', 'other = { path = "other", editable = false }', None),
}
# fmt: on


@pytest.mark.parametrize("case", list(SOURCE_EDITS), ids=list(SOURCE_EDITS))
def test_a_dependency_source_is_compared(tmp_path: Path, case: str) -> None:
    old, new, reason = SOURCE_EDITS[case]
    root = write(tmp_path, SOURCES_FILES)
    read_project(root)
    write(root, {"other2/pyproject.toml": '[project]\nname = "other"\nversion = "1"\n'})
    edit(root / "pyproject.toml", old, new)
    if reason is None:
        read_project(root)
    else:
        assert stale_reason(root) == reason


def test_lock_without_the_member(tmp_path: Path) -> None:
    root = workspace(tmp_path)
    write(root, {"libs/two/pyproject.toml": '[project]\nname = "two"\nversion = "1"\n'})
    assert stale_reason(root) == "workspace member 'two' is not in it"


# --- the version and requires-python readings behind the check ---------------------------


@pytest.mark.parametrize(
    ("text", "normal", "key"),
    [
        ("1.0", "1.0", "1"),
        ("1.0.0-RC1", "1.0.0rc1", "1rc1"),
        ("v2.1-alpha.3", "2.1a3", "2.1a3"),
        ("1.0-1", "1.0.post1", "1.post1"),
        ("1.2.0.DEV", "1.2.0.dev0", "1.2.dev0"),
        ("0!1.10.0+Ubuntu-1", "1.10.0+ubuntu.1", "1.10+ubuntu.1"),
        ("1.0.x", None, None),
    ],
)
def test_versions_are_read_as_pep_440(text: str, normal: str | None, key: str | None) -> None:
    assert (normalize_version(text), version_key(text)) == (normal, key)


@pytest.mark.parametrize(
    ("declared", "locked"),
    [
        (["~=3.10"], ">=3.10, <4"),
        (["<4,>=3.9"], ">=3.9, <4"),
        ([">=3.9,<4,>=3.10"], ">=3.10, <4"),
        ([">= 3.9.0 ,< 4"], ">=3.9.0, <4"),
        ([">=3.10", ">=3.11"], ">=3.11"),
        (["==3.11.*"], "==3.11.*"),
    ],
)
def test_requires_python_as_uv_locks_it(declared: list[str], locked: str) -> None:
    assert python_range(declared) == python_range([locked])
    assert python_range(declared) is not None


def test_requires_python_differences_show() -> None:
    assert python_range([">=3.10"]) != python_range([">3.10"])
    assert python_range([">=3.10"]) != python_range([">=3.10, <4"])
    assert python_range(["===3.11-foo"]) is None


# --- path dependencies and workspace members (issue 13) -------------------------------

API_PYPROJECT = """\
[project]
name = "api"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["common"]
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"
[tool.uv.sources]
common = { path = "COMMON", editable = true }
"""

API_LOCK = """\
version = 1
revision = 5
requires-python = ">=3.11"

[[package]]
name = "api"
version = "0.1.0"
source = { editable = "." }
dependencies = [{ name = "common" }]

[package.metadata]
requires-dist = [{ name = "common", editable = "COMMON" }]

[[package]]
name = "common"
version = "0.1.0"
source = { editable = "COMMON" }
"""

COMMON_PYPROJECT = '[project]\nname = "common"\nversion = "0.1.0"\n'


def monorepo(tmp_path: Path, common: str = "../../libs/common") -> Path:
    write(tmp_path, {
        "services/api/pyproject.toml": API_PYPROJECT.replace("COMMON", common),
        "services/api/uv.lock": API_LOCK.replace("COMMON", common),
        "services/api/src/api/__init__.py": "",
        "libs/common/pyproject.toml": COMMON_PYPROJECT,
        "libs/common/src/common/__init__.py": "",
        "libs/unrelated/x.py": "",
    })
    return tmp_path / "services/api"


def test_a_path_dependency_outside_the_project_widens_the_build_context(tmp_path: Path) -> None:
    project = read_project(monorepo(tmp_path))
    assert project.context_root == tmp_path.resolve()
    assert project.path_dependencies == ("libs/common",)
    assert project.in_context(project.root) == "services/api"
    assert project.manifest_files == (
        "services/api/pyproject.toml", "services/api/uv.lock", "libs/common/pyproject.toml")
    assert project.shipped_files == (
        "libs/common/pyproject.toml", "libs/common/src/common/__init__.py",
        "services/api/pyproject.toml", "services/api/src/api/__init__.py",
        "services/api/uv.lock")
    assert project.package is None


def test_a_path_dependency_inside_the_project_keeps_the_context(tmp_path: Path) -> None:
    write(tmp_path, {
        "pyproject.toml": API_PYPROJECT.replace("COMMON", "vendor/common"),
        "uv.lock": API_LOCK.replace("COMMON", "vendor/common"),
        "vendor/common/pyproject.toml": COMMON_PYPROJECT,
    })
    project = read_project(tmp_path)
    assert project.context_root == tmp_path.resolve()
    assert project.path_dependencies == ("vendor/common",)
    assert "vendor/common/pyproject.toml" in project.manifest_files
    assert "vendor/common/pyproject.toml" in (project.shipped_files or ())


def test_a_missing_path_dependency_is_a_project_error(tmp_path: Path) -> None:
    root = monorepo(tmp_path)
    (tmp_path / "libs/common/pyproject.toml").unlink()
    (tmp_path / "libs/common/src/common/__init__.py").unlink()
    (tmp_path / "libs/common/src/common").rmdir()
    (tmp_path / "libs/common/src").rmdir()
    (tmp_path / "libs/common").rmdir()
    with pytest.raises(ProjectError, match="path dependency 'common' at .* not found"):
        read_project(root)


def test_a_path_dependency_in_a_system_folder_is_refused(tmp_path: Path) -> None:
    root = monorepo(tmp_path, common="/etc")
    with pytest.raises(ProjectError, match="a system folder of this host") as caught:
        read_project(root)
    assert caught.value.exit_code == 4


VIRTUAL_ROOT = '[tool.uv.workspace]\nmembers = ["packages/*"]\n'
VW_LOCK = """\
version = 1
revision = 5
requires-python = ">=3.11"

[manifest]
members = ["hello", "other", "util"]

[[package]]
name = "hello"
version = "0.1.0"
source = { editable = "packages/hello" }
dependencies = [{ name = "util" }]

[package.metadata]
requires-dist = [{ name = "util", editable = "packages/util" }]

[[package]]
name = "other"
version = "0.1.0"
source = { editable = "packages/other" }

[[package]]
name = "util"
version = "0.1.0"
source = { editable = "packages/util" }
"""


def member_doc(name: str, deps: str = "") -> str:
    sources = "[tool.uv.sources]\nutil = { workspace = true }\n" if deps else ""
    return (f'[project]\nname = "{name}"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n'
            f'dependencies = [{deps}]\n[build-system]\nrequires = ["hatchling"]\n'
            f'build-backend = "hatchling.build"\n{sources}')


def test_a_member_of_a_virtual_workspace_is_built_with_package(tmp_path: Path) -> None:
    write(tmp_path, {
        "pyproject.toml": VIRTUAL_ROOT, "uv.lock": VW_LOCK,
        "packages/hello/pyproject.toml": member_doc("hello", '"util"'),
        "packages/hello/hello.py": "",
        "packages/util/pyproject.toml": member_doc("util"),
        "packages/util/util.py": "",
        "packages/other/pyproject.toml": member_doc("other"),
        "packages/other/other.py": "",
        "README.md": "",
    })
    project = read_project(tmp_path / "packages/hello")
    assert (project.name, project.package) == ("hello", "hello")
    assert project.lock_root == project.context_root == tmp_path.resolve()
    assert "packages/other/pyproject.toml" in project.manifest_files  # uv reads them all
    assert project.shipped_files == (
        "packages/hello/hello.py", "packages/hello/pyproject.toml",
        "packages/other/pyproject.toml", "packages/util/pyproject.toml",
        "packages/util/util.py", "pyproject.toml", "uv.lock")


def test_the_virtual_root_itself_is_refused_with_a_hint(tmp_path: Path) -> None:
    write(tmp_path, {"pyproject.toml": VIRTUAL_ROOT, "uv.lock": VW_LOCK})
    with pytest.raises(ProjectError, match="no \\[project\\] table") as caught:
        read_project(tmp_path)
    assert "name the member folder" in str(caught.value.hint)


def test_needed_packages_follows_dependencies_extras_and_groups() -> None:
    lock = {"package": [
        {"name": "a", "dependencies": [{"name": "b"}],
         "optional-dependencies": {"x": [{"name": "C"}]}},
        {"name": "b"}, {"name": "c", "dev-dependencies": {"dev": [{"name": "d"}]}},
        {"name": "d"}, {"name": "e"},
    ]}
    assert needed_packages(lock, "a") == {"a", "b", "c", "d"}


def test_a_members_own_ignore_file_keeps_its_files_out(tmp_path: Path) -> None:
    """Built from a member of a workspace, that member's .containerignore (.dockerignore)
    applies to its folder, as when it is a project of its own; another member's applies
    to that member's folder only."""
    import shutil

    root = tmp_path / "vworkspace"
    shutil.copytree(Path(__file__).resolve().parents[2] / "recipes" / "vworkspace", root,
                    ignore=shutil.ignore_patterns(".venv", "__pycache__"))
    hello, util = root / "packages" / "hello", root / "packages" / "util"
    (hello / "local.env").write_text("TOKEN=secret\n")
    (hello / "notes.md").write_text("kept\n")
    (hello / ".dockerignore").write_text("local.env\n")
    (util / "local.env").write_text("kept: util has no ignore file\n")
    (util / "notes.md").write_text("left out by util's own file\n")
    (util / ".containerignore").write_text("*.md\n")

    shipped = read_project(hello).shipped_files or ()

    assert "packages/hello/local.env" not in shipped
    assert "packages/hello/notes.md" in shipped
    assert "packages/util/local.env" in shipped
    assert "packages/util/notes.md" not in shipped


def test_a_path_dependency_behind_a_symlink_is_refused_before_any_container(
        tmp_path: Path) -> None:
    """The builder gets a path dependency's files where they are; uv there looks where
    uv.lock says. Through a symlink those differ: said now, not as a failed uv sync."""
    write(tmp_path, {
        "pyproject.toml": API_PYPROJECT.replace("COMMON", "libs/common"),
        "uv.lock": API_LOCK.replace("COMMON", "libs/common"),
        "vendor/common/pyproject.toml": COMMON_PYPROJECT,
    })
    (tmp_path / "libs").mkdir()
    (tmp_path / "libs" / "common").symlink_to(tmp_path / "vendor" / "common")

    with pytest.raises(ProjectError) as raised:
        read_project(tmp_path)
    assert "'common' is reached through a symlink" in raised.value.message
    assert str((tmp_path / "vendor" / "common").resolve()) in (raised.value.hint or "")
