"""lockcheck against the real thing: uv's own `uv lock --check`, pinned by uv.lock.

`uvbuild.project.lockcheck` stands in for `uv lock --check` so that a stale lock is
refused before any container is made. Its unit tests (tests/unit/test_project.py) pin
the verdicts by hand; this test asks the pinned uv the same question for every edit in
those tables, and for edits of sources and members that need files of their own
(EDITS_WITH_FILES), so a uv upgrade that changes what "current" means shows up here,
not in a user's builder.

No network: the packages come from a folder of tiny wheels this test writes (a flat
index, `--no-index --find-links`), and uv runs `--offline`. Each project is locked
once; each edit is a copy of it, judged by uv and by lockcheck. A stale verdict from uv
must be its "needs to be updated", not some other failure.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import os
import shutil
import subprocess
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest

from uvbuild.errors import ProjectError
from uvbuild.project.model import read_project

REPO_ROOT = Path(__file__).resolve().parents[2]
UV = REPO_ROOT / ".venv" / "bin" / "uv"

# name → (versions, extras): every package the tables name, so that uv can always
# resolve, and a stale verdict is uv's "needs to be updated", never "not found".
WHEELS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "a1": (("1.5", "2.0"), ()),
    "a2": (("1.0",), ("x", "y")),
    "a6": (("1.0.0", "2.0"), ()),
    "a7": (("1.0", "2.5"), ()),
    **{f"a{n}": (("1.0",), ()) for n in (3, 4, 5, 8, 9, 10, 11, 14, 15, 16, 19)},
    "a17": (("2.0",), ()),
}


def _unit_tables() -> ModuleType:
    """tests/unit/test_project.py, whose STALE, CURRENT and SOURCE_EDITS tables this
    test replays."""
    path = REPO_ROOT / "tests" / "unit" / "test_project.py"
    spec = importlib.util.spec_from_file_location("uvbuild_lock_tables", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TABLES = _unit_tables()


def write_wheel(folder: Path, name: str, version: str, extras: tuple[str, ...]) -> None:
    """A py3-none-any wheel with one empty module: all a resolver reads is METADATA."""
    dist = f"{name}-{version}"
    files = {
        f"{name}/__init__.py": "",
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: "
        f"{version}\n" + "".join(f"Provides-Extra: {e}\n" for e in extras),
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: uvbuild-tests\n"
        "Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    files[f"{dist}.dist-info/RECORD"] = "\n".join([*record, f"{dist}.dist-info/RECORD,,"]) + "\n"
    with zipfile.ZipFile(folder / f"{dist}-py3-none-any.whl", "w") as wheel:
        for path, text in files.items():
            wheel.writestr(zipfile.ZipInfo(path, (1980, 1, 1, 0, 0, 0)), text)


@dataclass(frozen=True)
class Index:
    wheels: Path
    cache: Path

    def localized(self, text: str) -> str:
        """The tables' wheel folders (a URL dependency, a flat index) as this index."""
        return text.replace("file:///w/", f"file://{self.wheels}/").replace(
            "/tmp/uvl/wheels", str(self.wheels))


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Index:
    wheels = tmp_path_factory.mktemp("wheels")
    for name, (versions, extras) in WHEELS.items():
        for version in versions:
            write_wheel(wheels, name, version, extras)
    return Index(wheels=wheels, cache=tmp_path_factory.mktemp("uv-cache"))


def interpreters_path() -> str:
    """PATH for uv, where it finds a Python for each requires-python the tables ask
    (>=3.12 included): pyenv's shims stop uv with an error for a version pyenv has not
    selected, so its versions' own folders stand in for them."""
    folders = [f for f in os.environ.get("PATH", "").split(os.pathsep)
               if not f.endswith("/shims")]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = sorted(pyenv.glob("3.*/bin"), reverse=True) if pyenv.is_dir() else []
    return os.pathsep.join([*folders, *map(str, found)])


