"""The planner: recipe + measured inputs → 8 typed steps whose keys change only when they must."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from uvbuild.incontainer import script
from uvbuild.plan import cachekey
from uvbuild.plan import planner as plan_module
from uvbuild.plan.planner import (
    BASE_REPO,
    BYTECODE_FORM,
    CACHE_REPO,
    DEFAULT_TIMESTAMP,
    AddProject,
    DependenciesLayer,
    InstallProject,
    LayerCopy,
    LayerStep,
    Plan,
    PlanInputs,
    PrepareBuilder,
    PrepareRuntime,
    ProjectLayer,
    ResolveBase,
    SyncDependencies,
    bootstrap_key,
    bootstrap_ref,
    make_plan,
    runtime_base,
)
from uvbuild.recipe.loader import load_recipe_text
from uvbuild.recipe.model import BootstrapBase, ImageBase, Recipe, SyncOptions

RECIPE_PATH = Path("/projects/app/uvbuild.yaml")

RECIPE = """\
version: 1
image: localhost/app:1.0
builder:
  from: docker.io/library/python:3.13-slim
  packages: [build-essential]
  env: {PIP_NO_COLOR: "1"}
  secrets: [UV_INDEX_PASSWORD]
  sync:
    groups: [server]
  run:
    - make assets
runtime:
  from: docker.io/library/python:3.13-slim
  packages: [libpq5]
  copy:
    - {from: /src/assets, to: /app/assets}
  env: {LOG_LEVEL: info}
  entrypoint: [python, -m, app]
  expose: [8080]
  labels: {org.opencontainers.image.title: app}
  stop-signal: SIGINT
  test:
    - python -c "import app"
