"""The layer steps: every layer uvbuild adds to the runtime image, as a canonical tar.

Each writes its tars with incontainer/layertar.py (one entry order, owners, modes and
times, whatever the image store's driver) and keeps them in the host's layer cache
(build/layercache.py) under its step key; add-project assembles the image from them.

- dependencies-layer: /app/.venv without the project, written by sync-dependencies in
  its own `buildah run` (or, when that step's image was cached and this layer was not,
  in a container of that image);
- project-layer: what the project install added to /app and the runtime.copy entries,
  written by install-project likewise, with the SBOM put in here, on the host;
- prepare-runtime: in a container of the runtime base, `runtime.packages` as a
  whole-root delta (before/after the install, with whiteouts) and the runtime user
  (/etc/passwd, /etc/group, ... and the home folder) as a layer of their own; without
  runtime.packages also kept by the digest of the base files it is made of
  (runtime_probe.py), which a refreshed base with the same files finds.
"""

from __future__ import annotations

import dataclasses
import json
import mmap
import re
import shlex
import tarfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from uvbuild import redact
from uvbuild.build import batch, runtime_probe
from uvbuild.build.builder_steps import (
    DEPS_TAR,
    LAYER_OUT,
    LAYER_TAR,
    PACKAGES,
    PROJECT_HISTORY,
    deps_history,
    deps_layer_args,
    layer_command,
    layer_made,
    packages_command,
    packages_failure,
    project_layer_args,
    read_python_label,
)
from uvbuild.build.context import Inputs, StepContext
from uvbuild.build.labels import INSTALLED_LABEL
from uvbuild.build.results import (
    ContainerResult,
    InstallResult,
    LayerResult,
    LayerSet,
    SyncResult,
)
from uvbuild.engine import cmd
from uvbuild.engine.buildah import Mount
from uvbuild.errors import EngineError, ProjectError, StepFailed
from uvbuild.incontainer import layertar, script
from uvbuild.plan.planner import (
    VENV,
    DependenciesLayer,
    LayerStep,
    PrepareRuntime,
    ProjectLayer,
    SyncDependencies,
)

# The labels of prepare-runtime's batch commands.
MARK_ROOT = "mark-root"
PACKAGES_LAYER = "packages-layer"
MARK_USER = "mark-user"
MAKE_USER = "runtime-user"
USER_LAYER = "user-layer"
# What a root's `find` lists before the install (its whiteouts are what is gone after).
_PRUNED = " -o ".join(f"-path {p}" for p in layertar.SKIPPED)


def kept(build: StepContext, step: LayerStep) -> LayerSet | None:
    """A layer step's result as the layer cache keeps it, or None: to make (always, with
    --no-cache). The runner asks this instead of the image cache (StepKind.kept)."""
    return None if build.settings.no_cache else build.layers.get(step)


def dependencies_layer(build: StepContext, step: DependenciesLayer, inputs: Inputs) -> LayerSet:
    """Keep the dependencies layer that sync-dependencies wrote (or, that step being
    cached, write it now from its image)."""
    made = inputs.of("sync-dependencies", SyncResult)
    layer, python = made.layer, made.python
    if layer is None or python is None:
        sync = build.plan.step("sync-dependencies")
        assert isinstance(sync, SyncDependencies)
        image = inputs.ref("sync-dependencies")
        layer = _write_from_image(build, image, "deps-layer", DEPS_TAR,
                                  deps_layer_args(LAYER_OUT), deps_history(sync))
        python = read_python_label(_labels(build, image))
    no_secret_in(build, layer, "the dependencies layer (/app/.venv)")
    return build.layers.put(step, [layer], {"python": dict(python)})


def project_layer(build: StepContext, step: ProjectLayer, inputs: Inputs) -> LayerSet:
    """Keep the project layer install-project wrote (or, that step being cached, write it
    now from its image), with the SBOM in it."""
    made = inputs.of("install-project", InstallResult)
    layer, installed = made.layer, made.installed
    if layer is not None and isinstance(made.files, ContainerResult) and not made.files.stored:
        # The install's container: its layer is written, and no image is made of it.
        build.retire_container(made.files.container)
    if layer is None or installed is None:
        image = inputs.ref("install-project")
        layer = _write_from_image(build, image, "project-layer", LAYER_TAR,
                                  project_layer_args(LAYER_OUT), PROJECT_HISTORY)
        installed = json.loads(_labels(build, image).get(INSTALLED_LABEL, "{}"))
    no_secret_in(build, layer, "the project layer (/app and runtime.copy)")
    made_sbom = _sbom(build, installed)
    if made_sbom is not None:  # at its path, owned by root, in its sorted place
        path, document = made_sbom
        target = build.scratch_dir("sbom-layer") / LAYER_TAR
        facts = layertar.insert_file(  # type: ignore[no-untyped-call]
            str(layer.path), str(target), path.lstrip("/"), document,
            build.plan.timestamp)
        layer = LayerResult(path=target, digest=str(facts["digest"]),
                            size=int(facts["size"]), created_by=layer.created_by)
    return build.layers.put(step, [layer], {
        "installed": dict(installed) if isinstance(installed, Mapping) else {}})


