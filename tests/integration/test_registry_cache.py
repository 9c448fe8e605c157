"""The registry step cache against a real registry and two image stores (issue 14).

A runner exports an image entry and a layer entry; a second runner with an empty store
finds them by manifest requests, imports the image with the same ID and the layer with
the same bytes; exporting again uploads no blob (the registry's access log says so); a
tampered entry is a warning and a miss; a registry that is down is a warning, not a
failure; `uvbuild cache prune --registry` keeps the newest entries per step.

Tiny images made here (an OCI layout of one-file layers, imported with skopeo): no
bootstrap, no build. Then builds (`--cache-to`, `--cache-from`) on two runners with a
store, a uv cache and a layer cache each: the second runner, empty, pulls the final
image alone (the same ID, no builder command, nothing uploaded again) past a cache that
is down, and after a code edit runs only the project steps past a tampered entry.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from uvbuild.build.regcache import IMAGE, LAYERS, RegistryCache, entry_tag
from uvbuild.engine.buildah import Buildah, ImageConfig, RegistryAccess
from uvbuild.incontainer import layertar
from uvbuild.output.oci import Layer, write_layout
from uvbuild.pipeline import plan_recipe

STAMP = 315532800
PLAIN_HTTP = RegistryAccess(tls_verify=False)
KEY_BASE = "1" * 64
KEY_LAYER = "2" * 64
KEY_COMMITTED = "5" * 64


def _run(argv: list[str], env: dict[str, str] | None = None) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                            timeout=120, check=False, env=env)
    assert result.returncode == 0, f"{argv}: {result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """Two empty image stores (the first runner's, the second's): their storage.conf."""
    for tool in ("skopeo", "buildah"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} missing: run scripts/host-setup (scripts/test does)")
    root = tmp_path_factory.mktemp("regcache-stores")
    confs = []
    for name in ("first", "second"):
        conf = root / name / "storage.conf"
        conf.parent.mkdir()
        conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{root / name}/graph"\n'
                        f'runroot = "{root / name}/run"\n')
        confs.append(conf)
    yield confs[0], confs[1]
    for conf in confs:
        subprocess.run(["buildah", "rmi", "--all", "--force"], capture_output=True, check=False,
                       env={**os.environ, "CONTAINERS_STORAGE_CONF": str(conf)})


@pytest.fixture
def in_store(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], None]:
    """Point buildah and skopeo (run by this process) at a store."""
    def use(conf: Path) -> None:
        monkeypatch.setenv("CONTAINERS_STORAGE_CONF", str(conf))
    return use


def _layer(folder: Path, name: str, text: str) -> Layer:
    tree = folder / f"{name}-tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / name).write_text(text)
    facts = layertar.write_tree(str(folder / f"{name}.tar"), str(tree), "", STAMP)
    return Layer(path=folder / f"{name}.tar", digest=str(facts["digest"]),
                 size=int(facts["size"]), created_by=f"test layer {name}")


def _tiny_image(folder: Path, name: str) -> str:
    """A one-layer image in the current store, named `name`; its ID."""
    made = write_layout(folder / "layout", None, [_layer(folder, "base", "base\n")],
                        ImageConfig(env=(("PATH", "/usr/bin:/bin"),)), timestamp=STAMP)
    _run(["skopeo", "copy", "-q", "--preserve-digests", f"oci:{made.layout}",
          f"containers-storage:{name}"])
    return made.image_id


def _committed_child(base: str) -> str:
    """An image buildah commits on top of `base` (as builder steps are made); its ID."""
    container = _run(["buildah", "from", "--pull=never", "--quiet", base]).strip()
    try:
        _run(["buildah", "config", "--label", "io.uvbuild.step=install-project", container])
        return _run(["buildah", "commit", "--quiet", "--timestamp", str(STAMP),
                     container]).strip().removeprefix("sha256:")
    finally:
        _run(["buildah", "rm", container])


def _uploads(log: Path, repo: str) -> list[str]:
    """The digests of the blobs uploaded to `repo` so far, from the registry's access log
    (an upload ends with `PUT /v2/NAME/blobs/uploads/UUID?...&digest=sha256%3A...`)."""
    path = re.escape(repo.partition("/")[2])
    return [f"sha256:{hex_digest}" for hex_digest in re.findall(
        rf'"PUT /v2/{path}/blobs/uploads/\S*digest=sha256(?:%3A|:)([0-9a-f]{{64}})',
        log.read_text())]


def test_a_second_runner_imports_what_the_first_exported(
        registry: str, registry_log: Path, stores: tuple[Path, Path],
        in_store: Callable[[Path], None], tmp_path: Path) -> None:
    first, second = stores
    repo = f"{registry}/uvbuild-test/regcache"
    in_store(first)
    image_id = _tiny_image(tmp_path, "localhost/regcache-test:base")
    committed = _committed_child(image_id)
    layer = _layer(tmp_path, "project", "the project\n")
    told: list[str] = []
    cache = RegistryCache(repo, PLAIN_HTTP, Buildah(), warn=told.append, scratch=tmp_path)
    assert cache.lookup("runtime-base", KEY_BASE) is None  # nothing yet: a miss, unsaid
    assert cache.export_image("runtime-base", KEY_BASE, image_id)
    assert cache.export_image("install-project", KEY_COMMITTED, committed)
    assert cache.export_layers("project-layer", KEY_LAYER, [layer], {"user": "10001:10001"})
    uploaded = _uploads(registry_log, repo)
    assert {f"sha256:{image_id}", layer.digest} < set(uploaded)  # the log shows uploads

    # The second runner: an empty store.
    in_store(second)
    cache = RegistryCache(repo, PLAIN_HTTP, Buildah(), warn=told.append, scratch=tmp_path)
    entry = cache.lookup("runtime-base", KEY_BASE)
    assert entry is not None and entry.kind == IMAGE and entry.image_id == image_id
    name = f"localhost/uvbuild-cache/runtime-base-{KEY_BASE[:32]}:latest"
    assert cache.import_image(entry, name) == image_id
    assert Buildah().image(name) is not None
    # A builder step's image, committed by buildah on top of it: the same ID here too.
    child = cache.lookup("install-project", KEY_COMMITTED)
    assert child is not None
    assert cache.import_image(child, "localhost/regcache-test:child") == committed
    layer_entry = cache.lookup("project-layer", KEY_LAYER, LAYERS)
    assert layer_entry is not None
    pulled = cache.import_layers(layer_entry, tmp_path / "pulled")
    assert pulled is not None and pulled.facts == {"user": "10001:10001"}
    (got,) = pulled.layers
    assert (got.digest, got.size, got.created_by) == (layer.digest, layer.size, layer.created_by)
    assert got.path.read_bytes() == layer.path.read_bytes()

    # Exported again from the second runner: the entries are there (nothing is sent).
    # As entries of other keys: no layer is uploaded again, nor the image's config; only
    # the new layer entry's config is new (it names its key).
    assert not cache.export_image("runtime-base", KEY_BASE, image_id)
    assert cache.export_image("builder-base", "3" * 64, image_id)
    assert cache.export_layer("dependencies-layer", "4" * 64, got)
    again = _uploads(registry_log, repo)[len(uploaded):]
    assert len(again) == 1 and again[0] not in (*uploaded, layer.digest), again
    assert told == []
    assert not list(tmp_path.glob(".uvbuild-*"))  # the layouts made on the way are gone


def test_a_tampered_entry_is_a_warning_and_a_miss(
        registry: str, stores: tuple[Path, Path], in_store: Callable[[Path], None],
        tmp_path: Path) -> None:
    in_store(stores[0])
    repo = f"{registry}/uvbuild-test/tampered"
    image_id = _tiny_image(tmp_path, "localhost/regcache-test:tampered")
    cache = RegistryCache(repo, PLAIN_HTTP, Buildah(), scratch=tmp_path)
    # An entry pushed under the tag of KEY_BASE (same first 32 digits), another full key.
    forged = KEY_BASE[:32] + "f" * 32
    assert cache.export_image("sync-dependencies", forged, image_id)
    assert cache.lookup("sync-dependencies", KEY_BASE) is None
    assert len(cache.warnings) == 1
    assert f"ignoring {repo}:{entry_tag('sync-dependencies', KEY_BASE)}" in cache.warnings[0]
    assert "records the key" in cache.warnings[0]


def test_a_registry_that_is_down_is_a_warning_not_a_failure(
        stores: tuple[Path, Path], in_store: Callable[[Path], None], tmp_path: Path) -> None:
    in_store(stores[0])
    image_id = _tiny_image(tmp_path, "localhost/regcache-test:down")
    told: list[str] = []
    # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    cache = RegistryCache("127.0.0.1:9/uvbuild-test/down", PLAIN_HTTP, Buildah(),
                          warn=told.append, scratch=tmp_path)
    assert cache.lookup("sync-dependencies", KEY_BASE) is None
    assert not cache.export_image("sync-dependencies", KEY_BASE, image_id)
    assert cache.down and len(told) == 1
    assert "cannot be reached" in told[0] and "connection refused" in told[0]


def test_prune_keeps_the_newest_entries_of_each_step(
        registry: str, stores: tuple[Path, Path], in_store: Callable[[Path], None],
        run_uvbuild: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    in_store(stores[0])
    repo = f"{registry}/uvbuild-test/prune"
    image_id = _tiny_image(tmp_path, "localhost/regcache-test:prune")
    now = [1700000000.0]
    cache = RegistryCache(repo, PLAIN_HTTP, Buildah(), scratch=tmp_path, clock=lambda: now[0])
    for key in ("a", "b", "c"):
        now[0] += 3600
        assert cache.export_image("sync-dependencies", key * 64, image_id)
    assert cache.export_image("install-project", "d" * 64, image_id)
    env = {"CONTAINERS_STORAGE_CONF": str(stores[0])}
    dry = run_uvbuild(["cache", "prune", "--registry", repo, "--keep", "1", "--no-tls-verify",
                       "--dry-run"], env=env)
    assert dry.stdout.splitlines()[-1] == "would delete 2 entries, kept 2"
    assert f"would delete {repo}:{entry_tag('sync-dependencies', 'a' * 64)}" in dry.stdout
    done = run_uvbuild(["cache", "prune", "--registry", repo, "--keep", "1",
                        "--no-tls-verify"], env=env)
    assert done.stdout.splitlines()[-1] == "deleted 2 entries, kept 2"
    tags = json.loads(_run(["skopeo", "list-tags", "--tls-verify=false", f"docker://{repo}"]))
    assert sorted(tags["Tags"]) == sorted([entry_tag("sync-dependencies", "c" * 64),
                                           entry_tag("install-project", "d" * 64)])


# -- builds that share the cache: two runners, each with its own store, uv cache and layer
# cache. Runner A is the test run's default store (the flask recipe's bases are there once
# the session's flask build ran); runner B starts empty and gets everything from the cache.

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN_ID = secrets.token_hex(4)
PROJECT_STEPS = {"install-project", "project-layer", "add-project"}
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _flask_copy(root: Path) -> Path:
    """recipes/flask and its recipe under `root`; its keys are this run's own (a
    builder.env value), so runner A makes every step but the bases and exports them."""
    shutil.copytree(REPO_ROOT / "recipes" / "flask", root / "flask",
                    ignore=shutil.ignore_patterns(".venv", "__pycache__", "*.pyc"))
    recipe = yaml.safe_load((REPO_ROOT / "recipes" / "flask.yaml").read_text())
    recipe["image"] = f"localhost/itest-regwire-{RUN_ID}:1"
    recipe["builder"]["env"] = {"UVBUILD_ITEST_REGWIRE": RUN_ID}
    path = root / "flask.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


@dataclass(frozen=True)
class Runners:
    recipe: Path
    repo: str
    first_id: str  # runner A's image
    b_env: dict[str, str]  # runner B: its store, and a cache home of its own (uv, layers)


def _statuses(document: dict[str, Any]) -> dict[str, str]:
    return {str(s["step"]): str(s["status"]) for s in document["steps"]}


def _retag(api: str, source: str, dest: str) -> None:
    """Tag `source`'s manifest as `dest` too, byte for byte (the registry API: GET, PUT)."""
    oci = "application/vnd.oci.image.manifest.v1+json"
    asked = urllib.request.Request(f"{api}/manifests/{source}", headers={"Accept": oci})
    with _NO_PROXY.open(asked, timeout=30) as answer:
        manifest = answer.read()
    put = urllib.request.Request(f"{api}/manifests/{dest}", data=manifest, method="PUT",
                                 headers={"Content-Type": oci})
    with _NO_PROXY.open(put, timeout=30) as answer:
        assert answer.status == 201


