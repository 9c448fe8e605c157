"""The runner on its own: a step type is one table entry, results are typed, a layer can
be handed on like an image, and the first failure stops the steps not yet started."""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from fake_engine import FakeEngine
from test_executor import RECIPE, plan_of, project  # noqa: F401

from uvbuild.build.context import Inputs, StepContext
from uvbuild.build.executor import STEP_KINDS
from uvbuild.build.results import ImageResult, InstallResult, LayerResult, LayerSet, StepResult
from uvbuild.build.runner import Runner, StepKind
from uvbuild.errors import StepFailed
from uvbuild.output.progress import Reporter
from uvbuild.plan.planner import InstallProject, Plan, Step


def test_every_step_type_the_planner_makes_has_a_kind(project: Path) -> None:  # noqa: F811
    assert {type(step) for step in plan_of(project).steps} <= set(STEP_KINDS)


@dataclass(frozen=True, kw_only=True, slots=True)
class Write(Step):
    """A step that writes a layer file."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Apply(Step):
    """A step that commits an image from a layer file."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Broken(Step):
    """A step that fails."""


PLAN = Plan(image="localhost/toy:1", timestamp=0, project_root="/nowhere", steps=(
    Write(name="write", key="1" * 64, needs=()),
    Apply(name="apply", key="2" * 64, needs=("write",)),
))
CTX = cast(StepContext, object())  # the toy steps use nothing of it


def toy_runner(engine: FakeEngine, plan: Plan, made: list[str]) -> Runner:
    def write(ctx: StepContext, step: Write, inputs: Inputs) -> StepResult:
        made.append(step.name)
        return LayerResult(path=Path("/tmp/layer.tar"), digest="sha256:" + "a" * 64, size=10,
                           created_by="toy")

    def apply(ctx: StepContext, step: Apply, inputs: Inputs) -> StepResult:
        made.append(step.name)
        layer = inputs.of("write", LayerResult)
        assert "write" not in inputs.refs  # a layer file is no image to read from
        with pytest.raises(TypeError, match="handed on a Layer, not a ImageResult"):
            inputs.of("write", ImageResult)
        return ImageResult(engine.add_image(None, labels={"from": layer.digest}))

    def broken(ctx: StepContext, step: Broken, inputs: Inputs) -> StepResult:
        raise StepFailed("broken")

    kinds: dict[type[Step], StepKind[Any]] = {
        Write: StepKind(write), Apply: StepKind(apply), Broken: StepKind(broken)}
    return Runner(plan, kinds, engine, Reporter(style="human", stream=io.StringIO()))


def test_a_step_hands_on_a_layer_file_and_each_step_runs_once() -> None:
    engine, made = FakeEngine(), []
    runner = toy_runner(engine, PLAN, made)

    threads = [threading.Thread(target=runner.result, args=(PLAN.steps[-1], CTX, {}))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result = runner.result(PLAN.steps[-1], CTX, {})
    runner.threads.join()

    assert made == ["write", "apply"]
    assert isinstance(result, ImageResult)
    assert engine.store[result.image_id].labels == {"from": "sha256:" + "a" * 64}
    # The final step is named by the build, with the output name; a layer is no image.
    assert engine.tags() == []


def test_a_cached_step_is_not_run_and_its_kind_says_what_it_hands_on() -> None:
    engine, made = FakeEngine(), []
    image_id = engine.add_image(None)
    runner = toy_runner(engine, PLAN, made)

    result = runner.result(PLAN.steps[-1], CTX, {PLAN.steps[-1].cache_ref: image_id})

    assert (made, result) == ([], ImageResult(image_id))
    assert STEP_KINDS[InstallProject].from_cache(ImageResult(image_id)) == InstallResult(
        files=ImageResult(image_id))


def test_an_unregistered_step_type_is_a_clear_error() -> None:
    @dataclass(frozen=True, kw_only=True, slots=True)
    class Unknown(Step):
        pass

    plan = Plan(image="localhost/toy:1", timestamp=0, project_root="/nowhere",
                steps=(Unknown(name="unknown", key="3" * 64, needs=()),))
    runner = toy_runner(FakeEngine(), plan, [])
    with pytest.raises(TypeError, match="no step kind is registered for Unknown"):
        runner.result(plan.steps[0], CTX, {})
    assert runner.threads.failed.is_set()


def test_the_first_failure_stops_the_steps_not_yet_started() -> None:
    plan = Plan(image="localhost/toy:1", timestamp=0, project_root="/nowhere", steps=(
        Write(name="write", key="1" * 64, needs=()),
        Broken(name="broken", key="4" * 64, needs=()),
        Apply(name="apply", key="2" * 64, needs=("write", "broken")),
    ))
    made: list[str] = []
    runner = toy_runner(FakeEngine(), plan, made)

    with pytest.raises(StepFailed):  # this thread's own: "not started" (Build says why)
        runner.result(plan.steps[-1], CTX, {})
    runner.threads.join()

    assert runner.threads.failed.is_set() and str(runner.threads.first_error) == "broken"
    assert "apply" not in made


def test_a_step_kept_outside_local_storage_is_found_by_its_kind_and_its_needs_not_made(
) -> None:
    made: list[str] = []
    kept = LayerSet(step="apply", key="2" * 64, layers=(), facts={"user": "0:0"})

    def write(ctx: StepContext, step: Write, inputs: Inputs) -> StepResult:
        made.append(step.name)
        return ImageResult("never")

    def apply(ctx: StepContext, step: Apply, inputs: Inputs) -> StepResult:
        made.append(step.name)
        return kept

    kinds: dict[type[Step], StepKind[Any]] = {
        Write: StepKind(write), Apply: StepKind(apply, kept=lambda ctx, step: kept)}
    reporter = Reporter(style="human", stream=io.StringIO())
    runner = Runner(PLAN, kinds, FakeEngine(), reporter)

    assert runner.result(PLAN.steps[-1], CTX, {}) is kept
    assert made == []
    assert reporter.records == [{"step": "apply", "status": "cached", "cached": True,
                                 "seconds": 0.0}]