# Shorter values are not looked for: in tens of megabytes of packages, a short one may
# be there by chance (and is masked in output only as a whole word: redact.py).
LEAK_MIN = 8
_SCAN_CHUNK = 64 << 20


def no_secret_in(build: StepContext, layer: LayerResult, what: str) -> None:
    """Refuse a layer that holds a secret's value (builder.secrets, registry and proxy
    credentials: what redact masks), in a file's content or name: a builder.run command
    that writes a token into /app, or a runtime.copy of a file holding one, would ship
    it. The tar is searched as it is (uvbuild writes it uncompressed); the message names
    the file and the secret's variable, never the value."""
    named = {value: name for name, value in build.settings.secrets.items()}
    wanted = sorted((v for v in {*redact.whole_values(), *named} if len(v) >= LEAK_MIN),
                    key=len, reverse=True)
    if not wanted or layer.size == 0:
        return
    pattern = re.compile(b"|".join(re.escape(v.encode("utf-8", "surrogateescape"))
                                   for v in wanted))
    longest = max(len(v.encode("utf-8", "surrogateescape")) for v in wanted)
    with open(layer.path, "rb") as raw, mmap.mmap(raw.fileno(), 0, access=mmap.ACCESS_READ) as data:
        # One pass for every value, a chunk at a time (overlapping by the longest value):
        # other threads run between chunks of a layer of gigabytes.
        start = 0
        while start < len(data):
            found = pattern.search(data, start, min(len(data), start + _SCAN_CHUNK + longest))
            if found is not None:
                value = found.group(0).decode("utf-8", "surrogateescape")
                source = (f"the value of builder.secrets {named[value]}" if value in named
                          else "a secret's value (a credential uvbuild masks)")
                raise StepFailed(
                    f"{what} would ship {source}, in {_member_at(layer.path, found.start())}",
                    hint="a builder.run command or a runtime.copy source must not put a "
                    "secret under /app or into what is copied; nothing was tagged")
            start += _SCAN_CHUNK


def _member_at(tar_path: Path, offset: int) -> str:
    """The path of the layer tar's entry whose header or content holds byte `offset`."""
    with tarfile.open(tar_path) as tar:
        for member in tar:
            if member.offset <= offset < member.offset_data + member.size:
                return "/" + member.name
    return "the layer's tar"


def _write_from_image(build: StepContext, image: str, purpose: str, name: str,
                      args: tuple[str, ...], created_by: str) -> LayerResult:
    """A layer tar written by layertar in a container of the builder image `image`."""
    out = build.scratch_dir(purpose)
    commands = [layer_command(f"{VENV}/bin/python", *args)]
    with build.container(image, purpose) as ctr, build.job(commands, env=_stamp(build)) as job:
        run = build.engine.run(ctr, job.argv, mounts=(
            job.mount, Mount(str(out), LAYER_OUT, read_only=False)), network=False,
            stream=False)
    outcome = batch.parse(commands, run)
    if not outcome.ok:
        raise StepFailed(f"writing the layer {name} from {image} failed: "
                         f"{cmd.describe_failure(outcome.failure if outcome.results else run)}")
    return layer_made(out, name, outcome.reported.get("layer"), created_by)


def _stamp(build: StepContext) -> dict[str, str]:
    """The environment layertar takes the build's timestamp from."""
    return {"SOURCE_DATE_EPOCH": str(build.plan.timestamp)}


def _labels(build: StepContext, image: str) -> dict[str, str]:
    info = build.engine.image(image)
    return dict(info.labels) if info else {}


def _sbom(build: StepContext, installed: object) -> tuple[str, bytes] | None:
    """The SBOM's path in the image and its bytes (None: no project, no SBOM)."""
    if build.plan.project is None:
        return None
    # Imported here: only a build that writes a project layer needs it.
    from uvbuild.output.sbom import SBOM_PATH, make_sbom

    return SBOM_PATH, make_sbom(build.plan.project, build.plan.locked,
                                dict(installed) if isinstance(installed, Mapping) else {},
                                timestamp=build.plan.timestamp)


def prepare_runtime(build: StepContext, step: PrepareRuntime, inputs: Inputs) -> LayerSet:
    """The runtime base's own layers: `runtime.packages` and the runtime user, written
    in one `buildah run` in a container of the base.

    Without runtime.packages, the user layer is also kept by what it is made of (the
    base's passwd, group, ... read on the host: runtime_probe), so a refreshed base
    with the same files finds it and runs nothing.
    """
    base = inputs.ref("runtime-base")
    if step.packages or build.settings.no_cache:
        with build.container(base, "runtime") as ctr:
            return build.layers.put(step, *_runtime_layers(build, step, ctr))
    # The base's PATH (where `python` is looked up) is read while its container is made.
    info = build.submit(lambda: build.engine.image(base), name="uvbuild-runtime-env")
    # Removed in the background once read (retire_container), not on the way to the image.
    ctr = build.open_container(base, "runtime")
    try:
        root = build.engine.mount(ctr)
        probe: PrepareRuntime | None = None
        if root is not None:
            image = info.result()
            key = runtime_probe.content_key(root, step, image.env if image else (),
                                            build.plan.timestamp)
            probe = dataclasses.replace(step, key=key)
            found = build.layers.get(probe)
            if found is not None:
                return build.layers.put(step, found.layers, found.facts)
        made = build.layers.put(step, *_runtime_layers(build, step, ctr))
        if probe is not None:
            build.layers.put(probe, made.layers, made.facts)
        return made
    finally:
        build.retire_container(ctr)


