"""The Python a project asks for, checked against what the builder has (issue 13)."""

from __future__ import annotations

from pathlib import Path

import pytest

from uvbuild.errors import ProjectError
from uvbuild.plan.planner import SyncDependencies
from uvbuild.project.model import Project
from uvbuild.project.pythons import PythonRequest, check_python, python_request, satisfies
from uvbuild.recipe.model import BootstrapBase, Builder, ImageBase, Recipe, Runtime


def project(root: Path, requires: str | None = ">=3.11", pin: str | None = None) -> Project:
    if pin is not None:
        (root / ".python-version").write_text(f"# pinned\n{pin}\n")
    return Project(root=root, name="p", normalized_name="p", version="1", is_package=True,
                   scripts=(), requires_python=requires, workspace_members=(),
                   manifest_files=())


def recipe(suite: str = "bookworm", python: str | None = None, image: str | None = None) -> Recipe:
    base = ImageBase(ref=image) if image else BootstrapBase(suite=suite, packages=("python3",))
    return Recipe(path=Path("/r.yaml"), version=1, project=Path("/p"), image=None,
                  builder=Builder(base=base, python=python), runtime=Runtime(base=base))


@pytest.mark.parametrize(("text", "pinned", "version", "expected"), [
    ("3.12", True, "3.11", False),
    ("3.11", True, "3.11", True),
    ("3.11.4", True, "3.11", True),
    ("cpython-3.13", True, "3.13", True),
    ("3", True, "3.11", True),
    ("pypy@3.10", True, "3.10", None),
    (">=3.12", False, "3.11", False),
    (">=3.11", False, "3.11", True),
    (">=3.11.4, <4", False, "3.11", True),
    ("<3.11", False, "3.11", False),
    ("==3.11.*", False, "3.11", True),
    ("~=3.10", False, "3.13", True),
    ("!=3.11.*", False, "3.11", False),
    ("junk", False, "3.11", None),
])
def test_satisfies(text: str, pinned: bool, version: str, expected: bool | None) -> None:
    assert satisfies(PythonRequest(text=text, source="", pinned=pinned), version) is expected


def test_python_version_file_wins_over_requires_python(tmp_path: Path) -> None:
    request = python_request(project(tmp_path, pin="3.13"))
    assert request == PythonRequest(text="3.13", source=str(tmp_path / ".python-version"),
                                    pinned=True)


def test_requires_python_is_the_request_without_a_pin(tmp_path: Path) -> None:
    request = python_request(project(tmp_path, requires=">=3.12"))
    assert request is not None and (request.text, request.pinned) == (">=3.12", False)
    assert "requires-python in" in request.source


def test_a_pin_the_bookworm_base_cannot_meet_is_exit_4_naming_both(tmp_path: Path) -> None:
    with pytest.raises(ProjectError) as caught:
        check_python(recipe(), project(tmp_path, pin="3.13"))
    assert caught.value.exit_code == 4
    text = str(caught.value)
    assert "3.13" in text and "3.11" in text and ".python-version" in text and "bookworm" in text


def test_requires_python_the_suite_cannot_meet_is_exit_4(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match=r"Python >=3\.12 .* has Python 3\.11"):
        check_python(recipe(), project(tmp_path, requires=">=3.12"))


def test_trixie_meets_313_and_uv_gets_the_request(tmp_path: Path) -> None:
    assert check_python(recipe("trixie"), project(tmp_path, pin="3.13")) == "3.13"


def test_builder_python_that_disagrees_with_the_pin_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="builder.python /usr/bin/python3.11"):
        check_python(recipe("trixie", python="/usr/bin/python3.11"),
                     project(tmp_path, pin="3.13"))
    # builder.python set and agreeing: uv gets builder.python itself (None).
    assert check_python(recipe(python="/usr/bin/python3"), project(tmp_path, pin="3.11")) \
        is None


def test_an_image_base_leaves_the_request_to_uv(tmp_path: Path) -> None:
    assert check_python(recipe(image="docker.io/library/python:3.11"),
                        project(tmp_path, pin="3.13")) == "3.13"


def test_the_made_venv_is_checked_when_the_base_told_nothing() -> None:
    from uvbuild.project.pythons import check_made_venv

    pin = PythonRequest(text="3.12", source="/p/.python-version", pinned=True)
    check_made_venv(pin, "3.12", "the builder's /usr/local/bin/python3")
    check_made_venv(None, "3.11", "x")
    check_made_venv(pin, "", "x")  # unknown: nothing to say
    with pytest.raises(ProjectError, match=r"asks for Python 3\.12 .* is Python 3\.11"):
        check_made_venv(pin, "3.11", "the builder's /usr/local/bin/python3")


def test_builder_and_runtime_suites_with_different_pythons_are_refused_at_once(
        tmp_path: Path) -> None:
    mixed = recipe()
    mixed = Recipe(path=mixed.path, version=1, project=mixed.project, image=None,
                   builder=mixed.builder,
                   runtime=Runtime(base=BootstrapBase(suite="trixie", packages=("python3",))))
    with pytest.raises(ProjectError, match=r"Python 3\.11 .* has Python 3\.13"):
        check_python(mixed, project(tmp_path, requires=None))


def _sync_step(request: PythonRequest | None, uv_python: str | None = None) -> SyncDependencies:
    import dataclasses

    from test_plan import plan_of

    sync = plan_of().step("sync-dependencies")
    assert isinstance(sync, SyncDependencies)
    return dataclasses.replace(sync, python="/usr/local/bin/python3", uv_python=uv_python,
                               python_request=request)


def test_a_request_is_checked_on_builder_python_before_uv_sync_runs() -> None:
    from uvbuild.build.builder_steps import PYTHON_CHECK, _python_check

    pin = PythonRequest(text="3.12", source="/p/.python-version", pinned=True)
    (check,) = _python_check(_sync_step(pin))
    assert check.label == PYTHON_CHECK
    assert check.text.startswith("/usr/local/bin/python3 -c ") and check.text.endswith(" 3.12")
    ranged = PythonRequest(text=">=3.11,<3.13", source="pyproject.toml", pinned=False)
    (check,) = _python_check(_sync_step(ranged))
    assert check.text.endswith(" 3.11 3.12")
    # uv is asked for the version itself (no builder.python), or nothing is asked:
    # uv's own "No interpreter found" / nothing to check.
    assert _python_check(_sync_step(pin, uv_python="3.12")) == ()
    assert _python_check(_sync_step(None)) == ()
    # A request the host cannot read is left to the check of the made venv.
    odd = PythonRequest(text="pypy@3.10", source="/p/.python-version", pinned=True)
    assert _python_check(_sync_step(odd)) == ()
