"""The runtime stage: base + packages + user, a dependencies layer, a project layer.

No command runs in the final image's working container: it is configured early, the
project layer and runtime.copy are put in, and it is committed. `runtime.test` runs
meanwhile in a twin container (same base image, same files, same config), which is
removed afterwards, so tests cannot leave files in what ships. The tests'
`buildah run` starts with the twin, held at a gate (cmd.Gate) until the twin
has its files: the run's set-up is done while the project installs.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path

from uvbuild.build import batch
from uvbuild.build.builder_steps import (
    PROJECT_LAYER,
    copy_missing,
    install_packages,
    read_python_label,
)
from uvbuild.build.context import Inputs, StepContext
from uvbuild.build.labels import INSTALLED_LABEL, KEY_LABEL, PYTHON_LABEL, USER_LABEL
from uvbuild.build.results import ImageResult, InstallResult
from uvbuild.build.tarball import append_file
from uvbuild.engine import cmd
from uvbuild.engine.buildah import CommitOptions, ImageConfig
from uvbuild.errors import EngineError, ProjectError, StepFailed
from uvbuild.incontainer import script
from uvbuild.output.sbom import SBOM_PATH, make_sbom
from uvbuild.plan.planner import (
    APP,
    STANDARD_PATH,
    VENV,
    AddDependencies,
    AddProject,
    PrepareRuntime,
)

# How `buildah copy --from` tells of a source that is not there.
_NOT_FOUND = re.compile(r"no such file or directory|no items matching glob", re.IGNORECASE)


def _labels(build: StepContext, image: str) -> dict[str, str]:
    info = build.engine.image(image)
    return dict(info.labels) if info else {}


def _describe(python: Mapping[str, str]) -> str:
    return f"{python.get('python', '?')} (Python {python.get('version', '?')})"


def prepare_runtime(build: StepContext, step: PrepareRuntime, inputs: Inputs) -> ImageResult:
    """The runtime base with `runtime.packages` and the runtime user.

    Needs nothing from the builder, so it runs while the builder syncs: whether the
    runtime's Python is the builder's is checked when the two meet (add-dependencies).
    """
    interpreter = step.python
    base = inputs.ref("runtime-base")
    with build.container(base, "runtime") as ctr:
        if step.packages:
            install_packages(build, ctr, step.packages, "runtime")
        result = build.engine.run(ctr, [interpreter, "-c", script("mkuser.py"), step.user],
                                  network=False, stream=False)
        if not result.ok:
            raise ProjectError(
                f"the runtime base has no usable {interpreter}: the virtualenv made in the "
                f"builder needs the same interpreter at the same path in the runtime "
                f"({cmd.describe_failure(result)})",
                hint="use the same base (or the same Python packages) for builder and runtime",
            )
        try:
            facts = json.loads(result.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError) as exc:
            raise EngineError(f"creating the runtime user gave no answer: "
                              f"{cmd.describe_failure(result)}") from exc
        user = f"{facts['uid']}:{facts['gid']}"
        build.engine.configure(ctr, ImageConfig(user=user))
        return ImageResult(build.engine.commit(ctr, build.commit_options(step, **{
            USER_LABEL: user,
            PYTHON_LABEL: json.dumps({"python": facts["python"],
                                             "version": facts["version"]}),
        })))


def check_python(builder: Mapping[str, str], runtime: Mapping[str, str]) -> None:
    """The runtime Python must be the builder's: same path, same major.minor."""
    if builder.get("python") != runtime.get("python") or builder.get("version") != runtime.get(
            "version"):
        raise ProjectError(
            f"runtime Python does not match the builder's: the builder's virtualenv uses "
            f"{_describe(builder)}, the runtime has {_describe(runtime)}",
            hint="use bases with the same Python (same path and major.minor) for both stages")


def open_dependencies(build: StepContext, step: AddDependencies, runtime_image: str) -> str:
    """add-dependencies' working container, from prepare-runtime's image: opened early,
    while the builder still syncs (StepKind.opens)."""
    return build.open_container(runtime_image, step.name)


def add_dependencies(build: StepContext, step: AddDependencies, inputs: Inputs) -> ImageResult:
    """The dependencies layer: /app/.venv as synced without the project."""
    parents = inputs.refs
    check_python(read_python_label(_labels(build, parents["sync-dependencies"])),
                 read_python_label(_labels(build, parents["prepare-runtime"])))
    ctr = inputs.opened(str)
    build.engine.copy(ctr, VENV, VENV, from_ref=parents["sync-dependencies"])
    return ImageResult(build.engine.commit(ctr, build.commit_options(step)))


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


@dataclass(frozen=True, slots=True)
class FinalContainers:
    """Where the final image is made, and its twin, where `runtime.test` runs."""

    container: str  # committed: becomes the final image
    test: str | None  # the same base, files and config; None without runtime.test
    user: str  # the runtime user (uid:gid) the tests run as
    # The tests' run, started early and waiting at `gate` (with runtime.test only).
    tests: Future[cmd.Result] | None = None
    gate: cmd.Gate | None = None

    @property
    def all(self) -> tuple[str, ...]:
        return (self.container,) if self.test is None else (self.container, self.test)


