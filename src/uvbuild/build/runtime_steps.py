"""The runtime image's config and its tests, shared by the assembly (build/assemble.py).

The runtime's layers are made by build/layer_steps.py and the image is assembled by
build/assemble.py; this module says what its config is, checks that its Python is the
builder's, and runs `runtime.test` in a container of it, before it is tagged.
"""

from __future__ import annotations

from collections.abc import Mapping

from uvbuild.build import batch
from uvbuild.build.context import StepContext
from uvbuild.engine import cmd
from uvbuild.engine.buildah import ImageConfig
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


def _path(env: tuple[str, ...]) -> str:
    for item in env:
        if item.startswith("PATH="):
            return item[len("PATH="):]
    return STANDARD_PATH


def final_config(step: AddProject, base_env: tuple[str, ...],
                 labels: dict[str, str]) -> ImageConfig:
    """The shipped image's config: venv first on PATH, then the recipe's settings."""
    entrypoint, command = step.entrypoint, step.cmd
    if entrypoint is not None and command is None:
        command = ()  # a new entrypoint drops the base's CMD, as in a Containerfile
    env = (("PATH", f"{VENV}/bin:{_path(base_env)}"), ("VIRTUAL_ENV", VENV), *step.env)
    return ImageConfig(workdir=step.workdir, env=env, entrypoint=entrypoint, cmd=command,
                       ports=step.expose, labels=tuple(sorted({**labels, **dict(step.labels)}
                                                              .items())),
                       stop_signal=step.stop_signal)


def run_tests(build: StepContext, step: AddProject, ctr: str, user: str,
              gate: cmd.Gate | None = None) -> cmd.Result:
    """The `runtime.test` commands, in order, as the runtime user, in one `buildah run`
    (held at `gate` until the container has its files, if one is given)."""
    # No environment: the job is readable by the runtime user, and holds no secret.
    with build.job(batch.labelled("runtime.test", step.test), gated=gate is not None) as job:
        return build.engine.run(ctr, job.argv, mounts=(job.mount,), user=user or None,
                                workdir=step.workdir, stream=build.settings.verbose,
                                gate=gate)


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
