"""The executor against a fake engine: what runs, what is reused, what is left behind."""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
import tarfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import pytest
from fake_engine import (
    LAYERTAR,
    MKUSER,
    PY312,
    PYTHONCHECK,
    VENVDELTA,
    Call,
    FakeEngine,
    Python,
    call_key,
    commands_of,
    purpose,
)

from uvbuild.build import executor, liveness
from uvbuild.build.assemble import UNTESTED_REPO, staged_ref, untested_ref
from uvbuild.build.builder_steps import (
    LAYER_OUT,
    UV_CACHE_TARGET,
    UV_TARGET,
    deps_layer_args,
    project_layer_args,
)
from uvbuild.build.context import BuildSettings
from uvbuild.build.executor import Build, BuildResult
from uvbuild.build.liveness import OWNER_VAR, Claim, Places
from uvbuild.commands.cache import prune
from uvbuild.engine import cmd
from uvbuild.engine.buildah import Buildah, Mount
from uvbuild.engine.cmd import Result
from uvbuild.errors import ProjectError, StepFailed
from uvbuild.output.progress import Reporter
from uvbuild.plan.planner import CACHE_REPO, Plan, PlanInputs, make_plan
from uvbuild.project.archive import ProjectTar
from uvbuild.recipe.loader import load_recipe_text
from uvbuild.recipe.model import Recipe

BASE = "docker.io/library/python:3.13-slim"
IMAGE = "localhost/app:1.0"
SECRET = "hunter2-do-not-store"

RECIPE = f"""\
version: 1
image: {IMAGE}
builder:
  from: {BASE}
  packages: [build-essential]
  env: {{PIP_NO_COLOR: "1"}}
  secrets: [UV_INDEX_PASSWORD]
  run:
    - make assets
runtime:
  from: {BASE}
  packages: [libpq5]
  copy:
    - {{from: /src/assets, to: /app/assets}}
  env: {{LOG_LEVEL: info}}
  entrypoint: [app]
  test:
    - app --self-test
"""

PROJECT_FILES = {
    "pyproject.toml": "[project]\nname = 'app'\nversion = '1.0'\n",
    "uv.lock": "version = 1\n",
    "src/app/__init__.py": "def main() -> None: ...\n",
}

# Every step a first build runs, as results list them (in the plan's order). The bases
# are in local storage (as after a first bootstrap): found there, they are `cached`.
RUN_ORDER = [
    "prepare-builder", "sync-dependencies", "install-project",
    "dependencies-layer", "project-layer", "prepare-runtime", "add-project",
]
BASES = ["builder-base", "runtime-base"]
# The steps a first build commits: builder packages (the runtime's layers are tars, the
# final image and sync-dependencies' image are assembled from them and imported, and
# install-project keeps no image: its layer is what ships).
COMMITTED = ["prepare-builder"]
IMPORTED = ["sync-dependencies"]  # besides the final image
# Engine calls that change storage or run something (the rest only look).
CHANGING_METHODS = ("from_image", "from_scratch", "run", "copy", "add_archive", "configure",
                    "commit", "rm", "tag", "rmi", "pull", "push")


# -- helpers --------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    for rel, text in PROJECT_FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def fresh_engine() -> FakeEngine:
    """Local storage holding the base image, nothing else."""
    engine = FakeEngine()
    engine.add_image(BASE)
    return engine


@pytest.fixture
def engine() -> FakeEngine:
    return fresh_engine()


def recipe_of(project: Path, text: str = RECIPE) -> Recipe:
    return load_recipe_text(text, project / "uvbuild.yaml")


def plan_of(project: Path, text: str = RECIPE, **changes: Any) -> Plan:
    # The tars the builder steps unpack, as inputs.gather plans them for a build (the
    # digests in the keys are made up: tests change them to stand for an edit).
    manifests, sources = ("pyproject.toml", "uv.lock"), tuple(sorted(PROJECT_FILES))
    tars = {name: ProjectTar.plan(name, project, files, timestamp=1_700_000_000)
            for name, files in (("manifests", manifests), ("sources", sources))}
    inputs = PlanInputs(
        image=IMAGE, uv_version="0.7.3", builder_base_id="base-id", runtime_base_id="base-id",
        project_root=str(project), manifest_files=manifests,
        manifest_digest="sha256:" + "1" * 64, source_files=sources,
        source_digest="sha256:" + "2" * 64, is_package=True, is_workspace=False,
        timestamp=1_700_000_000, manifests_tar=tars["manifests"], sources_tar=tars["sources"])
    return make_plan(recipe_of(project, text), dataclasses.replace(inputs, **changes))


def settings_of(tmp_path: Path, *, no_cache: bool = False,
                verbose: bool = False) -> BuildSettings:
    return BuildSettings(
        uv_binary="/opt/uv/bin/uv", uv_cache=tmp_path / "uv-cache",
        network_env={"HTTPS_PROXY": "http://proxy:3128"},
        network_mounts=(Mount("/etc/ssl/certs/ca.pem", "/run/uvbuild/ca.pem"),),
        secrets={"UV_INDEX_PASSWORD": SECRET}, no_cache=no_cache, verbose=verbose,
        layer_cache=tmp_path / "layers")


def build(engine: FakeEngine, plan: Plan, tmp_path: Path, *, no_cache: bool = False,
          verbose: bool = False) -> BuildResult:
    reporter = Reporter(style="human", stream=io.StringIO())
    settings = settings_of(tmp_path, no_cache=no_cache, verbose=verbose)
    return Build(cast(Buildah, engine), plan, settings, reporter).run()


def ran(result: BuildResult) -> list[str]:
    return [str(r["step"]) for r in result.steps if not r["cached"]]


def calls_since(engine: FakeEngine, mark: int) -> list[Call]:
    return engine.calls[mark:]


def the_tests_run(engine: FakeEngine) -> Call:
    """The run of runtime.test (in a container of the assembled image)."""
    runs = [c for c in engine.called("run") if commands_of(c) == [("app", "--self-test")]]
    assert len(runs) == 1
    return runs[0]


# -- a first build --------------------------------------------------------------------------


def test_first_build_runs_every_step_needs_first(engine: FakeEngine, project: Path,
                                                tmp_path: Path) -> None:
    plan = plan_of(project)
    result = build(engine, plan, tmp_path)

    assert ran(result) == RUN_ORDER
    assert [r["status"] for r in result.steps if r["step"] in BASES] == ["cached", "cached"]
    done = {"builder-base", "runtime-base"}  # no commit: the base images themselves
    for name in engine.commits():
        assert set(plan.step(name).needs) <= done, name
        done.add(name)
    assert engine.commits() == COMMITTED
    assert engine.called("pull") == []  # the base was already in local storage


def test_first_build_tags_every_cache_ref_then_the_image(engine: FakeEngine, project: Path,
                                                        tmp_path: Path) -> None:
    plan = plan_of(project)
    result = build(engine, plan, tmp_path)

    # The final image is imported under a name of its own and gets its cache name once
    # its tests pass (assemble.py), with the output name. (sync-dependencies' image is
    # imported by its cache name in the background, while the install runs: no tag.)
    assert engine.tags()[-2:] == [plan.final.cache_ref, IMAGE]
    assert sorted(engine.tags()[:-2]) == sorted(
        plan.step(name).cache_ref for name in COMMITTED)
    # Between them, the base's new layers up to the dependencies' (staged while the
    # project installs), whose name is gone at the end.
    assert engine.imported[-1] == result.image_id and len(engine.imported) == 3
    imported = [c.args[1] for c in engine.called("import_layout")]
    assert sorted(imported[:-1]) == sorted(
        [*(plan.step(name).cache_ref for name in IMPORTED), staged_ref(plan.final)])
    assert imported[-1] == untested_ref(plan.final)
    assert untested_ref(plan.final) not in engine.names
    assert staged_ref(plan.final) not in engine.names
    assert len([i for i in engine.imported if i in engine.store]) == 2  # not the staged one
    assert all(plan.step(name).cache_ref.startswith(CACHE_REPO + "/") for name in COMMITTED)
    assert engine.names[IMAGE] == result.image_id
    assert engine.names[plan.final.cache_ref] == result.image_id
    assert result.image == IMAGE


def test_first_build_leaves_no_working_container(engine: FakeEngine, project: Path,
                                                tmp_path: Path) -> None:
    build(engine, plan_of(project), tmp_path)

    assert engine.live == {}
    made = [c.args[1] for c in engine.called("from_image")]
    # One per step that runs commands (the runtime's layers, builder packages, sync;
    # the install goes on in the sync's), and one of the assembled image where its
    # tests run.
    assert len(made) == len(set(made)) == 4
    assert purpose(made[-1]) == "add-project-test"
    assert {name for c in engine.called("rm") for name in c.args} == set(made)
    # The sync's container (where the install went on) is removed (retired) in the
    # background, only once the final image is imported and its test container made:
    # a removal holds the store's lock, which they need. So is the staged name.
    # (The runtime's, with runtime.packages, is removed as its run ends.)
    final_import = engine.calls.index(engine.called("import_layout")[-1])
    test_container = engine.calls.index(engine.called("from_image")[-1])
    assert final_import < test_container
    retired = [n for n, c in enumerate(engine.calls) if c.method == "rm"
               and "deps" in {purpose(name) for name in c.args}]
    assert len(retired) == 1 and retired[0] > test_container
    unstaged = [n for n, c in enumerate(engine.calls)
                if c.method == "rmi" and any("-staged" in str(a) for a in c.args)]
    assert unstaged and min(unstaged) > test_container


