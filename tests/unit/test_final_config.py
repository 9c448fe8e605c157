"""The final image's config: the venv's bin/ leads PATH, a PATH in runtime.env too."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_oci import BASE_CONFIG, BASE_MANIFEST, STAMP, layer
from test_plan import GOLDEN_KEYS, RECIPE, plan_of, recipe_of

from uvbuild.build.runtime_steps import final_config, venv_first
from uvbuild.output.oci import base_image, image_config
from uvbuild.plan.planner import LAYER_FORM, AddProject, step_key_of

BASE_ENV = ("PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8")
WITH_PATH = RECIPE.replace("  env: {LOG_LEVEL: info}",
                           '  env: {LOG_LEVEL: info, PATH: "/opt/tools/bin:/usr/bin:/bin"}')


@pytest.mark.parametrize(("written", "shipped"), [
    ("/opt/tools/bin:/usr/bin:/bin", "/app/.venv/bin:/opt/tools/bin:/usr/bin:/bin"),
    # Already an entry: the user's order stays, wherever it is.
    ("/opt/tools/bin:/app/.venv/bin:/usr/bin", "/opt/tools/bin:/app/.venv/bin:/usr/bin"),
    ("/app/.venv/bin/:/usr/bin", "/app/.venv/bin/:/usr/bin"),
    # A prefix or a longer path is not the entry.
    ("/app/.venv/bin2:/usr/bin", "/app/.venv/bin:/app/.venv/bin2:/usr/bin"),
    ("/app/.venv:/usr/bin", "/app/.venv/bin:/app/.venv:/usr/bin"),
    ("", "/app/.venv/bin"),  # no empty entry (the working directory) is added
])
def test_venv_first(written: str, shipped: str) -> None:
    assert venv_first(written) == shipped


def final_step(env: tuple[tuple[str, str], ...]) -> AddProject:
    import dataclasses

    final = plan_of().final
    return dataclasses.replace(final, env=env)


def test_a_path_in_runtime_env_keeps_the_venv_first(tmp_path: Path) -> None:
    step = final_step((("LOG_LEVEL", "info"), ("PATH", "/opt/tools/bin:/usr/bin:/bin")))
    settings = final_config(step, BASE_ENV, {})
    config = image_config(base_image(BASE_MANIFEST, BASE_CONFIG), [layer(tmp_path)], settings,
                          timestamp=STAMP)
    assert config["config"]["Env"] == [
        "LANG=C.UTF-8", "VIRTUAL_ENV=/app/.venv", "LOG_LEVEL=info",
        "PATH=/app/.venv/bin:/opt/tools/bin:/usr/bin:/bin"]


def test_without_a_path_the_config_is_as_before(tmp_path: Path) -> None:
    """The config's bytes, and so the image ID, of a recipe that sets no PATH."""
    step = final_step((("LOG_LEVEL", "info"),))
    settings = final_config(step, BASE_ENV, {})
    assert settings.env == (("PATH", "/app/.venv/bin:/usr/local/bin:/usr/bin:/bin"),
                            ("VIRTUAL_ENV", "/app/.venv"), ("LOG_LEVEL", "info"))
    config = image_config(base_image(BASE_MANIFEST, BASE_CONFIG), [layer(tmp_path)], settings,
                          timestamp=STAMP)
    assert config["config"]["Env"] == ["LANG=C.UTF-8",
                                       "PATH=/app/.venv/bin:/usr/local/bin:/usr/bin:/bin",
                                       "VIRTUAL_ENV=/app/.venv", "LOG_LEVEL=info"]


def test_only_a_recipe_that_sets_path_gets_a_new_final_key() -> None:
    """Its images from before had the PATH as written: not to be found by their key."""
    assert plan_of().final.key == GOLDEN_KEYS["add-project"]
    plan = plan_of(recipe_of(WITH_PATH))
    final = plan.final
    assert dict(final.env)["PATH"] == "/opt/tools/bin:/usr/bin:/bin"
    parents = [plan.step(name) for name in final.needs]
    as_before = step_key_of(final, parents, {"form": LAYER_FORM, "timestamp": plan.timestamp})
    assert final.key != as_before
    assert {s.name: s.key for s in plan.steps[:-1]} == {
        name: key for name, key in GOLDEN_KEYS.items() if name != "add-project"}
