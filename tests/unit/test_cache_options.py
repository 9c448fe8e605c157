"""`uvbuild build --cache-from/--cache-to`: checked before any work, handed on as given; and
how a pulled step is reported."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from uvbuild import cli as cli_module
from uvbuild import pipeline
from uvbuild.build.executor import BuildResult
from uvbuild.output.progress import Reporter
from uvbuild.plan.planner import ProjectLayer


@pytest.mark.parametrize("option, repo, said", [
    ("--cache-from", "org/app-cache", "name the registry too"),
    ("--cache-to", "org/app-cache", "name the registry too"),
    ("--cache-to", "ghcr.io/org/app-cache:v1", "no tag or digest"),
    ("--cache-from", "ghcr.io/org/app-cache@sha256:" + "a" * 64, "no tag or digest"),
    ("--cache-from", "ghcr.io/org/App", "uppercase"),
])
def test_a_bad_cache_repository_is_a_usage_error_before_any_work(
        option: str, repo: str, said: str) -> None:
    # The recipe does not exist: the option is refused before anything reads it.
    result = CliRunner().invoke(cli_module.cli, ["build", "no-such-recipe.yaml", option, repo])
    assert result.exit_code == 2
    assert said in result.output and option in result.output


def test_cache_repositories_and_registry_settings_reach_the_build(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    def fake_build(path: Path, **kwargs: Any) -> BuildResult:
        seen.update(kwargs)
        return BuildResult(image="localhost/x:1", image_id="f" * 64, seconds=1.0)

    monkeypatch.setattr(pipeline, "build", fake_build)
    result = CliRunner().invoke(cli_module.cli, [
        "r.yaml", "-q", "--cache-from", "ghcr.io/org/cache", "--cache-from",
        "docker://127.0.0.1:5000/other", "--cache-to", "ghcr.io/org/cache", "--no-tls-verify",
        "--authfile", str(tmp_path / "auth.json")])
    assert result.exit_code == 0, result.output
    assert seen["cache_from"] == ("ghcr.io/org/cache", "docker://127.0.0.1:5000/other")
    assert seen["cache_to"] == "ghcr.io/org/cache"
    access = seen["outputs"].access
    assert (access.tls_verify, access.authfile) == (False, str(tmp_path / "auth.json"))

    seen.clear()
    assert CliRunner().invoke(cli_module.cli, ["r.yaml", "-q"]).exit_code == 0
    assert seen["cache_from"] == () and seen["cache_to"] is None


STEP = ProjectLayer(name="project-layer", key="1" * 64, needs=("install-project",))


def test_a_pulled_step_is_said_and_recorded_with_its_status_and_seconds() -> None:
    stream = io.StringIO()
    reporter = Reporter("human", stream)
    reporter.pulled(STEP, 1.234)
    reporter.warn("registry cache r/c cannot be reached")
    assert stream.getvalue().splitlines() == [
        "  project-layer      pulled     project layer: the project, runtime.copy, SBOM (1.2s)",
        "uvbuild: warning: registry cache r/c cannot be reached"]
    assert reporter.records == [{"step": "project-layer", "status": "pulled", "cached": True,
                                 "seconds": 1.23}]


def test_json_steps_carry_their_status_and_the_document_its_warnings() -> None:
    stream, out = io.StringIO(), io.StringIO()
    reporter = Reporter("json", stream)
    reporter.cached(STEP)
    with reporter.running(STEP):
        pass
    reporter.warn("ignoring r/c:add-project-x")
    reporter.done(image="localhost/x:1", image_id="f" * 64, size=1, seconds=2.0, out=out)
    document = json.loads(out.getvalue())
    assert [(s["status"], s["cached"]) for s in document["steps"]] == [
        ("cached", True), ("built", False)]
    assert all(isinstance(s["seconds"], float) for s in document["steps"])
    assert document["warnings"] == ["ignoring r/c:add-project-x"]
    # Warnings are on stderr in every style; progress lines only in the human one.
    assert stream.getvalue() == "uvbuild: warning: ignoring r/c:add-project-x\n"