def test_commits_use_the_plan_timestamp(engine: FakeEngine, project: Path,
                                        tmp_path: Path) -> None:
    build(engine, plan_of(project), tmp_path)

    assert {c.args[1].timestamp for c in engine.called("commit")} == {1_700_000_000}


def test_dependencies_see_only_manifests_and_the_project_sees_its_sources(
        engine: FakeEngine, project: Path, tmp_path: Path) -> None:
    build(engine, plan_of(project), tmp_path)

    added = [(a.container.rsplit("-", 1)[-1], a.dest, a.names) for a in engine.archives]
    assert added == [
        ("deps", "/src", ("pyproject.toml", "uv.lock")),
        # (the install goes on in the sync's container)
        ("deps", "/src", ("src", "src/app", "pyproject.toml", "src/app/__init__.py",
                          "uv.lock")),
    ]  # nothing else: the runtime image is assembled from layer tars, not filled


def test_uv_sync_runs_locked_without_then_with_the_project(engine: FakeEngine, project: Path,
                                                          tmp_path: Path) -> None:
    build(engine, plan_of(project), tmp_path)

    syncs = [argv for argv in engine.runs() if argv[:2] == (UV_TARGET, "sync")]
    common = (UV_TARGET, "sync", "--locked", "--no-editable", "--no-default-groups",
              "--python", "python3")
    assert syncs == [(*common, "--no-install-workspace", "--no-install-local"),
                     (*common, "--offline")]


PROJECT_SYNC = (UV_TARGET, "sync", "--locked", "--no-editable", "--no-default-groups",
                "--python", "python3")
BACKEND_NOT_CACHED = (
    "error: Failed to build `app @ file:///src`\n"
    "  cause: Because hatchling was not found in the cache and you require hatchling>=1.25, "
    "we can conclude that your requirements are unsatisfiable.\n"
    "hint: Packages were unavailable because the network was disabled.\n")


def project_syncs(engine: FakeEngine) -> list[tuple[str, ...]]:
    return [argv for argv in engine.runs()
            if argv[:2] == (UV_TARGET, "sync") and "--no-install-workspace" not in argv]


def test_a_build_backend_missing_from_uvs_cache_is_fetched_online(
        engine: FakeEngine, project: Path, tmp_path: Path) -> None:
    engine.fail_run(lambda argv: "--offline" in argv, stderr=BACKEND_NOT_CACHED)

    result = build(engine, plan_of(project), tmp_path)

    assert project_syncs(engine) == [(*PROJECT_SYNC, "--offline"), PROJECT_SYNC]
    assert engine.names[IMAGE] == result.image_id
    assert engine.live == {}


def test_a_project_that_fails_to_build_online_too_reports_the_online_error(
        engine: FakeEngine, project: Path, tmp_path: Path) -> None:
    engine.fail_run(lambda argv: argv[:2] == (UV_TARGET, "sync")
                    and "--no-install-workspace" not in argv,
                    stderr="error: Failed to build `app @ file:///src`\n  SyntaxError\n")

    with pytest.raises(StepFailed) as raised:
        build(engine, plan_of(project), tmp_path)

    assert project_syncs(engine) == [(*PROJECT_SYNC, "--offline"), PROJECT_SYNC]
    assert raised.value.message.startswith("uv sync of the project failed in the builder: ")
    assert "--offline" not in raised.value.message
    assert engine.live == {}


def test_an_outdated_lock_is_not_tried_again_online(engine: FakeEngine, project: Path,
                                                    tmp_path: Path) -> None:
    sync_ran = build(engine, plan_of(project), tmp_path)  # dependencies cached
    mark = len(engine.calls)
    engine.fail_run(lambda argv: "--offline" in argv, returncode=2, stderr=STALE_LOCK)

    with pytest.raises(ProjectError):  # a code change
        build(engine, plan_of(project, source_digest="sha256:" + "3" * 64), tmp_path)

    runs = [argv for c in calls_since(engine, mark) if c.method == "run"
            for argv in commands_of(c)]
    assert [argv for argv in runs if argv[:2] == (UV_TARGET, "sync")] == [
        (*PROJECT_SYNC, "--offline")]
    assert engine.names[IMAGE] == sync_ran.image_id


def test_no_cache_builds_the_project_online(engine: FakeEngine, project: Path,
                                            tmp_path: Path) -> None:
    build(engine, plan_of(project), tmp_path, no_cache=True)

    assert project_syncs(engine) == [PROJECT_SYNC]


# -- the project layer and runtime.copy ---------------------------------------------------

TWO_COPIES = RECIPE.replace("    - {from: /src/assets, to: /app/assets}\n",
                            "    - {from: /src/assets, to: /app/assets}\n"
                            "    - {from: /src/docs, to: /srv/docs}\n")


def test_every_copy_is_staged_and_written_with_the_project_layer(
        engine: FakeEngine, project: Path, tmp_path: Path) -> None:
    build(engine, plan_of(project, TWO_COPIES), tmp_path)

    stage = next(argv for argv in engine.runs() if VENVDELTA in argv and "stage" in argv)
    assert [stage[i:i + 4] for i, word in enumerate(stage) if word == "--copy"] == [
        ("--copy", "0", "/src/assets", "/app/assets"), ("--copy", "1", "/src/docs", "/srv/docs")]
    # The layer is written in the same batch: the staged /app, and what lands elsewhere.
    project_batch = next(c for c in engine.called("run") if any(
        VENVDELTA in words and "stage" in words for words in commands_of(c)))
    written = [words for words in commands_of(project_batch) if LAYERTAR in words]
    assert [w[w.index(LAYERTAR) + 1:] for w in written] == [project_layer_args(LAYER_OUT)]
    # Nothing is copied into a container: the image is assembled from the layer tars.
    assert engine.called("copy", "add_archive", "commit")[-1].method == "commit"
    assert not [c for c in engine.calls if c.method in ("copy", "add_archive")]


@pytest.mark.parametrize(("layer", "builder", "recipe", "layer_args", "rerun"), [
    # install-project keeps no image: it runs again, from the sync's image
    ("project-layer", "sync-dependencies", TWO_COPIES, project_layer_args,
     ["install-project"]),
    ("dependencies-layer", "sync-dependencies", RECIPE, deps_layer_args, []),
])
def test_a_layer_gone_from_the_layer_cache_is_written_from_its_builder_image(
        engine: FakeEngine, project: Path, tmp_path: Path, layer: str, builder: str,
        recipe: str, layer_args: Callable[[str], tuple[str, ...]], rerun: list[str]) -> None:
    plan = plan_of(project, recipe)
    first = build(engine, plan, tmp_path)
    del engine.names[plan.final.cache_ref]  # only the final step and the layer run again
    for entry in (tmp_path / "layers").glob(f"{layer}-*.json"):
        entry.unlink()
    mark = len(engine.calls)

    again = build(engine, plan, tmp_path)

    assert ran(again) == [*rerun, layer, "add-project"]
    made = [c.args[0] for c in calls_since(engine, mark) if c.method == "from_image"]
    assert made[0] == plan.step(builder).cache_ref
    writes = [words for c in calls_since(engine, mark) if c.method == "run"
              for words in commands_of(c) if LAYERTAR in words]
    assert [w[w.index(LAYERTAR) + 1:] for w in writes] == [layer_args(LAYER_OUT)]
    # The same layers, the same image (a venv's interpreter then comes from the sync
    # image's label).
    assert again.image_id == first.image_id
    assert engine.live == {}
    # Staging is for beside the install: a dependencies layer rewritten from its image
    # while no install runs stages nothing.
    if not rerun:
        assert not [c for c in calls_since(engine, mark) if c.method == "import_layout"
                    and c.args[1] == staged_ref(plan.final)]


def test_a_copy_source_the_builder_lacks_is_named(engine: FakeEngine, project: Path,
                                                  tmp_path: Path) -> None:
    engine.fail_run(lambda argv: VENVDELTA in argv and "stage" in argv, returncode=3,
                    stdout='@@uvbuild value copy_missing {"index": 0, "from": "/src/assets"}\n')

    with pytest.raises(StepFailed) as raised:
        build(engine, plan_of(project), tmp_path)

    assert raised.value.message == (
        "runtime.copy[0]: /src/assets is not in the builder after builder.run")
    assert raised.value.hint == "check the path, or make a builder.run command create it"
    assert engine.commits() == ["prepare-builder"]
    assert engine.live == {}


