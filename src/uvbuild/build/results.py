"""What a step hands on: typed results, one per kind of thing a later step reads.

A step function returns one of these; the runner hands it to the steps that need it
(`context.Inputs`). A result says where its files are, never by a bare string whose
meaning depends on the step: an image (`ImageResult`), a working container that holds
the files while the image is committed in the background (`ContainerResult`), the layer
tar files a layer step keeps (`LayerSet` of `LayerResult`s), or what the builder's sync
and install reported besides their files (`SyncResult`, `InstallResult`).
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from uvbuild.engine.cmd import Gate, Result
from uvbuild.output.oci import Layer

# A layer uvbuild wrote itself: an uncompressed tar file on the host, its digest (the
# diff ID), size and history entry. One type with what output/oci.py assembles images
# from (and the registry cache exports).
LayerResult = Layer


@dataclass(frozen=True, slots=True)
class ImageResult:
    """An image in local storage: a base, a cached step, or one the step committed.

    Later steps read it by the step's name in local storage (Step.cache_ref), not by
    this ID: see Step.cache_ref for why.
    """

    image_id: str


@dataclass(frozen=True, slots=True)
class TestedImage(ImageResult):
    """The final image, assembled, imported and tested by add-project this run: it is
    still named `untested` only. The build gives it its cache name and the output name
    together (one `buildah tag`) and then takes `untested` off it."""

    untested: str


@dataclass(frozen=True, slots=True)
class ContainerResult:
    """A live working container holding the step's files while its image is committed in
    the background (StepContext.defer_commit), or (`stored` False) instead of an image;
    later steps read from it. It is removed when the build ends."""

    container: str
    # False: no image is made of it (install-project, whose files only its layer ships).
    stored: bool = True


@dataclass(frozen=True, kw_only=True, slots=True)
class LayerSet:
    """A layer step's result: its layers (base side first; none for a step that added
    nothing) and the facts the assembly needs of them (the venv's interpreter, the
    runtime user's uid:gid, what the project installed), as the layer cache keeps them
    (build/layercache.py)."""

    step: str
    key: str
    layers: tuple[LayerResult, ...]
    facts: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FollowUp:
    """A `buildah run` of a step's container, started while the step's own batch ran
    and held at its gate (batch.write_launcher), for the next step's batch: that batch
    then goes on without paying a run's start-up on the way to the image. Mounted in
    it: `job` at batch.JOB (the batch is written into its batch.NEXT folder), `files`
    where the builder reads the project's files, and `out`, writable, where a batch
    writes its layer. `ran`: the run's Result, once its gate was opened (or shut)."""

    gate: Gate
    job: Path
    files: Path
    out: Path
    ran: Future[Result]


@dataclass(frozen=True, slots=True)
class SyncResult:
    """sync-dependencies' result: its image (or, made this run, its container while the
    image is stored), and what its batch wrote besides.

    When the step was cached, `python` and `layer` are None: the interpreter is in its
    image's labels, and dependencies-layer writes the layer from the image.
    """

    files: ImageResult | ContainerResult
    python: Mapping[str, str] | None = None  # the venv's interpreter (python, version)
    layer: LayerResult | None = None  # /app/.venv as a canonical layer tar
    # Made this run (as root): a run of its container held for install-project's batch.
    follow_up: FollowUp | None = None


@dataclass(frozen=True, slots=True)
class InstallResult:
    """install-project's result: where its files are, and what its commands reported.

    When the step was cached, `installed` and `layer` are None: what was installed is in
    its image's labels, and the staged layer in its image (project-layer writes the
    layer tar from it).
    """

    files: ImageResult | ContainerResult
    installed: Mapping[str, object] | None = None  # distribution name → version, for the SBOM
    layer: LayerResult | None = None  # the project layer, as a canonical tar on the host


StepResult = ImageResult | ContainerResult | LayerResult | LayerSet | SyncResult | InstallResult


def files_ref(result: StepResult, stored_as: str) -> str | None:
    """What a later step makes a container from or copies from to read `result`'s files:
    `stored_as` (the step's name in local storage) for an image, the container's name for
    one still being committed; None for a result that is no image (layer files)."""
    if isinstance(result, InstallResult | SyncResult):
        return files_ref(result.files, stored_as)
    if isinstance(result, ContainerResult):
        return result.container
    if isinstance(result, ImageResult):
        return stored_as
    return None


def image_of(result: StepResult) -> ImageResult | None:
    """The image `result` says the step made or found, if its files are one (None for a
    working container still being committed, or layer files)."""
    files = _files(result)
    return files if isinstance(files, ImageResult) else None


def stored(result: StepResult) -> bool:
    """Whether the step's result is kept: layer files, or an image (one being committed
    included); not a working container no image is made of."""
    files = _files(result)
    return not (isinstance(files, ContainerResult) and not files.stored)


def _files(result: StepResult) -> StepResult:
    """Where a sync's or install's result has its files (their image or container); any
    other result as it is."""
    return result.files if isinstance(result, InstallResult | SyncResult) else result
