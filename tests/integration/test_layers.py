"""Layers that follow the project, and the step cache (issue 3).

Every build here is of a copy of recipes/fastapi (project and recipe) in a temp
folder, so nothing in the repository is touched. The copies carry a builder.env
value unique to this module run: their sync-dependencies, install-project,
dependencies-layer, project-layer and add-project keys are theirs alone, so what `plan` says about
those steps cannot be changed by other builds running on the same host. Images
are tagged localhost/itest-layers-<random>-<purpose>:1 and untagged at the end.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
RECIPES = REPO_ROOT / "recipes"
UV = REPO_ROOT / ".venv" / "bin" / "uv"
RUN_ID = secrets.token_hex(4)
MAX_PROJECT_LAYER = 177_000  # bytes, uncompressed, of the layers a code change adds

PLAN_LINE = re.compile(
    r"^\s+(?P<step>[a-z][a-z-]+)\s+(?P<key>[0-9a-f]{12})\s+(?P<state>cached|to run|not needed|unknown)\b",
    re.M,
)
BUILDAH_COMMAND = re.compile(r"^ *[0-9.]+ \+ buildah(?: --storage-driver \S+)? (\S+)", re.M)
RUNNING_LINE = re.compile(r"^\s+(?P<step>[a-z][a-z-]+)\s+\.\.\.\s", re.M)
CONTAINER_WORK = re.compile(r"^ *[0-9.]+ \+ buildah(?: --storage-driver \S+)? (from|run|commit|copy|add)\b",
                            re.M)
ALL_STEPS = ("builder-base", "prepare-builder", "sync-dependencies", "install-project",
             "dependencies-layer", "project-layer", "runtime-base", "prepare-runtime",
             "add-project")
# Steps whose keys hold this run's builder.env value: nobody else makes these images.
OWN_STEPS = ("sync-dependencies", "install-project", "dependencies-layer", "project-layer",
             "add-project")


# --------------------------------------------------------------------------- helpers


def make_variant(root: Path, image: str) -> Path:
    """Copy recipes/fastapi and its recipe under `root`; return the recipe's path."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(RECIPES / "fastapi", root / "proj",
                    ignore=shutil.ignore_patterns(".venv", "__pycache__", "*.pyc"))
    recipe = yaml.safe_load((RECIPES / "fastapi.yaml").read_text())
    recipe["project"] = "proj"
    recipe["image"] = image
    recipe["builder"]["env"] = {**recipe["builder"].get("env", {}),
                                "UVBUILD_ITEST_LAYERS": RUN_ID}
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def buildah_json(*args: str) -> object:
    proc = subprocess.run(["buildah", *args], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"buildah {' '.join(args)} failed: {proc.stderr}"
    return json.loads(proc.stdout or "null")


@dataclass(frozen=True)
class Image:
    id: str
    layers: tuple[tuple[str, int], ...]  # (digest, size) base first

    @property
    def digests(self) -> tuple[str, ...]:
        return tuple(d for d, _ in self.layers)


def image(ref: str) -> Image:
    data = buildah_json("inspect", "--type", "image", ref)
    assert isinstance(data, dict)
    manifest = json.loads(data["Manifest"])
    return Image(id=data["FromImageID"].removeprefix("sha256:"),
                 layers=tuple((layer["digest"], int(layer["size"]))
                              for layer in manifest["layers"]))


def containers_of(pid: int) -> list[str]:
    """Working containers named after that uvbuild process (buildah prints null for none)."""
    listed = buildah_json("containers", "--json") or []
    assert isinstance(listed, list)
    return [c["containername"] for c in listed
            if c["containername"].startswith(f"uvbuild-{pid}-")]


def plan_states(run_uvbuild: Callable[..., subprocess.CompletedProcess[str]],
                recipe: Path) -> tuple[dict[str, str], dict[str, str], str]:
    """(step → state, step → 12-char key, output) of `uvbuild plan RECIPE`."""
    out = run_uvbuild(["plan", recipe]).stdout
    states = {m["step"]: m["state"] for m in PLAN_LINE.finditer(out)}
    keys = {m["step"]: m["key"] for m in PLAN_LINE.finditer(out)}
    assert set(states) == set(ALL_STEPS), f"plan printed:\n{out}"
    return states, keys, out


def step_lines(output: str, state: str) -> set[str]:
    return {m[1] for m in re.finditer(rf"^\s+([a-z][a-z-]+)\s+{state}\b", output, re.M)}


# --------------------------------------------------------------------------- fixtures


@dataclass(frozen=True)
class Warm:
    root: Path
    recipe: Path
    tag: str
    image: Image
    json_doc: dict[str, object]
    output: str


@pytest.fixture(scope="module")
def tags() -> Iterator[list[str]]:
    """Tags this module made; untagged (only those) at the end."""
    made: list[str] = []
    yield made
    for tag in made:
        subprocess.run(["buildah", "rmi", tag], capture_output=True, check=False)


@pytest.fixture(scope="module")
def warm(tmp_path_factory: pytest.TempPathFactory, run_uvbuild, tags) -> Warm:
    """The first build of this module's copy, with --json (later builds reuse its steps)."""
    root = tmp_path_factory.mktemp("layers-warm")
    tag = f"localhost/itest-layers-{RUN_ID}-warm:1"
    tags.append(tag)
    recipe = make_variant(root, tag)
    proc = run_uvbuild([recipe, "--json"])
    print(proc.stderr)
    return Warm(root=root, recipe=recipe, tag=tag, image=image(tag),
                json_doc=json.loads(proc.stdout), output=proc.stderr)


# --------------------------------------------------------------------------- tests


def test_json_output(warm: Warm) -> None:
    doc = warm.json_doc
    assert doc["image"] == warm.tag
    assert doc["id"] == warm.image.id
    assert isinstance(doc["size"], int) and doc["size"] > 10_000_000
    assert isinstance(doc["seconds"], (int, float)) and doc["seconds"] >= 0
    steps = doc["steps"]
    assert isinstance(steps, list) and steps, doc
    for record in steps:
        assert {"step", "cached", "seconds"} <= set(record), record
        assert record["step"] in ALL_STEPS
    # This run's keys were new: the final step ran.
    final = [r for r in steps if r["step"] == "add-project"]
    assert len(final) == 1 and final[0]["cached"] is False, steps


def test_unchanged_rebuild_does_no_container_work(warm: Warm, uvbuild_popen) -> None:
    run = uvbuild_popen([warm.recipe])
    print(run)
    assert run.returncode == 0, str(run)
    assert image(warm.tag).id == warm.image.id
    assert re.search(r"^\s+add-project\s+cached\b", run.stderr, re.M), run.stderr
    assert step_lines(run.stderr, "cached") == {"add-project"}, run.stderr
    assert not RUNNING_LINE.search(run.stderr), f"a step ran:\n{run.stderr}"
    assert containers_of(run.pid) == []

    # --debug echoes every buildah command: none may make or use a working container.
    debug = uvbuild_popen(["--debug", warm.recipe])
    assert debug.returncode == 0, str(debug)
    assert image(warm.tag).id == warm.image.id
    work = [m.group(0) for m in CONTAINER_WORK.finditer(debug.stderr)]
    assert work == [], f"an unchanged rebuild ran container commands:\n{debug.stderr}"
    assert containers_of(debug.pid) == []
    # Each buildah start-up costs about 0.05-0.1 s: an unchanged rebuild asks the store's
    # run root and lists its images (both while uvbuild starts) and its containers, no
    # more: the final image's size is remembered from the build that named it.
    asked = sorted(m.group(1) for m in BUILDAH_COMMAND.finditer(debug.stderr))
    assert asked == ["containers", "images", "info"], debug.stderr


def test_plan_after_build_is_all_cached(warm: Warm, run_uvbuild) -> None:
    states, _, out = plan_states(run_uvbuild, warm.recipe)
    print(out)
    # (install-project keeps no image: its layer cached, it is not needed)
    assert {s: st for s, st in states.items() if st != "cached"} == {
        "install-project": "not needed"}, out


def test_code_change_rebuilds_only_the_project_layer(
        warm: Warm, tmp_path: Path, run_uvbuild, tags) -> None:
    tag = f"localhost/itest-layers-{RUN_ID}-code:1"
    tags.append(tag)
    recipe = make_variant(tmp_path, tag)
    with open(tmp_path / "proj" / "src" / "restapipy" / "app.py", "a") as fh:
        fh.write(f"\nITEST_CODE_CHANGE = {RUN_ID!r}\n")

    states, _, out = plan_states(run_uvbuild, recipe)
    print(out)
    for step in ("install-project", "project-layer", "add-project"):
        assert states[step] == "to run", out
    for step in ("prepare-builder", "sync-dependencies", "prepare-runtime",
                 "dependencies-layer"):
        assert states[step] == "cached", out

    proc = run_uvbuild([recipe])
    print(proc.stderr)
    assert re.search(r"^\s+dependencies-layer\s+cached\b", proc.stderr, re.M), proc.stderr
    assert re.search(r"^\s+prepare-runtime\s+cached\b", proc.stderr, re.M), proc.stderr
    ran = {m["step"] for m in RUNNING_LINE.finditer(proc.stderr)}
    # (runtime-base finds the base image in local storage: `cached`.)
    assert ran == {"install-project", "project-layer", "add-project"}, proc.stderr

    before, after = warm.image, image(tag)
    print(f"before: {before}\nafter:  {after}")
    assert after.id != before.id
    assert len(after.layers) == len(before.layers) == 4, (before, after)
    # base, user, dependencies: the very same layers.
    assert after.digests[:3] == before.digests[:3]
    new = [(d, size) for d, size in after.layers if d not in before.digests]
    assert new, "the code change made no new layer"
    total = sum(size for _, size in new)
    print(f"new layers: {new} = {total} bytes")
    assert total < MAX_PROJECT_LAYER, f"new layers hold {total} bytes: {new}"


def test_lock_change_rebuilds_the_dependencies_layer(
        warm: Warm, tmp_path: Path, run_uvbuild, tags) -> None:
    tag = f"localhost/itest-layers-{RUN_ID}-lock:1"
    tags.append(tag)
    recipe = make_variant(tmp_path, tag)
    project = tmp_path / "proj"
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    assert '"uvicorn==0.54.0",\n' in text
    pyproject.write_text(text.replace('"uvicorn==0.54.0",\n', '"uvicorn==0.54.0",\n    "six",\n'))
    lock = subprocess.run([UV, "lock", "--python", "3.11"], cwd=project, capture_output=True,
                          text=True, env={**os.environ, "UV_PYTHON_DOWNLOADS": "never",
                                          "UV_NO_PROGRESS": "1"}, timeout=300, check=False)
    assert lock.returncode == 0, f"uv lock failed:\n{lock.stdout}\n{lock.stderr}"
    assert 'name = "six"' in (project / "uv.lock").read_text()

    states, _, out = plan_states(run_uvbuild, recipe)
    for step in ("sync-dependencies", "install-project", "dependencies-layer", "project-layer",
                 "add-project"):
        assert states[step] == "to run", out

    proc = run_uvbuild([recipe])
    print(proc.stderr)
    before, after = warm.image, image(tag)
    print(f"before: {before}\nafter:  {after}")
    assert len(after.layers) == 4, after
    assert after.digests[:2] == before.digests[:2], "the base layers changed"
    assert after.digests[2] != before.digests[2], "uv.lock changed, the dependencies layer did not"


def test_cache_ls_and_prune(warm: Warm, run_uvbuild) -> None:
    """Runs last: prune removes every intermediate cache tag (never bases or final images)."""
    _, keys, _ = plan_states(run_uvbuild, warm.recipe)
    listing = run_uvbuild(["cache", "ls"]).stdout
    # (install-project keeps no image: its layer, project-layer's, is the entry)
    for step in ("prepare-runtime", *(s for s in OWN_STEPS if s != "install-project")):
        assert re.search(rf"^{step}\s+{keys[step]}[0-9a-f]*\s", listing, re.M), (
            f"no {step} entry with key {keys[step]}… in `uvbuild cache ls`:\n{listing}")

    pruned = run_uvbuild(["cache", "prune"])
    print(pruned.stdout, pruned.stderr)
    assert pruned.returncode == 0

    states, _, out = plan_states(run_uvbuild, warm.recipe)
    print(out)
    # Only this module makes images with these keys, so nothing can have re-made them
    # (and the final image being kept, none of them is needed).
    for step in ("sync-dependencies", "install-project", "dependencies-layer",
                 "project-layer"):
        assert states[step] == "not needed", out
    # Final images and bootstrapped bases are kept without --all.
    assert states["add-project"] == "cached", out
    listing = run_uvbuild(["cache", "ls"]).stdout
    for step in ("sync-dependencies", "install-project", "dependencies-layer",
                 "project-layer"):
        assert not re.search(rf"^{step}\s+{keys[step]}", listing, re.M), listing
    assert image(warm.tag).id == warm.image.id  # the tagged image itself is untouched
