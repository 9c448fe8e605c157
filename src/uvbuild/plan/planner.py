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

A step's key is made from the step itself (step_key_of): its type, every field it
declares but those its class leaves out in `unkeyed` (each with why), its parents'
keys and the digests of what it reads. A field added to a step is in its key unless
it is left out on purpose, and tests/unit/test_step_keys.py holds the list of those.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, TypeVar

from uvbuild.plan import slimroot
from uvbuild.plan.cachekey import key_value, step_key
from uvbuild.project.archive import ProjectTar
from uvbuild.project.lockfile import LockedPackage
from uvbuild.project.model import Project
from uvbuild.project.pythons import PythonRequest
from uvbuild.recipe.model import (
    Base,
    BootstrapBase,
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
    manifest_digest: str  # the sha256 of the manifests' tar (project/archive.py)
    source_files: tuple[str, ...]  # every source file the project step reads (relative)
    source_digest: str  # the sha256 of the sources' tar
    # Those tars as the builder steps unpack them: planned with those digests, written by
    # the step that unpacks them (what they ship is what the digests cover). None: a
    # plan made by tests of the planner alone.
    manifests_tar: ProjectTar | None = None
    sources_tar: ProjectTar | None = None
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

    # The fields left out of the key, and why (see step_key_of); a subclass adds its own.
    unkeyed: ClassVar[Mapping[str, str]] = {
        # Both bases share a key, so one bootstrapped image, when their definitions match.
        "name": "the step's place in the plan, not what it makes (its type is in the key)",
        "key": "what the key makes",
        "needs": "the parents' keys are in the key",
    }

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
    unkeyed: ClassVar[Mapping[str, str]] = {
        "stage": "which chain the base starts: the same base is the same image in either",
        "base": "measured: its image ID, or its bootstrap definition's key (inputs.base_id)",
    }

    stage: str  # "builder" | "runtime"
    base: Base

    @property
    def cache_ref(self) -> str:
        if isinstance(self.base, ImageBase):
            return self.base.ref
        return bootstrap_ref(self.base, self.key)

    def cached(self, cache: Mapping[str, str]) -> str | None:
        """The base's image ID if `cache` (the store's image names, as the build listed
        them) has it by its name (a bootstrapped one under BASE_REPO); else resolving it
        asks local storage (a short name), then pulls or bootstraps it."""
        return cache.get(self.cache_ref)

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
    unkeyed: ClassVar[Mapping[str, str]] = {
        "manifests": "their names and content are the manifests digest, which is keyed",
        "manifests_tar": "its bytes are the manifests digest, which is keyed",
        "workspace": "read from the manifests",
        # Its `source` is a host path, which would make keys differ between machines.
        "python_request": "read from the manifests (requires-python, .python-version)",
    }

    python: str
    sync: SyncOptions
    env: tuple[tuple[str, str], ...]
    secrets: tuple[str, ...]
    manifests: tuple[str, ...]
    manifests_tar: ProjectTar | None  # the manifests as the tar to unpack (None: not to build)
    workspace: bool
    project_dir: str = SOURCE_DIR  # the folder of uv.lock in the builder
    package: str | None = None  # `uv sync --package NAME`
    uv_python: str | None = None  # what uv is asked for, when not `python` itself
    # The project's request, checked against the venv once made.
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

    unkeyed: ClassVar[Mapping[str, str]] = {"index": "for messages only"}


@dataclass(frozen=True, kw_only=True, slots=True)
class InstallProject(Step):
    unkeyed: ClassVar[Mapping[str, str]] = {
        "sources": "their names and content are the sources digest, which is keyed",
        "sources_tar": "its bytes are the sources digest, which is keyed",
    }

    is_package: bool
    sources: tuple[str, ...]
    sources_tar: ProjectTar | None  # the sources as the tar to unpack (None: not to build)
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
    """A bootstrapped base is rebuilt only when its definition (every field of it, the
    packages in any order) or the timestamp changes; a slim base's key also covers what
    a slim root is (slimroot)."""
    definition: dict[str, Any] = {
        "base": key_value(replace(base, packages=tuple(sorted(base.packages)))),
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


def _copy_dest(dest: str) -> str:
    """A runtime.copy destination, normalised; a trailing / ("into this folder") kept."""
    normal = posixpath.normpath(dest)
    return normal + "/" if dest.endswith("/") and normal != "/" else normal


# The layers' form (layertar.py, the assembled image's config): bumped when it changes,
# so no layer or image of an older form is reused. In the keys of the steps that make
# them (a measure: no field holds it).
LAYER_FORM = 1


# How the dependencies' .pyc files are made: 1, by uv's --compile-bytecode; 2, by
# incontainer/bytecode.py. Bumped when a change there may change their bytes (marshal's
# bytes depend on the compiling process as well as on the code), so no venv made the old
# way is reused. In sync-dependencies' key (a measure); test_plan pins the script.
BYTECODE_FORM = 2


S = TypeVar("S", bound=Step)


def step_key_of(step: Step, parents: Sequence[Step], measured: Mapping[str, object]) -> str:
    """The key of `step`: its type and fields (all but its class's `unkeyed` ones, see
    cachekey.key_value), its parents' keys in the order of `needs`, and `measured`: the
    digests of what it reads that its fields only name (files, a base image, uv)."""
    assert [p.name for p in parents] == list(step.needs), (step.name, step.needs)
    return step_key(type(step).__name__, {"step": key_value(step), "measured": key_value(measured)},
                    [p.key for p in parents])


def make_plan(recipe: Recipe, inputs: PlanInputs) -> Plan:
    """The whole build as data. Same recipe and inputs → same steps and keys."""
    b, r, ts = recipe.builder, recipe.runtime, inputs.timestamp
    python = b.python or "python3"
    made: dict[str, Step] = {}

    def keyed(step: S, **measured: object) -> S:
        """`step` with its key; the build timestamp is in every key."""
        parents = [made[name] for name in step.needs]
        step = replace(step, key=step_key_of(step, parents, {**measured, "timestamp": ts}))
        made[step.name] = step
        return step

    builder_base = keyed(ResolveBase(
        name="builder-base", stage="builder", base=b.base, needs=(), key=""),
        id=inputs.builder_base_id)
    prepare_builder = keyed(PrepareBuilder(
        name="prepare-builder", needs=("builder-base",), packages=b.packages, key=""))
    sync = keyed(SyncDependencies(
        name="sync-dependencies", needs=("prepare-builder",), python=python, sync=b.sync,
        env=b.env, secrets=b.secrets, manifests=inputs.manifest_files,
        manifests_tar=inputs.manifests_tar,
        workspace=inputs.is_workspace, project_dir=inputs.project_dir, package=inputs.package,
        uv_python=inputs.uv_python, python_request=inputs.python_request, key=""),
        manifests=inputs.manifest_digest, uv=inputs.uv_version,
        bytecode=BYTECODE_FORM if b.sync.compile_bytecode else None)
    # runtime.copy entries are part of the project layer, staged by the builder commands
    # and made again only when the project changes. (A trailing / says "into": kept.)
    layer_copy = tuple(LayerCopy(index=i, source=c.source, dest=_copy_dest(c.dest))
                       for i, c in enumerate(r.copy))
    install = keyed(InstallProject(
        name="install-project", needs=("sync-dependencies",), is_package=inputs.is_package,
        sources=inputs.source_files, sources_tar=inputs.sources_tar, run=b.run,
        copy=layer_copy, app_subdir=inputs.app_subdir, key=""), sources=inputs.source_digest)
    # The layers' keys follow only the builder steps they come from: a runtime-side
    # change keeps them (and runs no builder step).
    deps_layer = keyed(DependenciesLayer(
        name="dependencies-layer", needs=("sync-dependencies",), key=""), form=LAYER_FORM)
    project_layer = keyed(ProjectLayer(
        name="project-layer", needs=("install-project",), key=""), form=LAYER_FORM)
    resolve_runtime = keyed(ResolveBase(
        name="runtime-base", stage="runtime", base=runtime_base(r), needs=(), key=""),
        id=inputs.runtime_base_id)
    prepare_runtime = keyed(PrepareRuntime(
        name="prepare-runtime", needs=("runtime-base",), packages=runtime_packages(r),
        user=r.user, python=python, key=""), form=LAYER_FORM)
    # The recipe's labels win over the measured OCI facts.
    labels = tuple(sorted({**dict(inputs.oci_labels), **dict(r.labels)}.items()))
    # A PATH in runtime.env gets the venv's bin/ (runtime_steps.venv_first); the images
    # made before that had the PATH as written and must not be found again by their key.
    # Only such recipes' keys change.
    path_form = {"venv_first_on_path": 1} if any(k == "PATH" for k, _ in r.env) else {}
    final = keyed(AddProject(
        name="add-project",
        needs=("runtime-base", "prepare-runtime", "dependencies-layer", "project-layer"),
        workdir=r.workdir,
        env=r.env, entrypoint=r.entrypoint, cmd=r.cmd, expose=r.expose, labels=labels,
        stop_signal=r.stop_signal, test=r.test, key=""), form=LAYER_FORM, **path_form)
    steps: tuple[Step, ...] = (builder_base, prepare_builder, sync, install, deps_layer,
                               project_layer, resolve_runtime, prepare_runtime, final)
    return Plan(image=inputs.image, timestamp=ts, project_root=inputs.project_root, steps=steps,
                context_root=inputs.context_root or inputs.project_root,
                project=inputs.project, locked=inputs.locked)