def open_final(build: StepContext, step: AddProject, deps_image: str) -> FinalContainers:
    """The final step's containers, configured: done early, while the project installs.

    The tests get a container of their own, filled and configured exactly like the one
    committed, so they run while the commit does and cannot leave files in it. Their
    `buildah run` starts here and waits at a gate for the files.
    """
    info = build.engine.image(deps_image)
    base_env = info.env if info else ()
    user = (info.labels.get(USER_LABEL) if info else None) or ""
    # The step's labels go with the config (and win over the recipe's), so the commit
    # itself needs no config call.
    config = final_config(step, base_env, {})
    ours = build.commit_options(step, **{KEY_LABEL: step.key}).labels
    config = replace(config, labels=tuple(sorted({**dict(config.labels), **ours}.items())))
    made = []
    for purpose in (step.name, f"{step.name}-test") if step.test else (step.name,):
        ctr = build.open_container(deps_image, purpose)
        build.engine.configure(ctr, config)
        made.append(ctr)
    final = FinalContainers(container=made[0], test=made[1] if step.test else None, user=user)
    if final.test is None:
        return final
    gate = build.gate()
    tests = build.submit(lambda: _run_tests(build, step, str(final.test), user, gate),
                        name=f"uvbuild-test-{step.name}")
    return replace(final, tests=tests, gate=gate)


def add_project(build: StepContext, step: AddProject, inputs: Inputs) -> ImageResult:
    """Project layer + runtime.copy into the configured containers (opened early by
    open_final); the image committed while the tests run in its twin."""
    project_image = inputs.ref("install-project")
    final = inputs.opened(FinalContainers)
    try:
        fill = _filler(build, step, project_image, inputs.of("install-project", InstallResult))
        # The twin first (two `buildah add` at once take as long as both one by one):
        # its tests are the longer way to the end than the commit.
        if final.test is not None:
            fill(final.test)
        if final.gate is not None:
            final.gate.open()  # the twin is filled: the tests go on
        fill(final.container)
        options = CommitOptions(timestamp=build.plan.timestamp)  # labels: set in open_final
        commit = build.submit(lambda: build.finish_final(final.container, options, keep=final.test),
                             name=f"uvbuild-commit-{step.name}")
        try:
            if final.test is not None:
                ran = (final.tests.result() if final.tests is not None
                       else _run_tests(build, step, final.test, final.user, None))
                _judge_tests(build, step, ran)
        except BaseException:
            _discard(build, commit)
            raise
    finally:
        if final.gate is not None:
            final.gate.shut()  # no-op once open
    return ImageResult(commit.result())


def _discard(build: StepContext, commit: Future[str]) -> None:
    """The image of a build whose tests failed: removed once its commit is done."""
    try:
        image_id = commit.result()
    except BaseException:  # the commit failed or was stopped too: nothing to remove
        return
    build.discard_image(image_id)


def _filler(build: StepContext, step: AddProject, project_image: str,
            made: InstallResult) -> Callable[[str], None]:
    """What puts the project layer, the SBOM and runtime.copy into a final container.

    The SBOM lists the installed packages: what install-project's commands reported
    when that step ran in this build (its layer is then a tar on the host already, and
    the SBOM joins it), else what its image's label recorded (the layer is copied from
    that image, the SBOM added from a tar of its own). Made once for both containers.
    """
    layer_tar = made.layer_tar
    if layer_tar is not None:
        installed, tarball = made.installed, str(layer_tar)
    else:
        installed = json.loads(_labels(build, project_image).get(INSTALLED_LABEL, "{}"))
        tarball = str(build.scratch_dir("sbom") / "sbom.tar")
    document = _sbom(build, installed)
    if document is not None:  # at SBOM_PATH, owned by root
        append_file(Path(tarball), posixpath.relpath(SBOM_PATH, APP), document,
                    timestamp=build.plan.timestamp)
    add_tarball = layer_tar is not None or document is not None

    def fill(ctr: str) -> None:
        if layer_tar is None:
            build.engine.copy(ctr, PROJECT_LAYER, APP, from_ref=project_image)
        if add_tarball:
            build.engine.add_archive(ctr, tarball, APP)
        for entry in step.copy:
            try:
                build.engine.copy(ctr, entry.source, entry.dest, from_ref=project_image)
            except EngineError as exc:
                # Said as install-project says it of entries into /app (venvdelta.py).
                if _NOT_FOUND.search(exc.message) and (entry.source in exc.message
                                                       or "glob" in exc.message):
                    raise copy_missing(entry.index, entry.source) from exc
                raise

    return fill


def _sbom(build: StepContext, installed: object) -> bytes | None:
    if build.plan.project is None:
        return None
    return make_sbom(build.plan.project, build.plan.locked,
                     installed if isinstance(installed, dict) else {},
                     timestamp=build.plan.timestamp)


def _run_tests(build: StepContext, step: AddProject, ctr: str, user: str,
               gate: cmd.Gate | None) -> cmd.Result:
    """The `runtime.test` commands, in order, as the runtime user, in one `buildah run`
    (held at `gate` until the container has its files, if one is given)."""
    # No environment: the job is readable by the runtime user, and holds no secret.
    with build.job(batch.labelled("runtime.test", step.test), gated=gate is not None) as job:
        return build.engine.run(ctr, job.argv, mounts=(job.mount,), user=user or None,
                                workdir=step.workdir, stream=build.settings.verbose,
                                gate=gate)


def _judge_tests(build: StepContext, step: AddProject, ran: cmd.Result) -> None:
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