def _builder_commands(stderr: str) -> list[str]:
    """The buildah commands that make or use a working container, from --debug's echo."""
    return [line for line in stderr.splitlines()
            if re.search(r"\+ buildah\b.* (from|run|commit) ", line)]


@pytest.fixture(scope="module")
def runners(registry: str, recipe_build: Callable[[str], Any], tmp_path_factory:
            pytest.TempPathFactory, run_uvbuild: Callable[..., subprocess.CompletedProcess[str]],
            ) -> Iterator[Runners]:
    """Runner A built the recipe and exported every step (--cache-to)."""
    assert recipe_build("flask").run.returncode == 0  # its bases are in A's store now
    root = tmp_path_factory.mktemp("regwire")
    recipe = _flask_copy(root)
    repo = f"{registry}/uvbuild-test/builds"
    built = run_uvbuild(["build", "--json", recipe, "--cache-to", repo, "--no-tls-verify"])
    document = json.loads(built.stdout)
    # Every step the build used, made or found here (prepare-builder and the runtime's
    # layers may be, from the session's flask build: this run's value is in the keys of
    # sync-dependencies and what follows it alone), is exported.
    used = _statuses(document)
    assert "pulled" not in used.values() and "sync-dependencies" in used
    _, plan = plan_recipe(recipe, tag=None, engine=None, pull=False)
    tags = json.loads(_run(["skopeo", "list-tags", "--tls-verify=false", f"docker://{repo}"]))
    # (install-project keeps no image: project-layer's entry is its layer)
    assert sorted(tags["Tags"]) == sorted(entry_tag(name, plan.step(name).key) for name in used
                                          if name != "install-project")
    b_store = root / "b" / "storage.conf"
    b_store.parent.mkdir()
    b_store.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{root}/b/graph"\n'
                       f'runroot = "{root}/b/run"\n')
    yield Runners(recipe=recipe, repo=repo, first_id=str(document["id"]), b_env={
        "CONTAINERS_STORAGE_CONF": str(b_store), "XDG_CACHE_HOME": str(root / "b" / "xdg")})
    subprocess.run(["buildah", "rmi", "--all", "--force"], capture_output=True, check=False,
                   env={**os.environ, "CONTAINERS_STORAGE_CONF": str(b_store)})
    subprocess.run(["buildah", "rmi", document["image"]], capture_output=True, check=False)


