"""Walk a Plan: reuse cached steps, run the others, test, then tag. Nothing left behind.

Steps are evaluated lazily from the final one, so a step whose image is already in
the cache is not run and neither are the steps only it needed: a code change runs
`install-project` and `add-project` and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

from . import builder_steps, runtime_steps
from .bootstrap import build_bootstrap_base
from .cache import stale_containers
from .engine import CONTAINER_PREFIX, Buildah, Mount
from .plan import (
    CACHE_REPO,
    AddDependencies,
    AddProject,
    InstallProject,
    Plan,
    PrepareBuilder,
    PrepareRuntime,
    ResolveBase,
    Step,
    SyncDependencies,
)
from .progress import Reporter
from .recipe import BootstrapBase


@dataclass(frozen=True, kw_only=True, slots=True)
class BuildSettings:
    """What a build needs beyond the plan: host paths and values that are never stored."""

    uv_binary: str
    uv_cache: Path
    network_env: Mapping[str, str]  # CA bundle and proxy settings (build time only)
    network_mounts: tuple[Mount, ...]
    secrets: Mapping[str, str]  # builder.secrets values from the host environment
    no_cache: bool = False
    verbose: bool = False


@dataclass(kw_only=True)
class BuildResult:
    """What the build produced."""

    image: str
    image_id: str
    seconds: float
    steps: list[dict[str, object]] = field(default_factory=list)


class Build:
    """One run of the executor: holds the working containers it must remove."""

    def __init__(self, engine: Buildah, plan: Plan, settings: BuildSettings,
                 reporter: Reporter) -> None:
        self.engine, self.plan, self.settings, self.reporter = engine, plan, settings, reporter
        self.images: dict[str, str] = {}  # step name → image ID
        self._cached: dict[str, str] = {}
        self._live: set[str] = set()  # working containers to remove on any exit
        self._serial = 0

    # -- the pipeline -----------------------------------------------------------

    def run(self) -> BuildResult:
        """Build the final image (or find it), test it, tag it."""
        started = time.monotonic()
        for name in stale_containers(self.engine):
            self.engine.rm(name)  # left by a build that was killed (SIGKILL, power loss)
        try:
            self._cached = {} if self.settings.no_cache else self.engine.images_named(CACHE_REPO + "/")
            image_id = self.ensure(self.plan.final)
            self.engine.tag(image_id, self.plan.image)
        finally:
            self._remove_live()
        return BuildResult(image=self.plan.image, image_id=image_id,
                           seconds=time.monotonic() - started, steps=self.reporter.records)

    def ensure(self, step: Step) -> str:
        """The image ID of `step`'s result, running it (and what it needs) if not cached."""
        if step.name in self.images:
            return self.images[step.name]
        cached = self._cached.get(step.cache_ref)
        if cached:
            self.reporter.cached(step)
            self.images[step.name] = cached
            return cached
        for name in step.needs:
            self.ensure(self.plan.step(name))
        # Containers are made from names, not IDs: see Step.cache_ref for why.
        parents = {name: self.plan.step(name).cache_ref for name in step.needs}
        with self.reporter.running(step):
            image_id = self._execute(step, parents)
        if not isinstance(step, ResolveBase):
            self.engine.tag(image_id, step.cache_ref)
        self.images[step.name] = image_id
        return image_id

    def _execute(self, step: Step, parents: Mapping[str, str]) -> str:
        if isinstance(step, ResolveBase):
            return self._resolve_base(step)
        if isinstance(step, PrepareBuilder):
            return builder_steps.prepare_builder(self, step, parents["builder-base"])
        if isinstance(step, SyncDependencies):
            return builder_steps.sync_dependencies(self, step, parents["prepare-builder"])
        if isinstance(step, InstallProject):
            return builder_steps.install_project(self, step, parents["sync-dependencies"])
        if isinstance(step, PrepareRuntime):
            return runtime_steps.prepare_runtime(self, step, parents["runtime-base"])
        if isinstance(step, AddDependencies):
            return runtime_steps.add_dependencies(self, step, parents)
        if isinstance(step, AddProject):
            return runtime_steps.add_project(self, step, parents)
        raise TypeError(f"unknown step {step!r}")

    def _resolve_base(self, step: ResolveBase) -> str:
        if isinstance(step.base, BootstrapBase):
            info = self.engine.image(step.cache_ref)
            if info:
                return info.id
            # build_bootstrap_base removes its scratch container, but a Ctrl-C just after
            # `buildah from` or during its `buildah rm` would leave it: track it as live.
            name = self.container_name("bootstrap")
            self._live.add(name)
            image_id = build_bootstrap_base(self.engine, step.base, step.cache_ref,
                                            timestamp=self.plan.timestamp, container_name=name)
            self._live.discard(name)
            return image_id
        info = self.engine.image(step.base.ref)
        return info.id if info else self.engine.pull(step.base.ref)

    # -- working containers -------------------------------------------------------

    def container_name(self, purpose: str) -> str:
        """A recognisable, unique working-container name: uvbuild-<pid>-<n>-<purpose>."""
        self._serial += 1
        return f"{CONTAINER_PREFIX}{os.getpid()}-{self._serial}-{purpose}"

    @contextlib.contextmanager
    def container(self, image: str, purpose: str) -> Iterator[str]:
        """A working container from `image`, removed on any exit (Ctrl-C included)."""
        name = self.container_name(purpose)
        self._live.add(name)
        try:
            yield self.engine.from_image(image, name)
        finally:
            with _signals_held():
                self.engine.rm(name)
                self._live.discard(name)

    def _remove_live(self) -> None:
        """Remove whatever working container an interruption left behind."""
        with _signals_held():
            for name in sorted(self._live):
                self.engine.rm(name)
            self._live.clear()

    def discard_image(self, image_id: str) -> None:
        """Remove an image this build made, unless something names or uses it."""
        self.engine.rmi(image_id)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Cleanup must finish: a second Ctrl-C or SIGTERM waits until it has."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {sig: signal.signal(sig, lambda s, f: pending.append(s))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if pending:
            signal.raise_signal(pending[0])
