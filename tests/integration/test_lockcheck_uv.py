"""lockcheck against the real thing: uv's own `uv lock --check`, pinned by uv.lock.

`uvbuild.lockcheck` stands in for `uv lock --check` so that a stale lock is refused
before any container is made. Its unit tests (tests/unit/test_project.py) pin the
verdicts by hand; this test asks the pinned uv the same question for every edit in
those tables, on a workspace of real packages that uv can lock, so a uv upgrade that
changes what "current" means shows up here, not in a user's builder.

The workspace is locked once (online: PyPI, through the host's proxy settings); each
edit is then checked with `--offline`, where uv exits non-zero as soon as the lock
no longer satisfies the project (it would have to resolve again).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import pytest

from uvbuild.errors import ProjectError
from uvbuild.project.model import read_project

REPO_ROOT = Path(__file__).resolve().parents[2]
UV = REPO_ROOT / ".venv" / "bin" / "uv"

# The unit tables' stand-in names, as real packages uv can resolve. Specifiers in the
# tables are kept satisfiable: six has 1.x versions, iniconfig has 2.0.0.
REAL_NAMES = {
    "a1": "six",
    "a2": "idna",
    "a3": "packaging",
    "a4": "tomli",
    "a5": "pluggy",
    "a6": "iniconfig",
    "a7": "certifi",
    "a8": "attrs",
}


def _unit_tables() -> ModuleType:
    """tests/unit/test_project.py, whose STALE and CURRENT tables this test replays."""
    path = REPO_ROOT / "tests" / "unit" / "test_project.py"
    spec = importlib.util.spec_from_file_location("uvbuild_lock_tables", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TABLES = _unit_tables()


def real(text: str) -> str:
    """`text` with the tables' stand-in package names replaced by real ones (an upper-case
    stand-in, "A1", by the upper-case name: the tables test name spelling too)."""

    def name(match: re.Match[str]) -> str:
        found = REAL_NAMES.get(match.group(0).lower(), match.group(0))
        return found.upper() if match.group(0).isupper() else found

    return re.sub(r"\b[aA](\d+)\b", name, text)


def _uv(args: list[str], cwd: Path, *, offline: bool) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}
    if offline:
        env["UV_OFFLINE"] = "1"
    return subprocess.run([str(UV), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=300, check=False)


@pytest.fixture(scope="module")
def locked_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The unit tests' workspace with real package names, locked by the pinned uv."""
    if not UV.is_file():
        pytest.fail(f"{UV} missing: run scripts/host-setup (scripts/test does)")
    root = tmp_path_factory.mktemp("lockcheck-uv")
    files = {
        "pyproject.toml": TABLES.WS_PYPROJECT,
        "libs/mem/pyproject.toml": TABLES.WS_MEMBER,
        "libs/old/pyproject.toml": '[project]\nname = "old"\nversion = "1"\n',
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(real(text))
    locked = _uv(["lock", "--python", "3.11"], root, offline=False)
    assert locked.returncode == 0, locked.stderr
    return root


def verdicts(root: Path) -> tuple[bool, bool, str]:
    """(uv says current, lockcheck says current, what each said)."""
    uv = _uv(["lock", "--check", "--python", "3.11"], root, offline=True)
    try:
        read_project(root)
        ours = True, "current"
    except ProjectError as exc:
        ours = False, exc.message
    return uv.returncode == 0, ours[0], f"uv: {uv.stderr.strip()[-300:]}\nuvbuild: {ours[1]}"


def edited(locked: Path, into: Path, file: str, old: str, new: str) -> Path:
    shutil.copytree(locked, into)
    path = into / file
    text = path.read_text()
    assert real(old) in text, real(old)
    path.write_text(text.replace(real(old), real(new), 1))
    return into


EDITS = {**{f"stale: {case}": edit[:3] for case, edit in TABLES.STALE.items()},
         **{f"current: {case}": edit for case, edit in TABLES.CURRENT.items()}}


@pytest.fixture(scope="module")
def judged(locked_workspace: Path, tmp_path_factory: pytest.TempPathFactory,
           ) -> dict[str, tuple[bool, bool, str]]:
    """Every edit judged by both, a few at a time (each uv call is a process start)."""
    scratch = tmp_path_factory.mktemp("lockcheck-edits")
    roots = {case: edited(locked_workspace, scratch / str(n), *edit)
             for n, (case, edit) in enumerate(EDITS.items())}
    with ThreadPoolExecutor(4) as pool:
        return dict(zip(roots, pool.map(verdicts, roots.values()), strict=True))


def test_the_locked_workspace_is_current_for_both(locked_workspace: Path) -> None:
    uv_current, ours_current, said = verdicts(locked_workspace)
    assert (uv_current, ours_current) == (True, True), said


@pytest.mark.parametrize("case", list(EDITS), ids=list(EDITS))
def test_uv_and_uvbuild_agree(judged: dict[str, tuple[bool, bool, str]], case: str) -> None:
    uv_current, ours_current, said = judged[case]
    expected = case.startswith("current: ")
    assert (uv_current, ours_current) == (expected, expected), said