def _uv(args: list[str], cwd: Path, index: Index) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": interpreters_path(),
           "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1",
           "UV_OFFLINE": "1", "UV_NO_INDEX": "1", "UV_FIND_LINKS": str(index.wheels),
           "UV_CACHE_DIR": str(index.cache)}
    for name in ("UV_INDEX_URL", "UV_INDEX", "UV_DEFAULT_INDEX", "UV_EXTRA_INDEX_URL"):
        env.pop(name, None)
    if not UV.is_file():
        pytest.fail(f"{UV} missing: run scripts/host-setup (scripts/test does)")
    return subprocess.run([str(UV), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          timeout=300, check=False)


PROJECTS = {
    "workspace": {
        "pyproject.toml": TABLES.WS_PYPROJECT,
        "libs/mem/pyproject.toml": TABLES.WS_MEMBER,
        "libs/old/pyproject.toml": '[project]\nname = "old"\nversion = "1"\n',
    },
    # A virtual project with an editable path, a directory and an index source.
    "sources": {name: text for name, text in TABLES.SOURCES_FILES.items() if name != "uv.lock"},
}


@pytest.fixture(scope="module")
def locked(index: Index, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each project, locked by the pinned uv from the local index."""
    roots = {}
    for project, files in PROJECTS.items():
        root = tmp_path_factory.mktemp(f"lockcheck-{project}")
        for name, text in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(index.localized(text))
        result = _uv(["lock"], root, index)
        assert result.returncode == 0, result.stderr
        roots[project] = root
    return roots


@dataclass(frozen=True)
class Edit:
    """Text edits (file, old, new) and new files, on a copy of a locked project."""

    project: str
    current: bool  # the verdict expected of both uv and lockcheck
    changes: tuple[tuple[str, str, str], ...] = ()
    files: dict[str, str] = field(default_factory=dict)


PACKAGE = '[project]\nname = "{}"\nversion = "1"\n'

# Edits of members and sources, which need files of their own.
# fmt: off
EDITS_WITH_FILES = {
    "stale: workspace member added": Edit(
        "workspace", False, files={"libs/two/pyproject.toml": PACKAGE.format("two")}),
    "stale: a registry dependency given a path source": Edit(
        "workspace", False,
        (("pyproject.toml", "mem = { workspace = true }",
          'mem = { workspace = true }\na1 = { path = "vendor/a1" }'),),
        {"vendor/a1/pyproject.toml": '[project]\nname = "a1"\nversion = "2.0"\n'}),
    "stale: path dependency added": Edit(
        "sources", False,
        (("pyproject.toml", '"a1>=1"]', '"a1>=1", "third"]'),
         ("pyproject.toml", 'other = { path = "other" }',
          'other = { path = "other" }\nthird = { path = "third" }')),
        {"third/pyproject.toml": PACKAGE.format("third")}),
    "stale: path dependency removed": Edit(
        "sources", False,
        (("pyproject.toml", '"other", ', ""),
         ("pyproject.toml", 'other = { path = "other" }\n', ""))),
    "stale: a path dependency in a new group": Edit(
        "sources", False,
        (("pyproject.toml", '[tool.uv.sources]', '[dependency-groups]\ndev = ["third"]\n'
          '[tool.uv.sources]\nthird = { path = "third", editable = true }'),),
        {"third/pyproject.toml": PACKAGE.format("third")}),
    "current: path dependency's name spelled differently": Edit(
        "sources", True, (("pyproject.toml", '"localpkg>=1"', '"LocalPkg>=1"'),)),
}
# fmt: on

EDITS = {
    **{f"stale: {case}": Edit("workspace", False, (edit[:3],))
       for case, edit in TABLES.STALE.items()},
    **{f"current: {case}": Edit("workspace", True, (edit,))
       for case, edit in TABLES.CURRENT.items()},
    **{f"{'current' if reason is None else 'stale'}: source, {case}": Edit(
        "sources", reason is None, (("pyproject.toml", old, new),),
        {"other2/pyproject.toml": PACKAGE.format("other")})
       for case, (old, new, reason) in TABLES.SOURCE_EDITS.items()},
    **EDITS_WITH_FILES,
}


Verdicts = tuple[bool | None, bool, str]


def verdicts(root: Path, index: Index) -> Verdicts:
    """(uv says current, lockcheck says current, what each said); uv's verdict is None
    when it failed for another reason than a stale lock."""
    uv = _uv(["lock", "--check"], root, index)
    uv_current = (True if uv.returncode == 0
                  else False if "needs to be updated" in uv.stderr else None)
    try:
        read_project(root)
        ours = True, "current"
    except ProjectError as exc:
        ours = False, exc.message
    return uv_current, ours[0], f"uv: {uv.stderr.strip()[-400:]}\nuvbuild: {ours[1]}"


def edited(locked: Path, into: Path, edit: Edit, index: Index) -> Path:
    shutil.copytree(locked, into)
    for name, text in edit.files.items():
        (into / name).parent.mkdir(parents=True, exist_ok=True)
        (into / name).write_text(text)
    for file, old, new in edit.changes:
        path = into / file
        text = path.read_text()
        old, new = index.localized(old), index.localized(new)
        assert old in text, old
        path.write_text(text.replace(old, new, 1))
    return into


@pytest.fixture(scope="module")
def judged(locked: dict[str, Path], index: Index, tmp_path_factory: pytest.TempPathFactory,
           ) -> dict[str, Verdicts]:
    """Every edit judged by both, a few at a time (each uv call is a process start)."""
    scratch = tmp_path_factory.mktemp("lockcheck-edits")
    roots = {case: edited(locked[edit.project], scratch / str(n), edit, index)
             for n, (case, edit) in enumerate(EDITS.items())}
    with ThreadPoolExecutor(4) as pool:
        found = pool.map(lambda root: verdicts(root, index), roots.values())
        return dict(zip(roots, found, strict=True))


@pytest.mark.parametrize("project", list(PROJECTS))
def test_the_locked_projects_are_current_for_both(locked: dict[str, Path], index: Index,
                                                   project: str) -> None:
    uv_current, ours_current, said = verdicts(locked[project], index)
    assert (uv_current, ours_current) == (True, True), said


@pytest.mark.parametrize("case", list(EDITS), ids=list(EDITS))
def test_uv_and_uvbuild_agree(judged: dict[str, Verdicts], case: str) -> None:
    uv_current, ours_current, said = judged[case]
    expected = EDITS[case].current
    assert uv_current is not None, f"uv failed for another reason than a stale lock\n{said}"
    assert uv_current == expected, f"uv's verdict changed: update the table\n{said}"
    assert ours_current == uv_current, said
