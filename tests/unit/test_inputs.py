"""What of a git remote may become the image's org.opencontainers.image.source label."""

from __future__ import annotations

import pytest

from uvbuild.plan.inputs import shareable_source


@pytest.mark.parametrize("url", [
    "https://github.com/example/app.git", "ssh://git.example.com/app.git",
    "http://git.corp.example:8080/team/app",
])
def test_a_url_others_can_reach_is_kept(url: str) -> None:
    assert shareable_source(url)


@pytest.mark.parametrize("url", [
    "https://user:token@github.com/example/app.git",  # credentials
    "https://token@github.com/example/app.git",
    "/work/main", "../app", "file:///srv/git/app.git",  # paths of the building machine
])
def test_credentials_and_local_paths_are_left_out(url: str) -> None:
    assert not shareable_source(url)


def test_the_recipe_file_in_the_project_is_never_a_source_file(tmp_path, monkeypatch) -> None:
    import shutil
    from pathlib import Path

    from uvbuild.plan import inputs
    from uvbuild.recipe.loader import load_recipe

    repo = Path(__file__).resolve().parents[2]
    shutil.copytree(repo / "recipes" / "flask", tmp_path / "flask",
                    ignore=shutil.ignore_patterns(".venv", "__pycache__"))
    recipe_path = tmp_path / "flask" / "uvbuild.yaml"
    text = (repo / "recipes" / "flask.yaml").read_text().replace("project: flask",
                                                                  "project: .")
    recipe_path.write_text(text)
    monkeypatch.setattr(inputs, "_git", lambda *args: None)
    _, planned = inputs.gather(load_recipe(recipe_path), None, tag=None)
    assert "app.py" in planned.source_files
    assert "uvbuild.yaml" not in planned.source_files
