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


def test_planning_writes_no_file(tmp_path, monkeypatch) -> None:
    """The project's tars are digested when the build is planned, written by no one: a
    step that unpacks one writes it (an unchanged rebuild writes none)."""
    from uvbuild.plan import inputs

    recipe = flask_recipe(tmp_path, monkeypatch)
    before = sorted(tmp_path.rglob("*"))
    _, planned = inputs.gather(recipe, None, tag=None)
    assert planned.manifests_tar is not None and planned.sources_tar is not None
    assert (planned.manifests_tar.digest, planned.sources_tar.digest) == (
        planned.manifest_digest, planned.source_digest)
    assert sorted(tmp_path.rglob("*")) == before


def test_a_written_tar_has_the_planned_bytes(tmp_path, monkeypatch) -> None:
    """What a step unpacks is what its key covers: the tar written later has the bytes
    the plan digested."""
    import hashlib
    import tarfile

    from uvbuild.plan import inputs

    recipe = flask_recipe(tmp_path, monkeypatch)
    _, planned = inputs.gather(recipe, None, tag=None)
    for tar, digest in ((planned.sources_tar, planned.source_digest),
                        (planned.manifests_tar, planned.manifest_digest)):
        assert tar is not None
        folder = tmp_path / tar.name
        folder.mkdir()
        written = tar.write(folder)
        assert written.parent == folder
        assert hashlib.sha256(written.read_bytes()).hexdigest() == digest
    assert planned.sources_tar is not None
    with tarfile.open(tmp_path / "sources" / "files.tar") as archive:
        assert sorted(archive.getnames()) == sorted(
            {*planned.source_files, *(str(p) for f in planned.source_files
                                      for p in Path(f).parents if str(p) != ".")})


def test_a_file_edited_after_planning_fails_the_build_clearly(tmp_path, monkeypatch) -> None:
    """An edit made between planning and the step that unpacks the files would ship
    content the key does not cover: the step fails, with what to do, and leaves no tar."""
    from uvbuild.errors import ProjectError
    from uvbuild.plan import inputs

    recipe = flask_recipe(tmp_path, monkeypatch)
    _, planned = inputs.gather(recipe, None, tag=None)
    (tmp_path / "flask" / "app.py").write_text("edited = True\n")
    folder = tmp_path / "out"
    folder.mkdir()
    assert planned.sources_tar is not None
    with pytest.raises(ProjectError) as raised:
        planned.sources_tar.write(folder)
    assert raised.value.message == (f"the project's files in {planned.sources_tar.root} changed "
                                 "while uvbuild was building (its sources differ from what the "
                                 "build planned)")
    assert raised.value.hint == "build again when nothing writes to the project"
    assert list(folder.iterdir()) == []
    # Planned again, the edit is seen: the digest (and so the key) follows it.
    _, again = inputs.gather(recipe, None, tag=None)
    assert again.source_digest != planned.source_digest
    assert again.manifest_digest == planned.manifest_digest


def test_the_uv_version_is_the_uv_package_s() -> None:
    """Read from the package's dist-info without importlib.metadata: the same answer."""
    from importlib import metadata

    from uvbuild.plan.inputs import uv_version

    assert uv_version() == metadata.version("uv")