def test_a_second_runner_pulls_the_final_image_and_runs_no_builder_command(
        runners: Runners, registry_log: Path,
        run_uvbuild: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    before = len(_uploads(registry_log, runners.repo))
    # A cache on a port nothing listens on is asked first: one warning, and on.
    down = "127.0.0.1:9/uvbuild-test/down"
    pulled = run_uvbuild(["--debug", "build", "--json", runners.recipe, "--cache-from", down,
                          "--cache-from", runners.repo, "--cache-to", runners.repo,
                          "--no-tls-verify"], env=runners.b_env)
    document = json.loads(pulled.stdout)
    assert _statuses(document) == {"add-project": "pulled"}
    assert document["id"] == runners.first_id  # the same image ID in both stores
    assert _builder_commands(pulled.stderr) == []
    warnings = [line for line in pulled.stderr.splitlines() if "uvbuild: warning" in line]
    assert len(warnings) == 1 and "127.0.0.1:9" in warnings[0], warnings
    # The second export found its entry there: no blob uploaded.
    assert _uploads(registry_log, runners.repo)[before:] == []


def test_after_a_code_edit_the_second_runner_runs_only_the_project_steps(
        runners: Runners, run_uvbuild: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    _, before = plan_recipe(runners.recipe, tag=None, engine=None, pull=False)
    app = runners.recipe.parent / "flask" / "app.py"
    app.write_text(app.read_text() + "\n# edited on runner B\n")
    _, edited = plan_recipe(runners.recipe, tag=None, engine=None, pull=False)
    # A tampered entry: the edited build's final tag names runner A's final image, whose
    # manifest records the key it was made for.
    _retag(f"http://{runners.repo.partition('/')[0]}/v2/{runners.repo.partition('/')[2]}",
           entry_tag("add-project", before.final.key), entry_tag("add-project", edited.final.key))
    built = run_uvbuild(["build", "--json", runners.recipe, "--cache-from", runners.repo,
                         "--no-tls-verify"], env=runners.b_env)
    statuses = _statuses(json.loads(built.stdout))
    assert {name for name, status in statuses.items() if status == "built"} == PROJECT_STEPS
    assert {name for name, status in statuses.items() if status == "pulled"} >= {
        "sync-dependencies", "dependencies-layer", "prepare-runtime"}
    assert "builder-base" not in statuses and "prepare-builder" not in statuses
    warnings = [line for line in built.stderr.splitlines() if "uvbuild: warning" in line]
    assert len(warnings) == 1 and "records the key" in warnings[0], warnings
