"""Wrongly typed values in pyproject.toml and uv.lock, and project files that cannot be
read: each a ProjectError naming the file and the key, never a traceback."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest
from test_project import APP_LOCK, APP_PYPROJECT

from uvbuild.errors import ProjectError
from uvbuild.project.model import read_project, uv_lock_packages

LOCK_HEAD = 'version = 1\nrevision = 5\nrequires-python = ">=3.11"\n'

# id: (file, how it is broken: (old, new) or a whole new text, the key the message names)
BROKEN: dict[str, tuple[str, tuple[str, str] | str, str]] = {
    "tool = 5": ("pyproject.toml", "tool = 5\n" + APP_PYPROJECT, "tool: expected a table, found int 5"),
    "tool.uv = list": ("pyproject.toml", "tool = {uv = []}\n" + APP_PYPROJECT,
                       "tool.uv: expected a table, found a list"),
    "package = string": ("pyproject.toml", APP_PYPROJECT + '[tool.uv]\npackage = "notalist"\n',
                         "tool.uv.package: expected a boolean (true or false), found the string"),
    "workspace = list": ("pyproject.toml", APP_PYPROJECT + "[tool.uv]\nworkspace = []\n",
                         "tool.uv.workspace: expected a table"),
    "members = string": ("pyproject.toml",
                         APP_PYPROJECT + '[tool.uv.workspace]\nmembers = "libs/*"\n',
                         "tool.uv.workspace.members: expected a list of strings"),
    "sources = 3": ("pyproject.toml", APP_PYPROJECT + "[tool.uv]\nsources = 3\n",
                    "tool.uv.sources: expected a table"),
    "a source = string": ("pyproject.toml", APP_PYPROJECT + '[tool.uv.sources]\nhttpx = "x"\n',
                          "tool.uv.sources.httpx: expected a table or a list"),
    "dev-dependencies = table": ("pyproject.toml",
                                 APP_PYPROJECT + "[tool.uv.dev-dependencies]\na = 1\n",
                                 "tool.uv.dev-dependencies: expected a list of strings"),
    "dependencies = string": ("pyproject.toml", ("dependencies = [", 'dependencies = "x"\nold = ['),
                              "project.dependencies: expected a list of strings"),
    "an extra = string": ("pyproject.toml", ('fast = ["orjson>=3"]', 'fast = "orjson"'),
                          "project.optional-dependencies.fast: expected a list of strings"),
    "a group item = 1": ("pyproject.toml", ('dev = ["pytest>=8"]', "dev = [1]"),
                         "dependency-groups.dev[0]: expected a string or a table"),
    "a script = 1": ("pyproject.toml", ('myapp = "my_app:main"', "myapp = 1"),
                     "project.scripts.myapp: expected a string, found int 1"),
    "dynamic = string": ("pyproject.toml", ('version = "0.2.0"', 'dynamic = "version"'),
                         "project.dynamic: expected a list of strings"),
    "version = 1": ("pyproject.toml", ('version = "0.2.0"', "version = 1"),
                    "project.version: expected a string, found int 1"),
    "build-system = 1": ("pyproject.toml", "build-system = 1\n" + APP_PYPROJECT.split(
        "[build-system]")[0], "build-system: expected a table"),
    "lock package = string": ("uv.lock", LOCK_HEAD + 'package = "notalist"\n',
                              "package: expected a list (each item a table), found the string"),
    "lock package item = 1": ("uv.lock", LOCK_HEAD + "package = [1]\n",
                              "package[0]: expected a table, found int 1"),
    "lock version = string": ("uv.lock", ("version = 1\n", 'version = "1"\n'),
                              "version: expected an integer, found the string '1'"),
    "lock version = true": ("uv.lock", ("version = 1\n", "version = true\n"),
                            "version: expected an integer, found the boolean true"),
    "lock requires-python = 3": ("uv.lock", ('requires-python = ">=3.11"', "requires-python = 3"),
                                 "requires-python: expected a string"),
    "lock source = string": ("uv.lock", ('source = { registry = "https://pypi.org/simple" }',
                                         'source = "pypi"'), "package[0].source: expected a table"),
    "lock wheels = string": ("uv.lock", ("wheels = [", 'wheels = "x"\nold = ['),
                             "package[0].wheels: expected a list"),
    "lock requires-dist item = string": ("uv.lock", ('{ name = "httpx", specifier = ">=0.27" }',
                                                     '"httpx"'),
                                         "requires-dist[1]: expected a table, found the string"),
    "lock extras = string": ("uv.lock", ('extras = ["extra1"]', 'extras = "extra1"'),
                             "requires-dist[0].extras: expected a list of strings"),
    "lock provides-extras = 1": ("uv.lock", ('provides-extras = ["fast"]', "provides-extras = 1"),
                                 "metadata.provides-extras: expected a list of strings"),
    "lock manifest = 1": ("uv.lock", LOCK_HEAD + "manifest = 1\n",
                          "manifest: expected a table, found int 1"),
}


@pytest.mark.parametrize("case", list(BROKEN), ids=list(BROKEN))
def test_a_wrongly_typed_value_names_the_file_and_key(tmp_path: Path, case: str) -> None:
    name, change, expected = BROKEN[case]
    files = {"pyproject.toml": APP_PYPROJECT, "uv.lock": APP_LOCK}
    if isinstance(change, str):
        files[name] = change
    else:
        old, new = change
        assert old in files[name], f"{old!r} is not in {name} any more: update this test"
        files[name] = files[name].replace(old, new, 1)
    for file, text in files.items():
        (tmp_path / file).write_text(text)
    with pytest.raises(ProjectError) as caught:
        uv_lock_packages(read_project(tmp_path))
    message = caught.value.message
    assert message.startswith(f"{tmp_path.resolve() / name}: "), message
    assert expected in message, message
    assert caught.value.exit_code == 4


def test_a_wrongly_typed_member_pyproject_names_the_member(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        APP_PYPROJECT + '[tool.uv.workspace]\nmembers = ["libs/*"]\n')
    (tmp_path / "uv.lock").write_text(APP_LOCK)
    (tmp_path / "libs" / "m").mkdir(parents=True)
    (tmp_path / "libs" / "m" / "pyproject.toml").write_text('[project]\nname = "m"\nscripts = 1\n')
    with pytest.raises(ProjectError, match=r"libs/m/pyproject.toml: project.scripts: expected a "
                                           r"table, found int 1"):
        read_project(tmp_path)


def project_with(tmp_path: Path) -> Path:
    for name, text in (("pyproject.toml", APP_PYPROJECT), ("uv.lock", APP_LOCK)):
        (tmp_path / name).write_text(text)
    return tmp_path


def test_a_dangling_symlink_as_the_project_folder(tmp_path: Path) -> None:
    os.symlink(tmp_path / "gone", tmp_path / "link")
    with pytest.raises(ProjectError, match=r"project folder .*/gone not found"):
        read_project(tmp_path / "link")


def test_a_file_as_the_project_folder(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(ProjectError, match=r"project folder .*/f not found \(it is a file\)"):
        read_project(tmp_path / "f")


def test_a_dangling_pyproject_symlink(tmp_path: Path) -> None:
    os.symlink(tmp_path / "elsewhere.toml", tmp_path / "pyproject.toml")
    with pytest.raises(ProjectError, match=r"pyproject.toml not found"):
        read_project(tmp_path)


def test_a_folder_where_pyproject_should_be(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").mkdir()
    with pytest.raises(ProjectError, match=r"pyproject.toml cannot be read: .*Is a directory"):
        read_project(tmp_path)


def test_a_folder_where_the_lock_should_be(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(APP_PYPROJECT)
    (tmp_path / "uv.lock").mkdir()
    with pytest.raises(ProjectError, match=r"uv.lock is not a file"):
        read_project(tmp_path)


@pytest.mark.parametrize("name", ["pyproject.toml", "uv.lock"])
def test_invalid_utf8(tmp_path: Path, name: str) -> None:
    project_with(tmp_path)
    (tmp_path / name).write_bytes(b'[project]\nname = "\xff"\n')
    with pytest.raises(ProjectError, match=rf"{name} cannot be read: .*utf-8"):
        read_project(tmp_path)


def test_an_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Root reads every file: EACCES is what a non-root user would meet.
    project_with(tmp_path)
    real = Path.read_bytes

    def refuse(path: Path) -> bytes:
        if path.name == "uv.lock":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real(path)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(ProjectError, match=r"uv.lock cannot be read: .*Permission denied"):
        read_project(tmp_path)


def test_an_unreadable_project_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: Path) -> bool:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    monkeypatch.setattr(Path, "is_dir", refuse)
    with pytest.raises(ProjectError, match=r"project folder .* cannot be read: Permission denied"):
        read_project(tmp_path)


def test_an_unreadable_source_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from uvbuild.plan import inputs
    from uvbuild.recipe.loader import load_recipe_text

    project_with(tmp_path)
    recipe = load_recipe_text("version: 1\nbuilder: {from: x}\nruntime: {from: x}\n",
                              tmp_path / "recipe.yaml")
    secret = tmp_path / "src" / "secret.py"
    secret.parent.mkdir(exist_ok=True)
    secret.write_text("KEY = 1\n")

    real_open = os.open

    def refuse(path: Any, flags: int, *args: Any) -> int:
        if str(path) == str(secret):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(secret))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", refuse)
    monkeypatch.setattr(inputs, "oci_labels", lambda project, timestamp: ())
    with pytest.raises(ProjectError, match=rf"{secret} cannot be read: Permission denied"):
        inputs.gather(recipe, None, tag=None)
