"""The registry cache in builds (--cache-from, --cache-to) against FakeEngine: two engines
sharing one FakeRegistry are two CI runners sharing one cache, each with its own layer
cache. What is looked up, in what order, what is pulled, what runs, what is exported."""

from __future__ import annotations

import dataclasses
import io
import shutil
from pathlib import Path
from typing import cast

from fake_engine import Call, FakeEngine
from test_executor import (  # noqa: F401
    BASE,
    BOOTSTRAP_RECIPE,
    IMAGE,
    fresh_engine,
    plan_of,
    project,
    settings_of,
)

from uvbuild.build.executor import Build, BuildResult
from uvbuild.build.regcache import entry_tag
from uvbuild.engine.buildah import Buildah
from uvbuild.output.progress import Reporter
from uvbuild.plan.planner import Plan

REPO = "registry.example:5000/team/cache"
# Every step an entry can hold when the bases are registry images (never exported).
ENTRIES = ["prepare-builder", "sync-dependencies", "install-project", "dependencies-layer",
           "project-layer", "prepare-runtime", "add-project"]
# Every step made (the bases found in local storage: `cached`).
ALL_BUILT = {"builder-base": "cached", "runtime-base": "cached",
             **{name: "built" for name in ENTRIES}}
CODE_EDIT = {"source_digest": "sha256:" + "e" * 64}
# What a first build exports: install-project keeps no image (its layer is the entry).
EXPORTED = [name for name in ENTRIES if name != "install-project"]


@dataclasses.dataclass
class Run:
    result: BuildResult
    said: str  # what the build wrote to stderr (progress and warnings)

    def status(self) -> dict[str, str]:
        return {str(r["step"]): str(r["status"]) for r in self.result.steps}

    def warnings(self) -> list[str]:
        return [line for line in self.said.splitlines() if line.startswith("uvbuild: warning")]


def runner_build(engine: FakeEngine, plan: Plan, home: Path, *, cache_from: tuple[str, ...] = (),
                 cache_to: str | None = None, no_cache: bool = False) -> Run:
    """A build on the runner whose host folders (its layer cache) are under `home`."""
    stream = io.StringIO()
    settings = dataclasses.replace(settings_of(home, no_cache=no_cache), cache_from=cache_from,
                                   cache_to=cache_to)
    result = Build(cast(Buildah, engine), plan, settings, Reporter("human", stream)).run()
    return Run(result, stream.getvalue())


def second_runner(first: FakeEngine) -> FakeEngine:
    engine = fresh_engine()
    engine.registry = first.registry
    return engine


def looked_up(engine: FakeEngine, mark: int = 0) -> list[str]:
    """The steps whose entries the engine asked the registry for, in order."""
    return [c.args[0].rpartition(":")[2].rpartition("-")[0]
            for c in engine.calls[mark:] if c.method == "registry_manifest"]


def exported_by(first: FakeEngine, plan: Plan, home: Path) -> Run:
    done = runner_build(first, plan, home, cache_to=REPO)
    assert done.status() == ALL_BUILT
    return done


def test_the_first_runner_exports_every_step_once_after_the_build(
        project: Path, tmp_path: Path) -> None:
    first = fresh_engine()
    plan = plan_of(project)
    done = exported_by(first, plan, tmp_path / "a")

    pushed = [c.args[1] for c in first.called("layout_to_registry")]
    assert sorted(pushed) == sorted(f"{REPO}:{entry_tag(name, plan.step(name).key)}"
                                    for name in EXPORTED)
    # After the final image is named: a build that failed would export nothing.
    assert first.calls.index(first.called("layout_to_registry")[0]) > first.calls.index(
        next(c for c in first.calls if c.method == "tag" and IMAGE in c.args[1:]))
    assert f"cache {REPO}: 6 new entries, 0 there already" in done.said
    uploaded = len(first.registry.uploaded)

    # Again, all cached here: the final step is used, it is in the cache, nothing is sent.
    mark = len(first.calls)
    again = runner_build(first, plan, tmp_path / "a", cache_to=REPO)
    assert again.status() == {"add-project": "cached"}
    assert looked_up(first, mark) == ["add-project"]
    assert first.called("layout_to_registry")[len(pushed):] == []
    assert len(first.registry.uploaded) == uploaded


def test_an_unchanged_build_pulls_the_final_image_alone_and_runs_nothing(
        project: Path, tmp_path: Path) -> None:
    first = fresh_engine()
    plan = plan_of(project)
    exported_by(first, plan, tmp_path / "a")
    second = second_runner(first)

    pulled = runner_build(second, plan, tmp_path / "b", cache_from=(REPO,), cache_to=REPO)

    assert pulled.status() == {"add-project": "pulled"}
    assert isinstance(pulled.result.steps[0]["seconds"], float) and pulled.result.steps[0]["cached"]
    assert looked_up(second) == ["add-project", "add-project"]  # the pull, then the export's
    assert second.called("from_image", "run", "commit", "import_layout", "pull") == []
    assert second.names[IMAGE] == pulled.result.image_id
    assert second.names[plan.final.cache_ref] == pulled.result.image_id
    assert "  add-project        pulled     assemble the image" in pulled.said
    assert pulled.warnings() == []
    assert second.called("layout_to_registry") == []  # it is there: nothing to send


