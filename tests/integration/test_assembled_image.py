"""Images uvbuild assembles itself have one image ID in every kind of image store.

buildah's commit lets the store write layer tars: overlay writes directory-walk order,
vfs and fuse-overlayfs sorted order, so one build gave three IDs. A layout of canonical
layer tars (layertar.py) and canonical config/manifest (oci.py), imported with
`skopeo copy --preserve-digests`, gives the config's digest as the ID everywhere, and
a layout holding only the new layers reuses the base layers a store already has.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from uvbuild.engine.buildah import ImageConfig
from uvbuild.incontainer import layertar
from uvbuild.output.oci import Layer, base_image, write_layout
from uvbuild.pipeline import plan_recipe

STAMP = 315532800
DRIVERS = {
    "overlay": 'driver = "overlay"\n',
    "vfs": 'driver = "vfs"\n',
    "fuse-overlayfs": 'driver = "overlay"\n[storage.options.overlay]\n'
                      'mount_program = "/usr/bin/fuse-overlayfs"\n',
}


def _run(argv: list[str], conf: Path) -> str:
    result = subprocess.run(argv, env={**os.environ, "CONTAINERS_STORAGE_CONF": str(conf)},
                            capture_output=True, text=True, stdin=subprocess.DEVNULL,
                            timeout=300, check=False)
    assert result.returncode == 0, f"{argv}: {result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """An empty image store of each kind: name -> its storage.conf."""
    for tool in ("skopeo", "buildah", "fuse-overlayfs"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} missing: run scripts/host-setup (scripts/test does)")
    root = tmp_path_factory.mktemp("stores")
    confs = {}
    for name, driver in DRIVERS.items():
        conf = root / name / "storage.conf"
        conf.parent.mkdir()
        head, _, options = driver.partition("\n")
        conf.write_text(f'[storage]\n{head}\ngraphroot = "{root / name}/graph"\n'
                        f'runroot = "{root / name}/run"\n{options}')
        confs[name] = conf
    yield confs
    for conf in confs.values():
        # Nothing is mounted once the builds are over (they remove their containers):
        # the folders go as they are, faster than `buildah rmi --all` (a minute for vfs).
        leftovers = subprocess.run(["buildah", "containers", "--quiet"], capture_output=True,
                                   text=True, check=False,
                                   env={**os.environ, "CONTAINERS_STORAGE_CONF": str(conf)})
        if leftovers.stdout.strip():
            subprocess.run(["buildah", "rm", "--all"], capture_output=True, check=False,
                           env={**os.environ, "CONTAINERS_STORAGE_CONF": str(conf)})
        shutil.rmtree(conf.parent, ignore_errors=True)


def _tree(root: Path) -> Path:
    """Files named so that walk order and sorted order differ (click/ vs click-8...)."""
    for rel, text in {"click/__init__.py": "x = 1\n", "click-8.5.1.dist-info/METADATA": "m\n",
                      "click-8.5.1.dist-info/RECORD": "r\n", "bin/app": "#!/bin/sh\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "bin" / "app").chmod(0o755)
    return root


def _layer(tmp_path: Path, name: str, tree: Path, prefix: str) -> Layer:
    path = tmp_path / f"{name}.tar"
    facts = layertar.write_tree(str(path), str(tree), prefix, STAMP)
    return Layer(path=path, digest=str(facts["digest"]), size=int(facts["size"]),
                 created_by=f"uvbuild test: {name}")


def test_one_image_id_in_overlay_vfs_and_fuse_overlayfs_stores(
        stores: dict[str, Path], tmp_path: Path) -> None:
    base_tree = tmp_path / "base"
    (base_tree / "etc").mkdir(parents=True)
    (base_tree / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    base = write_layout(tmp_path / "base-layout", None, [_layer(tmp_path, "base", base_tree, "")],
                        ImageConfig(env=(("PATH", "/usr/bin:/bin"),)), timestamp=STAMP)
    app_layer = _layer(tmp_path, "app", _tree(tmp_path / "app"), "app")
    settings = ImageConfig(user="1000:1000", workdir="/app", entrypoint=("/app/bin/app",),
                           labels=(("org.opencontainers.image.title", "assembled"),))
    ids = {}
    for name, conf in stores.items():
        _run(["skopeo", "copy", "-q", "--preserve-digests", f"oci:{base.layout}",
              "containers-storage:localhost/assembled-base:1"], conf)
        stored = base_image(
            _run(["skopeo", "inspect", "--raw", "containers-storage:localhost/assembled-base:1"],
                 conf).encode(),
            _run(["skopeo", "inspect", "--config", "--raw",
                  "containers-storage:localhost/assembled-base:1"], conf).encode())
        # Only the new layer is in this layout: the store must reuse its base layer.
        app = write_layout(tmp_path / f"app-{name}", stored, [app_layer], settings,
                           timestamp=STAMP)
        blobs = {p.name for p in (app.layout / "blobs" / "sha256").iterdir()}
        assert base.image_id not in blobs and len(blobs) == 3  # layer, config, manifest
        _run(["skopeo", "copy", "-q", "--preserve-digests", f"oci:{app.layout}",
              "containers-storage:localhost/assembled:1"], conf)
        stored_id = _run(["buildah", "inspect", "--type", "image", "--format",
                          "{{.FromImageID}}", "localhost/assembled:1"], conf).strip()
        assert stored_id == app.image_id, name
        ids[name] = stored_id
    assert len(set(ids.values())) == 1, ids


# -- a real recipe, built by uvbuild in each kind of store ----------------------------------

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN_ID = secrets.token_hex(4)
BUILDER_STEPS = ("builder-base", "prepare-builder", "sync-dependencies", "install-project",
                 "dependencies-layer", "project-layer")


def _flask_copy(root: Path, image: str, runtime_from: object | None = None,
                keyed: str = RUN_ID) -> Path:
    """recipes/flask and its recipe under `root`, named `image` (its keys are this
    module run's own, or `keyed`'s: a builder.env value), with a runtime.copy entry
    outside /app."""
    if not (root / "flask").exists():
        shutil.copytree(REPO_ROOT / "recipes" / "flask", root / "flask",
                        ignore=shutil.ignore_patterns(".venv", "__pycache__", "*.pyc"))
    recipe = yaml.safe_load((REPO_ROOT / "recipes" / "flask.yaml").read_text())
    recipe["image"] = image
    recipe["builder"]["env"] = {"UVBUILD_ITEST_ASSEMBLED": keyed}
    # A runtime.copy entry outside /app ships in the project layer too.
    recipe["runtime"]["copy"] = [{"from": "/src/templates", "to": "/srv/templates"}]
    recipe["runtime"]["test"] = [*recipe["runtime"]["test"], "test -f /srv/templates/index.html"]
    if runtime_from is not None:
        recipe["runtime"]["from"] = runtime_from
    path = root / f"{image.rpartition('/')[2].replace(':', '-')}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def _bases(recipe: Path) -> tuple[str, ...]:
    """The names of the bases `recipe`'s plan builds on (bootstrapped ones)."""
    _, plan = plan_recipe(recipe, tag=None, engine=None, pull=False)
    return tuple(sorted({plan.step(name).cache_ref for name in ("builder-base", "runtime-base")}))


