"""The builder stage: packages, `uv sync` of dependencies, then of the project.

The builder is never shipped: the runtime takes only `/app` (as two layers) and the
`runtime.copy` entries, as canonical layer tars (incontainer/layertar.py) that the
builder's own batches write into host folders mounted for them (never into a
layer). uv, its cache, the CA bundle, proxies and
secrets reach builder commands as per-command mounts only: the environment (uv's
settings, builder.env, builder.secrets, proxies) in a job's private file (batch.py).
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
import shlex
import shutil
import threading
from concurrent.futures import Future
from pathlib import Path

from uvbuild.build import batch
from uvbuild.build.context import Inputs, StepContext
from uvbuild.build.labels import PYTHON_LABEL
from uvbuild.build.results import (
    ContainerResult,
    FollowUp,
    ImageResult,
    InstallResult,
    LayerResult,
    SyncResult,
)
from uvbuild.engine import cmd
from uvbuild.engine.buildah import ImageConfig, Mount
from uvbuild.errors import ProjectError, StepFailed
from uvbuild.incontainer import script
from uvbuild.output import oci
from uvbuild.plan.planner import (
    APP,
    SOURCE_DIR,
    STANDARD_PATH,
    VENV,
    InstallProject,
    PrepareBuilder,
    SyncDependencies,
)
from uvbuild.project.archive import ProjectTar
from uvbuild.project.pythons import (
    PythonRequest,
    allowed_versions,
    check_made_venv,
    read_request,
)

TOOLS = "/run/uvbuild"
UV_TARGET = f"{TOOLS}/bin/uv"
UV_CACHE_TARGET = f"{TOOLS}/cache"
STATE = "/uvbuild-state"  # builder-only bookkeeping: manifest of the deps venv, staged layer
DEPS_MANIFEST = f"{STATE}/deps.json"
PROJECT_LAYER = f"{STATE}/layer"
LAYER_OUT = f"{TOOLS}/out"  # a host folder, mounted for the batch that writes a layer
LAYER_TAR = "layer.tar"
STARTED = ".started"  # made in LAYER_OUT as the install's batch begins (announce_start)
DEPS_TAR = "dependencies.tar"
PROJECT_OUTSIDE = PROJECT_LAYER + ".outside"  # runtime.copy entries outside /app
PROJECT_REMOVED = PROJECT_LAYER + ".removed"  # what the project install removed from /app
FILES_IN = f"{TOOLS}/in"  # a host folder with the project's files, for one batch

# The labels of the builder's batch commands (see batch.Command); builder.run entries
# are "builder.run[N]", as the recipe names them.
PACKAGES = "packages"
UNPACK = "unpack"
UV_SYNC = "uv-sync"
SNAPSHOT = "venv-snapshot"
PYTHON_CHECK = "python-check"
STAGE = "stage-layer"
WRITE_LAYER = "write-layer"
WRITE_STATE = "write-state"
STATE_TAR = "state.tar"  # STATE and /src, a layer of the sync-dependencies image
BYTECODE = "bytecode"
BYTECODE_CACHE = f"{TOOLS}/bytecode"  # the host's .pyc cache, for the sync's batch

# The value packages.sh reports (`@@uvbuild value no_package_manager true`) when the
# image has no package manager it knows.
NO_PACKAGE_MANAGER = "no_package_manager"


def packages_command(packages: tuple[str, ...]) -> batch.Command:
    """packages.sh as a batch command: the package names as its arguments (nothing on
    buildah's command line)."""
    return batch.Command(PACKAGES, f"set -- {shlex.join(packages)}\n{script('packages.sh')}")


def install_packages(build: StepContext, container: str, packages: tuple[str, ...],
                     stage: str) -> None:
    """Install OS packages with the image's package manager (apt-get, apk, dnf, microdnf).

    (The builder is never shipped: the mount points `buildah run -v` leaves may stay. The
    runtime's packages are a layer of what the install changed: layer_steps.py.)"""
    # The proxies in the job's private environment.
    commands = [packages_command(packages)]
    with build.job(commands, env=dict(build.settings.network_env)) as job:
        run = build.engine.run(container, job.argv,
                               mounts=(*build.settings.network_mounts, job.mount),
                               stream=build.settings.verbose)
    failure = packages_failure(batch.parse(commands, run), packages, stage)
    if failure is not None:
        raise failure


def packages_failure(outcome: batch.Outcome, packages: tuple[str, ...],
                     stage: str) -> StepFailed | None:
    """The error of a batch whose packages command failed (None if the batch did not
    fail), its argv named as it would be typed, not by the script's text; a run that
    failed before the command did (buildah's own failure) is told as the install's.

    Only packages.sh's value line says the image has no package manager: no exit
    status can, as each package manager has its own (apt-get's is 100).
    """
    if outcome.ok:
        return None
    if outcome.reported.get(NO_PACKAGE_MANAGER) is True:
        return StepFailed(f"{stage}.packages: the {stage} base has no supported package manager",
                          hint="use a Debian, Ubuntu, Alpine or Fedora-family base, or a base "
                          "that already has these packages")
    failed = outcome.failure if outcome.failed == PACKAGES else outcome.run
    result = dataclasses.replace(failed, argv=("packages.sh", *packages))
    return StepFailed(f"{stage}.packages: installing {' '.join(packages)} failed: "
                      f"{cmd.describe_failure(result)}",
                      hint="check the package names for this base's distribution")


def prepare_builder(build: StepContext, step: PrepareBuilder, inputs: Inputs) -> ImageResult:
    """The builder base with `builder.packages` installed."""
    if not step.packages:
        return inputs.of("builder-base", ImageResult)
    base = inputs.ref("builder-base")
    with build.container(base, "builder") as ctr:
        install_packages(build, ctr, step.packages, "builder")
        return ImageResult(build.engine.commit(ctr, build.commit_options(step)))


def _builder_env(build: StepContext, step: SyncDependencies) -> dict[str, str]:
    env = {
        "PATH": f"{VENV}/bin:{TOOLS}/bin:{STANDARD_PATH}",
        "UV_CACHE_DIR": UV_CACHE_TARGET,
        "UV_PROJECT_ENVIRONMENT": VENV,
        # The cache is a bind mount (another filesystem): hard links cannot cross it.
        "UV_LINK_MODE": "copy",
        "UV_PYTHON_DOWNLOADS": "never",
        # uv would compile every file of the venv on every sync: the dependencies are
        # compiled by bytecode.py (reusing earlier builds' .pyc files), the project's
        # files by venvdelta --compile (only what it adds).
        "UV_COMPILE_BYTECODE": "0",
        "UV_NO_PROGRESS": "1",
        # With SOURCE_DATE_EPOCH set, py_compile writes hash-checked .pyc files: no build
        # time inside, and still valid after commit resets file times.
        "SOURCE_DATE_EPOCH": str(build.plan.timestamp),
    }
    env.update(build.settings.network_env)
    env.update(dict(step.env))
    env.update({name: build.settings.secrets[name] for name in step.secrets})
    return env


def _mounts(build: StepContext) -> tuple[Mount, ...]:
    build.settings.uv_cache.mkdir(parents=True, exist_ok=True)
    return (Mount(build.settings.uv_binary, UV_TARGET),
            Mount(str(build.settings.uv_cache), UV_CACHE_TARGET, read_only=False),
            *build.settings.network_mounts)


def uv_sync_argv(step: SyncDependencies, *, project: bool, offline: bool = False) -> list[str]:
    """`uv sync` as RECIPE.md describes it: locked, non-editable, no dev group."""
    argv = [UV_TARGET, "sync", "--locked", "--no-editable", "--no-default-groups",
            "--python", step.uv_python or step.python]
    if step.package:
        argv += ["--package", step.package]
    if offline:
        argv.append("--offline")
    for group in step.sync.groups:
        argv += ["--group", group]
    if step.sync.all_extras:
        argv.append("--all-extras")
    for extra in step.sync.extras:
        argv += ["--extra", extra]
    if not project:
        # Dependencies only: the project, workspace members and path dependencies come
        # in the next layer (so editing one of them keeps this layer).
        argv += ["--no-install-workspace", "--no-install-local"]
    return argv


def _files_in(build: StepContext, step: SyncDependencies, tar: ProjectTar | None,
              *dests: str, folder: Path | None = None) -> tuple[batch.Command, Mount]:
    """The batch command that unpacks project files into `dests` in the builder, from
    `tar`, written now into a folder of the build (it was digested when the build was
    planned, and must give the same bytes: archive.ProjectTar), with the mount of its
    folder it needs.

    The files reach the builder inside the batch that uses them: no `buildah` call of
    their own. `folder`: an empty one to write the tar into (mounted already).
    """
    if tar is None:
        raise ValueError("a plan made without the project's tars (inputs.gather) is not built")
    archive = tar.write(folder or build.scratch_dir(f"files-{tar.name}"))
    command = batch.shell([step.python, "-c", script("unpack.py"), f"{FILES_IN}/{archive.name}",
                           *dests])
    return batch.Command(UNPACK, command), Mount(str(archive.parent), FILES_IN)


def _unpack_failure(step: SyncDependencies, result: cmd.Result) -> Exception:
    return StepFailed(f"unpacking the project's files in the builder with {step.python} "
                      f"failed: {cmd.describe_failure(result)}",
                      hint="builder.python must name a Python 3 the builder base has")


def _lock_outdated(result: cmd.Result) -> bool:
    text = result.stderr + result.stdout
    return "needs to be updated" in text or "lockfile" in text.lower() and "--locked" in text


def _uv_failure(build: StepContext, result: cmd.Result, *, project: bool) -> Exception:
    if _lock_outdated(result):
        # (The workspace root's, for a member: where uv.lock is.)
        where = build.plan.project.lock_root if build.plan.project else build.plan.project_root
        return ProjectError(f"uv.lock in {where} is out of date: "
                            f"{cmd.describe_failure(result)}",
                            hint=f"run `uv lock` in {where} and commit uv.lock")
    if "No interpreter found" in result.stderr + result.stdout:
        sync = build.plan.step("sync-dependencies")
        wanted = getattr(sync, "uv_python", None) or getattr(sync, "python", "?")
        return ProjectError(f"the builder base has no Python for {wanted}, which the project "
                            f"asks for: {cmd.describe_failure(result)}",
                            hint="use a builder base with that Python on its PATH, or change "
                            "the project's .python-version or requires-python")
    text = result.stderr + result.stdout
    if "is not defined in the" in text and ("optional-dependencies" in text
                                            or "dependency-groups" in text):
        # An extra or group builder.sync names that the project lacks. uvbuild refuses
        # those before any container (project.selections), all but dynamic extras.
        return ProjectError(f"uv sync refused builder.sync's extras or groups: "
                            f"{cmd.describe_failure(result)}",
                            hint="name in builder.sync only extras and dependency groups "
                            "the project defines")
    what = "the project" if project else "the dependencies"
    if _index_unreachable(result):
        hint = ("uv could not download from a package index: check the index URL and its "
                "credentials (builder.env, builder.secrets), and the host's HTTPS_PROXY / "
                "SSL_CERT_FILE, which builder commands get (`uvbuild doctor` shows them)")
    else:
        hint = ("a package that builds from source may need builder.packages "
                "(e.g. build-essential, python3-dev, lib*-dev)")
    return StepFailed(f"uv sync of {what} failed in the builder: {cmd.describe_failure(result)}",
                      hint=hint)


# What uv says when an index cannot be reached or refuses it (network, proxy, TLS, auth).
_UNREACHABLE = ("Failed to fetch", "error sending request", "dns error", "tcp connect error",
                "invalid peer certificate", "401 Unauthorized", "403 Forbidden")


def _index_unreachable(result: cmd.Result) -> bool:
    text = result.stderr + result.stdout
    return any(sign in text for sign in _UNREACHABLE)


def _venvdelta(label: str, *args: str) -> batch.Command:
    """venvdelta.py as one command of a batch (it runs on the venv's Python)."""
    return batch.Command(label, batch.shell([f"{VENV}/bin/python", "-c", script("venvdelta.py"),
                                             *args]))


def layer_command(python: str, *args: str) -> batch.Command:
    """layertar.py as the batch command that writes a layer tar (reported as "layer")."""
    return batch.Command(WRITE_LAYER, batch.shell([python, "-c", script("layertar.py"), *args]))


def deps_layer_args(out: str) -> tuple[str, ...]:
    """layertar's arguments for the dependencies layer: /app/.venv, whole."""
    return (f"{out}/{DEPS_TAR}", VENV, VENV)


def project_layer_args(out: str) -> tuple[str, ...]:
    """layertar's arguments for the project layer: what venvdelta staged for /app (and
    for elsewhere), with whiteouts for what the install removed."""
    return (f"{out}/{LAYER_TAR}", PROJECT_LAYER, APP, "--tree", PROJECT_OUTSIDE, "",
            "--whiteouts-from", PROJECT_REMOVED, APP)


def deps_history(sync: SyncDependencies) -> str:
    """The history entry of the dependencies layer."""
    return f"uvbuild: {VENV} dependencies (uv sync of {', '.join(sync.manifests) or 'uv.lock'})"


PROJECT_HISTORY = "uvbuild: the project, runtime.copy and SBOM"  # the project layer's


def layer_made(out: Path, name: str, reported: object, created_by: str) -> LayerResult:
    """The layer tar a batch wrote into the host folder `out` (see layer_command), with
    the digest and size layertar reported."""
    path = out / name
    if not isinstance(reported, dict) or not path.is_file():
        raise StepFailed(f"writing the layer {name} gave no layer")
    return LayerResult(path=path, digest=str(reported["digest"]), size=int(reported["size"]),
                       created_by=created_by)


def _run_batch(build: StepContext, ctr: str, step: SyncDependencies,
               commands: list[batch.Command],
               *, extra_mounts: tuple[Mount, ...] = (),
               started: str | None = None) -> batch.Outcome:
    """The builder commands of a step in one `buildah run`, in /src.

    All of them get the builder environment (uv's settings, the CA bundle and proxies,
    builder.env, builder.secrets) and the mounts (uv, its cache, the CA bundle).
    """
    with build.job(commands, env=_batch_env(build, step), started=started) as job:
        run = build.engine.run(ctr, job.argv, mounts=(*_mounts(build), *extra_mounts, job.mount),
                               workdir=step.project_dir, stream=build.settings.verbose)
    return _judged(commands, run)


def _batch_env(build: StepContext, step: SyncDependencies) -> dict[str, str]:
    """The environment of a builder batch (_run_batch, _run_follow_up): the builder's,
    in the venv."""
    return _builder_env(build, step) | {"VIRTUAL_ENV": VENV}


def _judged(commands: list[batch.Command], run: cmd.Result) -> batch.Outcome:
    outcome = batch.parse(commands, run)
    if outcome.engine_failed:
        raise StepFailed(f"running the builder commands failed: "
                         f"{cmd.describe_failure(outcome.run)}")
    return outcome


def _start_follow_up(build: StepContext, ctr: str, step: SyncDependencies, marker: Path,
                     stop: threading.Event) -> Future[FollowUp | None]:
    """As soon as the host file `marker` exists (the sync's batch runs), start a second
    `buildah run` of container `ctr`, held at its gate for install-project's batch
    (results.FollowUp): its start-up (about 0.4 s here) is paid while uv syncs, not
    after. The future says, once `marker` appeared or `stop` was set (the sync's run
    is over), whether it started: None if not, or if runs of one container cannot
    overlap here (rootless). The run is stopped (its gate shut) before `ctr` goes.
    """
    decided: Future[FollowUp | None] = Future()
    if not build.engine.overlapping_runs():
        decided.set_result(None)
        return decided
    job, files, out = (build.scratch_dir(f"follow-up-{name}") for name in ("job", "files", "out"))
    launcher = batch.write_launcher(job)
    gate = build.gate()
    ran: Future[cmd.Result] = Future()

    def run() -> None:
        started = False
        try:
            # Until the sync's batch runs; not at all once its run is over, or the gate
            # was shut (the build failed, or is ending).
            while not marker.exists():
                if stop.wait(0.02) or gate.settled:
                    break
            started = marker.exists() and not gate.settled
        finally:
            if not started:  # (decided whatever happens: `ended` waits for it)
                gate.shut()
                decided.set_result(None)
        if not started:
            return
        decided.set_result(FollowUp(gate, job, files, out, ran))
        try:
            ran.set_result(build.engine.run(
                ctr, launcher.argv, workdir=step.project_dir, stream=build.settings.verbose,
                mounts=(*_mounts(build), Mount(str(files), FILES_IN),
                        Mount(str(out), LAYER_OUT, read_only=False), launcher.mount), gate=gate))
        except BaseException as exc:
            ran.set_exception(exc)
            raise

    def ended() -> None:
        gate.shut()  # (no-op once the install opened it)
        stop.set()
        if decided.result() is not None:
            ran.exception()  # waits for the run's end (a failure was the build's)

    build.submit(run, name="uvbuild-follow-up")
    build.before_removal(ctr, ended)
    return decided


def _run_follow_up(build: StepContext, follow: FollowUp, step: SyncDependencies,
                   commands: list[batch.Command]) -> batch.Outcome | None:
    """`commands` as _run_batch runs them (with the start file in `follow.out`), in the
    run `follow` holds at its gate; None if that run ended before the batch began (its
    set-up failed): the caller runs the batch in a run of its own, as without one."""
    env = _batch_env(build, step)
    folder = follow.job / batch.NEXT
    folder.mkdir()
    try:
        batch.write_job(folder, commands, env=env, at=f"{batch.JOB}/{batch.NEXT}",
                        started=f"{LAYER_OUT}/{STARTED}")
        follow.gate.open()
        run = follow.ran.result()
    finally:
        shutil.rmtree(folder, ignore_errors=True)  # its environment holds secrets
    if not (follow.out / STARTED).exists():
        return None
    return _judged(commands, run)


def _python_check(step: SyncDependencies) -> tuple[batch.Command, ...]:
    """With `builder.python` set (uv is not asked for a version, and reads no
    `.python-version`), the project's request is checked on that interpreter before
    `uv sync` runs, in the same run: an image base's Python is known only inside a
    container, and a sync that downloads every wheel first would be a slow way to learn
    it does not fit. The request is read on the host (pythons.read_request) into what
    the interpreter must be: the versions that meet it (a pin of 3.11.9 is that release
    alone), its implementation (pypy@3.11) and build (3.13t: free-threaded)."""
    request = step.python_request
    if request is None or step.uv_python is not None:
        return ()
    wanted = read_request(request)
    if wanted is None:
        return ()  # a request this check cannot read (a path): left to the venv check
    argument = json.dumps({"versions": allowed_versions(wanted),
                           "implementation": wanted.implementation,
                           "free_threaded": wanted.free_threaded, "debug": wanted.debug},
                          sort_keys=True)
    return (batch.Command(PYTHON_CHECK, batch.shell([step.python, "-c",
                                                     script("pythoncheck.py"), argument])),)


_UNMET = 3  # pythoncheck.py's exit code for an interpreter that does not meet the request
_IMPLEMENTATION_NAMES = {"cpython": "CPython", "pypy": "PyPy", "graalpy": "GraalPy"}


def describe_interpreter(facts: dict[str, object]) -> str:
    """pythoncheck.py's facts as a reader names the interpreter: "CPython 3.13.1
    (free-threaded)"."""
    name = str(facts.get("implementation", "?"))
    builds = [word for word, flag in (("free-threaded", "free_threaded"), ("debug", "debug"))
              if facts.get(flag)]
    return (f"{_IMPLEMENTATION_NAMES.get(name, name)} {facts.get('version', '?')}"
            + (f" ({', '.join(builds)})" if builds else ""))


def _python_unmet(step: SyncDependencies, request: PythonRequest,
                  outcome: batch.Outcome) -> Exception:
    facts = outcome.reported.get(PYTHON_CHECK)
    if outcome.failure.returncode != _UNMET or not isinstance(facts, dict):
        return StepFailed(f"checking the builder's Python {step.python} failed: "
                          f"{cmd.describe_failure(outcome.failure)}",
                          hint="builder.python must name a Python 3 the builder base has")
    return ProjectError(
        f"the project asks for Python {request.text} ({request.source}), but "
        f"builder.python {step.python} is {describe_interpreter(facts)}",
        hint="set builder.python to an interpreter that meets the request, use another base, "
        "or change the project's request" + (
            " (uv does not read .python-version when builder.python is set: uvbuild holds "
            "builder.python to it)" if request.pinned else ""))


def _bytecode(build: StepContext, step: SyncDependencies,
              ) -> tuple[tuple[batch.Command, ...], tuple[Mount, ...]]:
    """The batch command that compiles the dependencies' .py files (bytecode.py), as
    `uv sync --compile-bytecode` would, with the mount of the host's .pyc cache it reads
    and fills; none without builder.sync's compile-bytecode."""
    if not step.sync.compile_bytecode:
        return (), ()
    folder = build.settings.bytecode_cache or build.scratch_dir("bytecode")
    folder.mkdir(parents=True, exist_ok=True)
    argv = [f"{VENV}/bin/python", "-c", script("bytecode.py"), BYTECODE_CACHE]
    if build.settings.no_cache:
        argv.append("--fresh")  # (its .pyc files are written, and none is read)
    return ((batch.Command(BYTECODE, batch.shell(argv)),),
            (Mount(str(folder), BYTECODE_CACHE, read_only=False),))


def sync_dependencies(build: StepContext, step: SyncDependencies,
                      inputs: Inputs) -> SyncResult:
    """Only manifests present, `uv sync --no-install-workspace` into /app/.venv; the
    dependencies layer is written in the same batch (dependencies-layer keeps it).

    No `buildah commit`: the step's image is the builder (prepare-builder's image) with
    that layer and a small one of builder state (the venv's snapshot, the manifests in
    /src) on it,
    assembled as an OCI layout and imported in the background. Meanwhile install-project
    goes on in this step's own container, which holds the same files.
    """
    parent = inputs.ref("prepare-builder")
    # The builder image's manifest and config (to assemble on) are read during the sync.
    base = build.submit(lambda: oci.base_image(*build.engine.image_manifest(parent)),
                        name="uvbuild-builder-manifest")
    ctr = build.open_container(parent, "deps")  # removed when the build ends
    unpack, files = _files_in(build, step, step.manifests_tar, SOURCE_DIR)
    # The dependencies layer is written here, in the same run (dependencies-layer
    # keeps it): the venv as it ships, read while it is at hand.
    out = build.scratch_dir("deps-layer")
    check = _python_check(step)
    compiled, pyc_mount = _bytecode(build, step)
    commands = [unpack, *check,
                batch.Command(UV_SYNC, batch.shell(uv_sync_argv(step, project=False))),
                *compiled,
                # Both read the venv as uv left it (the snapshot also sets its file
                # times, which the layer does not keep): at the same time.
                batch.together(SNAPSHOT,
                               layer_command(f"{VENV}/bin/python", *deps_layer_args(LAYER_OUT)),
                               _venvdelta(SNAPSHOT, "snapshot", "/app", DEPS_MANIFEST)),
                # What else the install finds in this container: the venv's snapshot
                # and the manifests in /src (a code edit installs on the image).
                batch.Command(WRITE_STATE, batch.shell([
                    f"{VENV}/bin/python", "-c", script("layertar.py"), "--as", "state",
                    f"{LAYER_OUT}/{STATE_TAR}", STATE, STATE,
                    "--tree", SOURCE_DIR, SOURCE_DIR]))]
    # install-project goes on in this container: its run starts while this one runs.
    stop = threading.Event()
    follow_up = _start_follow_up(build, ctr, step, out / STARTED, stop)
    try:
        outcome = _run_batch(build, ctr, step, commands,
                             extra_mounts=(files, Mount(str(out), LAYER_OUT, read_only=False),
                                           *pyc_mount),
                             started=f"{LAYER_OUT}/{STARTED}")
    finally:
        stop.set()
    if outcome.failed == UNPACK:
        raise _unpack_failure(step, outcome.failure)
    if outcome.failed == PYTHON_CHECK and step.python_request is not None:
        raise _python_unmet(step, step.python_request, outcome)
    if outcome.failed == UV_SYNC:
        raise _uv_failure(build, outcome.failure, project=False)
    if outcome.failed == BYTECODE:
        raise StepFailed(f"compiling the dependencies' bytecode failed: "
                         f"{cmd.describe_failure(outcome.failure)}",
                         hint="a full disk or a broken builder.python are the likely causes; "
                         "builder.sync.compile-bytecode: false ships no .pyc files")
    python = outcome.reported.get("python")
    if outcome.failed is not None or not isinstance(python, dict):
        raise StepFailed(f"the builder's virtualenv does not run: "
                         f"{cmd.describe_failure(outcome.results[-1])}")
    check_made_venv(step.python_request, str(python.get("version", "")),
                    f"the builder's {python.get('python', step.python)}")
    layer = layer_made(out, DEPS_TAR, outcome.reported.get("layer"), deps_history(step))
    state = layer_made(out, STATE_TAR, outcome.reported.get("state"), f"uvbuild: {step.name}")
    labels = build.commit_options(step, **{PYTHON_LABEL: json.dumps(python, sort_keys=True)})
    # Laid out now (the tars hard-linked: dependencies-layer moves its tar away).
    layout = build.scratch_dir("deps-image")
    assembled = oci.write_layout(
        layout, base.result(), [layer, state],
        ImageConfig(labels=tuple(sorted(labels.labels.items()))), timestamp=build.plan.timestamp)

    def store() -> str:
        # After the install's `buildah run` starts. Made even if the build fails
        # meanwhile (a failing install, say): the next build then finds the sync.
        with build.background_import():
            build.engine.import_layout(layout, step.cache_ref, background=True)
        return assembled.image_id

    held = build.defer_commit(step, ctr, store)
    return SyncResult(held, python={str(k): str(v) for k, v in python.items()}, layer=layer,
                      follow_up=follow_up.result())


def install_project(build: StepContext, step: InstallProject, inputs: Inputs) -> InstallResult:
    """Sources in /src, the project installed non-editable, builder.run, layer staged.

    The project layer comes out of the same batch as a canonical tar (project-layer keeps
    it, with the SBOM); no image is committed (see the end).
    """
    parent = inputs.ref("sync-dependencies")
    sync = build.plan.step("sync-dependencies")
    assert isinstance(sync, SyncDependencies)
    synced = inputs.of("sync-dependencies", SyncResult)
    # Made this run: the install goes on in the sync's own container (its image is
    # still being stored), in the run started for it while the sync ran (as root);
    # found: in a container of its image.
    follow = synced.follow_up if isinstance(synced.files, ContainerResult) else None
    ctr = (synced.files.container if isinstance(synced.files, ContainerResult)
           else build.open_container(parent, "project"))
    # Not a package: the project's files themselves are the application, in /app too
    # (only the project's folder of the context: "DEST=SUBDIR", see unpack.py).
    app = f"{APP}={step.app_subdir}" if step.app_subdir else APP
    unpack, files = _files_in(build, sync, step.sources_tar,
                              *((SOURCE_DIR,) if step.is_package else (SOURCE_DIR, app)),
                              folder=follow.files if follow else None)
    # The staged layer comes out as a canonical layer tar in a host folder, written in
    # the same run (project-layer keeps it, with the SBOM).
    out = follow.out if follow else build.scratch_dir("layer")
    stage_options = ["--compile"] if sync.sync.compile_bytecode else []
    for entry in step.copy:
        stage_options += ["--copy", str(entry.index), entry.source, entry.dest]

    # builder.run runs in the project's own folder: a workspace member's, not the
    # workspace root's where uv syncs (RECIPE.md: "in the project's source folder").
    run_dir = posixpath.join(SOURCE_DIR, step.app_subdir).rstrip("/")
    run_commands = [batch.Command(c.label, c.text if run_dir == sync.project_dir else
                                  f"cd {shlex.quote(run_dir)} || exit\n{c.text}")
                    for c in batch.labelled("builder.run", step.run)]

    def commands(offline: bool) -> list[batch.Command]:
        return [unpack,
                batch.Command(UV_SYNC, batch.shell(uv_sync_argv(sync, project=True,
                                                                offline=offline))),
                *run_commands,
                _venvdelta(STAGE, "stage", "/app", DEPS_MANIFEST, PROJECT_LAYER,
                           *stage_options),
                layer_command(f"{VENV}/bin/python", *project_layer_args(LAYER_OUT))]

    def run(offline: bool) -> batch.Outcome:
        nonlocal follow
        if follow is not None:  # (once: a second run is one of its own)
            held, follow = follow, None
            outcome = _run_follow_up(build, held, sync, commands(offline))
            if outcome is not None:
                return outcome
        return _run_batch(build, ctr, sync, commands(offline),
                          extra_mounts=(files, Mount(str(out), LAYER_OUT, read_only=False)),
                          started=f"{LAYER_OUT}/{STARTED}")

    # The dependencies are installed; what the project's build may still fetch is its
    # build backend (build-system.requires), which uv resolves again on every build, a
    # round trip to the index per package. It comes from uv's cache when it is there;
    # online only when it is not (or --no-cache), and then the same batch runs again.
    # Background imports (the sync's image, the staged layers) wait until it runs.
    offline = not build.settings.no_cache
    with build.announce_start(out / STARTED):
        outcome = run(offline)
        if outcome.failed == UV_SYNC and offline and not _lock_outdated(outcome.failure):
            outcome = run(False)
    if outcome.failed == UNPACK:
        raise _unpack_failure(sync, outcome.failure)
    if outcome.failed == UV_SYNC:
        raise _uv_failure(build, outcome.failure, project=True)
    for command, text in zip(run_commands, step.run, strict=True):
        if outcome.failed == command.label:
            raise StepFailed(f"{command.label} `{text}` failed: "
                             f"{cmd.describe_failure(outcome.failure)}")
    missing = outcome.reported.get("copy_missing")
    if isinstance(missing, dict):
        raise copy_missing(int(missing["index"]), str(missing["from"]))
    installed = outcome.reported.get("installed")
    if outcome.failed is not None or not isinstance(installed, dict):
        raise StepFailed(f"staging the project layer failed: "
                         f"{cmd.describe_failure(outcome.results[-1])}")
    layer = layer_made(out, LAYER_TAR, outcome.reported.get("layer"), PROJECT_HISTORY)
    # No image: what ships of the install is its layer, which the layer cache keeps
    # (project-layer); a build that finds that layer never asks for this step, and one
    # that does not runs it again from the sync's image. A commit here (the whole venv,
    # when the install went on in the sync's container) would take the CPU the test
    # run needs.
    return InstallResult(files=ContainerResult(ctr, stored=False), installed=installed,
                         layer=layer)


def sync_from_cache(image: ImageResult) -> SyncResult:
    """sync-dependencies found in the cache: its interpreter is in its image's labels."""
    return SyncResult(files=image)


def install_from_cache(image: ImageResult) -> InstallResult:
    """install-project found in the cache: what it installed is in its image's labels."""
    return InstallResult(files=image)


def copy_missing(index: int, source: str) -> StepFailed:
    """The error for a runtime.copy source the builder does not have, wherever it goes."""
    return StepFailed(f"runtime.copy[{index}]: {source} is not in the builder after "
                      f"builder.run", hint="check the path, or make a builder.run command "
                      "create it")


def read_python_label(labels: dict[str, str]) -> dict[str, str]:
    """The interpreter facts a step recorded in its image labels."""
    return dict(json.loads(labels.get(PYTHON_LABEL, "{}")))