def test_a_code_edit_pulls_what_the_project_install_needs_and_runs_the_project_steps(
        project: Path, tmp_path: Path) -> None:
    first = fresh_engine()
    exported_by(first, plan_of(project), tmp_path / "a")
    second = second_runner(first)
    edited = plan_of(project, **CODE_EDIT)

    run = runner_build(second, edited, tmp_path / "b", cache_from=(REPO,))

    assert run.status() == {
        "sync-dependencies": "pulled", "dependencies-layer": "pulled",
        "prepare-runtime": "pulled", "runtime-base": "cached",  # a registry image: found here
        "install-project": "built", "project-layer": "built", "add-project": "built"}
    # From the final step backwards; the builder base and its packages are never asked.
    order = looked_up(second)
    assert order[0] == "add-project" and set(order) == {
        "add-project", "project-layer", "install-project", "sync-dependencies",
        "dependencies-layer", "prepare-runtime"}
    assert order.index("project-layer") < order.index("install-project") < order.index(
        "sync-dependencies")
    assert second.commits() == []
    made = {c.args[1].rpartition("-")[2] for c in second.called("from_image")}
    assert made == {"project", "test"}  # install-project's container, the image's tests


def test_a_bootstrapped_runtime_base_missing_here_comes_from_the_cache(
        project: Path, tmp_path: Path) -> None:
    first = fresh_engine()
    plan = plan_of(project, BOOTSTRAP_RECIPE)
    first.add_image(plan.step("runtime-base").cache_ref)  # bootstrapped there before
    runner_build(first, plan, tmp_path / "a", cache_to=REPO)
    assert f"{REPO}:{entry_tag('runtime-base', plan.step('runtime-base').key)}" in \
        first.registry.tags
    second = second_runner(first)

    # No mmdebstrap (the unit tier's guard would refuse it): the base is pulled.
    run = runner_build(second, plan_of(project, BOOTSTRAP_RECIPE, **CODE_EDIT), tmp_path / "b",
                       cache_from=(REPO,))

    assert run.status()["runtime-base"] == "pulled"
    assert second.names[plan.step("runtime-base").cache_ref] in second.store
    # Once here, it is found in local storage: never asked for again.
    mark = len(second.calls)
    runner_build(second, plan_of(project, BOOTSTRAP_RECIPE, source_digest="sha256:" + "f" * 64),
                 tmp_path / "b", cache_from=(REPO,))
    assert "runtime-base" not in looked_up(second, mark)


def test_an_entry_whose_recorded_key_differs_is_a_warning_and_the_step_is_built(
        project: Path, tmp_path: Path) -> None:
    first = fresh_engine()
    plan = plan_of(project)
    exported_by(first, plan, tmp_path / "a")
    second = second_runner(first)
    edited = plan_of(project, **CODE_EDIT)
    # The edited build's final entry tag names the first build's manifest (re-tagged).
    tags = first.registry.tags
    tags[f"{REPO}:{entry_tag('add-project', edited.final.key)}"] = \
        tags[f"{REPO}:{entry_tag('add-project', plan.final.key)}"]

    run = runner_build(second, edited, tmp_path / "b", cache_from=(REPO,))

    assert run.status()["add-project"] == "built"
    (warning,) = run.warnings()
    assert f"ignoring {REPO}:{entry_tag('add-project', edited.final.key)}" in warning
    assert "records the key" in warning


def test_a_registry_that_is_down_is_one_warning_and_the_build_goes_on(
        project: Path, tmp_path: Path) -> None:
    engine = fresh_engine()
    engine.registry.down = True
    plan = plan_of(project)

    run = runner_build(engine, plan, tmp_path / "a", cache_from=(REPO,), cache_to=REPO)

    assert run.status() == ALL_BUILT
    assert engine.names[IMAGE] == run.result.image_id
    (warning,) = run.warnings()
    assert "cannot be reached" in warning and "going on without it" in warning
    # Its summary does not read like success: a CI job would never fill its cache.
    assert f"cache {REPO}: NOT exported" in run.said and "new entr" not in run.said
    # Off after the first answer: one request in all, none for the export.
    assert len(engine.called("registry_manifest", "layout_to_registry")) == 1


def test_several_repositories_are_asked_in_order_and_no_cache_asks_none(
        project: Path, tmp_path: Path) -> None:
    first = fresh_engine()
    plan = plan_of(project)
    exported_by(first, plan, tmp_path / "a")
    second = second_runner(first)
    empty = "registry.example:5000/team/empty"

    run = runner_build(second, plan, tmp_path / "b", cache_from=(empty, REPO))
    assert run.status() == {"add-project": "pulled"}
    assert [c.args[0].rpartition(":")[0] for c in second.called("registry_manifest")] == [
        empty, REPO]

    third = second_runner(first)
    run = runner_build(third, plan, tmp_path / "c", cache_from=(REPO,), no_cache=True)
    assert run.status() == ALL_BUILT  # (--no-cache bootstraps no base it has again)
    assert third.called("registry_manifest") == []
    assert BASE in third.names


def test_an_export_that_fails_is_a_warning_and_the_build_stands(
        project: Path, tmp_path: Path) -> None:
    engine = fresh_engine()
    plan = plan_of(project)
    layers = tmp_path / "a" / "layers"

    def prune_meanwhile(call: Call) -> None:
        # `cache prune` empties the layer cache between the final tag and the export.
        if call.method == "tag" and IMAGE in call.args[1:]:
            shutil.rmtree(layers / "blobs")

    engine.on_call = prune_meanwhile
    run = runner_build(engine, plan, tmp_path / "a", cache_to=REPO)

    assert engine.names[IMAGE] == run.result.image_id
    assert sorted(w.split("not exporting ")[1].split(":")[0] for w in run.warnings()) == [
        "dependencies-layer", "prepare-runtime", "project-layer"]
    exported = {tag.rpartition(":")[2].rpartition("-")[0] for tag in engine.registry.tags}
    assert exported == {"prepare-builder", "sync-dependencies", "add-project"}
    assert f"cache {REPO}: 3 new entries, 0 there already, 3 NOT sent" in run.said