def _xdg(root: Path) -> Path:
    """A cache home of its own (an empty layer cache) that shares the host's uv cache:
    each store's build makes every layer, without downloading every wheel again."""
    home = root / "xdg"
    (home / "uvbuild").mkdir(parents=True, exist_ok=True)
    shared = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "uvbuild" / "uv"
    shared.mkdir(parents=True, exist_ok=True)
    if not (home / "uvbuild" / "uv").exists():
        (home / "uvbuild" / "uv").symlink_to(shared)
    return home


def _build(run_uvbuild: Callable[..., subprocess.CompletedProcess[str]], recipe: Path,
           conf: Path, xdg: Path) -> dict[str, object]:
    proc = run_uvbuild(["build", "--json", recipe],
                       env={"CONTAINERS_STORAGE_CONF": str(conf), "XDG_CACHE_HOME": str(xdg)})
    return dict(json.loads(proc.stdout))


@pytest.fixture(scope="module")
def preloaded(stores: dict[str, Path], tmp_path_factory: pytest.TempPathFactory,
              run_uvbuild: Callable[..., subprocess.CompletedProcess[str]],
              ) -> tuple[Path, dict[str, Path]]:
    """A flask copy, and the stores holding its bases, copied from the default store (made
    there first if missing: ~40 s each), the same image in each store."""
    root = tmp_path_factory.mktemp("assembled")
    recipe = _flask_copy(root, f"localhost/itest-assembled-{RUN_ID}:1")
    bases = _bases(recipe)
    if any(subprocess.run(["buildah", "inspect", "--type", "image", base], capture_output=True,
                          check=False).returncode for base in bases):
        run_uvbuild(["build", "--quiet", REPO_ROOT / "recipes" / "flask.yaml",
                     "--tag", f"localhost/itest-assembled-warm-{RUN_ID}:1"])
        subprocess.run(["buildah", "rmi", f"localhost/itest-assembled-warm-{RUN_ID}:1"],
                       capture_output=True, check=False)
    # The default store (this test run's own), named for skopeo by its folders.
    info = json.loads(subprocess.run(["buildah", "info"], capture_output=True, text=True,
                                     check=True).stdout)["store"]
    source = f"[{info['GraphDriverName']}@{info['GraphRoot']}+{info['RunRoot']}]"
    for base in bases:
        ids = set()
        for conf in stores.values():
            # Not --preserve-digests: a base whose stored manifest names a gzip layer
            # (a pulled or copied one) holds it uncompressed, and skopeo refuses to keep
            # that digest; the config, so the image ID, is copied as it is either way.
            _run(["skopeo", "copy", "-q",
                  f"containers-storage:{source}{base}", f"containers-storage:{base}"], conf)
            ids.add(_run(["buildah", "inspect", "--type", "image", "--format",
                          "{{.FromImageID}}", base], conf).strip())
        assert len(ids) == 1, f"{base} differs between the stores: {ids}"
    return recipe, stores


