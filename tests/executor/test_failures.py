"""Failures told by their cause: a full disk (whatever step meets it), a failing command's
stdout and stderr, a runtime.copy source the builder lacks wherever it goes."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest
from fake_engine import VENVDELTA, FakeEngine
from test_executor import IMAGE, RECIPE, build, engine, plan_of, project  # noqa: F401, F811

from uvbuild.build import batch, builder_steps
from uvbuild.build.builder_steps import UV_TARGET
from uvbuild.engine.diskfull import DiskFull
from uvbuild.errors import EngineError, ProjectError, StepFailed

UV_FULL = ("Downloading fastapi (93.4KiB)\n"
           "error: Failed to install: fastapi-0.115.0-py3-none-any.whl\n"
           "  Caused by: failed to write to file `/app/.venv/lib/python3.13/x.py`: No space "
           "left on device (os error 28)\n")


def test_a_failing_command_shows_its_stdout_and_its_stderr(engine: FakeEngine, project: Path,
                                                          tmp_path: Path) -> None:
    engine.fail_run("make assets", returncode=2, stdout="compiled 3 of 4 assets\nlogo.svg: bad\n",
                    stderr="warning: make is old\n")

    with pytest.raises(StepFailed) as raised:
        build(engine, plan_of(project), tmp_path)

    assert raised.value.message == (
        "builder.run[0] `make assets` failed: `/bin/sh -c 'make assets'` failed with exit "
        "code 2:\n    --- stdout:\n    compiled 3 of 4 assets\n    logo.svg: bad\n"
        "    --- stderr:\n    warning: make is old")


@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
def test_a_full_disk_in_uv_sync_is_told_as_such(engine: FakeEngine, project: Path,
                                                tmp_path: Path, verbose: bool) -> None:
    engine.fail_run(lambda argv: argv[:2] == (UV_TARGET, "sync"), returncode=2, stderr=UV_FULL)

    with pytest.raises(DiskFull) as raised:
        build(engine, plan_of(project), tmp_path, verbose=verbose)

    error = raised.value
    assert error.exit_code == 5 and error.kind == "engine error"
    assert error.message.startswith("no space left on device: ")
    assert "image store /var/lib/containers/storage" in error.message
    assert "No space left on device (os error 28)" in error.message
    assert "uvbuild cache prune" in str(error.hint)
    assert "build-essential" not in str(error)  # not uv sync's own hint
    assert engine.live == {} and IMAGE not in engine.names


def test_an_unreachable_index_gets_a_network_hint_not_build_essential(
        engine: FakeEngine, project: Path, tmp_path: Path) -> None:
    engine.fail_run(lambda argv: argv[:2] == (UV_TARGET, "sync"), returncode=2, stderr=(
        "error: Request failed after 3 retries in 8.3s\n"
        "  cause: Failed to fetch: https://127.0.0.1:9/simple/pytest/\n"
        "  cause: tcp connect error\n  cause: Connection refused (os error 111)\n"))

    with pytest.raises(StepFailed) as raised:
        build(engine, plan_of(project), tmp_path)

    assert "Connection refused" in raised.value.message
    assert "could not download from a package index" in str(raised.value.hint)
    assert "build-essential" not in str(raised.value.hint)


def test_an_extra_uv_refuses_is_a_project_error_not_a_packages_hint(
        engine: FakeEngine, project: Path, tmp_path: Path) -> None:
    """A dynamic extra is not judged before the build: uv's refusal is told as such."""
    engine.fail_run(lambda argv: argv[:2] == (UV_TARGET, "sync"), returncode=2, stderr=(
        "error: Extra `nosuch` is not defined in the `optional-dependencies` table for "
        "`app`\n"))

    with pytest.raises(ProjectError) as raised:
        build(engine, plan_of(project), tmp_path)

    assert raised.value.exit_code == 4
    assert raised.value.message.startswith("uv sync refused builder.sync's extras or groups: ")
    assert "Extra `nosuch` is not defined" in raised.value.message
    assert "build-essential" not in str(raised.value.hint)
    assert engine.live == {} and IMAGE not in engine.names


def test_a_full_disk_in_a_buildah_commit(engine: FakeEngine, project: Path,
                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def commit(container: str, options: object) -> str:
        raise EngineError("committing the image: `buildah commit` failed with exit code 125:\n"
                          "    Error: writing blob: storing blob to file \"/var/tmp/x\": write "
                          "/var/tmp/x: no space left on device")

    monkeypatch.setattr(engine, "commit", commit)
    with pytest.raises(DiskFull) as raised:
        build(engine, plan_of(project), tmp_path)
    assert "committing the image" in raised.value.message
    assert engine.live == {}


def test_a_full_scratch_space_on_the_host(engine: FakeEngine, project: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr("tempfile.tempdir", None)  # gettempdir() reads TMPDIR again

    def write_job(folder: Path, *args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder / "run.sh"))

    monkeypatch.setattr(batch, "write_job", write_job)
    with pytest.raises(DiskFull) as raised:
        build(engine, plan_of(project), tmp_path)

    message = raised.value.message
    print(message)
    assert f"scratch space ($TMPDIR) {scratch}" in message
    assert "run.sh" in message
    assert "point TMPDIR at a folder with room" in str(raised.value.hint)
    # The scratch folder went all the same (the fake engine keeps its run root there).
    assert [p for p in scratch.iterdir() if p.name.startswith("uvbuild-")] == []


def test_a_runtime_copy_source_missing_outside_app(engine: FakeEngine, project: Path,
                                                   tmp_path: Path) -> None:
    # Entries outside /app are staged by venvdelta too (into the project layer), which
    # tells of a missing source with its index.
    recipe = RECIPE.replace("    - {from: /src/assets, to: /app/assets}\n",
                            "    - {from: /src/assets, to: /app/assets}\n"
                            "    - {from: /src/nope, to: /srv/nope}\n")
    engine.fail_run(lambda argv: VENVDELTA in argv and "/srv/nope" in argv, returncode=3,
                    stdout='@@uvbuild value copy_missing {"index": 1, "from": "/src/nope"}\n')

    with pytest.raises(StepFailed) as raised:
        build(engine, plan_of(project, recipe), tmp_path)

    assert raised.value.message == ("runtime.copy[1]: /src/nope is not in the builder after "
                                    "builder.run")
    assert raised.value.hint == "check the path, or make a builder.run command create it"
    assert engine.live == {}


@pytest.mark.parametrize("failing, message", [
    ("make assets", "builder.run[0] `make assets` failed: "),
    ("sync", "uv sync of the "),
], ids=["builder.run", "uv-sync"])
def test_an_extra_command_in_a_builder_batch_leaves_the_blame_where_it_is(
        engine: FakeEngine, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        failing: str, message: str) -> None:
    # One more command in front of every builder batch moves every other command one
    # place on: a failure is still told by the failing command's own label.
    run_batch = builder_steps._run_batch

    def with_extra(build: Any, ctr: str, step: Any, commands: list[batch.Command],
                   **options: Any) -> batch.Outcome:
        return run_batch(build, ctr, step, [batch.Command("extra", "true"), *commands],
                         **options)

    monkeypatch.setattr(builder_steps, "_run_batch", with_extra)
    engine.fail_run(failing, returncode=2, stderr="no\n")

    with pytest.raises(StepFailed) as raised:
        build(engine, plan_of(project), tmp_path)

    assert raised.value.message.startswith(message)
    assert engine.live == {}
