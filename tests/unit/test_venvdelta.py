"""incontainer/venvdelta.py on a folder of the host: what the project layer gets."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).parents[2] / "src" / "uvbuild" / "incontainer" / "venvdelta.py"
EPOCH = 315532800


@pytest.fixture
def venvdelta(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("venvdelta_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    python = tmp_path / "python"
    python.symlink_to(sys.executable)
    monkeypatch.setattr(module, "VENV_PYTHON", str(python))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(EPOCH))
    return module


def tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def values(out: str) -> dict[str, object]:
    prefix = "@@uvbuild value "
    return {line[len(prefix):].split(" ", 1)[0]: json.loads(line[len(prefix):].split(" ", 1)[1])
            for line in out.splitlines() if line.startswith(prefix)}


def test_snapshot_gives_files_the_commit_time_and_reports_the_python(
        venvdelta: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "app"
    tree(root, {".venv/lib/dep/__init__.py": "x = 1\n"})
    venvdelta.snapshot(str(root), str(tmp_path / "state" / "deps.json"))

    assert os.lstat(root / ".venv/lib/dep/__init__.py").st_mtime_ns == EPOCH * 10**9
    manifest = json.loads((tmp_path / "state" / "deps.json").read_text())
    assert manifest[".venv/lib/dep/__init__.py"][4] == EPOCH * 10**9
    python = values(capsys.readouterr().out)["python"]
    assert python == {"python": os.path.realpath(sys.executable), "link": sys.executable,
                      "version": "%d.%d" % sys.version_info[:2]}


def test_stage_holds_only_new_and_changed_files_and_rereads_only_those(
        venvdelta: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    root, manifest, out = tmp_path / "app", tmp_path / "deps.json", tmp_path / "layer"
    tree(root, {".venv/lib/dep/__init__.py": "x = 1\n", ".venv/lib/dep/data.txt": "d\n"})
    venvdelta.snapshot(str(root), str(manifest))
    tree(root, {".venv/lib/app/__init__.py": "y = 2\n",  # the project, new
                ".venv/lib/dep/data.txt": "changed\n",  # rewritten by the install
                ".venv/lib/app-1.0.dist-info/uv_cache.json": "{}",
                ".venv/lib/app-1.0.dist-info/RECORD":
                    "app-1.0.dist-info/uv_cache.json,,\napp/__init__.py,,\n"})
    (root / ".venv/.lock").touch(mode=0o666)
    os.chmod(root / ".venv/.lock", 0o666)
    read: list[str] = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda path, *a, **k: (read.append(str(path)),
                                                                 real_open(path, *a, **k))[1])
    venvdelta.stage(str(root), str(manifest), str(out), compile_bytecode=True)

    staged = sorted(str(p.relative_to(out)) for p in out.rglob("*") if not p.is_dir())
    assert ".venv/lib/app/__init__.py" in staged
    assert ".venv/lib/dep/data.txt" in staged
    assert ".venv/lib/dep/__init__.py" not in staged  # untouched since the snapshot
    assert any(p.startswith(".venv/lib/app/__pycache__/") for p in staged)  # compiled here
    assert not any(p.startswith(".venv/lib/dep/__pycache__/") for p in staged)
    assert not (root / ".venv/lib/app-1.0.dist-info/uv_cache.json").exists()
    assert "uv_cache.json" not in (root / ".venv/lib/app-1.0.dist-info/RECORD").read_text()
    assert stat.S_IMODE(os.lstat(root / ".venv/.lock").st_mode) & 0o022 == 0
    assert str(root / ".venv/lib/dep/__init__.py") not in read  # size and time matched
    assert "installed" in values(capsys.readouterr().out)
