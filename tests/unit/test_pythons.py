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
    ("pypy@3.10", True, "3.10", None),  # the implementation is not a fact of X.Y
    ("cp312", True, "3.12", True),
    ("312", True, "3.11", False),
    ("3.11.9", True, "3.11", True),  # some 3.11 may be 3.11.9: the builder tells
    ("3.13t", True, "3.13", True),
    ("cpython>=3.12", True, "3.11", False),
    ("/usr/bin/python3", True, "3.11", None),
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


def _check_argument(request: PythonRequest) -> dict[str, object]:
    """What the builder's pythoncheck.py is asked (its last argument)."""
    import json
    import shlex

    from uvbuild.build.builder_steps import PYTHON_CHECK, _python_check

    (check,) = _python_check(_sync_step(request))
    assert check.label == PYTHON_CHECK
    words = shlex.split(check.text)
    assert words[:2] == ["/usr/local/bin/python3", "-c"]
    return dict(json.loads(words[-1]))


def test_a_request_is_checked_on_builder_python_before_uv_sync_runs() -> None:
    from uvbuild.build.builder_steps import _python_check

    pin = PythonRequest(text="3.12", source="/p/.python-version", pinned=True)
    assert _check_argument(pin) == {"versions": ["3.12"], "implementation": None,
                                    "free_threaded": None, "debug": False}
    ranged = PythonRequest(text=">=3.11,<3.13", source="pyproject.toml", pinned=False)
    assert _check_argument(ranged)["versions"] == ["3.11", "3.12"]
    # uv is asked for the version itself (no builder.python), or nothing is asked:
    # uv's own "No interpreter found" / nothing to check.
    assert _python_check(_sync_step(pin, uv_python="3.12")) == ()
    assert _python_check(_sync_step(None)) == ()
    # A request the host cannot read (a path) is left to the check of the made venv.
    odd = PythonRequest(text="/opt/python/bin/python3", source="/p/.python-version",
                        pinned=True)
    assert _python_check(_sync_step(odd)) == ()


@pytest.mark.parametrize(("pin", "asked"), [
    # A patch release is that release alone; 3.11 is any 3.11.x.
    ("3.11.9", {"versions": ["3.11.9"], "implementation": None}),
    ("3.11", {"versions": ["3.11"], "implementation": None}),
    ("pypy@3.11", {"versions": ["3.11"], "implementation": "pypy"}),
    ("cpython-3.12.3-linux-x86_64-gnu", {"versions": ["3.12.3"], "implementation": "cpython"}),
    ("cp312", {"versions": ["3.12"], "implementation": "cpython"}),
    ("3.13t", {"versions": ["3.13"], "free_threaded": True}),
    ("3.14+freethreaded", {"versions": ["3.14"], "free_threaded": True, "debug": False}),
    ("3.14+gil", {"versions": ["3.14"], "free_threaded": False}),
    ("3.13d", {"versions": ["3.13"], "free_threaded": None, "debug": True}),
    ("cpython>=3.12.4,<3.13", {"versions": [f"3.12.{p}" for p in range(4, 100)],
                               "implementation": "cpython"}),
])
def test_a_pin_becomes_what_the_builder_python_must_be(pin: str,
                                                        asked: dict[str, object]) -> None:
    argument = _check_argument(PythonRequest(text=pin, source="/p/.python-version",
                                             pinned=True))
    assert {key: argument[key] for key in asked} == asked


def test_a_free_threaded_pin_before_313_is_refused_before_any_container(
        tmp_path: Path) -> None:
    """uv refuses `3.11t` ("Invalid version request"): said at once, naming the file,
    with or without builder.python."""
    for python in (None, "/usr/bin/python3"):
        with pytest.raises(ProjectError) as caught:
            check_python(recipe(python=python), project(tmp_path, pin="3.11t"))
        assert caught.value.exit_code == 4
        assert caught.value.message.startswith(
            f"p asks for Python 3.11t ({tmp_path / '.python-version'}), which ")
        assert "free-threaded builds of Python start at 3.13" in caught.value.message
        assert (python or "the builder base") in caught.value.message
    assert check_python(recipe("trixie"), project(tmp_path, pin="3.13t")) == "3.13t"


def test_pins_the_host_cannot_judge_are_left_to_the_builder(tmp_path: Path) -> None:
    """builder.python /usr/bin/python3 on bookworm is 3.11.something: a 3.11.9 or PyPy
    pin is judged in the builder, where its version and implementation are known."""
    for pin in ("3.11.9", "pypy@3.11", "3.11"):
        assert check_python(recipe(python="/usr/bin/python3"), project(tmp_path, pin=pin)) \
            is None
