"""project/memo.py: what a build works out from file contents, kept between runs."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from uvbuild.errors import ProjectError
from uvbuild.project import memo, model

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


@pytest.fixture
def kept(tmp_path: Path) -> Iterator[Path]:
    memo.folder = tmp_path / "memo"
    model._parsed.clear()
    yield memo.folder
    memo.folder = None
    model._parsed.clear()


def a_new_run() -> None:
    model._parsed.clear()  # (what one process remembers in memory)


def test_a_toml_file_is_parsed_once_for_the_same_bytes(kept: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    lock = tmp_path / "uv.lock"
    shutil.copy(RECIPES / "fastapi" / "uv.lock", lock)
    first = model.load_toml(lock)
    a_new_run()

    def no_parse(text: str) -> object:
        raise AssertionError("parsed again")

    monkeypatch.setattr(model.tomllib, "loads", no_parse)
    assert model.load_toml(lock) == first
    first["package"].clear()  # a copy: what one caller changes, no other sees
    assert model.load_toml(lock)["package"]
    lock.write_bytes(lock.read_bytes() + b"\n# changed\n")
    a_new_run()
    with pytest.raises(AssertionError, match="parsed again"):
        model.load_toml(lock)


def test_a_lock_judged_current_is_not_judged_again_until_a_byte_changes(
        kept: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "flask"
    shutil.copytree(RECIPES / "flask", project,
                    ignore=shutil.ignore_patterns(".venv", "__pycache__"))
    model.read_project(project)
    a_new_run()
    judged: list[Path] = []
    real = model.check_lock
    monkeypatch.setattr(model, "check_lock",
                        lambda root, *args: (judged.append(root), real(root, *args)))
    model.read_project(project)
    assert judged == []
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace(
        "dependencies = [", 'dependencies = [\n    "six",', 1))
    a_new_run()
    with pytest.raises(ProjectError, match="out of date"):
        model.read_project(project)
    assert judged == [project.resolve()]


def test_a_folder_that_cannot_be_written_is_no_memo(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    memo.folder = tmp_path / "file" / "memo"
    try:
        entry = memo.key(b"x")
        memo.remember("toml", entry, {"a": 1})
        assert not memo.seen("toml", entry) and memo.recall("toml", entry) is None
    finally:
        memo.folder = None
    assert memo.key(b"ab", b"c") != memo.key(b"a", b"bc")  # (parts are told apart)
