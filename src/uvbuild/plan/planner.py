"""Recipe + project + measured inputs → a Plan: typed steps with content cache keys.

Pure code: no buildah, no subprocess. The executor walks the plan; `uvbuild plan`
prints it. Steps form two chains that meet at the end:

    builder-base → prepare-builder → sync-dependencies → dependencies-layer ─┐
                                      └──────────────→ install-project → project-layer ─┤
    runtime-base → prepare-runtime (packages and user layers) ─────────────→ add-project

The builder steps are images in local storage, found again by their keys; the layer
steps (LayerStep) are canonical layer tars in the host's layer cache; add-project
assembles the runtime image from the runtime base and those layers (build/assemble.py).
No builder step's key depends on the runtime base: a runtime-side change runs none.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from uvbuild.plan import slimroot
from uvbuild.plan.cachekey import step_key
from uvbuild.project.model import LockedPackage, Project
from uvbuild.project.pythons import PythonRequest
from uvbuild.recipe.model import (
    Base,
    BootstrapBase,
    CopyEntry,
    ImageBase,
    Recipe,
    Runtime,
    SyncOptions,
)

Frozen = dataclass(frozen=True, kw_only=True, slots=True)

CACHE_REPO = "localhost/uvbuild-cache"
LAYER_REPO = "uvbuild-layers"  # how layer cache entries are named (never an image name)
BASE_REPO = "localhost/uvbuild-base"
APP = "/app"
VENV = "/app/.venv"
SOURCE_DIR = "/src"
STANDARD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # a root's PATH
DEFAULT_TIMESTAMP = 315532800  # 1980-01-01T00:00:00Z: the earliest time ZIP (wheels) can hold


@dataclass(frozen=True, kw_only=True, slots=True)
class PlanInputs:
    """What the planner needs besides recipe and project, measured by `uvbuild.plan.inputs`."""

    image: str  # the output name
    uv_version: str
    builder_base_id: str  # image ID of a named base, or the bootstrap definition's key
    runtime_base_id: str
    project_root: str  # absolute host folder of the project
    # The host folder the builder's /src mirrors (files below are relative to it): the
    # project's, or a folder above it that holds its workspace and path dependencies.
    context_root: str = ""  # "": project_root
    project_dir: str = SOURCE_DIR  # where uv runs in the builder: the uv.lock's folder
    app_subdir: str = ""  # the project's folder in the context ("": the context itself)
    package: str | None = None  # `uv sync --package`: a member of a larger workspace
    uv_python: str | None = None  # `uv sync --python`: the project's request (pythons.py)
    python_request: PythonRequest | None = None
    manifest_files: tuple[str, ...]  # pyproject.toml, uv.lock, member manifests (relative)
    manifest_digest: str
    source_files: tuple[str, ...]  # every source file the project step reads (relative)
    source_digest: str
    is_package: bool
    is_workspace: bool
    timestamp: int = DEFAULT_TIMESTAMP
    # org.opencontainers.image.* facts (version, created, source, revision) of the build.
    oci_labels: tuple[tuple[str, str], ...] = ()
    # For the SBOM; both are functions of uv.lock and pyproject.toml (manifest_digest).
    project: Project | None = None
    locked: tuple[LockedPackage, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class Step:
    """Common fields of every step."""

    name: str
    key: str
    needs: tuple[str, ...]  # names of the steps whose images this one reads

    @property
    def cache_ref(self) -> str:
        """Where the step's result lives in local storage.

        The key is in the repository part on purpose: buildah writes "FROM <name>" into
        a child's history using the first of the parent's names in the same repository,
        so one repository per key keeps that name, and the image ID, a function of the
        inputs alone, even when one image carries several cache names.
        """
        return f"{CACHE_REPO}/{self.name}-{self.key[:32]}:latest"

    def cached(self, cache: Mapping[str, str]) -> str | None:
        """The image ID of this step's result in `cache` (the CACHE_REPO names of local
        storage and their IDs, as Engine.images_named lists them), or None: to run."""
        return cache.get(self.cache_ref)

    def describe(self) -> str:  # pragma: no cover - overridden
        return self.name


def layer_ref(step: str, key: str) -> str:
    """The name a layer step's cache entry goes by (see build/layercache.py)."""
    return f"{LAYER_REPO}/{step}-{key}"


@dataclass(frozen=True, kw_only=True, slots=True)
class LayerStep(Step):
    """A step whose result is layer tars in the host's layer cache, not an image."""

    @property
    def cache_ref(self) -> str:
        return layer_ref(self.name, self.key)


