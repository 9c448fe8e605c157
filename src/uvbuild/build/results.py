"""What a step hands on: typed results, one per kind of thing a later step reads.

A step function returns one of these; the runner hands it to the steps that need it
(`context.Inputs`). A result says where its files are, never by a bare string whose
meaning depends on the step: an image (`ImageResult`), a working container that holds
the files while the image is committed in the background (`ContainerResult`), a layer
tar file uvbuild wrote (`LayerResult`), or what the project's install reported
(`InstallResult`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ImageResult:
    """An image in local storage: a base, a cached step, or one the step committed.

    Later steps read it by the step's name in local storage (Step.cache_ref), not by
    this ID: see Step.cache_ref for why.
    """

    image_id: str


@dataclass(frozen=True, slots=True)
class ContainerResult:
    """A live working container holding the step's files while its image is committed in
    the background (StepContext.defer_commit); later steps read from it. It is removed
    when the build ends."""

    container: str


@dataclass(frozen=True, slots=True)
class LayerResult:
    """A layer uvbuild wrote itself: an uncompressed tar file on the host, with what an
    image's config and history say of it."""

    path: Path
    digest: str  # "sha256:<hex>" of the tar file's bytes (the layer's diff ID)
    size: int  # bytes of the tar file
    created_by: str  # the history entry's created_by


@dataclass(frozen=True, slots=True)
class InstallResult:
    """install-project's result: where its files are, and what its commands reported.

    When the step was cached, `installed` and `layer_tar` are None: what was installed
    is in its image's labels, and the staged layer in its image.
    """

    files: ImageResult | ContainerResult
    installed: Mapping[str, object] | None = None  # distribution name → version, for the SBOM
    layer_tar: Path | None = None  # the staged project layer, as a tar on the host


StepResult = ImageResult | ContainerResult | LayerResult | InstallResult


def files_ref(result: StepResult, stored_as: str) -> str | None:
    """What a later step makes a container from or copies from to read `result`'s files:
    `stored_as` (the step's name in local storage) for an image, the container's name for
    one still being committed; None for a result that is no image (a layer file)."""
    if isinstance(result, InstallResult):
        return files_ref(result.files, stored_as)
    if isinstance(result, ContainerResult):
        return result.container
    if isinstance(result, ImageResult):
        return stored_as
    return None