"""

ORDER = (
    "builder-base",
    "prepare-builder",
    "sync-dependencies",
    "install-project",
    "dependencies-layer",
    "project-layer",
    "runtime-base",
    "prepare-runtime",
    "add-project",
)

NEEDS = {
    "builder-base": (),
    "prepare-builder": ("builder-base",),
    "sync-dependencies": ("prepare-builder",),
    "install-project": ("sync-dependencies",),
    "runtime-base": (),
    "dependencies-layer": ("sync-dependencies",),
    "project-layer": ("install-project",),
    "prepare-runtime": ("runtime-base",),
    "add-project": ("runtime-base", "prepare-runtime", "dependencies-layer", "project-layer"),
}

INPUTS = PlanInputs(
    image="localhost/app:1.0",
    uv_version="0.7.3",
    builder_base_id="a" * 64,
    runtime_base_id="b" * 64,
    project_root="/projects/app",
    manifest_files=("pyproject.toml", "uv.lock"),
    manifest_digest="sha256:" + "1" * 64,
    source_files=("pyproject.toml", "src/app/__init__.py", "uv.lock"),
    source_digest="sha256:" + "2" * 64,
    is_package=True,
    is_workspace=False,
)

# The keys of RECIPE + INPUTS. A change here means every user's cache is invalidated:
# make it on purpose (and bump CACHE_FORMAT if a step's meaning changed), never by accident.
GOLDEN_KEYS = {
    "builder-base": "a06ca5a083f4e75a342824d5cc04278121eba33066afbfb3e1ea2e49d78f28f3",
    "prepare-builder": "b1b703dc5a2b3a828b900893cead25235223d3184a37b532b83df6b65baaa27f",
    "sync-dependencies": "cecdeda122a37718b58c6b3896778457bbcb93ca8531d1e26d8a2e7cab8514f0",
    "install-project": "bbda33f0adaa06b6e1e22bdb1f0d24b2bf5bdb21a8ed401ce7faa0b35d11c024",
    "dependencies-layer": "1f5f58096d4c743819c1db6154296983500f0af45b9b62cae439ef524bfae7b8",
    "project-layer": "21d1563def16ae41d1361213a952dc35e7c3179cd0cfa2ed367bf3081d3d1a4e",
    "runtime-base": "cfd33b029b4782a00c9dff5d72efc119043573a48e67be5cc5e1ee4cfd632b61",
    "prepare-runtime": "e92097e505c2a7fe63d90585eddb424644e72686855b9bb57acd554031464bed",
    "add-project": "f0d5b5edf1df4e7c5cfff2d61f1405b616aaa0a2c6e5dae9bb0ea2643449735d",
}


def recipe_of(text: str = RECIPE) -> Recipe:
    return load_recipe_text(text, RECIPE_PATH)


def plan_of(recipe: Recipe | None = None, **changes: Any) -> Plan:
    return make_plan(recipe or recipe_of(), dataclasses.replace(INPUTS, **changes))


def keys(plan: Plan) -> dict[str, str]:
    return {step.name: step.key for step in plan.steps}


def changed(before: Plan, after: Plan) -> set[str]:
    """Names of the steps whose key differs between two plans."""
    old, new = keys(before), keys(after)
    assert old.keys() == new.keys()
    return {name for name in old if old[name] != new[name]}


def edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new)


# -- shape ------------------------------------------------------------------------------


def test_nine_steps_in_order_with_their_needs() -> None:
    plan = plan_of()

    assert tuple(step.name for step in plan.steps) == ORDER
    assert {step.name: step.needs for step in plan.steps} == NEEDS
    assert [type(step) for step in plan.steps] == [
        ResolveBase, PrepareBuilder, SyncDependencies, InstallProject, DependenciesLayer,
        ProjectLayer, ResolveBase, PrepareRuntime, AddProject,
    ]


def test_every_step_comes_after_what_it_needs() -> None:
    seen: set[str] = set()
    for step in plan_of().steps:
        assert set(step.needs) <= seen, step.name
        seen.add(step.name)


def test_plan_carries_image_timestamp_and_root() -> None:
    plan = plan_of(timestamp=1_700_000_000)

    assert plan.image == "localhost/app:1.0"
    assert plan.timestamp == 1_700_000_000
    assert plan.project_root == "/projects/app"
    assert plan.final is plan.steps[-1]
    assert plan.step("install-project") is plan.steps[3]
    with pytest.raises(KeyError):
        plan.step("no-such-step")


def test_default_timestamp_is_1980() -> None:
    assert DEFAULT_TIMESTAMP == 315532800
    assert plan_of().timestamp == DEFAULT_TIMESTAMP


def test_steps_carry_the_recipe_and_inputs() -> None:
    plan = plan_of()

    builder_base = plan.step("builder-base")
    assert isinstance(builder_base, ResolveBase)
    assert builder_base.stage == "builder"
    assert builder_base.base == ImageBase(ref="docker.io/library/python:3.13-slim")

    prepare_builder = plan.step("prepare-builder")
    assert isinstance(prepare_builder, PrepareBuilder)
    assert prepare_builder.packages == ("build-essential",)

    sync = plan.step("sync-dependencies")
    assert isinstance(sync, SyncDependencies)
    assert sync.python == "python3"
    assert sync.sync == SyncOptions(groups=("server",))
    assert sync.env == (("PIP_NO_COLOR", "1"),)
    assert sync.secrets == ("UV_INDEX_PASSWORD",)
    assert sync.manifests == ("pyproject.toml", "uv.lock")
    assert sync.workspace is False

    install = plan.step("install-project")
    assert isinstance(install, InstallProject)
    assert install.is_package is True
    assert install.sources == ("pyproject.toml", "src/app/__init__.py", "uv.lock")
    assert install.run == ("make assets",)
    # Every entry is staged with the project layer, wherever it lands.
    assert install.copy == (LayerCopy(index=0, source="/src/assets", dest="/app/assets"),)

    runtime_base = plan.step("runtime-base")
    assert isinstance(runtime_base, ResolveBase)
    assert runtime_base.stage == "runtime"

    prepare_runtime = plan.step("prepare-runtime")
    assert isinstance(prepare_runtime, PrepareRuntime)
    assert (prepare_runtime.packages, prepare_runtime.user, prepare_runtime.python) == (
        ("libpq5",), "app", "python3")

    final = plan.final
    assert final.workdir == "/app"
    assert final.env == (("LOG_LEVEL", "info"),)
    assert final.entrypoint == ("python", "-m", "app")
    assert final.cmd is None
    assert final.expose == ("8080",)
    assert final.labels == (("org.opencontainers.image.title", "app"),)
    assert final.stop_signal == "SIGINT"
    assert final.test == ('python -c "import app"',)


def test_describe_each_step() -> None:
    plan = plan_of()

    assert [step.describe() for step in plan.steps] == [
        "builder base: docker.io/library/python:3.13-slim",
        "builder packages: build-essential",
        "uv sync dependencies into /app/.venv (pyproject.toml, uv.lock)",
        "install the project (non-editable), then 1 builder command(s)",
        "dependencies layer: /app/.venv without the project",
        "project layer: the project, runtime.copy, SBOM",
        "runtime base: docker.io/library/python:3.13-slim",
        "runtime layers: packages libpq5; user app",
        "assemble the image: base, layers, config, 1 test(s)",
    ]


def test_describe_a_bootstrap_base_and_a_non_package() -> None:
    text = edit(RECIPE, "  from: docker.io/library/python:3.13-slim\n  packages: [build-essential]",
                "  from: {bootstrap: debian, suite: trixie, packages: [python3], "
                "snapshot: 20250520T000000Z}")
    plan = plan_of(recipe_of(text), is_package=False)

    assert plan.step("builder-base").describe() == (
        "builder base: bootstrap debian trixie +python3 @20250520T000000Z")
    assert plan.step("prepare-builder").describe() == "builder packages: (none)"
    assert plan.step("install-project").describe() == (
        "copy project files, then 1 builder command(s)")


# -- keys: deterministic ------------------------------------------------------------------


def test_keys_are_sha256_hex() -> None:
    for step in plan_of().steps:
        assert len(step.key) == 64
        int(step.key, 16)


def test_same_inputs_give_same_keys() -> None:
    first, second = plan_of(), plan_of(recipe_of())

    assert keys(first) == keys(second)
    assert first == second


def test_every_step_has_its_own_key() -> None:
    assert len(set(keys(plan_of()).values())) == len(ORDER)


def test_keys_match_the_golden_values() -> None:
    assert keys(plan_of()) == GOLDEN_KEYS


# incontainer/bytecode.py as BYTECODE_FORM knows it. A change of the script may change
# the dependencies' .pyc bytes (marshal's bytes depend on the compiling process): bump
# planner.BYTECODE_FORM if it may (then GOLDEN_KEYS change), and update this digest.
BYTECODE_SCRIPT = "a7f28262c5ce22e1adc316124fba9ec0f97d1e62efed4e12dabee9e34391f887"


def test_bytecode_form_knows_the_compiling_script() -> None:
    assert BYTECODE_FORM == 2
    digest = hashlib.sha256(script("bytecode.py").encode()).hexdigest()
    assert digest == BYTECODE_SCRIPT, (
        "incontainer/bytecode.py changed: bump planner.BYTECODE_FORM if the .pyc files "
        "it makes may change, then update BYTECODE_SCRIPT")


def test_keys_do_not_depend_on_where_the_project_is() -> None:
    moved = make_plan(load_recipe_text(RECIPE, Path("/elsewhere/uvbuild.yaml")),
                      dataclasses.replace(INPUTS, project_root="/elsewhere"))

    assert changed(plan_of(), moved) == set()


def test_output_name_is_not_in_any_key() -> None:
    assert changed(plan_of(), plan_of(image="localhost/other:2.0")) == set()


# -- keys: what each input invalidates ----------------------------------------------------


def test_source_change_invalidates_only_the_project_steps() -> None:
    after = plan_of(source_digest="sha256:" + "3" * 64)

    assert changed(plan_of(), after) == {"install-project", "project-layer", "add-project"}


def test_lock_change_invalidates_the_dependency_and_project_steps() -> None:
    after = plan_of(manifest_digest="sha256:" + "4" * 64)

    assert changed(plan_of(), after) == {
        "sync-dependencies", "dependencies-layer", "install-project", "project-layer",
        "add-project"}


@pytest.mark.parametrize(("old", "new"), [
    ("  env: {LOG_LEVEL: info}", "  env: {LOG_LEVEL: debug}"),
    ("  entrypoint: [python, -m, app]", "  entrypoint: [python, -m, app.main]"),
    ('    - python -c "import app"', '    - python -c "import app.main"'),
    ("  expose: [8080]", "  expose: [8081]"),
    ("  labels: {org.opencontainers.image.title: app}",
     "  labels: {org.opencontainers.image.title: app2}"),
    ("  stop-signal: SIGINT", "  stop-signal: SIGTERM"),
    ("  expose: [8080]", "  expose: [8080]\n  cmd: [--port, '8080']"),
    ("  expose: [8080]", "  expose: [8080]\n  workdir: /srv"),
])
def test_runtime_config_changes_only_the_final_step(old: str, new: str) -> None:
    after = plan_of(recipe_of(edit(RECIPE, old, new)))

    assert changed(plan_of(), after) == {"add-project"}


def test_copies_are_staged_with_the_project_layer() -> None:
    copies = edit(RECIPE, "    - {from: /src/assets, to: /app/assets}",
                  "    - {from: /src/a, to: /srv/a}\n"
                  "    - {from: '/src/*.json', to: /app/static/../data/}\n"
                  "    - {from: /src/b, to: /app}\n"
                  "    - {from: /src/c, to: /application/c}")

    plan = plan_of(recipe_of(copies))

    assert plan.step("install-project").copy == (  # type: ignore[attr-defined]
        LayerCopy(index=0, source="/src/a", dest="/srv/a"),
        LayerCopy(index=1, source="/src/*.json", dest="/app/data/"),
        LayerCopy(index=2, source="/src/b", dest="/app"),
        LayerCopy(index=3, source="/src/c", dest="/application/c"))


@pytest.mark.parametrize(("old", "new", "expected"), [
    ("to: /app/assets}", "to: /app/static}", {"install-project", "project-layer", "add-project"}),
    ("to: /app/assets}", "to: /srv/assets}", {"install-project", "project-layer", "add-project"}),
    ("from: /src/assets", "from: /src/static",
     {"install-project", "project-layer", "add-project"}),
])
def test_a_copy_into_app_changes_the_project_steps(old: str, new: str,
                                                   expected: set[str]) -> None:
    after = plan_of(recipe_of(edit(RECIPE, old, new)))

    assert changed(plan_of(), after) == expected


def test_a_copy_elsewhere_changes_the_project_steps_not_the_dependencies() -> None:
    before = recipe_of(edit(RECIPE, "to: /app/assets}", "to: /srv/assets}"))
    after = recipe_of(edit(RECIPE, "to: /app/assets}", "to: /srv/static}"))

    assert changed(plan_of(before), plan_of(after)) == {
        "install-project", "project-layer", "add-project"}


def test_runtime_packages_or_user_change_the_runtime_chain() -> None:
    expected = {"prepare-runtime", "add-project"}
    packages = recipe_of(edit(RECIPE, "  packages: [libpq5]", "  packages: [libpq5, curl]"))
    user = recipe_of(edit(RECIPE, "  env: {LOG_LEVEL: info}",
                          "  env: {LOG_LEVEL: info}\n  user: web"))

    assert changed(plan_of(), plan_of(packages)) == expected
    assert changed(plan_of(), plan_of(user)) == expected


def test_builder_run_changes_only_the_project_steps() -> None:
    after = plan_of(recipe_of(edit(RECIPE, "    - make assets", "    - make assets docs")))

    assert changed(plan_of(), after) == {"install-project", "project-layer", "add-project"}


def test_package_or_not_changes_only_the_project_steps() -> None:
    assert changed(plan_of(), plan_of(is_package=False)) == {
        "install-project", "project-layer", "add-project"}


@pytest.mark.parametrize(("old", "new"), [
    ('  env: {PIP_NO_COLOR: "1"}', '  env: {PIP_NO_COLOR: "0"}'),
    ("    groups: [server]", "    groups: [server, docs]"),
    ("    groups: [server]", "    groups: [server]\n    extras: [fast]"),
    ("    groups: [server]", "    groups: [server]\n    all-extras: true"),
    ("    groups: [server]", "    groups: [server]\n    compile-bytecode: false"),
])
def test_sync_options_change_the_dependency_and_project_steps(old: str, new: str) -> None:
    after = plan_of(recipe_of(edit(RECIPE, old, new)))

    assert changed(plan_of(), after) == {
        "sync-dependencies", "dependencies-layer", "install-project", "project-layer",
        "add-project"}


def test_builder_packages_change_the_builder_chain_not_the_runtime_base() -> None:
    after = plan_of(recipe_of(edit(RECIPE, "  packages: [build-essential]",
                                   "  packages: [build-essential, libpq-dev]")))

    assert changed(plan_of(), after) == {
        "prepare-builder", "sync-dependencies", "install-project", "dependencies-layer",
        "project-layer", "add-project"}


def test_builder_python_changes_both_chains_after_the_bases() -> None:
    after = plan_of(recipe_of(edit(RECIPE, "  packages: [build-essential]",
                                   "  packages: [build-essential]\n  python: /usr/bin/python3")))

    assert changed(plan_of(), after) == set(ORDER) - {
        "builder-base", "runtime-base", "prepare-builder"}


def test_a_new_builder_base_leaves_the_runtime_chain_start_alone() -> None:
    after = plan_of(builder_base_id="c" * 64)

    assert changed(plan_of(), after) == {
        "builder-base", "prepare-builder", "sync-dependencies", "install-project",
        "dependencies-layer", "project-layer", "add-project"}


def test_a_new_runtime_base_leaves_the_builder_chain_alone() -> None:
    after = plan_of(runtime_base_id="d" * 64)

    assert changed(plan_of(), after) == {"runtime-base", "prepare-runtime", "add-project"}


def test_uv_version_changes_every_step_from_the_sync_on() -> None:
    after = plan_of(uv_version="0.7.4")

    assert changed(plan_of(), after) == {
        "sync-dependencies", "dependencies-layer", "install-project", "project-layer",
        "add-project"}


def test_timestamp_changes_every_key() -> None:
    assert changed(plan_of(), plan_of(timestamp=DEFAULT_TIMESTAMP + 1)) == set(ORDER)


def test_workspace_flag_is_not_a_key_input() -> None:
    # The manifests (and so their digest) already differ between a workspace and not.
    assert changed(plan_of(), plan_of(is_workspace=True)) == set()


# -- secrets ------------------------------------------------------------------------------


def test_secret_names_are_key_inputs() -> None:
    after = plan_of(recipe_of(edit(RECIPE, "  secrets: [UV_INDEX_PASSWORD]",
                                   "  secrets: [UV_INDEX_PASSWORD, GITHUB_TOKEN]")))

    assert changed(plan_of(), after) == {
        "sync-dependencies", "dependencies-layer", "install-project", "project-layer",
        "add-project"}


def test_secret_values_never_reach_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    documents: list[str] = []
    real_step_key = cachekey.step_key

    def recording(kind: str, definition: Mapping[str, Any], parents: Sequence[str] = ()) -> str:
        documents.append(json.dumps([kind, definition, list(parents)], sort_keys=True))
        return real_step_key(kind, definition, parents)

    monkeypatch.setattr(plan_module, "step_key", recording)
    monkeypatch.setenv("UV_INDEX_PASSWORD", "hunter2-first")
    first = plan_of()
    monkeypatch.setenv("UV_INDEX_PASSWORD", "hunter2-second")
    second = plan_of()

    assert keys(first) == keys(second)
    assert len(documents) == 2 * len(ORDER)
    assert not [d for d in documents if "hunter2" in d]
    sync_documents = [d for d in documents if d.startswith('["SyncDependencies"')]
    assert sync_documents and all('"secrets": ["UV_INDEX_PASSWORD"]' in d
                                  for d in sync_documents)


# -- cache refs ---------------------------------------------------------------------------


def test_cache_refs_name_the_step_and_32_hex_of_its_key() -> None:
    plan = plan_of()

    for name in ORDER:
        step = plan.step(name)
        if isinstance(step, ResolveBase | LayerStep):
            continue
        assert step.cache_ref == f"localhost/uvbuild-cache/{name}-{step.key[:32]}:latest"
        assert step.cache_ref.startswith(CACHE_REPO + "/")


def test_a_named_base_is_its_own_ref() -> None:
    plan = plan_of()

    assert plan.step("builder-base").cache_ref == "docker.io/library/python:3.13-slim"
    assert plan.step("runtime-base").cache_ref == "docker.io/library/python:3.13-slim"


def test_a_bootstrap_base_lives_in_the_base_repo() -> None:
    text = edit(RECIPE, "runtime:\n  from: docker.io/library/python:3.13-slim",
                "runtime:\n  from: {bootstrap: debian, suite: trixie}")
    plan = plan_of(recipe_of(text))
    step = plan.step("runtime-base")

    assert BASE_REPO == "localhost/uvbuild-base"
    assert step.cache_ref == f"localhost/uvbuild-base/debian-trixie-{step.key[:16]}:latest"
    assert step.cache_ref == bootstrap_ref(BootstrapBase(suite="trixie"), step.key)


# -- bootstrap keys -----------------------------------------------------------------------

BOOKWORM = BootstrapBase(distribution="debian", suite="bookworm")


def test_bootstrap_key_is_deterministic_and_ignores_package_order() -> None:
    one = BootstrapBase(packages=("python3", "python3-venv"))
    other = BootstrapBase(packages=("python3-venv", "python3"))

    assert bootstrap_key(BOOKWORM, DEFAULT_TIMESTAMP) == bootstrap_key(BOOKWORM, DEFAULT_TIMESTAMP)
    assert bootstrap_key(one, DEFAULT_TIMESTAMP) == bootstrap_key(other, DEFAULT_TIMESTAMP)


@pytest.mark.parametrize("other", [
    BootstrapBase(packages=("python3",)),
    BootstrapBase(suite="trixie"),
    BootstrapBase(snapshot="20250520T000000Z"),
])
def test_bootstrap_key_follows_the_definition(other: BootstrapBase) -> None:
    assert bootstrap_key(other, DEFAULT_TIMESTAMP) != bootstrap_key(BOOKWORM, DEFAULT_TIMESTAMP)


def test_bootstrap_key_follows_the_timestamp() -> None:
    assert (bootstrap_key(BOOKWORM, DEFAULT_TIMESTAMP + 1)
            != bootstrap_key(BOOKWORM, DEFAULT_TIMESTAMP))


def test_the_standard_variant_is_the_default() -> None:
    standard = BootstrapBase(distribution="debian", suite="bookworm", variant="standard")

    assert bootstrap_key(standard, DEFAULT_TIMESTAMP) == bootstrap_key(BOOKWORM, DEFAULT_TIMESTAMP)


def test_a_slim_base_has_a_key_of_its_own() -> None:
    slim = BootstrapBase(variant="slim")

    assert bootstrap_key(slim, DEFAULT_TIMESTAMP) != bootstrap_key(BOOKWORM, DEFAULT_TIMESTAMP)
    assert bootstrap_key(slim, DEFAULT_TIMESTAMP) != bootstrap_key(
        BootstrapBase(variant="slim", packages=("libpq5",)), DEFAULT_TIMESTAMP)


def test_a_slim_key_covers_what_a_slim_root_is(monkeypatch: pytest.MonkeyPatch) -> None:
    from uvbuild.plan import slimroot

    before = bootstrap_key(BootstrapBase(variant="slim"), DEFAULT_TIMESTAMP)
    monkeypatch.setattr(slimroot, "PURGE_ROUNDS", (*slimroot.PURGE_ROUNDS, ("bash",)))

    assert bootstrap_key(BootstrapBase(variant="slim"), DEFAULT_TIMESTAMP) != before


SLIM_RUNTIME = """\
version: 1
builder:
  from: {bootstrap: debian, packages: [python3]}
  packages: [libpq-dev]