@dataclass(frozen=True, kw_only=True, slots=True)
class ResolveBase(Step):
    stage: str  # "builder" | "runtime"
    base: Base

    @property
    def cache_ref(self) -> str:
        if isinstance(self.base, ImageBase):
            return self.base.ref
        return bootstrap_ref(self.base, self.key)

    def cached(self, cache: Mapping[str, str]) -> str | None:
        """Never: a base is not in the step cache; it is ready when local storage has it
        (a bootstrapped one under BASE_REPO), which resolving it looks at."""
        return None

    def describe(self) -> str:
        if isinstance(self.base, ImageBase):
            return f"{self.stage} base: {self.base.ref}"
        b = self.base
        extra = f" +{','.join(b.packages)}" if b.packages else ""
        snap = f" @{b.snapshot}" if b.snapshot else ""
        slim = " (slim)" if b.variant == "slim" else ""
        return f"{self.stage} base: bootstrap {b.distribution} {b.suite}{slim}{extra}{snap}"


@dataclass(frozen=True, kw_only=True, slots=True)
class PrepareBuilder(Step):
    packages: tuple[str, ...]

    def describe(self) -> str:
        return "builder packages: " + (" ".join(self.packages) or "(none)")


@dataclass(frozen=True, kw_only=True, slots=True)
class SyncDependencies(Step):
    python: str
    sync: SyncOptions
    env: tuple[tuple[str, str], ...]
    secrets: tuple[str, ...]
    manifests: tuple[str, ...]
    workspace: bool
    project_dir: str = SOURCE_DIR  # the folder of uv.lock in the builder
    package: str | None = None  # `uv sync --package NAME`
    uv_python: str | None = None  # what uv is asked for, when not `python` itself
    # The project's request, checked against the venv once made (not in the key: the
    # files it comes from are in the manifests).
    python_request: PythonRequest | None = None

    def describe(self) -> str:
        return f"uv sync dependencies into {VENV} ({', '.join(self.manifests)})"


@dataclass(frozen=True, kw_only=True, slots=True)
class LayerCopy:
    """A `runtime.copy` entry with its place in the list: staged by install-project, it
    ships in the project layer wherever it lands."""

    index: int  # its place in runtime.copy, for messages
    source: str  # builder path (may be a glob, as buildah copy allows)
    dest: str  # runtime path


@dataclass(frozen=True, kw_only=True, slots=True)
class InstallProject(Step):
    is_package: bool
    sources: tuple[str, ...]
    run: tuple[str, ...]
    app_subdir: str = ""  # an unpackaged project's folder in the context: what /app gets
    copy: tuple[LayerCopy, ...] = ()  # runtime.copy entries, staged with the layer

    def describe(self) -> str:
        what = "install the project (non-editable)" if self.is_package else "copy project files"
        return what + (f", then {len(self.run)} builder command(s)" if self.run else "")


@dataclass(frozen=True, kw_only=True, slots=True)
class PrepareRuntime(LayerStep):
    """The runtime's own layers, made in a container of its base: `runtime.packages` (a
    whole-root delta) and the runtime user (/etc/passwd, /etc/group, its home)."""

    packages: tuple[str, ...]
    user: str
    python: str

    def describe(self) -> str:
        pk = " ".join(self.packages) or "(none)"
        return f"runtime layers: packages {pk}; user {self.user}"


@dataclass(frozen=True, kw_only=True, slots=True)
class DependenciesLayer(LayerStep):
    """/app/.venv as synced without the project, as a layer tar (written by the sync)."""

    def describe(self) -> str:
        return f"dependencies layer: {VENV} without the project"


@dataclass(frozen=True, kw_only=True, slots=True)
class ProjectLayer(LayerStep):
    """What the project install added to /app, runtime.copy and the SBOM, as a layer tar."""

    def describe(self) -> str:
        return "project layer: the project, runtime.copy, SBOM"


@dataclass(frozen=True, kw_only=True, slots=True)
class AddProject(Step):
    """The final image, assembled: the runtime base, the layers, the config. Tested in a
    container of its own before it is tagged."""

    workdir: str
    env: tuple[tuple[str, str], ...]
    entrypoint: tuple[str, ...] | None
    cmd: tuple[str, ...] | None
    expose: tuple[str, ...]
    labels: tuple[tuple[str, str], ...]
    stop_signal: str | None
    test: tuple[str, ...]

    def describe(self) -> str:
        tests = f", {len(self.test)} test(s)" if self.test else ""
        return f"assemble the image: base, layers, config{tests}"


