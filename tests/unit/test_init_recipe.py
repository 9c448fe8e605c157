"""`uvbuild init`: the recipe text made from a project (issue 13)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from uvbuild.commands.init import init, recipe_text
from uvbuild.errors import ProjectError
from uvbuild.project.model import read_project
from uvbuild.recipe.imageref import reference_problem
from uvbuild.recipe.loader import load_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def copy(name: str, tmp_path: Path) -> Path:
    shutil.copytree(RECIPES / name, tmp_path / name,
                    ignore=shutil.ignore_patterns(".venv", "__pycache__"))
    return tmp_path / name


def runtime_of(folder: Path) -> dict[str, object]:
    doc = yaml.safe_load(recipe_text(read_project(folder)))
    assert doc["project"] == "." and doc["version"] == 1
    return dict(doc["runtime"])


def test_a_script_named_like_the_project_is_the_entrypoint() -> None:
    runtime = runtime_of(RECIPES / "cext")
    assert runtime["entrypoint"] == ["pgcheck"]
    assert runtime["test"] == ['python -Ic "import pgcheck"']
    assert "expose" not in runtime  # pgcheck reads no PORT


def test_the_port_the_main_module_defaults_to_is_exposed() -> None:
    assert runtime_of(RECIPES / "fastapi")["expose"] == [9876]  # PORT's default there


def test_a_script_whose_module_starts_a_server_wins_over_helpers_and_main(
        tmp_path: Path) -> None:
    folder = copy("fastapi", tmp_path)
    text = (folder / "pyproject.toml").read_text()
    (folder / "pyproject.toml").write_text(text.replace(
        'restapipy-openapi = "restapipy.openapi:main"\n',
        'restapipy-openapi = "restapipy.openapi:main"\nserve = "restapipy.__main__:main"\n'))
    runtime = runtime_of(folder)
    assert runtime["entrypoint"] == ["serve"] and runtime["expose"] == [9876]


def test_a_main_module_wins_over_a_helper_script() -> None:
    assert runtime_of(RECIPES / "fastapi")["entrypoint"] == ["python", "-m", "restapipy"]


def test_an_unpackaged_flask_app_gets_gunicorn_and_its_port() -> None:
    runtime = runtime_of(RECIPES / "flask")
    assert runtime["entrypoint"] == ["gunicorn", "--no-control-socket", "--access-logfile",
                                     "-", "app:app"]
    assert runtime["env"] == {"PORT": "8080"} and runtime["expose"] == [8080]
    assert runtime["test"] == ['python -c "import app"']


def test_a_source_built_dependency_brings_its_packages() -> None:
    doc = yaml.safe_load(recipe_text(read_project(RECIPES / "cext")))
    assert doc["builder"]["from"]["packages"] == doc["runtime"]["from"]["packages"] == ["python3"]
    assert doc["builder"]["packages"] == ["build-essential", "python3-dev", "libpq-dev"]
    assert doc["runtime"]["packages"] == ["libpq5"]
    assert "variant" not in doc["builder"]["from"]  # the builder's packages need apt
    assert doc["runtime"]["from"]["variant"] == "slim"


def test_fastapi_without_scripts_is_served_by_uvicorn(tmp_path: Path) -> None:
    folder = copy("fastapi", tmp_path)
    (folder / "src/restapipy/__main__.py").unlink()
    text = (folder / "pyproject.toml").read_text()
    (folder / "pyproject.toml").write_text(text.replace(
        'restapipy-openapi = "restapipy.openapi:main"\n', ""))
    entrypoint = runtime_of(folder)["entrypoint"]
    assert isinstance(entrypoint, list) and entrypoint[0] == "uvicorn"
    assert entrypoint[-1].startswith("restapipy.")


def test_the_suite_follows_the_python_the_project_asks_for(tmp_path: Path) -> None:
    folder = copy("workspace", tmp_path)
    (folder / ".python-version").write_text("3.13\n")
    doc = yaml.safe_load(recipe_text(read_project(folder)))
    assert doc["builder"]["from"]["suite"] == doc["runtime"]["from"]["suite"] == "trixie"
    (folder / ".python-version").write_text("3.8\n")
    text = recipe_text(read_project(folder))
    assert "NOTE: no Debian suite's Python meets 3.8" in text


def test_init_writes_a_recipe_the_loader_takes_and_refuses_to_overwrite(
        tmp_path: Path) -> None:
    folder = copy("monorepo", tmp_path) / "services/api"
    path = init(folder)
    assert path == folder / "uvbuild.yaml"
    recipe = load_recipe(path)
    assert recipe.project == folder.resolve() and recipe.runtime.entrypoint == ("api",)
    with pytest.raises(ProjectError, match="already exists") as caught:
        init(folder)
    assert "--force" in str(caught.value.hint)
    init(folder, force=True)


def test_on_a_virtual_workspace_root_init_picks_the_member_with_a_command(
        tmp_path: Path) -> None:
    folder = copy("vworkspace", tmp_path)
    recipe = load_recipe(init(folder))
    assert recipe.project == (folder / "packages/hello").resolve()
    assert recipe.runtime.entrypoint == ("hello",)


def test_on_a_virtual_workspace_root_with_two_commands_init_asks_which(
        tmp_path: Path) -> None:
    folder = copy("vworkspace", tmp_path)
    other = folder / "packages/other/pyproject.toml"
    other.write_text(other.read_text() + '\n[project.scripts]\nother = "other:main"\n')
    with pytest.raises(ProjectError, match="2 of its members") as caught:
        init(folder)
    assert f"uvbuild init {folder / 'packages/hello'}" in str(caught.value.hint)
    assert not (folder / "uvbuild.yaml").exists()


def test_a_local_version_becomes_a_tag_the_build_takes(tmp_path: Path) -> None:
    folder = copy("flask", tmp_path)
    pyproject = folder / "pyproject.toml"
    text = pyproject.read_text()
    version = next(line for line in text.splitlines() if line.startswith("version = "))
    pyproject.write_text(text.replace(version, 'version = "1.0.0+local.5"'))
    lock = folder / "uv.lock"  # (locked with that version: as `uv lock` leaves it)
    old = lock.read_text()
    lock.write_text(old.replace('name = "flaskapp"\nversion = "0.1.0"',
                                'name = "flaskapp"\nversion = "1.0.0+local.5"'))
    assert lock.read_text() != old
    image = yaml.safe_load(recipe_text(read_project(folder)))["image"]

    assert image.endswith(":1.0.0_local.5")  # ("+" is no tag character)
    assert reference_problem(image) is None  # (what the recipe loader asks of `image`)


@pytest.mark.parametrize("word", ["8000", "true", "null", "1.5", "yes", "2024-01-01", "~"])
def test_a_word_yaml_would_read_as_no_string_is_quoted(word: str) -> None:
    """`uvicorn --port 8000` must stay a list of strings (the loader wants strings)."""
    from uvbuild.commands.init import _flow_item

    assert yaml.safe_load(f"[uvicorn, --port, {_flow_item(word)}]") == ["uvicorn", "--port", word]