runtime:
  from: {bootstrap: debian, packages: [python3], variant: slim}
  packages: [libpq5, python3]
"""


def test_slim_runtime_packages_join_the_bootstrap() -> None:
    recipe = recipe_of(SLIM_RUNTIME)
    plan = plan_of(recipe)
    base = plan.step("runtime-base")
    prepare = plan.step("prepare-runtime")

    assert isinstance(base, ResolveBase) and isinstance(prepare, PrepareRuntime)
    assert base.base == BootstrapBase(packages=("python3", "libpq5"), variant="slim")
    assert runtime_base(recipe.runtime) == base.base
    assert prepare.packages == ()
    assert base.describe() == "runtime base: bootstrap debian bookworm (slim) +python3,libpq5"
    assert prepare.describe() == "runtime layers: packages (none); user app"
    # The builder's packages stay the builder's: its base is standard.
    builder = plan.step("prepare-builder")
    assert isinstance(builder, PrepareBuilder) and builder.packages == ("libpq-dev",)


def test_slim_runtime_packages_are_in_the_base_key() -> None:
    one = runtime_base(recipe_of(SLIM_RUNTIME).runtime)
    other = runtime_base(recipe_of(SLIM_RUNTIME.replace("[libpq5, python3]", "[libpq5, libxml2]"))
                         .runtime)
    assert isinstance(one, BootstrapBase) and isinstance(other, BootstrapBase)

    assert bootstrap_key(one, DEFAULT_TIMESTAMP) != bootstrap_key(other, DEFAULT_TIMESTAMP)


def test_standard_runtime_packages_stay_in_prepare_runtime() -> None:
    text = SLIM_RUNTIME.replace(", variant: slim}", "}")
    recipe = recipe_of(text)
    plan = plan_of(recipe)
    prepare = plan.step("prepare-runtime")

    assert runtime_base(recipe.runtime) == recipe.runtime.base
    assert isinstance(prepare, PrepareRuntime) and prepare.packages == ("libpq5", "python3")


def test_bootstrap_key_golden() -> None:
    assert bootstrap_key(BOOKWORM, DEFAULT_TIMESTAMP) == (
        "069c46792b326b6d3e1eb5888c86a7513ad0e7a7164208e838e0e08ac2b6f718")


def test_a_build_context_above_the_project_reaches_the_steps_and_their_keys() -> None:
    """Issue 13: a monorepo service or a workspace member; golden keys hold without."""
    plain = plan_of()
    assert keys(plain) == GOLDEN_KEYS
    member = plan_of(context_root="/repo", project_dir="/src/ws", package="hello",
                     app_subdir="ws/packages/hello", uv_python="3.12")
    sync = member.step("sync-dependencies")
    install = member.step("install-project")
    assert isinstance(sync, SyncDependencies) and isinstance(install, InstallProject)
    assert (sync.project_dir, sync.package, sync.uv_python) == ("/src/ws", "hello", "3.12")
    assert install.app_subdir == "ws/packages/hello"
    assert member.context_root == "/repo"
    assert changed(plain, member) == set(GOLDEN_KEYS) - {
        "builder-base", "prepare-builder", "runtime-base", "prepare-runtime"}


def test_uv_sync_argv_for_a_member_leaves_local_packages_to_the_project_step() -> None:
    from uvbuild.build.builder_steps import uv_sync_argv

    sync = plan_of(package="hello", uv_python=">=3.12").step("sync-dependencies")
    assert isinstance(sync, SyncDependencies)
    deps = uv_sync_argv(sync, project=False)
    assert deps[deps.index("--python") + 1] == ">=3.12"
    assert deps[deps.index("--package") + 1] == "hello"
    assert deps[-2:] == ["--no-install-workspace", "--no-install-local"]
    assert "--no-install-local" not in uv_sync_argv(sync, project=True)


def test_a_step_and_a_base_are_cached_when_their_name_is_listed() -> None:
    plan = plan_of()
    listing = {step.cache_ref: f"id-{step.name}" for step in plan.steps}
    assert plan.step("sync-dependencies").cached(listing) == "id-sync-dependencies"
    assert plan.step("sync-dependencies").cached({}) is None
    # A base by its own name (a named base's reference, a bootstrapped one's BASE_REPO
    # name); not listed so, resolving it asks local storage (a short name, say).
    bases = [s for s in plan.steps if isinstance(s, plan_module.ResolveBase)]
    assert bases and all(base.cached(listing) == listing[base.cache_ref] for base in bases)
    assert all(base.cached({}) is None for base in bases)


def test_a_cache_name_gives_back_its_step_and_key() -> None:
    plan = plan_of()
    for step in plan.steps:
        if step.cache_ref.startswith(plan_module.CACHE_REPO + "/"):
            assert plan_module.cache_name_parts(step.cache_ref) == (step.name, step.key[:32])
    base = BootstrapBase(suite="bookworm")
    assert plan_module.cache_name_parts(plan_module.bootstrap_ref(base, "a" * 64)) == (
        "debian-bookworm", "a" * 16)
    assert plan_module.cache_name_parts("localhost/uvbuild-cache/old:0123") == ("old", "0123")
    assert plan_module.cache_name_parts("docker.io/library/python:3.12") is None
