"""What a step function may use of the build: the `StepContext` protocol, its `Inputs`,
and the settings.

A step function (builder_steps, layer_steps, assemble, bootstrap.resolve_base) is
called as `function(ctx, step, inputs)` and returns a typed result (results.py). It
sees the engine, the plan, scratch space, containers that are removed when the build
ends, batches and commits, the layer cache (where layer steps keep their tars) and the
results of its needs; nothing of the runner's threads, the image cache's listing or the
clean-up bookkeeping. The executor's `BuildContext` implements it, and the
step modules need not import the executor, which imports them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from uvbuild.build.batch import Command, Job
from uvbuild.build.layercache import LayerCache
from uvbuild.build.results import ContainerResult, StepResult
from uvbuild.engine.buildah import CommitOptions, Mount, RegistryAccess
from uvbuild.engine.cmd import Gate
from uvbuild.engine.protocol import Engine
from uvbuild.plan.planner import Plan, Step

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True, slots=True)
class BuildSettings:
    """What a build needs beyond the plan: host paths and values that are never stored."""

    uv_binary: str
    uv_cache: Path
    network_env: Mapping[str, str]  # CA bundle and proxy settings (build time only)
    network_mounts: tuple[Mount, ...]
    secrets: Mapping[str, str]  # builder.secrets values from the host environment
    no_cache: bool = False
    layer_cache: Path | None = None  # the host's layer cache (None: this build's alone)
    # The host's cache of the dependencies' .pyc files (incontainer/bytecode.py; None:
    # this build's alone).
    bytecode_cache: Path | None = None
    verbose: bool = False
    # Registry caches (build/remote.py): where steps are looked up before they run
    # (--cache-from, in order) and where the results go once the build succeeded
    # (--cache-to), reached with `registry` (the same settings as base pulls and push).
    cache_from: tuple[str, ...] = ()
    cache_to: str | None = None
    registry: RegistryAccess = RegistryAccess()


@dataclass(frozen=True, slots=True)
class Inputs:
    """What a step reads of its needs (the plan's `needs`), all made before it runs."""

    results: Mapping[str, StepResult]  # need's name → its result
    refs: Mapping[str, str]  # need's name → where its files are read (results.files_ref)
    # What the runner opened for this step while its needs were made (StepKind.opens),
    # by the type each opener makes.
    early: Mapping[type, Future[object]] = field(default_factory=dict)

    def ref(self, name: str) -> str:
        """The name a container is made from, or copied from, to read need `name`'s files."""
        if name not in self.refs:
            raise KeyError(f"{name!r} is not a need of this step with files to read")
        return self.refs[name]

    def of(self, name: str, kind: type[T]) -> T:
        """Need `name`'s result, which must be a `kind` (a step kind's contract)."""
        result = self.results[name]
        if not isinstance(result, kind):
            raise TypeError(f"{name} handed on a {type(result).__name__}, not a {kind.__name__}")
        return result

    def opened(self, kind: type[T]) -> T | None:
        """What the step kind's opener of `kind` made (waits for it; raises its failure),
        or None: no such opener ran (or it found nothing to do)."""
        future = self.early.get(kind)
        made = None if future is None else future.result()
        if made is not None and not isinstance(made, kind):
            raise TypeError(f"opened a {type(made).__name__}, not a {kind.__name__}")
        return made


class StepContext(Protocol):
    """The build as a step sees it (implemented by `executor.BuildContext`)."""

    engine: Engine
    plan: Plan
    settings: BuildSettings

    @property
    def layers(self) -> LayerCache:
        """The host's layer cache (or this build's own), where layer steps keep their tars."""
        ...

    def submit(self, work: Callable[[], T], *, name: str) -> Future[T]:
        """`work` in a thread of its own; a failure there fails the build."""
        ...

    def gate(self) -> Gate:
        """A gate for a command started early (cmd.Gate); shut if the build fails."""
        ...

    def scratch_dir(self, name: str) -> Path:
        """A new empty host folder, removed when the build ends."""
        ...

    def job(self, commands: Sequence[Command], *, env: Mapping[str, str] | None = None,
            gated: bool = False, started: str | None = None) -> AbstractContextManager[Job]:
        ...

    def announce_start(self, marker: Path) -> AbstractContextManager[None]:
        """The block runs the build's main builder command (the project's install), which
        makes the host file `marker` once it runs (batch.write_job's `started`): from
        then (or the block's end) `background_import` goes on."""
        ...

    def background_import(self, *, beside_install: bool = False
                          ) -> AbstractContextManager[bool]:
        """For an import in the background: the block starts once the command of
        `announce_start` runs (a second at most), or `nothing_to_wait_for`, and when no
        other such block runs. An import holds the store's layer lock while it writes
        its layers: a `buildah run` starting meanwhile, or another import, waits for it,
        and two imports at once take the CPU the install needs.

        The block gets False when the import is not worth making: the build has failed,
        or (`beside_install`, an import only worth making while the install runs) no
        install started."""
        ...

    def nothing_to_wait_for(self) -> None:
        """No builder command is about to start: `background_import` need not wait."""
        ...

    def open_container(self, image: str, purpose: str) -> str:
        """A working container from `image`, removed when the build ends."""
        ...

    def close_container(self, name: str) -> None:
        """Remove an `open_container` container now (not when the build ends)."""
        ...

    def before_removal(self, name: str, stop: Callable[[], None]) -> None:
        """Call `stop` before container `name` is removed, however the build ends: it
        returns once what still runs in the container (a run held at its gate) ended."""
        ...

    def retire_container(self, name: str) -> None:
        """Remove an `open_container` container nothing reads any more, in the
        background once the final image is imported (`imported`: a removal holds the
        store's lock, which the import needs), off the build's end, finished before the
        image is named."""
        ...

    def imported(self) -> None:
        """add-project has imported the final image, and its test's `buildah run` has set
        itself up (or there is none): `retire_container` may go on."""
        ...

    def container(self, image: str, purpose: str) -> AbstractContextManager[str]:
        """A working container from `image`, removed when the block ends."""
        ...

    def tracked_container(self, purpose: str) -> AbstractContextManager[str]:
        """A name for a container the step makes itself (e.g. from scratch): removed when
        the build ends if the block ends with an exception."""
        ...

    def host_folder(self, kind: str) -> AbstractContextManager[tuple[Path, dict[str, str]]]:
        """A private host folder and the environment mark for processes working in it
        (liveness.py), both gone when the block ends."""
        ...

    def base_lock(self, ref: str) -> AbstractContextManager[None]:
        """One build at a time makes base `ref` in this store; gives up if the build fails."""
        ...

    def commit_options(self, step: Step, **labels: str) -> CommitOptions: ...

    def defer_commit(self, step: Step, container: str,
                     commit: Callable[[], object]) -> ContainerResult:
        """Store `step`'s image under its cache name in the background (`commit` does it);
        later steps read `container`, which stays until the build ends. A failed commit
        fails the build."""
        ...

    def discard_image(self, image_id: str) -> None: ...

    def drop_at_end(self, name: str) -> None:
        """An image name this build makes for its own use only: removed (the name, and
        the image unless something else uses it) when the build ends, however it ends."""
        ...
