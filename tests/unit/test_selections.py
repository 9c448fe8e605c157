"""builder.sync's extras and groups, checked against the project as uv checks them."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_project import app, write

from uvbuild.errors import ProjectError
from uvbuild.project.model import Project, read_project
from uvbuild.project.selections import check_sync
from uvbuild.recipe.loader import load_recipe_text
from uvbuild.recipe.model import Recipe

# A workspace as uv 0.13.9 locked it: `uv sync --package mem` takes mem's extras, mem's
# groups and the root's groups (dev too, from [tool.uv] dev-dependencies), and refuses
# the root's extras and a sibling's groups.
WORKSPACE = {
    "pyproject.toml": """\
[project]
name = "root"
version = "0.1"
requires-python = ">=3.10"
dependencies = []
[project.optional-dependencies]
rootx = []
[dependency-groups]
rootgrp = []
[tool.uv]
dev-dependencies = []
[tool.uv.workspace]
members = ["packages/*"]
""",
    "packages/mem/pyproject.toml": """\
[project]
name = "mem"
version = "0.1"
requires-python = ">=3.10"
dependencies = []
[project.optional-dependencies]
Mem_X = []
[dependency-groups]
Mem_Grp = []
""",
    "packages/other/pyproject.toml": """\
[project]
name = "other"
version = "0.1"
requires-python = ">=3.10"
dependencies = []
[dependency-groups]
othergrp = []
""",
    "uv.lock": """\
version = 1
revision = 5
requires-python = ">=3.10"

[manifest]
members = [
    "mem",
    "other",
    "root",
]

[[package]]
name = "mem"
version = "0.1"
source = { virtual = "packages/mem" }

[package.metadata]
provides-extras = ["mem-x"]

[package.metadata.requires-dev]
mem-grp = []

[[package]]
name = "other"
version = "0.1"
source = { virtual = "packages/other" }

[package.metadata]

[package.metadata.requires-dev]
othergrp = []

[[package]]
name = "root"
version = "0.1"
source = { virtual = "." }

[package.metadata]
provides-extras = ["rootx"]

[package.metadata.requires-dev]
dev = []
rootgrp = []
""",
}


def recipe(folder: Path, *, extras: str = "[]", groups: str = "[]") -> Recipe:
    text = (f"version: 1\nproject: .\nbuilder:\n  from: docker.io/library/python:3.13-slim\n"
            f"  sync: {{extras: {extras}, groups: {groups}}}\n"
            f"runtime:\n  from: docker.io/library/python:3.13-slim\n")
    return load_recipe_text(text, folder / "uvbuild.yaml")


def refusal(folder: Path, project: Project, **sync: str) -> ProjectError:
    with pytest.raises(ProjectError) as caught:
        check_sync(recipe(folder, **sync), project)
    assert caught.value.exit_code == 4
    return caught.value


def test_an_unknown_extra_is_refused_naming_the_key_and_the_extras(tmp_path: Path) -> None:
    root = app(tmp_path).resolve()
    error = refusal(root, read_project(root), extras="[fast, nosuch]")
    assert error.message == (
        f"{root / 'uvbuild.yaml'}: builder.sync.extras: My_App has no extra 'nosuch' "
        f"([project.optional-dependencies] in {root / 'pyproject.toml'}); its extras: fast")
    assert error.hint == ("uv sync would refuse it in the builder: name one the project "
                          "has, or add it to pyproject.toml and run `uv lock`")


def test_an_unknown_group_is_refused_naming_the_groups(tmp_path: Path) -> None:
    root = app(tmp_path).resolve()
    error = refusal(root, read_project(root), groups="[nosuch, other]")
    assert error.message == (
        f"{root / 'uvbuild.yaml'}: builder.sync.groups: My_App has no dependency groups "
        f"'nosuch', 'other' ([dependency-groups] in {root / 'pyproject.toml'}); its groups: "
        "dev, lint")


def test_unknown_extras_and_groups_in_one_message(tmp_path: Path) -> None:
    root = app(tmp_path).resolve()
    lines = refusal(root, read_project(root), extras="[x]", groups="[y]").message.splitlines()
    assert [line.split(": ")[1] for line in lines] == ["builder.sync.extras",
                                                       "builder.sync.groups"]


def test_names_compare_as_uv_compares_them(tmp_path: Path) -> None:
    root = app(tmp_path).resolve()
    check_sync(recipe(root, extras="[FAST]", groups="[Dev, LINT]"), read_project(root))


def test_a_member_takes_its_own_and_the_workspace_roots_groups(tmp_path: Path) -> None:
    write(tmp_path, WORKSPACE)
    member = (tmp_path / "packages" / "mem").resolve()
    project = read_project(member)
    assert (project.extras, project.groups) == (("Mem_X",), ("Mem_Grp", "rootgrp", "dev"))
    check_sync(recipe(member, extras="[mem.x]", groups="[mem-grp, rootgrp, dev]"), project)

    error = refusal(member, project, extras="[rootx]", groups="[othergrp]")
    assert error.message.splitlines() == [
        f"{member / 'uvbuild.yaml'}: builder.sync.extras: mem has no extra 'rootx' "
        f"([project.optional-dependencies] in {member / 'pyproject.toml'}); its extras: Mem_X",
        f"{member / 'uvbuild.yaml'}: builder.sync.groups: mem has no dependency group "
        f"'othergrp' ([dependency-groups] in {member / 'pyproject.toml'} or "
        f"{tmp_path.resolve() / 'pyproject.toml'}); its groups: Mem_Grp, rootgrp, dev"]


def test_the_workspace_root_does_not_take_a_members_groups(tmp_path: Path) -> None:
    root = write(tmp_path, WORKSPACE).resolve()
    project = read_project(root)
    assert (project.extras, project.groups) == (("rootx",), ("rootgrp", "dev"))
    assert "its groups: rootgrp, dev" in refusal(root, project, groups="[mem-grp]").message


def test_dynamic_extras_and_unread_facts_are_not_judged(tmp_path: Path) -> None:
    project = Project(root=tmp_path, name="p", normalized_name="p", version="1",
                      is_package=True, scripts=(), requires_python=None,
                      workspace_members=(), manifest_files=())
    check_sync(recipe(tmp_path, extras="[anything]", groups="[any]"), project)


def test_uvbuild_plan_refuses_it_before_any_base(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """gather (what `uvbuild plan` and a build start with) checks before any engine call."""
    from uvbuild.plan import inputs

    root = app(tmp_path).resolve()
    monkeypatch.setattr(inputs, "_git", lambda *args: None)
    with pytest.raises(ProjectError, match="builder.sync.extras: My_App has no extra"):
        inputs.gather(recipe(root, extras="[nosuch]"), None, tag=None)