def test_a_recipe_builds_to_one_image_id_in_overlay_vfs_and_fuse_overlayfs_stores(
        preloaded: tuple[Path, dict[str, Path]],
        run_uvbuild: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    recipe, stores = preloaded
    ids = {}
    # The three builds at once: the test takes as long as the slowest (vfs) one.
    with ThreadPoolExecutor(len(stores)) as pool:
        builds = dict(zip(stores, pool.map(
            lambda conf: _build(run_uvbuild, recipe, conf, _xdg(conf.parent)),
            stores.values()), strict=True))
    for name, conf in stores.items():
        built = builds[name]
        ran = {str(s["step"]) for s in built["steps"] if not s["cached"]}  # type: ignore[attr-defined]
        # From empty (but for the bases): every layer is made in every store.
        assert {"sync-dependencies", "install-project", "dependencies-layer", "project-layer",
                "prepare-runtime", "add-project"} <= ran, (name, ran)
        ids[name] = str(built["id"])
        stored = _run(["buildah", "inspect", "--type", "image", "--format",
                       "{{.FromImageID}}", str(built["image"])], conf).strip()
        assert stored == ids[name]
        history = json.loads(_run(["buildah", "inspect", "--type", "image", stored],
                                  conf))["OCIv1"]["history"]
        made = [h["created_by"] for h in history if h.get("comment") == "uvbuild"]
        assert [m.split(":")[0] for m in made] == ["uvbuild"] * 3, made  # user, deps, project
    print("image IDs by store:", ids)
    assert len(set(ids.values())) == 1, ids


def test_a_runtime_base_refresh_runs_no_builder_step(
        preloaded: tuple[Path, dict[str, Path]],
        run_uvbuild: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    recipe, stores = preloaded
    conf, xdg = stores["overlay"], _xdg(stores["overlay"].parent)
    base = _bases(recipe)
    _, plan = plan_recipe(recipe, tag=None, engine=None, pull=False)
    slim = plan.step("runtime-base").cache_ref
    assert slim in base
    runtime = f"localhost/itest-assembled-runtime-{RUN_ID}:1"
    _run(["buildah", "tag", slim, runtime], conf)
    refreshed = _flask_copy(recipe.parent, f"localhost/itest-assembled-{RUN_ID}:2", runtime)
    first = _build(run_uvbuild, refreshed, conf, xdg)
    # The base's refresh: one more file, under the same name.
    _in_container(conf, runtime, "echo refreshed > /etc/uvbuild-itest-refresh",
                  commit_as=runtime)
    second = _build(run_uvbuild, refreshed, conf, xdg)
    ran = {str(s["step"]) for s in second["steps"] if not s["cached"]}  # type: ignore[attr-defined]
    assert not ran & set(BUILDER_STEPS), ran  # no builder command ran
    assert ran == {"prepare-runtime", "add-project"}, ran
    assert second["id"] != first["id"]
    out = _in_container(conf, str(second["id"]), "cat /etc/uvbuild-itest-refresh")
    assert out.strip() == "refreshed"


def _in_container(conf: Path, image: str, script: str, *, commit_as: str | None = None) -> str:
    """`script` run in a working container of `image` (then committed as `commit_as`)."""
    ctr = _run(["buildah", "from", "--pull=never", image], conf).strip()
    try:
        out = _run(["buildah", "run", "--isolation", "chroot", ctr, "--", "/bin/sh", "-c",
                    script], conf)
        if commit_as:
            _run(["buildah", "commit", "-q", "--timestamp", "0", ctr, commit_as], conf)
        return out
    finally:
        _run(["buildah", "rm", ctr], conf)


def test_reused_bytecode_gives_the_image_a_fresh_compile_gives(
        preloaded: tuple[Path, dict[str, Path]], tmp_path: Path,
        run_uvbuild: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    """The dependencies' .pyc files a build takes from the bytecode cache (by source and
    path) are the bytes it would compile: a build with that cache warm and one with it
    empty, in two stores, give one image ID."""
    recipe, stores = preloaded
    again = _flask_copy(recipe.parent, f"localhost/itest-assembled-{RUN_ID}:3",
                        keyed=f"{RUN_ID}-bytecode")  # every step its own
    cold, warm = _xdg(tmp_path / "cold"), _xdg(tmp_path / "warm")
    first = _build(run_uvbuild, again, stores["overlay"], cold)
    compiled = sorted(p.relative_to(cold) for p in (cold / "uvbuild" / "bytecode").rglob("*")
                      if p.is_file())
    assert len(compiled) > 50, compiled  # flask, jinja2, werkzeug, ... each file's .pyc
    shutil.copytree(cold / "uvbuild" / "bytecode", warm / "uvbuild" / "bytecode")
    copied = {p: p.stat().st_ino for p in (warm / "uvbuild" / "bytecode").rglob("*")
              if p.is_file()}
    second = _build(run_uvbuild, again, stores["vfs"], warm)
    ran = {str(s["step"]) for s in second["steps"] if not s["cached"]}  # type: ignore[attr-defined]
    assert "sync-dependencies" in ran, ran
    # Every .pyc was there: none was compiled and kept again (a kept one is a new file).
    assert {p: p.stat().st_ino for p in (warm / "uvbuild" / "bytecode").rglob("*")
            if p.is_file()} == copied
    assert second["id"] == first["id"]