def test_secrets_reach_builder_commands_only(engine: FakeEngine, project: Path,
                                             tmp_path: Path) -> None:
    build(engine, plan_of(project), tmp_path)

    builder_runs = [c for c in engine.called("run")
                    if any(words[0] == UV_TARGET for words in commands_of(c))]
    # unpack the project files, uv sync, (the dependencies' bytecode), (make assets),
    # venvdelta, the layer's tar (and the sync's builder state, as a layer of its image)
    assert [len(commands_of(c)) for c in builder_runs] == [6, 5]
    assert ("make", "assets") in commands_of(builder_runs[1])
    for call in builder_runs:
        assert call.kwargs["env"]["UV_INDEX_PASSWORD"] == SECRET
        assert call.kwargs["env"]["HTTPS_PROXY"] == "http://proxy:3128"
        assert call.kwargs["env"]["PIP_NO_COLOR"] == "1"
        assert call.kwargs["env"]["SOURCE_DATE_EPOCH"] == "1700000000"
        assert call.kwargs["mounts"][:3] == (
            Mount("/opt/uv/bin/uv", UV_TARGET),
            Mount(str(tmp_path / "uv-cache"), UV_CACHE_TARGET, read_only=False),
            Mount("/etc/ssl/certs/ca.pem", "/run/uvbuild/ca.pem"),
        )
    # Both batches read the project's files from a host folder (written when the build
    # was planned, removed with the run's claim by pipeline.build), and write their
    # layer's tar to another, removed when the build ends.
    # The commands and their environment come in a job folder (the last mount): private,
    # as it holds the secret. The sync also gets a folder for the dependencies' .pyc
    # files (the host's bytecode cache; a build's own here: no bytecode_cache set).
    scratch = [[(m.target, m.read_only) for m in c.kwargs["mounts"][3:]] for c in builder_runs]
    assert scratch == [[("/run/uvbuild/in", True), ("/run/uvbuild/out", False),
                        ("/run/uvbuild/bytecode", False), ("/run/uvbuild/job", True)],
                       [("/run/uvbuild/in", True), ("/run/uvbuild/out", False),
                        ("/run/uvbuild/job", True)]]
    assert not [m for c in builder_runs for m in c.kwargs["mounts"][3:]
                if m.target != "/run/uvbuild/in" and Path(m.host).exists()]
    for call in builder_runs:
        assert call.args[1] == ("/bin/sh", "/run/uvbuild/job/run.sh")
        assert set(call.kwargs["job"].modes.values()) == {0o600, 0o700}
    # Nothing secret on any command line uvbuild gave buildah, nor in what it stored.
    for call in engine.called("run"):
        assert SECRET not in repr(call.args) and "proxy:3128" not in repr(call.args)
    stored = [c for c in engine.calls if c.method in ("commit", "configure", "tag", "copy")]
    assert SECRET not in repr(stored)
    assert not [i for i in engine.store.values() if SECRET in repr(i)]
    assert SECRET not in repr(engine.config_of)
    assert not [p for p in (tmp_path / "layers").rglob("*") if p.is_file()
                and SECRET.encode() in p.read_bytes()]
    test_run = the_tests_run(engine)
    # The tests run as the runtime user: their job is readable, and has no environment.
    assert test_run.kwargs["job"].env is None
    assert set(test_run.kwargs["job"].modes.values()) == {0o644, 0o755}


def test_a_path_in_runtime_env_keeps_the_venv_first(engine: FakeEngine, project: Path,
                                                     tmp_path: Path) -> None:
    text = RECIPE.replace("  env: {LOG_LEVEL: info}",
                          '  env: {LOG_LEVEL: info, PATH: "/opt/tools/bin:/usr/bin:/bin"}')
    result = build(engine, plan_of(project, text), tmp_path)

    env = engine.config_of[result.image_id]["config"]["Env"]
    assert [item for item in env if item.startswith("PATH=")] == [
        "PATH=/app/.venv/bin:/opt/tools/bin:/usr/bin:/bin"]


def test_the_test_runs_as_the_runtime_user_in_the_workdir(engine: FakeEngine, project: Path,
                                                          tmp_path: Path) -> None:
    result = build(engine, plan_of(project), tmp_path)

    test_run = the_tests_run(engine)
    assert (test_run.kwargs["user"], test_run.kwargs["workdir"]) == ("10001:10001", "/app")
    final = engine.image(result.image_id)
    assert final is not None
    assert final.user == "10001:10001"
    assert "PATH=/app/.venv/bin:/usr/local/bin:/usr/bin:/bin" in final.env
    assert "LOG_LEVEL=info" in final.env
    assert final.labels["io.uvbuild.step"] == "add-project"


# -- bases ----------------------------------------------------------------------------------


def test_a_missing_base_is_pulled_once(project: Path, tmp_path: Path) -> None:
    engine = FakeEngine()
    engine.remote[BASE] = Python()
    build(engine, plan_of(project), tmp_path)

    assert [c.args for c in engine.called("pull")] == [(BASE,)]


def test_without_builder_packages_the_base_is_the_prepared_builder(
        engine: FakeEngine, project: Path, tmp_path: Path) -> None:
    plan = plan_of(project, RECIPE.replace("  packages: [build-essential]\n", ""))
    build(engine, plan, tmp_path)

    assert sorted(engine.commits()) == sorted(COMMITTED[1:])
    assert engine.names[plan.step("prepare-builder").cache_ref] == engine.names[BASE]


def test_a_stored_bootstrap_base_is_used_without_bootstrapping(
        engine: FakeEngine, project: Path, tmp_path: Path) -> None:
    text = RECIPE.replace(f"runtime:\n  from: {BASE}", "runtime:\n  from: {bootstrap: debian}")
    plan = plan_of(project, text)
    base_id = engine.add_image(plan.step("runtime-base").cache_ref)
    build(engine, plan, tmp_path)  # mmdebstrap would trip the no-subprocess guard

    assert engine.called("from_scratch") == []
    runtime_from = [c for c in engine.called("from_image") if c.args[1].endswith("-runtime")]
    # Containers are made from names (see Step.cache_ref); the name is that base's.
    assert [engine.names[c.args[0]] for c in runtime_from] == [base_id]


BOOTSTRAP_RECIPE = RECIPE.replace(f"runtime:\n  from: {BASE}",
                                  "runtime:\n  from: {bootstrap: debian}")


@pytest.fixture
def mmdebstrap(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[str, ...], dict[str, str]]]:
    """Stand in for mmdebstrap: write a tiny root tarball where it was asked to, record the call."""
    calls: list[tuple[tuple[str, ...], dict[str, str]]] = []

    def run(argv: Sequence[str], *, env: Mapping[str, str] | None = None,
            drop_env: Sequence[str] = (), **_: object) -> Result:
        assert argv[0] == "mmdebstrap"
        # What mmdebstrap inherits: uvbuild's environment, less drop_env, plus env.
        inherited = {k: v for k, v in os.environ.items() if k not in drop_env}
        calls.append((tuple(argv), {**inherited, **(env or {})}))
        with tarfile.open(argv[-2], "w") as tar:
            tar.addfile(tarfile.TarInfo("etc"))
        return Result(tuple(argv), 0, "", "")

    monkeypatch.setattr(cmd, "run", run)  # the only host command a build runs itself
    return calls


def bootstrap_engine() -> FakeEngine:
    engine = fresh_engine()
    engine.scratch_python = Python()
    return engine


