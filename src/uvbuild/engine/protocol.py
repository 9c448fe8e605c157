"""The container engine as the build sees it: the `Engine` protocol.

`buildah.Buildah` implements it for real and `tests/executor/fake_engine.FakeEngine` in
memory; mypy holds both to it, so the executor is tested against the surface it runs on.
Only what the build (executor, its steps, bootstrap, the liveness sweep) calls is here;
the commands (`inspect`, `cache`) and delivery (push) take `Buildah` itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from uvbuild.engine.buildah import CommitOptions, ImageConfig, ImageInfo, Mount, RegistryAccess
from uvbuild.engine.cmd import Gate, Result


class RegistryEngine(Protocol):
    """A registry as a step cache (build/regcache.py): manifests by name, tags, deletes,
    and copies between local storage, OCI layout folders and the registry."""

    def registry_manifest(self, ref: str, access: RegistryAccess) -> bytes | None: ...

    def registry_tags(self, repo: str, access: RegistryAccess) -> tuple[str, ...]: ...

    def registry_delete(self, ref: str, access: RegistryAccess) -> None: ...

    def image_to_layout(self, image: str, layout: Path) -> None: ...

    def layout_to_registry(self, layout: Path, dest: str, access: RegistryAccess) -> None: ...

    def registry_to_layout(self, ref: str, layout: Path, access: RegistryAccess) -> None: ...

    def registry_to_store(self, ref: str, name: str, access: RegistryAccess) -> str: ...

    def rmi(self, image: str) -> bool: ...


class Engine(RegistryEngine, Protocol):
    """Images and working containers: make, run in, copy into, configure, commit, tag;
    and a registry as a step cache (RegistryEngine)."""

    # Set by the build (liveness.Claim.owner_env) and put into every command's environment.
    owner_env: dict[str, str]

    # -- the store ----------------------------------------------------------------------

    def graphroot(self) -> str | None: ...

    def run_root(self) -> Path: ...

    def image(self, ref: str) -> ImageInfo | None: ...

    def image_size(self, ref: str) -> int: ...

    def images_named(self, prefix: str) -> dict[str, str]: ...

    def dangling_images(self, label: str) -> list[str]: ...

    def containers(self) -> list[dict[str, str]]: ...

    def pull(self, ref: str) -> str: ...

    def tag(self, image: str, *names: str) -> None: ...

    def rmi(self, image: str) -> bool: ...

    # -- working containers ---------------------------------------------------------------

    def from_image(self, image: str, name: str) -> str: ...

    def from_scratch(self, name: str) -> str: ...

    def rm(self, *containers: str) -> None: ...

    def run(self, container: str, argv: Sequence[str], *, mounts: Sequence[Mount] = (),
            workdir: str | None = None, user: str | None = None, network: bool = True,
            stream: bool = True, gate: Gate | None = None) -> Result: ...

    def copy(self, container: str, source: str, dest: str, *,
             from_ref: str | None = None) -> None: ...

    def add_archive(self, container: str, tarball: str, dest: str) -> None: ...

    def configure(self, container: str, config: ImageConfig) -> None: ...

    def commit(self, container: str, options: CommitOptions) -> str: ...

    # -- assembled images -------------------------------------------------------------------

    def image_manifest(self, ref: str) -> tuple[bytes, bytes]: ...

    def import_layout(self, layout: Path, name: str) -> str: ...
