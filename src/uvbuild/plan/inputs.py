"""Measure what the planner needs: project facts, file digests, base image IDs, uv version.

Reads files and asks the engine read-only questions; never makes a container.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

from uvbuild.engine import cmd
from uvbuild.engine.buildah import Buildah, RegistryAccess
from uvbuild.errors import ProjectError, RecipeError, UvbuildError
from uvbuild.plan.planner import (
    DEFAULT_TIMESTAMP,
    SOURCE_DIR,
    PlanInputs,
    bootstrap_key,
    runtime_base,
)
from uvbuild.project.archive import ProjectTar
from uvbuild.project.model import Project, read_project, uv_lock_packages
from uvbuild.project.pythons import check_python, python_request
from uvbuild.project.selections import check_sync
from uvbuild.project.sources import source_files
from uvbuild.recipe.imageref import tag_from_version
from uvbuild.recipe.model import Base, BootstrapBase, Recipe


def build_timestamp(environ: os._Environ[str] | dict[str, str] | None = None) -> int:
    """SOURCE_DATE_EPOCH when set, else the documented fixed default (1980-01-01)."""
    env = os.environ if environ is None else environ
    raw = env.get("SOURCE_DATE_EPOCH", "").strip()
    if not raw:
        return DEFAULT_TIMESTAMP
    if not raw.isdigit():
        raise RecipeError(f"SOURCE_DATE_EPOCH={raw!r} is not a whole number of seconds")
    return int(raw)


def uv_version() -> str:
    """The version of the uv binary handed to builders (from the `uv` package).

    Read from the package's own dist-info folder when there is exactly one beside it:
    importlib.metadata's answer, without its imports (the email package: about 20 ms
    of every build's start-up, an unchanged rebuild's included).
    """
    import uv

    found = list(Path(uv.__file__).parent.parent.glob("uv-*.dist-info/METADATA"))
    if len(found) == 1:
        with contextlib.suppress(OSError), open(found[0], encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("Version:"):
                    return line.partition(":")[2].strip()
                if not line.strip():
                    break  # the headers end at the first empty line
    from importlib import metadata

    return metadata.version("uv")


def uv_binary() -> str:
    """The path of the uv binary shipped in the `uv` PyPI package."""
    import uv

    return str(uv.find_uv_bin())


def default_image_name(project: Project) -> str:
    """localhost/<project name>:<project version> (or :latest without a version); a
    version a tag cannot hold (1.0+local) is made one (1.0_local)."""
    return f"localhost/{project.normalized_name}:{tag_from_version(project.version or 'latest')}"


def local_base_id(base: Base, engine: Buildah | None) -> str | None:
    """The image ID of a named base in local storage (None: not there, or not asked)."""
    if isinstance(base, BootstrapBase) or engine is None:
        return None
    return engine.image_id(base.ref)


def base_id(base: Base, engine: Buildah | None, timestamp: int, *, pull: bool,
            access: RegistryAccess | None = None, local: str | None = None) -> str:
    """What identifies a base's content: the image ID (`local`: found in local storage
    already), or the bootstrap definition's key."""
    if isinstance(base, BootstrapBase):
        return "bootstrap:" + bootstrap_key(base, timestamp)
    if engine is None:
        return "ref:" + base.ref
    found = local or local_base_id(base, engine)
    if found:
        return found
    if pull:
        return engine.pull(base.ref, access)
    return "ref:" + base.ref


def oci_labels(project: Project, timestamp: int) -> tuple[tuple[str, str], ...]:
    """org.opencontainers.image.* labels: version, created, and source/revision from git."""
    created = datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    labels = {"org.opencontainers.image.created": created,
              "org.opencontainers.image.title": project.name}
    if project.version:
        labels["org.opencontainers.image.version"] = project.version
    revision = _git(project.root, "rev-parse", "HEAD")
    if revision:
        labels["org.opencontainers.image.revision"] = revision
        source = _git(project.root, "config", "--get", "remote.origin.url")
        if source and shareable_source(source):
            labels["org.opencontainers.image.source"] = source
    return tuple(sorted(labels.items()))


