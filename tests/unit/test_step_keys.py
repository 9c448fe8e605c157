"""Step keys are made from the steps' declared fields: every field is in the key unless
its class leaves it out on purpose, and the fields left out are listed here.

A field added to a step type is keyed by itself (cachekey.key_value walks the
dataclass); leaving one out needs an `unkeyed` entry with a reason *and* a line in
LEFT_OUT below, so that no field drops out of the keys without a test noticing.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_plan import INPUTS, plan_of, recipe_of

from uvbuild.plan import cachekey, planner
from uvbuild.plan.cachekey import key_value, unkeyed_fields
from uvbuild.plan.planner import (
    BYTECODE_FORM,
    LayerCopy,
    Plan,
    Step,
    SyncDependencies,
    make_plan,
    step_key_of,
)
from uvbuild.recipe.model import BootstrapBase, ImageBase, SyncOptions

# Every field left out of a key, by class. A step type not named here leaves out only
# what every step does (Step's own).
STEP_LEFT_OUT = {"name", "key", "needs"}
LEFT_OUT: dict[str, set[str]] = {
    "Step": STEP_LEFT_OUT,
    "ResolveBase": STEP_LEFT_OUT | {"stage", "base"},
    "SyncDependencies": STEP_LEFT_OUT | {"manifests", "manifests_tar", "workspace",
                                         "python_request"},
    "InstallProject": STEP_LEFT_OUT | {"sources", "sources_tar"},
    "LayerCopy": {"index"},
}

# The dataclasses that keys walk into (a step's fields hold them).
NESTED = (LayerCopy, SyncOptions, ImageBase, BootstrapBase)


def step_types(cls: type[Step] = Step) -> Iterator[type[Step]]:
    """Step and every class derived from it, those added later included."""
    # A slots dataclass is a second class made from the first: that first one, left
    # behind but still a subclass, is not what its module names.
    if getattr(sys.modules[cls.__module__], cls.__qualname__, None) is cls:
        yield cls
    for sub in cls.__subclasses__():
        yield from step_types(sub)


def field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


@pytest.mark.parametrize("cls", [*step_types(), *NESTED], ids=lambda c: c.__name__)
def test_the_fields_left_out_are_the_listed_ones_each_with_a_reason(cls: type) -> None:
    left_out = unkeyed_fields(cls)
    default = STEP_LEFT_OUT if issubclass(cls, Step) else set()

    assert set(left_out) == LEFT_OUT.get(cls.__name__, default), (
        f"{cls.__name__}: a field left out of the key must be listed in LEFT_OUT")
    assert set(left_out) <= field_names(cls), "an `unkeyed` entry names no field"
    assert all(reason.strip() for reason in left_out.values())


def keyed_document(step: Step) -> dict[str, Any]:
    kind, fields = key_value(step)
    assert kind == type(step).__name__
    assert isinstance(fields, dict)
    return fields


def test_every_other_field_of_every_planned_step_is_in_its_key() -> None:
    for step in plan_of().steps:
        assert set(keyed_document(step)) == field_names(type(step)) - set(
            unkeyed_fields(type(step))), step.name


def different(value: Any) -> Any:
    """Some other value of any field (its type need not hold: keys do not look)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if value is None:
        return "x"
    if isinstance(value, tuple):
        return (*value, "x")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        left_out = unkeyed_fields(type(value))
        first = next(f.name for f in dataclasses.fields(value) if f.name not in left_out)
        return dataclasses.replace(value, **{first: different(getattr(value, first))})
    raise AssertionError(f"no other value for {value!r}: teach `different`")


def keys_of(plan: Plan) -> Iterator[tuple[Step, Callable[[Step], str]]]:
    """Each step of `plan` with a function giving the key of it, or of a changed copy."""
    for step in plan.steps:
        parents = [plan.step(name) for name in step.needs]
        yield step, lambda s, p=parents: step_key_of(s, p, {"timestamp": 1})


def test_a_change_to_any_keyed_field_changes_the_key() -> None:
    for step, key in keys_of(plan_of()):
        for name in field_names(type(step)) - set(unkeyed_fields(type(step))):
            changed = dataclasses.replace(step, **{name: different(getattr(step, name))})
            assert key(changed) != key(step), f"{step.name}.{name} is not in the key"


def test_a_change_to_a_field_left_out_keeps_the_key() -> None:
    for step, key in keys_of(plan_of()):
        # (`needs` cannot change alone: the parents' keys stand for it.)
        for name in set(unkeyed_fields(type(step))) - {"needs"}:
            changed = dataclasses.replace(step, **{name: different(getattr(step, name))})
            assert key(changed) == key(step), f"{step.name}.{name} is in the key"


def test_a_field_inside_a_keyed_value_is_keyed_too() -> None:
    plan = plan_of()
    sync, parents = plan.step("sync-dependencies"), [plan.step("prepare-builder")]
    assert isinstance(sync, SyncDependencies)
    for name in field_names(SyncOptions):
        options = dataclasses.replace(sync.sync, **{name: different(getattr(sync.sync, name))})
        assert (step_key_of(dataclasses.replace(sync, sync=options), parents, {})
                != step_key_of(sync, parents, {})), name


def test_the_plan_keys_are_the_keys_of_the_steps_with_their_measures() -> None:
    plan = make_plan(recipe_of(), INPUTS)
    sync = plan.step("sync-dependencies")
    measured = {"manifests": INPUTS.manifest_digest, "uv": INPUTS.uv_version,
                "bytecode": BYTECODE_FORM, "timestamp": INPUTS.timestamp}

    assert sync.key == step_key_of(sync, [plan.step("prepare-builder")], measured)


def test_a_value_with_no_key_form_is_refused() -> None:
    with pytest.raises(TypeError, match="no key form"):
        key_value(Path("/home/me/project"))
    with pytest.raises(TypeError, match="no key form"):
        key_value({1: "a"})


def test_both_bases_of_one_image_share_a_key() -> None:
    # One bootstrapped image serves both chains when their definitions match.
    plan = make_plan(recipe_of(), dataclasses.replace(INPUTS, runtime_base_id="a" * 64))
    assert plan.step("builder-base").key == plan.step("runtime-base").key


def test_the_cache_format_is_in_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    before = plan_of()
    monkeypatch.setattr(cachekey, "CACHE_FORMAT", cachekey.CACHE_FORMAT + 1)
    after = plan_of()
    assert all(a.key != b.key for a, b in zip(before.steps, after.steps, strict=True))


def test_the_layer_form_is_in_the_keys_of_the_steps_that_make_layers_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A layer step's key is its type, the layers' form and the key of the builder step it
    # comes from: nothing of the runtime side (and no builder key holds the form).
    before = plan_of()
    monkeypatch.setattr(planner, "LAYER_FORM", planner.LAYER_FORM + 1)
    after = plan_of()

    assert {a.name for a, b in zip(before.steps, after.steps, strict=True) if a.key != b.key} == {
        "dependencies-layer", "project-layer", "prepare-runtime", "add-project"}
    assert after.step("dependencies-layer").needs == ("sync-dependencies",)
    assert after.step("project-layer").needs == ("install-project",)