def _runtime_layers(build: StepContext, step: PrepareRuntime,
                    ctr: str) -> tuple[list[LayerResult], dict[str, object]]:
    """The packages and user layers, written in a `buildah run` in `ctr` (a container
    of the runtime base), and their facts (the user's uid:gid, the interpreter)."""
    out = build.scratch_dir("runtime-layers")
    python = step.python
    root_marker, before = f"{LAYER_OUT}/root.marker", f"{LAYER_OUT}/root.before"
    user_marker = f"{LAYER_OUT}/user.marker"
    commands: list[batch.Command] = []
    if step.packages:
        # What the root holds before (for whiteouts), and a file whose ctime is the start:
        # what the install writes has a later one (see layertar.changed_since).
        commands += [
            batch.Command(MARK_ROOT, f": > {shlex.quote(root_marker)} && find / -xdev "
                          f"\\( {_PRUNED} \\) -prune -o -print > {shlex.quote(before)}"),
            packages_command(step.packages),
            batch.Command(PACKAGES_LAYER, batch.shell([
                python, "-c", script("layertar.py"), "--as", "packages",
                "delta", f"{LAYER_OUT}/packages.tar", root_marker, before, "/"])),
        ]
    commands += [
        batch.Command(MARK_USER, f": > {shlex.quote(user_marker)}"),
        batch.Command(MAKE_USER, batch.shell([python, "-c", script("mkuser.py"), step.user])),
        batch.Command(USER_LAYER, batch.shell([
            python, "-c", script("layertar.py"), "--as", "user",
            "delta", f"{LAYER_OUT}/user.tar", user_marker, "-", "/etc", "/home"])),
    ]
    env = {**(build.settings.network_env if step.packages else {}), **_stamp(build)}
    with build.job(commands, env=env) as job:
        run = build.engine.run(ctr, job.argv, mounts=(
            *(build.settings.network_mounts if step.packages else ()), job.mount,
            Mount(str(out), LAYER_OUT, read_only=False)), stream=build.settings.verbose)
    outcome = batch.parse(commands, run)
    if outcome.failed == PACKAGES:
        failure = packages_failure(outcome, step.packages, "runtime")
        if failure is not None:
            raise failure
    if outcome.failed == MAKE_USER and _user_facts(outcome.failure) is not None:
        # The interpreter ran (it reported itself) and the user's making failed after.
        raise StepFailed(f"making the runtime user {step.user} failed: "
                         f"{cmd.describe_failure(outcome.failure)}")
    if outcome.failed == MAKE_USER or (outcome.failed is None and not run.ok):
        raise ProjectError(
            f"the runtime base has no usable {python}: the virtualenv made in the "
            f"builder needs the same interpreter at the same path in the runtime "
            f"({cmd.describe_failure(outcome.failure if outcome.failed else run)})",
            hint="use the same base (or the same Python packages) for builder and runtime")
    if outcome.failed is not None:
        raise StepFailed(f"writing the runtime layers failed ({outcome.failed}): "
                         f"{cmd.describe_failure(outcome.failure)}")
    made = outcome.results[[c.label for c in commands].index(MAKE_USER)]
    facts = _user_facts(made)
    if facts is None:
        raise EngineError(f"creating the runtime user gave no answer: "
                          f"{cmd.describe_failure(made)}")
    layers = []
    if step.packages:
        layers.append(layer_made(out, "packages.tar", outcome.reported.get("packages"),
                                 f"uvbuild: runtime packages {' '.join(step.packages)}"))
    user = layer_made(out, "user.tar", outcome.reported.get("user"),
                      f"uvbuild: runtime user {step.user}")
    if _has_entries(user.path):  # a user the base has already adds nothing
        layers.append(user)
    return layers, {"user": f"{facts['uid']}:{facts['gid']}",
                    "python": {"python": facts["python"], "version": facts["version"]}}


def _user_facts(result: cmd.Result) -> dict[str, Any] | None:
    """What mkuser.py reported (its last line: uid, gid, the interpreter), or None if it
    did not get that far."""
    try:
        facts = json.loads(result.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return None
    return facts if isinstance(facts, dict) and "python" in facts else None


def _has_entries(tar_path: Path) -> bool:
    with tarfile.open(tar_path) as tar:
        return tar.next() is not None
