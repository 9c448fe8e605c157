"""The runtime image's config and its tests, shared by the assembly (build/assemble.py).

The runtime's layers are made by build/layer_steps.py and the image is assembled by
build/assemble.py; this module says what its config is, checks that its Python is the
builder's, and runs `runtime.test` in a container of it, before it is tagged.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from pathlib import Path

from uvbuild.build import batch
from uvbuild.build.context import StepContext
from uvbuild.engine import cmd
from uvbuild.engine.buildah import ImageConfig, Mount
from uvbuild.errors import ProjectError, StepFailed
from uvbuild.plan.planner import STANDARD_PATH, VENV, AddProject


def _describe(python: Mapping[str, str]) -> str:
    return f"{python.get('python', '?')} (Python {python.get('version', '?')})"


def check_python(builder: Mapping[str, str], runtime: Mapping[str, str]) -> None:
    """The runtime Python must be the builder's: same path, same major.minor."""
    if builder.get("python") != runtime.get("python") or builder.get("version") != runtime.get(
            "version"):
        raise ProjectError(
            f"runtime Python does not match the builder's: the builder's virtualenv uses "
            f"{_describe(builder)}, the runtime has {_describe(runtime)}",
            hint="use bases with the same Python (same path and major.minor) for both stages")


VENV_BIN = f"{VENV}/bin"


def _path(env: tuple[str, ...]) -> str:
    for item in env:
        if item.startswith("PATH="):
            return item[len("PATH="):]
    return STANDARD_PATH


def venv_first(path: str) -> str:
    """A PATH that `runtime.env` sets, with the venv's bin/ leading it: without it,
    `python` and the project's console scripts are not found. A PATH that already has
    the venv's bin/ as an entry is kept as written (its order is the user's choice)."""
    if any(posixpath.normpath(entry) == VENV_BIN for entry in path.split(":") if entry):
        return path
    return f"{VENV_BIN}:{path}" if path else VENV_BIN


def final_config(step: AddProject, base_env: tuple[str, ...],
                 labels: dict[str, str]) -> ImageConfig:
    """The shipped image's config: venv first on PATH, then the recipe's settings (a
    PATH among them with the venv's bin/ in it, see venv_first)."""
    entrypoint, command = step.entrypoint, step.cmd
    if entrypoint is not None and command is None:
        command = ()  # a new entrypoint drops the base's CMD, as in a Containerfile
    # The recipe's PATH takes the place of the first (where it stands in the recipe's
    # env): a recipe without one keeps the config, and the image ID, it always had.
    recipe_env = tuple((name, venv_first(value) if name == "PATH" else value)
                       for name, value in step.env)
    env = (("PATH", f"{VENV_BIN}:{_path(base_env)}"), ("VIRTUAL_ENV", VENV), *recipe_env)
    return ImageConfig(workdir=step.workdir, env=env, entrypoint=entrypoint, cmd=command,
                       ports=step.expose, labels=tuple(sorted({**labels, **dict(step.labels)}
                                                              .items())),
                       stop_signal=step.stop_signal)


STARTED_IN = "/run/uvbuild/started"  # where run_tests' `started` folder is mounted
STARTED = "started"  # the file the tests' batch makes there as it begins


def run_tests(build: StepContext, step: AddProject, ctr: str, user: str,
              gate: cmd.Gate | None = None, started: Path | None = None) -> cmd.Result:
    """The `runtime.test` commands, in order, as the runtime user, in one `buildah run`
    (held at `gate` until the container has its files, if one is given). With
    `started`, an empty host folder, the batch makes the file STARTED in it as it
    begins: `buildah run`'s set-up, which takes store locks, is over by then."""
    mounts: tuple[Mount, ...] = ()
    if started is not None:
        started.chmod(0o1777)  # (the runtime user makes the file; the folder is private)
        mounts = (Mount(str(started), STARTED_IN, read_only=False),)
    # No environment: the job is readable by the runtime user, and holds no secret.
    with build.job(batch.labelled("runtime.test", step.test), gated=gate is not None,
                   started=None if started is None else f"{STARTED_IN}/{STARTED}") as job:
        return build.engine.run(ctr, job.argv, mounts=(*mounts, job.mount),
                                user=user or None, workdir=step.workdir,
                                stream=build.settings.verbose, gate=gate)


def judge_tests(build: StepContext, step: AddProject, ran: cmd.Result) -> None:
    """Raise StepFailed, naming the test, if `runtime.test` (as run_tests ran it) failed."""
    tests = batch.labelled("runtime.test", step.test)
    outcome = batch.parse(tests, ran)
    if outcome.ok:
        return
    hint = f"nothing was tagged; {build.plan.image} is as it was before"
    if outcome.failed is None:
        raise StepFailed(f"running runtime.test failed: {cmd.describe_failure(outcome.run)}",
                         hint=hint)
    failed = next(test for test in tests if test.label == outcome.failed)
    raise StepFailed(f"{failed.label} `{failed.text}` failed: "
                     f"{cmd.describe_failure(outcome.failure)}", hint=hint)