def test_a_bootstrap_gets_none_of_the_hosts_python_variables(
        mmdebstrap: list[tuple[tuple[str, ...], dict[str, str]]], project: Path,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PYTHONDONTWRITEBYTECODE on the host left py3compile's bytecode out of the root
    (another image ID than a CI runner's, measured: bd89481ebfd9 against cefa933ce123)."""
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setenv("PYTHONHASHSEED", "7")
    build(bootstrap_engine(), plan_of(project, BOOTSTRAP_RECIPE), tmp_path)

    assert len(mmdebstrap) == 1
    assert not [name for name in mmdebstrap[0][1] if name.startswith("PYTHON")]
    assert mmdebstrap[0][1]["SOURCE_DATE_EPOCH"] == "1700000000"


def test_a_missing_bootstrap_base_is_made_and_named(
        mmdebstrap: list[tuple[tuple[str, ...], dict[str, str]]], project: Path,
        tmp_path: Path) -> None:
    engine = bootstrap_engine()
    plan = plan_of(project, BOOTSTRAP_RECIPE)
    result = build(engine, plan, tmp_path)

    assert len(mmdebstrap) == 1
    assert mmdebstrap[0][1]["SOURCE_DATE_EPOCH"] == "1700000000"
    # Its processes carry the folder it writes in, which is gone once the build ends.
    folder = Path(mmdebstrap[0][1][OWNER_VAR])
    assert Path(mmdebstrap[0][0][-2]).parent == folder and not folder.exists()
    scratch = [c.args[0] for c in engine.called("from_scratch")]
    assert len(scratch) == 1 and scratch[0].endswith("-bootstrap")
    assert [(a.container, a.names) for a in engine.archives if a.dest == "/"] == [
        (scratch[0], ("etc",))]
    base_id = engine.names[plan.step("runtime-base").cache_ref]
    assert engine.store[base_id].labels == {"io.uvbuild.bootstrap": "debian/bookworm"}
    runtime_from = [c for c in engine.called("from_image") if c.args[1].endswith("-runtime")]
    # Containers are made from names (see Step.cache_ref); the name is that base's.
    assert [engine.names[c.args[0]] for c in runtime_from] == [base_id]
    assert engine.names[IMAGE] == result.image_id
    assert engine.live == {}


SLIM_RECIPE = RECIPE.replace(f"runtime:\n  from: {BASE}",
                             "runtime:\n  from: {bootstrap: debian, packages: [python3], "
                             "variant: slim}")


def test_a_slim_runtime_gets_its_packages_from_the_bootstrap(
        mmdebstrap: list[tuple[tuple[str, ...], dict[str, str]]], project: Path,
        tmp_path: Path) -> None:
    engine = bootstrap_engine()
    plan = plan_of(project, SLIM_RECIPE)
    build(engine, plan, tmp_path)

    (argv, _), = mmdebstrap
    assert "--variant=essential" in argv
    assert "--include=ca-certificates,libpq5,python3,tzdata,usr-is-merged" in argv
    base_id = engine.names[plan.step("runtime-base").cache_ref]
    assert engine.store[base_id].labels == {"io.uvbuild.bootstrap": "debian/bookworm/slim"}
    # No package manager runs for the runtime: libpq5 came with the bootstrap.
    assert [argv for argv in engine.runs() if "libpq5" in argv] == []


# -- cache ----------------------------------------------------------------------------------


def test_an_unchanged_rebuild_asks_the_store_three_questions_and_changes_nothing(
        engine: FakeEngine, project: Path, tmp_path: Path) -> None:
    """Each question is a buildah start-up: the image listing (the cache, and whether the
    sweep has unnamed images to look at), the final image by its cache name (its size,
    and whether it has the output name already) and the containers (the sweep)."""
    plan = plan_of(project)
    first = build(engine, plan, tmp_path)
    mark = len(engine.calls)
    second = build(engine, plan, tmp_path)

    assert sorted(c.method for c in calls_since(engine, mark)) == [
        "containers", "image", "image_names"]
    assert second.image_id == first.image_id and second.size == first.size
    assert second.steps == [{"step": "add-project", "status": "cached", "cached": True,
                             "seconds": 0.0}]


def test_an_unchanged_rebuild_names_the_image_again_if_its_name_has_moved(
        engine: FakeEngine, project: Path, tmp_path: Path) -> None:
    plan = plan_of(project)
    first = build(engine, plan, tmp_path)
    engine.add_image(IMAGE)  # the output name now names another image
    mark = len(engine.calls)
    second = build(engine, plan, tmp_path)

    changes = [c for c in calls_since(engine, mark) if c.method in CHANGING_METHODS]
    assert changes == [Call("tag", (first.image_id, IMAGE))]
    assert engine.names[IMAGE] == second.image_id == first.image_id
    assert second.steps == [{"step": "add-project", "status": "cached", "cached": True,
                             "seconds": 0.0}]


def test_a_source_change_runs_only_the_project_steps(engine: FakeEngine, project: Path,
                                                    tmp_path: Path) -> None:
    build(engine, plan_of(project), tmp_path)
    mark = len(engine.committed_steps)
    changed = plan_of(project, source_digest="sha256:" + "3" * 64)
    result = build(engine, changed, tmp_path)

    # One new layer (the project's); the runtime's layers and the dependencies' are kept.
    assert ran(result) == ["install-project", "project-layer", "add-project"]
    assert [str(r["step"]) for r in result.steps if r["cached"]] == [
        "sync-dependencies", "dependencies-layer", "runtime-base", "prepare-runtime"]
    assert engine.committed_steps[mark:] == []  # (the install keeps no image)
    assert engine.names[IMAGE] == result.image_id


def staged_layers(engine: FakeEngine, plan: Plan, since: int = 0) -> list[list[str]]:
    """The layer digests of each staged import (assemble.stage), from import `since` on."""
    return [layers for name, layers in engine.imported_layers[since:]
            if name == staged_ref(plan.final)]


def is_the_install(call: Call) -> bool:
    """The install's run: the batch with the project's `uv sync`."""
    return call.method == "run" and any(
        words[:2] == (UV_TARGET, "sync") and "--no-install-workspace" not in words
        for words in commands_of(call))


def hold_the_install_until_both_imports(engine: FakeEngine, plan: Plan) -> list[bool]:
    """Hold the install's run (once it has started, its start file made) until the sync
    image's import and the staged import have begun (10 s at most); the list gets
    whether they did while it was held."""
    both = threading.Event()
    wanted = {plan.step("sync-dependencies").cache_ref, staged_ref(plan.final)}
    seen: set[str] = set()
    held: list[bool] = []

    def on_call(call: Call) -> None:
        if call.method == "import_layout":
            seen.add(call.args[1])
            if wanted <= seen:
                both.set()
        elif is_the_install(call):
            held.append(both.wait(timeout=10))

    engine.on_call = on_call
    return held


def test_the_dependencies_are_imported_while_the_project_installs(
        engine: FakeEngine, project: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A first build (and a lock change) imports the base's new layers below the
    project's as soon as the dependencies layer is written: the final import then
    writes only the project layer into the store. A code change or a base refresh,
    whose dependencies layer is kept, stages nothing."""
    # Released by the install's start file, not by the wait's time limit.
    monkeypatch.setattr(executor, "START_WAIT", 60.0)
    plan = plan_of(project)
    imported = hold_the_install_until_both_imports(engine, plan)
    result = build(engine, plan, tmp_path)

    assert imported == [True]  # both, while the install's run had started and not ended
    final = [digest for digest, _ in engine.store[result.image_id].layers]
    assert staged_layers(engine, plan) == [final[:-1]]  # all but the project's
    installed = next(n for n, c in enumerate(engine.calls) if is_the_install(c))
    # Both background imports wait for the install's run to start (the store's lock).
    background = [n for n, c in enumerate(engine.calls) if c.method == "import_layout"][:2]
    assert min(background) > installed
    assert not any("-staged" in name for name in engine.names)

    mark = len(engine.imported_layers)
    changed = plan_of(project, source_digest="sha256:" + "3" * 64)
    build(engine, changed, tmp_path)
    refreshed = plan_of(project, runtime_base_id="refreshed-base-id")
    build(engine, refreshed, tmp_path)
    assert staged_layers(engine, changed, mark) == staged_layers(engine, refreshed, mark) == []


def is_the_sync(call: Call) -> bool:
    """The sync's run: the batch with the dependencies' `uv sync`."""
    return call.method == "run" and any(
        words[:2] == (UV_TARGET, "sync") and "--no-install-workspace" in words
        for words in commands_of(call))


def wait_for_the_held_run_during_the_sync(engine: FakeEngine) -> list[bool]:
    """Hold the sync's run (its batch started: its start file made) until a run is
    held at its gate (10 s at most); the list gets whether one was."""
    held: list[bool] = []

    def on_call(call: Call) -> None:
        if is_the_sync(call):
            until = time.monotonic() + 10
            while not engine.held and time.monotonic() < until:
                time.sleep(0.01)
            held.append(bool(engine.held))

    engine.on_call = on_call
    return held


def test_the_install_goes_on_in_a_run_started_while_the_sync_ran(
        engine: FakeEngine, project: Path, tmp_path: Path) -> None:
    """As root, the install's `buildah run` starts (held at its gate) once the sync's
    batch runs, in the same container: its start-up is not on the way to the image.
    Rootless, where two runs of one container cannot overlap, it starts afterwards."""
    plan = plan_of(project)
    held_during_sync = wait_for_the_held_run_during_the_sync(engine)
    build(engine, plan, tmp_path)

    assert held_during_sync == [True]
    sync = next(c for c in engine.calls if is_the_sync(c))
    install = next(c for c in engine.calls if is_the_install(c))
    assert install.kwargs["gated"] and engine.held == [sync.args[0]]
    assert install.args[0] == sync.args[0]  # the sync's container
    # Its environment is the install's (uv compiles only what the project adds).
    assert install.kwargs["env"]["UV_COMPILE_BYTECODE"] == "0"
    assert engine.live == {}

    rootless = fresh_engine()
    rootless.overlapping = False
    build(rootless, plan_of(project), tmp_path / "rootless")
    install = next(c for c in rootless.calls if is_the_install(c))
    assert not install.kwargs["gated"] and rootless.held == []


def test_a_failed_sync_stops_the_run_held_for_the_install(engine: FakeEngine, project: Path,
                                                         tmp_path: Path) -> None:
    engine.fail_run(lambda argv: argv[:2] == (UV_TARGET, "sync")
                    and "--no-install-workspace" in argv, stderr="error: No solution found\n")
    held = wait_for_the_held_run_during_the_sync(engine)

    with pytest.raises(StepFailed):
        build(engine, plan_of(project), tmp_path)

    assert held == [True]  # it had started, held at its gate
    shut = [c for c in engine.calls if c.method == "run" and c.kwargs["gated"]]
    assert len(shut) == 1 and shut[0].kwargs["job"] is None  # its gate shut: ran nothing
    assert engine.live == {}


def test_a_failed_install_leaves_no_staged_image(engine: FakeEngine, project: Path,
                                                tmp_path: Path) -> None:
    engine.fail_run("make assets", stderr="make: *** No rule to make target 'assets'\n")
    plan = plan_of(project)
    imported = hold_the_install_until_both_imports(engine, plan)

    with pytest.raises(StepFailed):
        build(engine, plan, tmp_path)

    assert imported == [True] and staged_layers(engine, plan) != []  # staged, then dropped
    assert not any(name.startswith(UNTESTED_REPO) for name in engine.names)
    assert engine.images_labelled("io.uvbuild.step", "add-project") == []
    assert engine.live == {}


def test_a_runtime_base_refresh_runs_no_builder_step(engine: FakeEngine, project: Path,
                                                      tmp_path: Path) -> None:
    first = build(engine, plan_of(project), tmp_path)
    mark = len(engine.calls)
    refreshed = plan_of(project, runtime_base_id="refreshed-base-id")
    result = build(engine, refreshed, tmp_path)

    assert ran(result) == ["prepare-runtime", "add-project"]
    assert [str(r["step"]) for r in result.steps if r["cached"]] == [
        "dependencies-layer", "project-layer", "runtime-base"]
    builder = [c for c in calls_since(engine, mark) if c.method == "run"
               and any(words[0] == UV_TARGET for words in commands_of(c))]
    assert builder == [] and "commit" not in [c.method for c in calls_since(engine, mark)]
    assert result.image_id != first.image_id


def test_a_refreshed_base_with_the_same_user_files_runs_nothing_in_it(
        engine: FakeEngine, project: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"  # what `mount` shows of every container
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    engine.mount_root = root
    text = RECIPE.replace("  packages: [libpq5]\n", "")
    build(engine, plan_of(project, text), tmp_path)
    mark = len(engine.calls)
    result = build(engine, plan_of(project, text, runtime_base_id="refreshed"), tmp_path)

    assert ran(result) == ["prepare-runtime", "add-project"]
    made = [c for c in calls_since(engine, mark) if c.method == "run"
            and any(MKUSER in words for words in commands_of(c))]
    assert made == []  # the user layer found by the base files it is made of
    assert engine.live == {}

    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\nx:x:1:1::/:/bin/sh\n")
    mark = len(engine.calls)
    build(engine, plan_of(project, text, runtime_base_id="with-a-new-user"), tmp_path)
    assert [c for c in calls_since(engine, mark) if c.method == "run"
            and any(MKUSER in words for words in commands_of(c))] != []


def test_no_cache_runs_every_step_again(engine: FakeEngine, project: Path,
                                        tmp_path: Path) -> None:
    plan = plan_of(project)
    first = build(engine, plan, tmp_path)
    mark = len(engine.calls)
    result = build(engine, plan, tmp_path, no_cache=True)

    assert ran(result) == RUN_ORDER
    methods = [c.method for c in calls_since(engine, mark)]
    assert "images_named" not in methods
    assert methods.count("commit") == len(COMMITTED)
    assert engine.names[IMAGE] == result.image_id
    assert engine.live == {}
    # The same image again, imported under its untested name: that name goes too.
    assert result.image_id == first.image_id
    assert not any(name.startswith(UNTESTED_REPO) for name in engine.names)


# -- failures -------------------------------------------------------------------------------


def test_a_failing_runtime_test_tags_nothing_and_removes_the_image(
        engine: FakeEngine, project: Path, tmp_path: Path) -> None:
    previous = engine.add_image(IMAGE)
    engine.fail_run("app --self-test", stderr="self-test: no database\n")
    plan = plan_of(project)

    with pytest.raises(StepFailed) as raised:
        build(engine, plan, tmp_path)

    assert raised.value.message == (
        "runtime.test[0] `app --self-test` failed: `/bin/sh -c 'app --self-test'` failed with "
        "exit code 1:\n    self-test: no database")
    assert raised.value.hint == f"nothing was tagged; {IMAGE} is as it was before"
    assert engine.names[IMAGE] == previous
    assert plan.final.cache_ref not in engine.names
    assert engine.images_labelled("io.uvbuild.step", "add-project") == []
    assert engine.live == {}


def test_a_test_run_whose_set_up_fails_is_run_once_more(
        engine: FakeEngine, project: Path, tmp_path: Path) -> None:
    """buildah's own set-up of the test's run fails now and then here ("Close_Fd sealing
    memfd copy: Device or resource busy"), before any test ran (the batch made no start
    file): the run is made once more; twice, the build fails and tags nothing."""
    engine.setup_fails = ["-add-project-test"]
    result = build(engine, plan_of(project), tmp_path)
    assert engine.names[IMAGE] == result.image_id
    tests = [c for c in engine.called("run") if c.args[0].endswith("-add-project-test")]
    assert len(tests) == 2 and tests[0].kwargs["job"] is None and tests[1].kwargs["job"]
    assert engine.live == {}


def test_a_test_run_whose_set_up_fails_twice_fails_the_build(
        engine: FakeEngine, project: Path, tmp_path: Path) -> None:
    previous = engine.add_image(IMAGE)
    engine.setup_fails = ["-add-project-test", "-add-project-test"]
    plan = plan_of(project)
    with pytest.raises(StepFailed) as raised:
        build(engine, plan, tmp_path)
    assert raised.value.message.startswith("running runtime.test failed: ")
    assert "Close_Fd sealing memfd copy" in raised.value.message
    assert engine.names[IMAGE] == previous
    assert plan.final.cache_ref not in engine.names
    assert engine.live == {}


def test_a_failing_builder_command_names_its_index(engine: FakeEngine, project: Path,
                                                   tmp_path: Path) -> None:
    engine.fail_run("make assets", returncode=2,
                    stderr="make: *** No rule to make target 'assets'.  Stop.\n")
    plan = plan_of(project)

    with pytest.raises(StepFailed) as raised:
        build(engine, plan, tmp_path)

    assert raised.value.message == (
        "builder.run[0] `make assets` failed: `/bin/sh -c 'make assets'` failed with exit "
        "code 2:\n    make: *** No rule to make target 'assets'.  Stop.")
    assert IMAGE not in engine.names
    assert plan.step("install-project").cache_ref not in engine.names
    assert "install-project" not in engine.commits()
    assert engine.live == {}


STALE_LOCK = ("error: The lockfile at `uv.lock` needs to be updated, but `--locked` was "
              "provided. To update the lockfile, run `uv lock`.\n")


@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
def test_a_stale_lock_says_uv_lock(engine: FakeEngine, project: Path, tmp_path: Path,
                                   verbose: bool) -> None:
    # With --verbose, uv's output streams to the terminal and the Result holds none of it:
    # the advice to run `uv lock` must not depend on reading it.
    engine.fail_run(lambda argv: "--no-install-workspace" in argv, returncode=2,
                    stderr=STALE_LOCK)

    with pytest.raises(ProjectError) as raised:
        build(engine, plan_of(project), tmp_path, verbose=verbose)

    assert raised.value.message.startswith(f"uv.lock in {project} is out of date: ")
    assert raised.value.hint == f"run `uv lock` in {project} and commit uv.lock"
    assert engine.live == {}


def test_a_failing_uv_sync_suggests_builder_packages(engine: FakeEngine, project: Path,
                                                     tmp_path: Path) -> None:
    engine.fail_run(lambda argv: "--no-install-workspace" in argv,
                    stderr="error: Failed to build `psycopg2==2.9.9`\n")

    with pytest.raises(StepFailed) as raised:
        build(engine, plan_of(project), tmp_path)

    assert raised.value.message.startswith(
        "uv sync of the dependencies failed in the builder: "
        "`/bin/sh -c '/run/uvbuild/bin/uv sync --locked ")
    assert raised.value.message.endswith(
        "failed with exit code 1:\n    error: Failed to build `psycopg2==2.9.9`")
    assert raised.value.hint == (
        "a package that builds from source may need builder.packages "
        "(e.g. build-essential, python3-dev, lib*-dev)")


@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
def test_a_base_without_a_package_manager_says_so(engine: FakeEngine, project: Path,
                                                  tmp_path: Path, verbose: bool) -> None:
    engine.lack_package_manager(lambda argv: argv[-1] == "build-essential")

    with pytest.raises(StepFailed) as raised:
        build(engine, plan_of(project), tmp_path, verbose=verbose)

    assert raised.value.message == (
        "builder.packages: the builder base has no supported package manager")
    assert raised.value.hint == (
        "use a Debian, Ubuntu, Alpine or Fedora-family base, or a base that already has "
        "these packages")
    assert set(engine.commits()) <= {"prepare-runtime"}  # the runtime chain may be done
    assert engine.live == {}


def test_a_runtime_base_without_a_package_manager_says_so(engine: FakeEngine, project: Path,
                                                          tmp_path: Path) -> None:
    engine.lack_package_manager(lambda argv: argv[-1] == "libpq5")

    with pytest.raises(StepFailed) as raised:
        build(engine, plan_of(project), tmp_path)

    assert raised.value.message == (
        "runtime.packages: the runtime base has no supported package manager")
    assert raised.value.hint == (
        "use a Debian, Ubuntu, Alpine or Fedora-family base, or a base that already has "
        "these packages")
    assert engine.live == {}


MISSPELT = "build-essentail"


@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
@pytest.mark.parametrize(("stage", "listed"), [("builder", "[build-essential]"),
                                               ("runtime", "[libpq5]")])
def test_a_misspelt_package_shows_apt_s_error_though_apt_fails_with_100(
        engine: FakeEngine, project: Path, tmp_path: Path, stage: str, listed: str,
        verbose: bool) -> None:
    # apt-get's exit status for any failure is 100: it says nothing of the base (a user
    # trial got "no supported package manager" for a misspelt name, and no apt message).
    text = RECIPE.replace(f"  packages: {listed}\n", f"  packages: [{MISSPELT}]\n")
    engine.fail_run(lambda argv: argv[-1] == MISSPELT, returncode=100,
                    stderr=f"E: Unable to locate package {MISSPELT}\n")

    with pytest.raises(StepFailed) as raised:
        build(engine, plan_of(project, text), tmp_path, verbose=verbose)

    assert raised.value.message == (
        f"{stage}.packages: installing {MISSPELT} failed: `packages.sh {MISSPELT}` failed "
        f"with exit code 100:\n    E: Unable to locate package {MISSPELT}")
    assert raised.value.hint == "check the package names for this base's distribution"
    assert engine.live == {}


def test_a_failing_package_install_names_the_stage_and_packages(
        engine: FakeEngine, project: Path, tmp_path: Path) -> None:
    engine.fail_run(lambda argv: argv[-1] == "libpq5",
                    stderr="E: Unable to locate package libpq5\n")

    with pytest.raises(StepFailed) as raised:
        build(engine, plan_of(project), tmp_path)

    assert raised.value.message.startswith("runtime.packages: installing libpq5 failed: `")
    assert raised.value.message.endswith(
        "`packages.sh libpq5` failed with exit code 1:\n    E: Unable to locate package libpq5")
    assert raised.value.hint == "check the package names for this base's distribution"
    assert engine.live == {}


def test_verbose_streams_user_commands_but_reads_probes(engine: FakeEngine, project: Path,
                                                       tmp_path: Path) -> None:
    result = build(engine, plan_of(project), tmp_path, verbose=True)

    streamed = {words[0] if words[0] != "/bin/sh" else words[-1]
                for c in engine.called("run") if c.kwargs["stream"]
                for words in commands_of(c)}
    # venvdelta and the unpacking of the project's files run in the builder's batches;
    # the runtime's layers are made in one batch (its start marks, ":", the packages, the
    # user and the layers' tars)
    assert streamed == {UV_TARGET, "build-essential", "libpq5", "make", "app",
                        "/app/.venv/bin/python", "python3", ":"}
    assert engine.names[IMAGE] == result.image_id


def test_a_python_mismatch_stops_before_the_dependencies_layer(project: Path,
                                                               tmp_path: Path) -> None:
    engine = fresh_engine()
    engine.add_image("docker.io/library/python:3.12-slim", python=PY312)
    text = RECIPE.replace(f"runtime:\n  from: {BASE}",
                          "runtime:\n  from: docker.io/library/python:3.12-slim")

    with pytest.raises(ProjectError) as raised:
        build(engine, plan_of(project, text), tmp_path)

    assert raised.value.message == (
        "runtime Python does not match the builder's: the builder's virtualenv uses "
        "/usr/local/bin/python3.13 (Python 3.13), the runtime has /usr/local/bin/python3.12 "
        "(Python 3.12)")
    assert untested_ref(plan_of(project, text).final) not in [  # nothing assembled
        c.args[1] for c in engine.called("import_layout")]
    assert IMAGE not in engine.names
    assert engine.live == {}


DEBIAN_PYTHON = Python(link="/usr/bin/python3", path="/usr/bin/python3.11", version="3.11",
                       release="3.11.2")
WITH_BUILDER_PYTHON = RECIPE.replace("  secrets: [UV_INDEX_PASSWORD]\n",
                                     "  secrets: [UV_INDEX_PASSWORD]\n  python: /usr/bin/python3\n")


@pytest.mark.parametrize(("pin", "found"), [
    ("3.11.9", "CPython 3.11.2"),  # another patch release
    ("pypy@3.11", "CPython 3.11.2"),  # another implementation
    ("3.11+gil", None),
    ("3.11", None),  # what works stays working
])
def test_builder_python_is_held_to_the_pin_before_uv_sync(project: Path, tmp_path: Path,
                                                          pin: str, found: str | None) -> None:
    """uv, handed builder.python, reads no .python-version: the builder's check does,
    in the sync's run, before uv sync (exit 4, naming the pin's file and what it found)."""
    from uvbuild.project.pythons import PythonRequest

    engine = FakeEngine()
    engine.add_image(BASE, python=DEBIAN_PYTHON)
    request = PythonRequest(text=pin, source=str(project / ".python-version"), pinned=True)
    plan = plan_of(project, WITH_BUILDER_PYTHON, python_request=request)
    if found is None:
        build(engine, plan, tmp_path)
        assert IMAGE in engine.names
        return

    with pytest.raises(ProjectError) as raised:
        build(engine, plan, tmp_path)

    assert raised.value.exit_code == 4
    assert raised.value.message == (
        f"the project asks for Python {pin} ({project / '.python-version'}), but "
        f"builder.python /usr/bin/python3 is {found}")
    assert "uvbuild holds builder.python to it" in str(raised.value.hint)
    # The check comes before uv sync in the sync's batch, which stops at it.
    (sync_run,) = [c for c in engine.called("run")
                   if any(words[:2] == (UV_TARGET, "sync") for words in commands_of(c))]
    commands = commands_of(sync_run)
    check = next(i for i, words in enumerate(commands) if PYTHONCHECK in words)
    assert commands[check][0] == "/usr/bin/python3"
    assert check < next(i for i, words in enumerate(commands) if words[:2] == (UV_TARGET, "sync"))
    assert IMAGE not in engine.names and engine.live == {}


def test_a_free_threaded_pin_is_not_met_by_a_build_with_the_gil(project: Path,
                                                                tmp_path: Path) -> None:
    from uvbuild.project.pythons import PythonRequest

    engine = fresh_engine()  # CPython 3.13.0, with the GIL
    request = PythonRequest(text="3.13t", source=str(project / ".python-version"), pinned=True)
    text = WITH_BUILDER_PYTHON.replace("/usr/bin/python3", "/usr/local/bin/python3")

    with pytest.raises(ProjectError) as raised:
        build(engine, plan_of(project, text, python_request=request), tmp_path)

    assert raised.value.message.endswith("builder.python /usr/local/bin/python3 is CPython 3.13.0")

    engine = fresh_engine()
    engine.add_image(BASE, python=Python(free_threaded=True))
    build(engine, plan_of(project, text, python_request=request), tmp_path / "again")
    assert IMAGE in engine.names


def test_a_runtime_without_the_builders_interpreter_says_so(project: Path,
                                                            tmp_path: Path) -> None:
    engine = fresh_engine()
    engine.add_image("localhost/distroless", python=None)
    text = RECIPE.replace(f"runtime:\n  from: {BASE}", "runtime:\n  from: localhost/distroless")

    with pytest.raises(ProjectError) as raised:
        build(engine, plan_of(project, text), tmp_path)

    assert raised.value.message.startswith(
        "the runtime base has no usable python3: the virtualenv made in the builder needs "
        "the same interpreter at the same path in the runtime (")
    assert "prepare-runtime" not in engine.commits()
    assert engine.live == {}


# -- steps at the same time ------------------------------------------------------------------


def test_the_tests_run_in_a_container_of_the_assembled_image_before_it_is_tagged(
        engine: FakeEngine, project: Path, tmp_path: Path) -> None:
    plan = plan_of(project)
    result = build(engine, plan, tmp_path)

    imported = engine.called("import_layout")
    # (The first two, in the background, in either order.)
    assert sorted(c.args[1] for c in imported[:2]) == sorted(
        [plan.step("sync-dependencies").cache_ref, staged_ref(plan.final)])
    assert imported[-1].args[1] == untested_ref(plan.final) and len(imported) == 3
    at = engine.calls.index(imported[-1])
    tests_run = the_tests_run(engine)
    assert commands_of(tests_run) == [("app", "--self-test")]
    assert tests_run.kwargs["user"] == "10001:10001"
    made = next(c for c in engine.calls[at:] if c.method == "from_image")
    assert made.args[0] == result.image_id and made.args[1].endswith("-add-project-test")
    tagged = next(c for c in engine.calls[at:] if c.method == "tag" and IMAGE in c.args)
    assert engine.calls.index(tests_run) < engine.calls.index(tagged)
    # The config uvbuild wrote: the runtime user, the venv first on PATH, the recipe's.
    config = engine.config_of[result.image_id]["config"]
    assert config["User"] == "10001:10001"
    assert config["Env"][0].startswith("PATH=/app/.venv/bin:")
    assert config["Entrypoint"] == ["app"]
    assert config["Labels"]["io.uvbuild.step"] == "add-project"
    history = engine.config_of[result.image_id]["history"]
    assert [h["created_by"].split(":")[0] for h in history if h.get("comment") == "uvbuild"] \
        == ["uvbuild"] * 4  # packages, user, dependencies, project
    assert engine.live == {}


@pytest.mark.parametrize("where", ["builder.run", "venvdelta"])
def test_a_failed_install_shuts_the_waiting_tests_and_says_what_failed(
        engine: FakeEngine, project: Path, tmp_path: Path, where: str) -> None:
    if where == "builder.run":
        engine.fail_run("make assets", returncode=2, stderr="make: no rule\n")
    else:
        engine.fail_run(lambda argv: VENVDELTA in argv and "stage" in argv, returncode=1,
                        stderr="boom\n")

    with pytest.raises(StepFailed) as raised:
        build(engine, plan_of(project), tmp_path)

    assert "runtime.test" not in raised.value.message
    assert IMAGE not in engine.names
    assert engine.live == {}


def test_the_runtime_is_prepared_while_the_builder_syncs(engine: FakeEngine, project: Path,
                                                       tmp_path: Path) -> None:
    prepared = threading.Event()

    def hold_the_sync(call: Call) -> None:
        if call.method == "run" and any(MKUSER in words for words in commands_of(call)):
            prepared.set()
        elif call.method == "run" and any("--no-install-workspace" in words
                                          for words in commands_of(call)):
            # One step at a time, this would wait for ever: prepare-runtime comes after.
            assert prepared.wait(timeout=10), "prepare-runtime did not start during the sync"

    engine.on_call = hold_the_sync
    result = build(engine, plan_of(project), tmp_path)

    assert ran(result) == RUN_ORDER
    assert sorted(engine.commits()) == sorted(COMMITTED)
    assert engine.names[IMAGE] == result.image_id
    assert engine.live == {}


def test_a_failing_builder_run_keeps_the_fresh_sync_cached(engine: FakeEngine, project: Path,
                                                           tmp_path: Path) -> None:
    engine.fail_run("make assets", stderr="make: *** No rule to make target 'assets'.\n")
    with pytest.raises(StepFailed):
        build(engine, plan_of(project), tmp_path)
    plan = plan_of(project)
    # Fixing the project and building again does not sync the dependencies again.
    assert plan.step("sync-dependencies").cache_ref in engine.names
    assert engine.live == {}


def test_the_runtime_base_is_read_while_the_builder_syncs(engine: FakeEngine, project: Path,
                                                         tmp_path: Path) -> None:
    read = threading.Event()

    def hold_the_sync(call: Call) -> None:
        if call.method == "image_manifest":
            read.set()
        elif call.method == "run" and any("--no-install-workspace" in words
                                          for words in commands_of(call)):
            # Read only once the layers were made, this would wait for ever.
            assert read.wait(timeout=10), "the runtime base was not read during the sync"

    engine.on_call = hold_the_sync
    result = build(engine, plan_of(project), tmp_path)

    # (and the builder's, which sync-dependencies' image is assembled on)
    assert [c.args[0] for c in engine.called("image_manifest")].count(BASE) == 1
    assert engine.names[IMAGE] == result.image_id
    assert engine.live == {}


def test_two_builds_make_the_same_images_whatever_the_threads_timing(
        project: Path, tmp_path: Path) -> None:
    serial, parallel = fresh_engine(), fresh_engine()
    one = build(serial, plan_of(project), tmp_path / "serial")

    def runtime_first(call: Call) -> None:
        # The other build: the builder chain waits until the runtime's layers are made.
        if call.method == "from_image" and purpose(call.args[1]) == "deps":
            assert prepared.wait(timeout=10)
        elif call.method == "run" and any(MKUSER in words for words in commands_of(call)):
            prepared.set()

    prepared = threading.Event()
    parallel.on_call = runtime_first
    other = build(parallel, plan_of(project), tmp_path / "parallel")
    assert one.image_id == other.image_id  # assembled: the config's digest

    def shape(engine: FakeEngine, image_id: str) -> tuple[object, ...]:
        info = engine.image(image_id)  # the fake's IDs count calls: compare the rest
        assert info is not None
        return (info.labels, info.env, info.user,
                [layer for layer in info.layers if not layer[0].startswith("sha256:")])

    assert shape(serial, one.image_id) == shape(parallel, other.image_id)
    assert sorted(serial.tags()[:-1]) == sorted(parallel.tags()[:-1])


def test_a_failure_in_one_chain_is_the_error_and_stops_the_other(
        engine: FakeEngine, project: Path, tmp_path: Path) -> None:
    engine.fail_run(lambda argv: argv[-1] == "libpq5",
                    stderr="E: Unable to locate package libpq5\n")
    reporter = Reporter(style="human", stream=io.StringIO())
    running = Build(cast(Buildah, engine), plan_of(project),
                    settings_of(tmp_path), reporter)

    def sync_until_the_runtime_failed(call: Call) -> None:
        # The fake answers at once: without this, the builder chain could be done
        # before the runtime chain fails. Here the sync is still running when it does.
        if call.method == "run" and any("--no-install-workspace" in words
                                        for words in commands_of(call)):
            assert running.failed.wait(timeout=10), "the runtime chain never failed"

    engine.on_call = sync_until_the_runtime_failed
    with pytest.raises(StepFailed) as raised:
        running.run()

    assert raised.value.message.startswith("runtime.packages: installing libpq5 failed: `")
    assert [c.args[1] for c in engine.called("import_layout")  # nothing assembled
            if c.args[1].startswith(UNTESTED_REPO)] == []
    assert "install-project" not in engine.commits()
    assert IMAGE not in engine.names
    assert engine.live == {}


# -- interrupts -----------------------------------------------------------------------------


def test_ctrl_c_during_a_builder_command_leaves_no_container(engine: FakeEngine, project: Path,
                                                             tmp_path: Path) -> None:
    def in_deps(call: Call) -> bool:
        return call_key(call).startswith("run ('deps', ")

    engine.interrupt(1, method="run", where=in_deps)  # the batch with uv sync of the dependencies

    with pytest.raises(KeyboardInterrupt):
        build(engine, plan_of(project), tmp_path)

    # (The install's run, held at its gate meanwhile, if it started, is shut: not this.)
    deps_run, = [c for c in engine.called("run") if in_deps(c) and not c.kwargs["gated"]]
    assert commands_of(deps_run)[1][:2] == (UV_TARGET, "sync")
    assert engine.live == {}
    assert "sync-dependencies" not in engine.commits()
    assert IMAGE not in engine.names


def interrupt_everywhere(make_engine: Callable[[], FakeEngine], plan: Plan, tmp_path: Path, *,
                         after: bool) -> None:
    """Ctrl-C at each engine call of a clean build in turn: no working container survives.

    A call is named by what it is (call_key) and how many such calls came before it, not
    by its place among the calls of all threads, which varies: each run stops at the same
    call whatever the timing.
    """
    clean = make_engine()
    # Each build with a layer cache of its own: from empty, as the clean one.
    build(clean, plan, tmp_path / "clean")
    keys = [call_key(c) for c in clean.calls]
    assert len(keys) > 25
    final_tag = max(n for n, c in enumerate(clean.calls)
                    if c.method == "tag" and plan.image in c.args[1:])
    for n, key in enumerate(keys):
        engine = make_engine()
        engine.interrupt(keys[:n].count(key) + 1, after=after,
                         where=lambda call, key=key: call_key(call) == key)  # type: ignore[misc]
        with pytest.raises(KeyboardInterrupt):
            build(engine, plan, tmp_path / f"run-{n}")
        where = f"interrupted at {key} (#{keys[:n].count(key) + 1})"
        assert engine.live == {}, where
        assert not any(name.endswith("-staged:latest") for name in engine.names), where
        assert not any(name.startswith(UNTESTED_REPO) for name in engine.names), where
        # What the tag needs came first; the final clean-up and size run beside it.
        if n < final_tag and clean.calls[n].thread not in ("uvbuild-cleanup", "uvbuild-size"):
            assert plan.image not in engine.names, where


def rootless_engine() -> FakeEngine:
    engine = fresh_engine()
    engine.overlapping = False  # (no run is started early: Buildah.overlapping_runs)
    return engine


@pytest.mark.parametrize("after", [False, True], ids=["before-effect", "after-effect"])
@pytest.mark.parametrize("make_engine", [fresh_engine, rootless_engine],
                         ids=["root", "rootless"])
def test_ctrl_c_at_any_engine_call_leaves_no_container(
        project: Path, tmp_path: Path, after: bool,
        make_engine: Callable[[], FakeEngine]) -> None:
    interrupt_everywhere(make_engine, plan_of(project), tmp_path, after=after)


def test_an_interrupted_test_removes_the_image(
        engine: FakeEngine, project: Path, tmp_path: Path) -> None:
    engine.interrupt(1, method="run", where=lambda c: commands_of(c) == [("app", "--self-test")])

    with pytest.raises(KeyboardInterrupt):
        build(engine, plan_of(project), tmp_path / "interrupted")

    assert engine.images_labelled("io.uvbuild.step", "add-project") == []
    assert engine.live == {}


@pytest.mark.parametrize("after", [False, True], ids=["before-effect", "after-effect"])
def test_ctrl_c_while_bootstrapping_leaves_no_container(
        mmdebstrap: list[tuple[tuple[str, ...], dict[str, str]]], project: Path,
        tmp_path: Path, after: bool) -> None:
    interrupt_everywhere(bootstrap_engine, plan_of(project, BOOTSTRAP_RECIPE), tmp_path,
                         after=after)


# -- liveness: leftovers of killed builds, prune, one bootstrap per base ----------------------


BOTH_BOOTSTRAP_RECIPE = RECIPE.replace(f"from: {BASE}", "from: {bootstrap: debian}")


def test_builder_and_runtime_with_one_base_definition_bootstrap_it_once(
        mmdebstrap: list[tuple[tuple[str, ...], dict[str, str]]], project: Path,
        tmp_path: Path) -> None:
    engine = bootstrap_engine()
    plan = plan_of(project, BOTH_BOOTSTRAP_RECIPE)
    assert plan.step("builder-base").cache_ref == plan.step("runtime-base").cache_ref
    build(engine, plan, tmp_path)

    assert len(mmdebstrap) == 1
    assert len(engine.called("from_scratch")) == 1


def test_a_build_removes_what_a_killed_build_left_and_not_what_a_live_one_uses(
        engine: FakeEngine, project: Path, tmp_path: Path) -> None:
    places = Places.of(engine.run_root())
    live = Claim(places)  # another build, running now
    live_container = live.container_name("project")
    engine.from_image(BASE, live_container)
    killed = "uvbuild-4242-zzzzzzzz"  # its lock file was left, unlocked, by SIGKILL
    places.run_lock(killed).write_text("")
    engine.from_image(BASE, f"{killed}-3-project")
    left_folder = places.tmp / f"uvbuild-build-{killed.removeprefix('uvbuild-')}"
    left_folder.mkdir()
    try:
        build(engine, plan_of(project), tmp_path)
        assert list(engine.live) == [live_container]
        assert not left_folder.exists() and not places.run_lock(killed).exists()
        # Its own: gone with it.
        assert liveness.live_runs(places) == 1
    finally:
        live.close()
        shutil.rmtree(left_folder, ignore_errors=True)


def test_a_build_removes_unnamed_uvbuild_images_only_when_no_other_build_runs(
        engine: FakeEngine, project: Path, tmp_path: Path) -> None:
    leftover = engine.add_image(None, labels={"io.uvbuild.step": "add-project"})
    other = Claim(Places.of(engine.run_root()))
    build(engine, plan_of(project), tmp_path)
    assert leftover in engine.store  # the other build may be about to tag it
    other.close()
    build(engine, plan_of(project), tmp_path)
    assert leftover not in engine.store


def test_prune_keeps_cache_images_while_a_build_runs(
        engine: FakeEngine, project: Path, tmp_path: Path) -> None:
    build(engine, plan_of(project), tmp_path)
    cached = engine.images_named(CACHE_REPO + "/")
    assert cached
    running = Claim(Places.of(engine.run_root()))
    pruned = prune(everything=False, engine=cast(Buildah, engine))
    assert (pruned.images, pruned.running) == (0, 1)
    assert engine.images_named(CACHE_REPO + "/") == cached
    running.close()
    pruned = prune(everything=False, engine=cast(Buildah, engine))
    assert pruned.images > 0 and pruned.running == 0


def test_prune_forgets_the_sizes_of_images_it_removed(
        engine: FakeEngine, project: Path, tmp_path: Path) -> None:
    """An unchanged rebuild reads the final image's size from a note (liveness.
    remember_size); prune keeps the notes of images still there, and only those."""
    result = build(engine, plan_of(project), tmp_path)
    places = Places.of(engine.run_root())
    assert liveness.remembered_size(places, result.image_id) == result.size
    liveness.remember_size(places, "0" * 64, 123)  # an image removed since

    prune(everything=False, engine=cast(Buildah, engine))  # final images stay

    assert liveness.remembered_size(places, result.image_id) == result.size
    assert liveness.remembered_size(places, "0" * 64) is None
    prune(everything=True, engine=cast(Buildah, engine))
    assert result.image_id in engine.store  # (named IMAGE: not the cache's to remove)
    assert liveness.remembered_size(places, result.image_id) == result.size


def test_builder_commands_are_marked_with_the_builds_scratch_folder(
        engine: FakeEngine, project: Path, tmp_path: Path) -> None:
    build(engine, plan_of(project), tmp_path)
    folder = Path(engine.owner_env[OWNER_VAR])  # what Buildah.run passes as `-e`
    assert liveness.FOLDER_NAME.fullmatch(folder.name) and folder.name.startswith("uvbuild-build-")
    assert not folder.exists()  # removed with the build


def test_builder_run_runs_in_the_members_own_folder(engine: FakeEngine, project: Path,
                                                    tmp_path: Path) -> None:
    """uv syncs in the workspace root; builder.run runs in the project's own folder (a
    member's), as RECIPE.md says ("in the project's source folder")."""
    plan = plan_of(project, project_dir="/src/ws", app_subdir="ws/packages/hello")
    build(engine, plan, tmp_path)

    install = next(c for c in engine.calls if is_the_install(c))
    assert install.kwargs["workdir"] == "/src/ws"  # (uv sync --package, from the root)
    run = next(words for words in commands_of(install) if "make" in words)
    assert run[:4] == ("cd", "/src/ws/packages/hello", "||", "exit")
    assert run[-2:] == ("make", "assets")

    alone = fresh_engine()
    build(alone, plan_of(project), tmp_path / "alone")  # a project of its own: in /src
    install = next(c for c in alone.calls if is_the_install(c))
    assert ("make", "assets") in commands_of(install)


def test_a_failing_builder_run_is_named_as_the_recipe_wrote_it(
        engine: FakeEngine, project: Path, tmp_path: Path) -> None:
    engine.fail_run(lambda argv: "make" in argv, stderr="make: *** no rule\n")
    plan = plan_of(project, project_dir="/src/ws", app_subdir="ws/packages/hello")
    with pytest.raises(StepFailed) as raised:
        build(engine, plan, tmp_path)
    assert "builder.run[0] `make assets` failed" in str(raised.value)


def test_a_user_that_cannot_be_made_is_not_called_a_missing_interpreter(
        engine: FakeEngine, project: Path, tmp_path: Path) -> None:
    """mkuser.py reported the interpreter, then failed: the message says the user's
    making failed, with its output, not that the runtime has no usable python3."""
    engine.fail_run(lambda argv: MKUSER in argv, returncode=1,
                    stdout='{"uid": 10001, "gid": 10001, "python": "/usr/bin/python3.11", '
                           '"version": "3.11"}\n',
                    stderr="PermissionError: [Errno 13] Permission denied: '/home/app'\n")
    with pytest.raises(StepFailed) as raised:
        build(engine, plan_of(project), tmp_path)
    assert raised.value.message.startswith("making the runtime user app failed")
    assert "Permission denied" in raised.value.message
    assert engine.live == {}


def test_a_package_apt_cannot_find_in_a_bootstrap_is_told_by_apt(
        project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """mmdebstrap's output holds apt's reason far above its own command line and
    clean-up: the message leads with apt's line, as a step's package failure does."""
    def failing(argv: Sequence[str], **_: object) -> Result:
        return Result(tuple(argv), 1, "I: running apt-get install...\n",
                      "E: Unable to locate package no-such-pkg-xyz\n"
                      "E: apt-get --yes install python3 no-such-pkg-xyz failed\n"
                      "W: hooklistener errored out: E: received eof on socket\n")

    monkeypatch.setattr(cmd, "run", failing)
    with pytest.raises(StepFailed) as raised:
        build(bootstrap_engine(), plan_of(project, BOOTSTRAP_RECIPE), tmp_path)
    message = raised.value.message
    assert message.startswith("bootstrapping debian ")
    assert "E: Unable to locate package no-such-pkg-xyz" in message
    assert "mmdebstrap" not in message  # (not its whole command line)


def test_a_project_layer_holding_a_secret_fails_the_build_and_is_not_kept(
        engine: FakeEngine, project: Path, tmp_path: Path) -> None:
    """A builder.run that writes a builder.secrets value under /app would ship it: the
    layer is searched before it is kept (layer_steps.no_secret_in)."""
    engine.layer_files["layer.tar"] = {"app/token.txt": f"token={SECRET}\n".encode()}
    with pytest.raises(StepFailed) as raised:
        build(engine, plan_of(project), tmp_path)
    assert "builder.secrets UV_INDEX_PASSWORD" in raised.value.message
    assert "/app/token.txt" in raised.value.message
    assert SECRET not in str(raised.value)
    assert IMAGE not in engine.names and engine.live == {}
    assert not list((tmp_path / "layers").rglob("project-layer*"))


def test_a_held_run_that_fails_before_its_batch_gives_way_to_a_run_of_its_own(
        engine: FakeEngine, project: Path, tmp_path: Path) -> None:
    """The run started early for the install failed in buildah's set-up (seen once
    here: "Close_Fd sealing memfd copy: Device or resource busy"): nothing of the
    batch ran, so the install runs it in a `buildah run` of its own, as without one."""
    engine.held_run_fails = True
    build(engine, plan_of(project), tmp_path)

    installs = [c for c in engine.calls if is_the_install(c)]
    assert len(installs) == 1 and not installs[0].kwargs["gated"]
    assert engine.names[IMAGE]
    assert engine.live == {}