@dataclass(frozen=True, kw_only=True, slots=True)
class Plan:
    """An ordered build: steps in an order where each one's needs come first."""

    image: str
    timestamp: int
    project_root: str
    steps: tuple[Step, ...]
    context_root: str = ""  # "": project_root (see PlanInputs)
    project: Project | None = None
    locked: tuple[LockedPackage, ...] = ()

    @property
    def final(self) -> AddProject:
        last = self.steps[-1]
        assert isinstance(last, AddProject)
        return last

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)


def bootstrap_ref(base: BootstrapBase, key: str) -> str:
    """One repository per definition, as for cache steps (see Step.cache_ref)."""
    return f"{BASE_REPO}/{base.distribution}-{base.suite}-{key[:16]}:latest"


_KEY = re.compile(r"[0-9a-f]{16}|[0-9a-f]{32}")


def cache_name_parts(name: str) -> tuple[str, str] | None:
    """(step, key) of a name that Step.cache_ref or bootstrap_ref gives, or that older
    uvbuilds gave (<repo>/<name>:<key>); None for any other name."""
    # localhost/uvbuild-cache/<step>-<key32>:latest,
    # localhost/uvbuild-base/debian-<suite>-<key16>:latest
    prefix = next((p for p in (CACHE_REPO + "/", BASE_REPO + "/") if name.startswith(p)), None)
    if prefix is None:
        return None
    repo, _, tag = name[len(prefix):].rpartition(":")
    step, _, key = repo.rpartition("-")
    if not _KEY.fullmatch(key):
        step, key = repo, tag
    return step, key


def bootstrap_key(base: BootstrapBase, timestamp: int) -> str:
    """A bootstrapped base is rebuilt only when its definition (or the timestamp) changes.

    A standard base's key has no variant in it, so the bases made before variants
    existed keep their keys; a slim base's covers what a slim root is (slimroot).
    """
    definition: dict[str, Any] = {
        "distribution": base.distribution, "suite": base.suite,
        "packages": sorted(base.packages), "snapshot": base.snapshot,
        "timestamp": timestamp,
    }
    if base.variant == "slim":
        definition["slim"] = slimroot.definition()
    return step_key("bootstrap", definition)


def runtime_base(runtime: Runtime) -> Base:
    """The runtime stage's base as it is made: a slim root has no package manager, so
    runtime.packages join its bootstrap (mmdebstrap resolves them with the rest)."""
    base = runtime.base
    if isinstance(base, BootstrapBase) and base.variant == "slim" and runtime.packages:
        packages = base.packages + tuple(p for p in runtime.packages if p not in base.packages)
        return replace(base, packages=packages)
    return base


def runtime_packages(runtime: Runtime) -> tuple[str, ...]:
    """What prepare-runtime installs with the image's package manager (see runtime_base)."""
    if isinstance(runtime.base, BootstrapBase) and runtime.base.variant == "slim":
        return ()
    return runtime.packages


def in_project_layer(entry: CopyEntry) -> bool:
    """Whether a runtime.copy entry lands in /app."""
    dest = posixpath.normpath(entry.dest)
    return dest == APP or dest.startswith(APP + "/")


def _copy_dest(dest: str) -> str:
    """A runtime.copy destination, normalised; a trailing / ("into this folder") kept."""
    normal = posixpath.normpath(dest)
    return normal + "/" if dest.endswith("/") and normal != "/" else normal


# The layers' form (layertar.py, the assembled image's config): bumped when it changes,
# so no layer or image of an older form is reused.
LAYER_FORM = 1


