"""The recipe as typed, frozen data (RECIPE.md version 1).

Nothing past `uvbuild.recipe.loader` sees a dict: the loader turns YAML into these classes,
with every path already resolved against the recipe file's folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

BootstrapVariant = Literal["standard", "slim"]
BOOTSTRAP_VARIANTS: tuple[BootstrapVariant, ...] = ("standard", "slim")


@dataclass(frozen=True, kw_only=True, slots=True)
class ImageBase:
    """A base named by reference: a registry name, a local image, or `oci-archive:PATH` etc."""

    ref: str


@dataclass(frozen=True, kw_only=True, slots=True)
class BootstrapBase:
    """A base made from Debian's packages with mmdebstrap (`from: {bootstrap: debian, ...}`)."""

    distribution: str = "debian"
    suite: str = "bookworm"
    packages: tuple[str, ...] = ()
    snapshot: str | None = None  # e.g. "20250520T000000Z"
    # "standard": mmdebstrap's apt variant. "slim": no apt, no perl, no docs or locales
    # (uvbuild.slimroot); the runtime stage's packages join its bootstrap.
    variant: BootstrapVariant = "standard"


Base = ImageBase | BootstrapBase


@dataclass(frozen=True, kw_only=True, slots=True)
class SyncOptions:
    """How `uv sync` runs in the builder."""

    groups: tuple[str, ...] = ()
    extras: tuple[str, ...] = ()
    all_extras: bool = False
    compile_bytecode: bool = True


@dataclass(frozen=True, kw_only=True, slots=True)
class Builder:
    """Where the virtualenv is made; never shipped."""

    base: Base
    packages: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()  # sorted (name, value) pairs
    secrets: tuple[str, ...] = ()  # names of host variables; values never stored
    python: str | None = None  # None: `python3` on the builder's PATH
    sync: SyncOptions = field(default_factory=SyncOptions)
    run: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class CopyEntry:
    """One `runtime.copy` entry: a builder path to a runtime path."""

    source: str  # absolute path in the builder
    dest: str  # absolute path in the runtime


@dataclass(frozen=True, kw_only=True, slots=True)
class Runtime:
    """The image that ships."""

    base: Base
    packages: tuple[str, ...] = ()
    copy: tuple[CopyEntry, ...] = ()
    user: str = "app"  # "root" opts out of a dedicated user
    workdir: str = "/app"
    env: tuple[tuple[str, str], ...] = ()  # sorted (name, value) pairs
    entrypoint: tuple[str, ...] | None = None  # None: keep the base's
    cmd: tuple[str, ...] | None = None  # None: keep the base's (reset when entrypoint is set)
    expose: tuple[str, ...] = ()  # "9876" or "9876/udp"
    labels: tuple[tuple[str, str], ...] = ()  # sorted (name, value) pairs
    stop_signal: str | None = None
    test: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class Recipe:
    """A whole recipe file, paths resolved."""

    path: Path  # the recipe file itself (absolute)
    version: int
    project: Path  # absolute folder holding pyproject.toml and uv.lock
    image: str | None  # None: localhost/<project name>:<project version>
    builder: Builder
    runtime: Runtime
