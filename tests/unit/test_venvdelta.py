"""incontainer/venvdelta.py on a folder of the host: what the project layer gets."""

from __future__ import annotations

import json
import os
import stat
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

EPOCH = 315532800


@pytest.fixture
def venvdelta(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
              incontainer_script: Callable[[str], ModuleType]) -> ModuleType:
    module = incontainer_script("venvdelta.py")
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
                      "version": "{}.{}".format(*sys.version_info[:2])}


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


@pytest.fixture
def staged(venvdelta: ModuleType, tmp_path: Path) -> tuple[Path, Path, Path]:
    """ROOT (/app) after a project install, its snapshot, and where the layer goes."""
    root, manifest, out = tmp_path / "app", tmp_path / "deps.json", tmp_path / "layer"
    tree(root, {".venv/lib/dep/__init__.py": "x = 1\n"})
    venvdelta.snapshot(str(root), str(manifest))
    tree(root, {".venv/lib/app/__init__.py": "y = 2\n", "static/keep.txt": "k\n"})
    return root, manifest, out


def test_copies_into_app_follow_buildah_copy(
        venvdelta: ModuleType, tmp_path: Path, staged: tuple[Path, Path, Path]) -> None:
    root, manifest, out = staged
    src = tmp_path / "src"
    tree(src, {"openapi.json": "{}", "docs/index.html": "<p>", "docs/img/a.png": "png",
               "dist/a.whl": "a", "dist/b.whl": "b"})
    (src / "latest").symlink_to("openapi.json")
    (src / "docs" / "link").symlink_to("index.html")
    os.chmod(src / "openapi.json", 0o600)
    copies = [
        (0, str(src / "openapi.json"), "/app/openapi.json"),  # a file to a new name
        (1, str(src / "docs"), "/app/site"),  # a folder: its contents
        (2, str(src / "dist" / "*.whl"), "/app/wheels"),  # several: into a folder
        (3, str(src / "latest"), "/app/static"),  # a folder of ROOT: into it, link followed
        (4, str(src / "openapi.json"), "/app/api/"),  # trailing slash: into it
    ]
    venvdelta.stage(str(root), str(manifest), str(out), copies=[
        (i, s, d.replace("/app", str(root), 1)) for i, s, d in copies])

    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if not p.is_dir())
    assert files == [".venv/lib/app/__init__.py", "api/openapi.json", "openapi.json",
                     "site/img/a.png", "site/index.html", "site/link", "static/keep.txt",
                     "static/latest", "wheels/a.whl", "wheels/b.whl"]
    assert stat.S_IMODE(os.lstat(out / "openapi.json").st_mode) == 0o600  # mode kept
    assert (out / "site" / "link").is_symlink()  # inside a folder: still a link
    assert not (out / "static" / "latest").is_symlink()  # the source itself: followed
    assert (out / "static" / "latest").read_text() == "{}"


def test_a_missing_copy_source_is_reported_with_its_index(
        venvdelta: ModuleType, tmp_path: Path, staged: tuple[Path, Path, Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    root, manifest, out = staged

    with pytest.raises(SystemExit) as exited:
        venvdelta.stage(str(root), str(manifest), str(out),
                        copies=[(2, str(tmp_path / "src" / "*.json"), str(root / "api"))])

    assert exited.value.code == 3
    assert values(capsys.readouterr().out)["copy_missing"] == {
        "index": 2, "from": str(tmp_path / "src" / "*.json")}


def test_the_layer_tar_holds_the_staged_files_owned_by_root_at_the_build_time(
        venvdelta: ModuleType, tmp_path: Path, staged: tuple[Path, Path, Path]) -> None:
    root, manifest, out = staged
    (tmp_path / "host").mkdir()
    tar_path = tmp_path / "host" / "layer.tar"

    venvdelta.stage(str(root), str(manifest), str(out), tar=str(tar_path))

    with tarfile.open(tar_path) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    expected = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert sorted(names) == expected and "." not in names
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {
        (0, 0, "", "", EPOCH)}
    assert not list((tmp_path / "host").glob("*.part"))


def test_stage_options_parse_in_any_order(venvdelta: ModuleType) -> None:
    assert venvdelta.stage_options(
        ["--copy", "0", "/src/a", "/app/a", "--tar", "/out/l.tar", "--compile",
         "--copy", "3", "/src/b c", "/app/b"]) == {
        "compile_bytecode": True, "tar": "/out/l.tar",
        "copies": [(0, "/src/a", "/app/a"), (3, "/src/b c", "/app/b")]}