def make_plan(recipe: Recipe, inputs: PlanInputs) -> Plan:
    """The whole build as data. Same recipe and inputs → same steps and keys."""
    b, r, ts = recipe.builder, recipe.runtime, inputs.timestamp
    python = b.python or "python3"

    def key(kind: str, definition: dict[str, Any], *parents: Step) -> str:
        return step_key(kind, {**definition, "timestamp": ts}, [p.key for p in parents])

    builder_base = ResolveBase(
        name="builder-base", stage="builder", base=b.base, needs=(),
        key=key("base", {"id": inputs.builder_base_id}))
    prepare_builder = PrepareBuilder(
        name="prepare-builder", needs=("builder-base",), packages=b.packages,
        key=key("prepare-builder", {"packages": list(b.packages)}, builder_base))
    sync = SyncDependencies(
        name="sync-dependencies", needs=("prepare-builder",), python=python, sync=b.sync,
        env=b.env, secrets=b.secrets, manifests=inputs.manifest_files,
        workspace=inputs.is_workspace, project_dir=inputs.project_dir, package=inputs.package,
        uv_python=inputs.uv_python, python_request=inputs.python_request,
        key=key("sync-dependencies", {
            # Absent when default: the keys of plain projects hold.
            **({"project_dir": inputs.project_dir} if inputs.project_dir != SOURCE_DIR else {}),
            **({"package": inputs.package} if inputs.package else {}),
            **({"uv_python": inputs.uv_python} if inputs.uv_python else {}),
            "python": python, "groups": list(b.sync.groups), "extras": list(b.sync.extras),
            "all_extras": b.sync.all_extras, "compile": b.sync.compile_bytecode,
            "env": [list(p) for p in b.env], "secret_names": list(b.secrets),
            "manifests": inputs.manifest_digest, "uv": inputs.uv_version,
        }, prepare_builder))
    # runtime.copy entries are part of the project layer, staged by the builder commands
    # and made again only when the project changes. (A trailing / says "into": kept.)
    layer_copy = tuple(LayerCopy(index=i, source=c.source, dest=_copy_dest(c.dest))
                       for i, c in enumerate(r.copy))
    install_definition: dict[str, Any] = {
        "sources": inputs.source_digest, "run": list(b.run), "package": inputs.is_package}
    if inputs.app_subdir:
        install_definition["app_subdir"] = inputs.app_subdir
    if layer_copy:  # absent when empty: the keys of recipes without such entries hold
        install_definition["copy"] = [[c.source, c.dest] for c in layer_copy]
    install = InstallProject(
        name="install-project", needs=("sync-dependencies",), is_package=inputs.is_package,
        sources=inputs.source_files, run=b.run, copy=layer_copy, app_subdir=inputs.app_subdir,
        key=key("install-project", install_definition, sync))
    # The layers' keys follow only the builder steps they come from: a runtime-side
    # change keeps them (and runs no builder step).
    deps_layer = DependenciesLayer(
        name="dependencies-layer", needs=("sync-dependencies",),
        key=key("dependencies-layer", {"form": LAYER_FORM}, sync))
    project_layer = ProjectLayer(
        name="project-layer", needs=("install-project",),
        key=key("project-layer", {"form": LAYER_FORM}, install))
    resolve_runtime = ResolveBase(
        name="runtime-base", stage="runtime", base=runtime_base(r), needs=(),
        key=key("base", {"id": inputs.runtime_base_id}))
    packages = runtime_packages(r)
    prepare_runtime = PrepareRuntime(
        name="prepare-runtime", needs=("runtime-base",), packages=packages, user=r.user,
        python=python,
        key=key("prepare-runtime", {"packages": list(packages), "user": r.user,
                                    "python": python, "form": LAYER_FORM}, resolve_runtime))
    # The recipe's labels win over the measured OCI facts.
    labels = tuple(sorted({**dict(inputs.oci_labels), **dict(r.labels)}.items()))
    final = AddProject(
        name="add-project",
        needs=("runtime-base", "prepare-runtime", "dependencies-layer", "project-layer"),
        workdir=r.workdir,
        env=r.env, entrypoint=r.entrypoint, cmd=r.cmd, expose=r.expose, labels=labels,
        stop_signal=r.stop_signal, test=r.test,
        key=key("add-project", {
            "workdir": r.workdir,
            "env": [list(p) for p in r.env],
            "entrypoint": None if r.entrypoint is None else list(r.entrypoint),
            "cmd": None if r.cmd is None else list(r.cmd), "expose": list(r.expose),
            "labels": [list(p) for p in labels], "stop_signal": r.stop_signal,
            "test": list(r.test), "form": LAYER_FORM,
        }, resolve_runtime, prepare_runtime, deps_layer, project_layer))
    steps: tuple[Step, ...] = (builder_base, prepare_builder, sync, install, deps_layer,
                               project_layer, resolve_runtime, prepare_runtime, final)
    return Plan(image=inputs.image, timestamp=ts, project_root=inputs.project_root, steps=steps,
                context_root=inputs.context_root or inputs.project_root,
                project=inputs.project, locked=inputs.locked)
