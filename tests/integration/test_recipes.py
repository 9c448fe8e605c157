"""Every example recipe builds, passes its own verify script, and ships only what it should.

Each recipe is built once per session (``recipe_build``); the tests here look at
that build and its image from outside: the working containers it left (none),
the image's files (mounted with ``buildah mount``), its config, and a rebuild.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted(p.stem for p in (REPO_ROOT / "recipes").glob("*.yaml"))
VERIFY_TIMEOUT_S = 300

# What must stay in the builder: uv's mount point and bookkeeping, the sources.
BUILDER_ONLY_PATHS = ("run/uvbuild", "uvbuild-state", "src")
# uv's cache is recognised by its bucket folders (archive-v0, wheels-v5, ...).
UV_CACHE_DIR = re.compile(r"(archive|wheels|sdists|simple|interpreter|built-wheels)-v\d+")
PSEUDO_FS = ("proc", "sys", "dev")


def buildah(*args: str) -> str:
    proc = subprocess.run(["buildah", *args], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"buildah {' '.join(args)} failed:\n{proc.stderr}"
    return proc.stdout


def image_config(image: str) -> dict[str, object]:
    data = json.loads(buildah("inspect", "--type", "image", image))
    return dict((data.get("OCIv1") or {}).get("config") or {})


@pytest.fixture(scope="module")
def image_root() -> Iterator[Callable[[str], Path]]:
    """``image_root(image_id)``: the image's root filesystem, mounted read-only by buildah.

    One working container per image for the module, removed at the end. Its name
    does not start with ``uvbuild-`` so ``uvbuild cache prune`` leaves it alone.
    """
    mounted: dict[str, tuple[str, Path]] = {}

    def image_root(image_id: str) -> Path:
        if image_id not in mounted:
            name = f"itest-inspect-{secrets.token_hex(4)}"
            buildah("from", "--pull=never", "--quiet", "--name", name, image_id)
            root = Path(buildah("mount", name).strip().splitlines()[-1])
            mounted[image_id] = (name, root)
        return mounted[image_id][1]

    yield image_root
    for name, _ in mounted.values():
        subprocess.run(["buildah", "rm", name], capture_output=True, check=False)


def walk(root: Path, top: str = "") -> Iterator[tuple[str, os.stat_result]]:
    """(path inside the image, lstat) of every entry under `top`, not following links."""
    start = root / top if top else root
    for dirpath, dirnames, filenames in os.walk(start):
        if dirpath == str(root):
            dirnames[:] = [d for d in dirnames if d not in PSEUDO_FS]
        for entry in dirnames + filenames:
            full = os.path.join(dirpath, entry)
            yield "/" + os.path.relpath(full, root), os.lstat(full)


def built(recipe_build: Callable[[str], Any], name: str) -> Any:
    """The session's successful build of recipes/<name>.yaml (a RecipeBuild)."""
    build = recipe_build(name)
    assert build.run.returncode == 0, f"building recipes/{name}.yaml failed\n{build.run}"
    assert build.image_id, f"{build.image} is not in local storage after a successful build"
    return build


