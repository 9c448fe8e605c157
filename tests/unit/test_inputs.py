"""What of a git remote may become the image's org.opencontainers.image.source label."""

from __future__ import annotations

from pathlib import Path

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


def flask_recipe(tmp_path, monkeypatch):  # type: ignore[no-untyped-def]
    import shutil
    from pathlib import Path

    from uvbuild.plan import inputs
    from uvbuild.recipe.loader import load_recipe

    repo = Path(__file__).resolve().parents[2]
    shutil.copytree(repo / "recipes" / "flask", tmp_path / "flask",
                    ignore=shutil.ignore_patterns(".venv", "__pycache__"))
    recipe_path = tmp_path / "recipe.yaml"
    recipe_path.write_text((repo / "recipes" / "flask.yaml").read_text())
    monkeypatch.setattr(inputs, "_git", lambda *args: None)
    return load_recipe(recipe_path)


def test_a_plan_to_print_writes_no_file(tmp_path, monkeypatch) -> None:
    from uvbuild.plan import inputs

    recipe = flask_recipe(tmp_path, monkeypatch)
    before = sorted(tmp_path.rglob("*"))
    _, planned = inputs.gather(recipe, None, tag=None)
    assert (planned.manifests_tar, planned.sources_tar) == ("", "")
    assert sorted(tmp_path.rglob("*")) == before


def test_a_build_ships_the_bytes_its_keys_cover_even_if_a_file_changes_after(
        tmp_path, monkeypatch) -> None:
    """The tars are written when the build is planned, and digested as written: an edit
    made during the build reaches neither the image nor the key it is cached under."""
    import hashlib
    import tarfile

    from uvbuild.plan import inputs

    recipe = flask_recipe(tmp_path, monkeypatch)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    _, planned = inputs.gather(recipe, None, tag=None, scratch=scratch)
    (tmp_path / "flask" / "app.py").write_text("edited = True\n")

    for tar, digest in ((planned.sources_tar, planned.source_digest),
                        (planned.manifests_tar, planned.manifest_digest)):
        assert tar.startswith(str(scratch))
        with open(tar, "rb") as stream:
            assert hashlib.sha256(stream.read()).hexdigest() == digest
    with tarfile.open(planned.sources_tar) as archive:
        shipped = archive.extractfile("app.py")
        assert shipped is not None and b"edited" not in shipped.read()
        assert sorted(archive.getnames()) == sorted(
            {*planned.source_files, *(str(p) for f in planned.source_files
                                      for p in Path(f).parents if str(p) != ".")})
    # Planned again, the edit is seen: the digest (and so the key) follows it.
    _, again = inputs.gather(recipe, None, tag=None)
    assert again.source_digest != planned.source_digest
    assert again.manifest_digest == planned.manifest_digest
