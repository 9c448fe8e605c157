"""Projects laid out the way teams lay them out (issue 13).

The monorepo and virtual-workspace recipes are built (and verified) once per session
by test_recipes.py's `recipe_build`; the tests here reuse those builds. Copies go to
temp folders, so nothing in the repository is touched; images are tagged
localhost/itest-repos-<random>-<purpose>:1 and untagged at the end.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
RECIPES = REPO_ROOT / "recipes"
RUN_ID = secrets.token_hex(4)
MAX_NEW_LAYERS = 200_000  # bytes, uncompressed, that editing a path dependency may add


def layers(ref: str) -> tuple[tuple[str, int], ...]:
    """(digest, size) of the image's layers, base first."""
    proc = subprocess.run(["buildah", "inspect", "--type", "image", ref],
                          capture_output=True, text=True, check=True)
    manifest = json.loads(json.loads(proc.stdout)["Manifest"])
    return tuple((layer["digest"], int(layer["size"])) for layer in manifest["layers"])


@pytest.fixture(scope="module")
def tags() -> Iterator[list[str]]:
    """Tags this module made; untagged (only those) at the end."""
    made: list[str] = []
    yield made
    for tag in made:
        subprocess.run(["buildah", "rmi", tag], capture_output=True, check=False)


def copy_recipe(name: str, root: Path, image: str) -> Path:
    """recipes/<name>/ and its recipe under `root`, the recipe naming `image`."""
    shutil.copytree(RECIPES / name, root / name,
                    ignore=shutil.ignore_patterns(".venv", "__pycache__", "*.pyc"))
    recipe = yaml.safe_load((RECIPES / f"{name}.yaml").read_text())
    recipe["image"] = image
    # A label unique to this run changes the final step's key only: the build walks back
    # through the earlier steps, re-making any that a `cache prune` (test_layers) removed.
    recipe["runtime"].setdefault("labels", {})["io.uvbuild.itest-run"] = RUN_ID
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def test_editing_a_path_dependency_rebuilds_only_the_project_layer(
        run_uvbuild, tmp_path: Path, tags: list[str]) -> None:
    # The copy is built unedited first; its run-unique label (copy_recipe) makes the final
    # step a miss, so every earlier step is found or re-made and stored. The edit is then
    # measured against that build, whatever other tests (a prune) did to the store before.
    base_tag = f"localhost/itest-repos-{RUN_ID}-unedited:1"
    tag = f"localhost/itest-repos-{RUN_ID}-common:1"
    tags.extend([base_tag, tag])
    recipe = copy_recipe("monorepo", tmp_path, base_tag)
    print(run_uvbuild([recipe]).stderr)  # shown if the test fails
    before = layers(base_tag)
    recipe = copy_recipe("monorepo", tmp_path / "edited", tag)
    common = tmp_path / "edited/monorepo/libs/common/src/common/__init__.py"
    # Unique to this run: an earlier run's image of the same edit would be cached.
    common.write_text(common.read_text().replace('GREETING = "Hello"',
                                                 f'GREETING = "Howdy {RUN_ID}"'))

    proc = run_uvbuild([recipe])
    ran = {line.split()[0] for line in proc.stderr.splitlines() if line.endswith("...") or
           " ... " in line}
    # (runtime-base finds the base image in local storage: `cached`.)
    assert ran == {"install-project", "project-layer", "add-project"}, (
        proc.stderr)
    out = subprocess.run(["podman", "run", "--rm", tag, "Bob"], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == f"Howdy {RUN_ID}, Bob! (from common)"

    old, new = before, layers(tag)
    assert len(old) == len(new) == 4, (old, new)
    assert new[:3] == old[:3], "base, user and dependency layers must be the same"
    added = sum(size for digest, size in new if digest not in dict(old))
    print(f"editing libs/common added {added} bytes of layers")
    assert 0 < added < MAX_NEW_LAYERS, f"new layers hold {added} bytes"


def test_path_dependency_in_a_system_folder_fails_before_any_container(
        run_uvbuild, tmp_path: Path) -> None:
    recipe = copy_recipe("monorepo", tmp_path, "localhost/itest-repos-never:1")
    api = tmp_path / "monorepo/services/api"
    for name in ("pyproject.toml", "uv.lock"):
        path = api / name
        path.write_text(path.read_text().replace("../../libs/common", "/etc"))
    proc = run_uvbuild([recipe], check=False, timeout=60)
    assert proc.returncode == 4, proc.stderr
    assert "path dependency 'common' is /etc, a system folder" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("ask", ["python-version", "requires-python"])
def test_a_python_the_bookworm_base_lacks_is_a_project_error_at_once(
        run_uvbuild, tmp_path: Path, ask: str) -> None:
    recipe = copy_recipe("workspace", tmp_path, "localhost/itest-repos-never:1")
    project = tmp_path / "workspace"
    if ask == "python-version":
        (project / ".python-version").write_text("3.13\n")
        wanted = "3.13"
    else:
        for name in ("pyproject.toml", "uv.lock"):
            path = project / name
            path.write_text(path.read_text().replace(
                'requires-python = ">=3.11"', 'requires-python = ">=3.12"', 1))
        wanted = ">=3.12"
    started = time.monotonic()
    proc = run_uvbuild([recipe], check=False, timeout=60)
    seconds = time.monotonic() - started
    assert proc.returncode == 4, proc.stderr
    assert f"asks for Python {wanted}" in proc.stderr and "has Python 3.11" in proc.stderr, \
        proc.stderr
    assert seconds < 5, f"the error came after {seconds:.1f}s"


def test_a_pin_an_image_base_cannot_meet_fails_before_uv_sync(
        recipe_build, run_uvbuild, tmp_path: Path) -> None:
    # An image base's Python is known only inside a container: it is checked on
    # builder.python in the sync's own run, before `uv sync` downloads anything.
    assert recipe_build("workspace").run.returncode == 0
    bases = [line.split()[0] for line in subprocess.run(
        ["buildah", "images", "--noheading", "--format", "{{.Name}}:{{.Tag}}"],
        capture_output=True, text=True, check=True).stdout.splitlines()
        if "uvbuild-base/debian-bookworm" in line]
    assert bases, "no bootstrapped bookworm base in local storage"
    recipe = copy_recipe("workspace", tmp_path, "localhost/itest-repos-never:1")
    doc = yaml.safe_load(recipe.read_text())
    doc["builder"]["from"] = bases[0]  # /usr/bin/python3 is 3.11 (bookworm)
    recipe.write_text(yaml.safe_dump(doc, sort_keys=False))
    (tmp_path / "workspace/.python-version").write_text("3.13\n")
    proc = run_uvbuild([recipe], check=False, timeout=120)
    assert proc.returncode == 4, proc.stderr
    assert "asks for Python 3.13" in proc.stderr, proc.stderr
    # The builder's interpreter as the check found it: bookworm's CPython 3.11.x.
    assert "builder.python /usr/bin/python3 is CPython 3.11." in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


# Every sample, and the folder `uvbuild init` runs in (vworkspace's virtual root: init
# picks the member hello). `verify --generic` checks what any image of the project must
# give, not the sample recipe's own choices (fastapi's stop signal, port, labels and
# builder.run output; workspace's default cmd...). init writes the samples' bases, so
# after test_recipes.py's builds most steps come from the cache.
INIT_SAMPLES = {"cext": "cext", "fastapi": "fastapi", "flask": "flask",
                "monorepo": "monorepo/services/api", "vworkspace": "vworkspace",
                "workspace": "workspace"}


@pytest.mark.parametrize("name", sorted(INIT_SAMPLES))
def test_init_writes_a_recipe_that_builds_and_passes_verify_generic(
        run_uvbuild, tmp_path: Path, tags: list[str], name: str) -> None:
    shutil.copytree(RECIPES / name, tmp_path / name,
                    ignore=shutil.ignore_patterns(".venv", "__pycache__", "*.pyc"))
    folder = tmp_path / INIT_SAMPLES[name]
    run_uvbuild(["init", folder])
    refused = run_uvbuild(["init", folder], check=False)
    assert refused.returncode == 4 and "already exists" in refused.stderr
    tag = f"localhost/itest-repos-{RUN_ID}-init-{name}:1"
    tags.append(tag)
    run_uvbuild(["--tag", tag], cwd=folder)  # no recipe named: ./uvbuild.yaml
    proc = subprocess.run([str(RECIPES / name / "verify"), "--generic", tag], capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"


def test_a_base_from_a_plain_http_registry_and_the_push_back(
        recipe_build, run_uvbuild, registry: str, tmp_path: Path, tags: list[str]) -> None:
    # The bootstrapped base the vworkspace recipe was built on goes to the registry
    # (under a name local storage does not have: uvbuild must pull it).
    built_once = recipe_build("vworkspace")
    assert built_once.run.returncode == 0, f"building recipes/vworkspace.yaml failed\n{built_once.run}"
    base = f"{registry}/base/python:3.11-{RUN_ID}"
    local = json.loads(subprocess.run(["buildah", "inspect", "--type", "image", built_once.image],
                                      capture_output=True, text=True, check=True).stdout)
    base_id = local["FromImageID"]
    bases = [line.split()[0] for line in subprocess.run(
        ["buildah", "images", "--noheading", "--format", "{{.Name}}:{{.Tag}} {{.ID}}"],
        capture_output=True, text=True, check=True).stdout.splitlines()
        if "uvbuild-base/debian-bookworm" in line]
    assert bases, "no bootstrapped bookworm base in local storage"
    subprocess.run(["buildah", "push", "--quiet", "--tls-verify=false", bases[0],
                    f"docker://{base}"], capture_output=True, check=True)
    tags.append(base)
    assert base_id

    recipe = copy_recipe("vworkspace", tmp_path, f"{registry}/itest/hello:{RUN_ID}")
    doc = yaml.safe_load(recipe.read_text())
    for stage in ("builder", "runtime"):
        doc[stage]["from"] = base
    recipe.write_text(yaml.safe_dump(doc, sort_keys=False))

    refused = run_uvbuild([recipe], check=False, timeout=120)
    assert refused.returncode == 5, refused.stderr
    assert "--no-tls-verify" in refused.stderr, refused.stderr

    tags.append(f"{registry}/itest/hello:{RUN_ID}")
    proc = run_uvbuild([recipe, "--no-tls-verify", "--push", "--json"], timeout=600)
    document = json.loads(proc.stdout)
    assert document["pushed"]["reference"] == f"{registry}/itest/hello:{RUN_ID}"
    assert document["pushed"]["digest"].startswith("sha256:")
    inspect = subprocess.run(["skopeo", "inspect", "--tls-verify=false",
                              f"docker://{registry}/itest/hello:{RUN_ID}"],
                             capture_output=True, text=True, check=True)
    assert json.loads(inspect.stdout)["Digest"] == document["pushed"]["digest"]