def shareable_source(url: str) -> bool:
    """Whether a git remote may ship as the image's source label: a URL others can
    reach, never credentials (user@ in it), never a path of the building machine (a
    clone of a local checkout has one as its origin)."""
    scheme, sep, rest = url.partition("://")
    return bool(sep) and scheme != "file" and "@" not in rest.split("/")[0]


def _git(root: Path, *args: str) -> str | None:
    try:
        result = cmd.run(["git", "-C", str(root), *args])
    except UvbuildError:
        return None  # no git on this host: the labels are optional
    return result.stdout.strip() or None if result.ok else None


def unreadable(exc: OSError, root: Path) -> ProjectError:
    """A project file or folder that cannot be read, as a project error naming it."""
    where = exc.filename or root
    return ProjectError(f"{where} cannot be read: {exc.strerror or exc}",
                        hint=f"every file of the project ({root}) must be readable by uvbuild; "
                        "list what should not be built in .containerignore")


def recipe_files(recipe: Recipe, project: Project) -> frozenset[str]:
    """The recipe file, as a path of the build context, if it lies inside it: it is the
    build's description, never part of what the image ships (nor of a step's key)."""
    try:
        rel = recipe.path.resolve().relative_to(project.context_root)
    except ValueError:
        return frozenset()
    return frozenset({rel.as_posix()})


def gather(recipe: Recipe, engine: Buildah | None, *, tag: str | None,
           pull: bool = True, access: RegistryAccess | None = None,
           ) -> tuple[Project, PlanInputs]:
    """Read the project and measure every input of the plan.

    The project's files are digested as the tars the builder steps unpack, and written
    nowhere: a step that unpacks them writes them when it runs (archive.ProjectTar).
    """
    project = read_project(recipe.project)
    check_sync(recipe, project)  # as uv sync would, before any container
    uv_python = check_python(recipe, project)  # before any base is pulled or made
    timestamp = build_timestamp()
    context = project.context_root
    bases = (recipe.builder.base, runtime_base(recipe.runtime))
    # Local storage is asked for the named bases' IDs (a buildah start-up each) while
    # the project is listed and digested and its git facts and lock read; a base it
    # lacks is pulled only after that.
    with ThreadPoolExecutor(max_workers=len(bases), thread_name_prefix="uvbuild-base") as pool:
        asked = [pool.submit(local_base_id, base, engine) for base in bases]
        try:
            shipped = project.shipped_files
            if shipped is None:
                shipped = tuple(sorted(set(source_files(project.root))
                                       | set(project.manifest_files)))
            files = tuple(f for f in shipped if f not in recipe_files(recipe, project))
        except OSError as exc:  # a file or folder that cannot be read (permissions, a loop...)
            raise unreadable(exc, project.root) from None
        # A file that cannot be read is a ProjectError from write_tarball.
        manifests_tar = ProjectTar.plan("manifests", context, project.manifest_files,
                                        timestamp=timestamp)
        sources_tar = ProjectTar.plan("sources", context, files, timestamp=timestamp)
        labels, locked = oci_labels(project, timestamp), uv_lock_packages(project)
        builder_id, runtime_id = (
            base_id(base, engine, timestamp, pull=pull, access=access, local=found.result())
            for base, found in zip(bases, asked, strict=True))
    return project, PlanInputs(
        image=tag or recipe.image or default_image_name(project),
        uv_version=uv_version(),
        builder_base_id=builder_id,
        runtime_base_id=runtime_id,
        project_root=str(project.root),
        context_root=str(context),
        project_dir=posixpath.join(SOURCE_DIR, project.in_context(project.lock_root)).rstrip("/"),
        app_subdir=project.in_context(project.root),
        package=project.package,
        uv_python=uv_python,
        python_request=python_request(project),
        manifest_files=project.manifest_files,
        manifest_digest=manifests_tar.digest,
        source_files=files,
        source_digest=sources_tar.digest,
        manifests_tar=manifests_tar,
        sources_tar=sources_tar,
        is_package=project.is_package,
        is_workspace=bool(project.workspace_members),
        timestamp=timestamp,
        oci_labels=labels,
        project=project,
        locked=locked,
    )