@pytest.mark.parametrize("name", RECIPES)
def test_builds_and_passes_verify(recipe_build, name: str) -> None:
    build = built(recipe_build, name)
    assert "Traceback" not in build.run.stderr
    verify = REPO_ROOT / "recipes" / name / "verify"
    proc = subprocess.run(
        [str(verify), build.image],
        capture_output=True,
        text=True,
        timeout=VERIFY_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, (
        f"recipes/{name}/verify {build.image} exited {proc.returncode}\n"
        f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    )


@pytest.mark.parametrize("name", RECIPES)
def test_leaves_no_working_container(recipe_build, name: str) -> None:
    build = built(recipe_build, name)
    assert build.run.leftover_containers() == []


@pytest.mark.parametrize("name", RECIPES)
def test_ships_no_uv_no_cache_no_builder_files(recipe_build, image_root, name: str) -> None:
    build = built(recipe_build, name)
    root = image_root(build.image_id)
    present = []
    for path in BUILDER_ONLY_PATHS:
        target = root / path
        if path == "run/uvbuild" and target.is_dir() and not target.is_symlink():
            # An empty mount point would be harmless; anything in it is not.
            files = [p for p, st in walk(root, path) if not stat.S_ISDIR(st.st_mode)]
            present += files
        elif target.exists() or target.is_symlink():
            present.append(f"/{path}")
    assert present == [], f"builder-only paths in the image: {present}"
    entries = list(walk(root))
    uv_binaries = [
        p for p, st in entries if stat.S_ISREG(st.st_mode) and Path(p).name in ("uv", "uvx")
    ]
    assert uv_binaries == [], f"uv binaries in the image: {uv_binaries}"
    caches = [
        p
        for p, st in entries
        if stat.S_ISDIR(st.st_mode)
        and (UV_CACHE_DIR.fullmatch(Path(p).name) or p.endswith("/.cache/uv"))
    ]
    assert caches == [], f"uv cache folders in the image: {caches}"


@pytest.mark.parametrize("name", RECIPES)
def test_runs_as_numeric_user_who_cannot_write_app(recipe_build, image_root, name: str) -> None:
    build = built(recipe_build, name)
    user = str(image_config(build.image_id).get("User") or "")
    numeric = re.fullmatch(r"(\d+):(\d+)", user)
    assert numeric, f"Config.User is not numeric uid:gid: {user!r}"
    uid, gid = int(numeric[1]), int(numeric[2])
    assert uid != 0, f"Config.User is root: {user!r}"

    root = image_root(build.image_id)
    app = list(walk(root, "app"))
    assert app, "/app is empty"
    not_root_owned = [p for p, st in app if st.st_uid != 0]
    assert not_root_owned == [], f"/app entries not owned by root: {not_root_owned[:20]}"

    def writable(st: os.stat_result) -> bool:
        if stat.S_ISLNK(st.st_mode):
            return False  # a link's own mode means nothing
        return bool(
            (st.st_uid == uid and st.st_mode & stat.S_IWUSR)
            or (st.st_gid == gid and st.st_mode & stat.S_IWGRP)
            or st.st_mode & stat.S_IWOTH
        )

    app_dir = os.lstat(root / "app")
    writable_paths = [p for p, st in [("/app", app_dir), *app] if writable(st)]
    assert writable_paths == [], f"/app entries writable by {user}: {writable_paths[:20]}"


@pytest.mark.parametrize("name", RECIPES)
def test_venv_leads_path(recipe_build, name: str) -> None:
    build = built(recipe_build, name)
    env = dict(item.split("=", 1) for item in image_config(build.image_id).get("Env") or [])
    assert env.get("PATH", "").startswith("/app/.venv/bin:"), f"PATH is {env.get('PATH')!r}"
    assert env.get("VIRTUAL_ENV") == "/app/.venv", f"VIRTUAL_ENV is {env.get('VIRTUAL_ENV')!r}"


@pytest.mark.parametrize("name", RECIPES)
def test_unchanged_rebuild_is_cached(recipe_build, uvbuild_popen, image_id_of, name: str) -> None:
    build = built(recipe_build, name)
    again = uvbuild_popen([build.recipe, "--tag", build.image], cwd=REPO_ROOT)
    assert again.returncode == 0, f"the rebuild failed\n{again}"
    assert re.search(r"^\s+add-project\s+cached\b", again.stderr, re.MULTILINE), (
        f"the final step is not reported as cached\n{again}"
    )
    ran = re.findall(r"^\s+(\S+)\s+\.\.\.\s", again.stderr, re.MULTILINE)
    assert ran == [], f"an unchanged rebuild ran steps {ran}\n{again}"
    assert image_id_of(build.image) == build.image_id
    assert again.leftover_containers() == []


@pytest.mark.parametrize("name", RECIPES)
def test_plan_names_the_recipe_image(run_uvbuild, name: str) -> None:
    recipe = REPO_ROOT / "recipes" / f"{name}.yaml"
    expected = yaml.safe_load(recipe.read_text())["image"]
    proc = run_uvbuild(["plan", "--no-engine", recipe], cwd=REPO_ROOT)
    assert f"image: {expected}" in proc.stdout.splitlines()


def test_every_recipe_has_a_verify_script() -> None:
    assert RECIPES, "no recipes/*.yaml found"
    missing = [n for n in RECIPES if not os.access(REPO_ROOT / "recipes" / n / "verify", os.X_OK)]
    assert missing == [], f"recipes without an executable verify script: {missing}"
