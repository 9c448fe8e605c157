"""What a step function may use of the build: the `StepContext` protocol, and the settings.

The step modules (`builder_steps`, `runtime_steps`) take a `StepContext`, not the
executor's `Build`: they see the engine, the plan, scratch space, containers that are
removed when the build ends, batches and commits, and nothing of the threads, the cache
or the clean-up bookkeeping. `Build` satisfies it (mypy checks where it passes itself),
and the step modules need not import the executor, which imports them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from uvbuild.build.batch import Command, Job
from uvbuild.build.layercache import LayerCache
from uvbuild.engine.buildah import CommitOptions, Mount
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
    verbose: bool = False
    parallel: bool = True  # make a step's needs at the same time (False: one by one)


class StepContext(Protocol):
    """The build as a step sees it (implemented by `executor.Build`)."""

    engine: Engine
    plan: Plan
    settings: BuildSettings
    reported: dict[str, dict[str, object]]  # step name → facts its commands reported

    @property
    def layers(self) -> LayerCache: ...

    def submit(self, work: Callable[[], T], *, name: str) -> Future[T]: ...

    def gate(self) -> Gate: ...

    def scratch_dir(self, name: str) -> Path: ...

    def job(self, commands: Sequence[Command], *, env: Mapping[str, str] | None = None,
            gated: bool = False) -> AbstractContextManager[Job]: ...

    def open_container(self, image: str, purpose: str) -> str: ...

    def container(self, image: str, purpose: str) -> AbstractContextManager[str]: ...

    def step_container(self, step: Step, image: str) -> Any: ...

    def commit_options(self, step: Step, **labels: str) -> CommitOptions: ...

    def defer_commit(self, step: Step, container: str, commit: Callable[[], str]) -> str: ...

    def finish_final(self, container: str, options: CommitOptions, *,
                     keep: str | None = None) -> str: ...

    def discard_image(self, image_id: str) -> None: ...
