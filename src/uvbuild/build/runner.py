"""Run a plan's steps as a graph: each step once, its needs first and at the same time.

Steps are made lazily from the one asked for (the final one), so a step whose image is
already in the cache (a layer step: whose tars are in the layer cache, `StepKind.kept`)
is not run and neither are the steps only it needed: a code change runs
`install-project`, `project-layer` and `add-project` and no other step but resolving
the runtime base; a runtime-base refresh runs no builder step.

A step's needs (the plan's `needs`) are made at the same time, each in its own thread:
the runtime's layers (packages, user) are made while the builder syncs. A step kind may
also start work on some of its needs while the others are still being made
(`StepKind.opens`: add-project reads the base's manifest, and imports the layers below
the project's while the project installs). The threads are `threads.Threads`: when one
fails, no other step starts, the others' commands are interrupted and the gates shut;
`Threads.join()` waits for every thread, and only then may the caller remove containers.

A step found nowhere on this host may still be in a registry cache (`--cache-from`):
the runner asks `pull` (build/remote.py) before it makes the step's needs, so the walk
from the final step stops at the first step found there, as it does at a cached one.

How a type of step is made is a `StepKind`, looked up in a table: adding a step type
is one entry there (executor.STEP_KINDS).
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from uvbuild.build.context import Inputs, StepContext
from uvbuild.build.results import (
    ContainerResult,
    ImageResult,
    LayerSet,
    StepResult,
    files_ref,
    image_of,
)
from uvbuild.build.threads import Once, Threads
from uvbuild.engine.protocol import Engine
from uvbuild.errors import StepFailed
from uvbuild.output.progress import Reporter
from uvbuild.plan.planner import Plan, Step

S = TypeVar("S", bound=Step)


@dataclass(frozen=True, slots=True)
class Opens(Generic[S]):
    """Work a step kind starts as soon as its `needs` (some of the step's needs) are
    made, while the step's other needs are still being made: a `buildah from`, a read,
    an import need not wait for them. `open(ctx, step, inputs)` gets those needs'
    Inputs (with what the step's earlier openers made) and returns a `makes`, or None
    (nothing to do); the step function gets it with `inputs.opened(makes)`.

    With `after_made`, it opens only if that step was made this run (not found in a
    cache): what is only worth doing beside that step's followers.
    """

    needs: tuple[str, ...]
    makes: type
    open: Callable[[StepContext, S, Inputs], object]
    after_made: str | None = None


def _image_as_is(image: ImageResult) -> StepResult:
    return image


@dataclass(frozen=True, slots=True)
class StepKind(Generic[S]):
    """How one type of step is made.

    `run(ctx, step, inputs)` makes it and returns its typed result. A step found in the
    cache is not run: its result is `from_cache(ImageResult(id))`. A kind whose results
    are no images (the layer steps) finds a made one itself instead: `kept(ctx, step)`
    is its result, or None to make it. Steps of the kind that
    have the same `shared_by(step)` are made once (builder and runtime with one base).
    A `stored` kind's image is named by its cache name when made (a base is found by its
    own name instead); the final step is named with the output name at the end.
    """

    run: Callable[[StepContext, S, Inputs], StepResult]
    opens: tuple[Opens[S], ...] = ()
    from_cache: Callable[[ImageResult], StepResult] = _image_as_is
    kept: Callable[[StepContext, S], StepResult | None] | None = None
    shared_by: Callable[[S], str] | None = None
    stored: bool = True


StepKinds = Mapping[type[Step], StepKind[Any]]
# A step's result from a registry cache (remote.RemoteCache.pull), or None: to make.
Pull = Callable[[StepContext, Step], ImageResult | LayerSet | None]


class Runner:
    """One build's step graph: which steps are made, by whom, with what (see the module
    docstring). Its threads are `self.threads`."""

    def __init__(self, plan: Plan, kinds: StepKinds, engine: Engine, reporter: Reporter) -> None:
        self.plan, self.kinds, self.engine, self.reporter = plan, kinds, engine, reporter
        self.threads = Threads()
        self._steps: Once[str, StepResult] = Once()  # step name → its result
        self._shared: Once[str, StepResult] = Once()  # StepKind.shared_by → the result
        self._opened: dict[str, dict[type, Future[object]]] = {}  # step → Opens.makes → it
        self._ran: set[str] = set()  # the steps made (run) this build, not found
        self._lock = threading.Lock()
        self._deferred: list[Future[object]] = []  # commits under way in the background
        self._pulls: Once[str, ImageResult | LayerSet | None] = Once()  # by shared_by
        self.pull: Pull | None = None  # set by the build when it has --cache-from

    def result(self, step: Step, ctx: StepContext, cache: Mapping[str, str]) -> StepResult:
        """`step`'s result, running it (and what it needs) unless `cache` (cache name →
        image ID) has it. Safe from several threads: each step is made once, by the first
        caller; the others wait for its result (or its exception)."""
        def make() -> StepResult:
            try:
                return self._make(step, ctx, cache)
            except BaseException as exc:
                self.threads.fail(exc)  # before anyone waiting hears of it
                raise

        return self._steps(step.name, make)

    def made(self) -> dict[str, StepResult]:
        """The results of the steps made or found so far, by step name."""
        return self._steps.values()

    def files_of(self, name: str) -> str:
        """Where a later step reads made step `name`'s files (results.files_ref)."""
        result = self._steps.get(name)
        ref = files_ref(result, self.plan.step(name).cache_ref)
        if ref is None:
            raise TypeError(f"{name} handed on a {type(result).__name__}: no files to read")
        return ref

    def _kind(self, step: Step) -> StepKind[Any]:
        kind = self.kinds.get(type(step))
        if kind is None:
            raise TypeError(f"no step kind is registered for {type(step).__name__}")
        return kind

    def _make(self, step: Step, ctx: StepContext, cache: Mapping[str, str]) -> StepResult:
        kind = self._kind(step)
        cached = step.cached(cache)
        if cached:
            self.reporter.cached(step)
            return kind.from_cache(ImageResult(cached))
        found = kind.kept(ctx, step) if kind.kept is not None else None
        if found is not None:
            self.reporter.cached(step)
            return found
        pulled = self._pulled(step, kind, ctx)
        if pulled is not None:
            return pulled
        if kind.opens:
            self._open_early(step, kind.opens, ctx, cache)
        self.threads.all([functools.partial(self.result, self.plan.step(name), ctx, cache)
                          for name in step.needs])
        if self.threads.failed.is_set():
            raise StepFailed(f"{step.name}: not started, another step failed")
        results = {name: self._steps.get(name) for name in step.needs}
        refs = {name: ref for name, result in results.items()
                if (ref := files_ref(result, self.plan.step(name).cache_ref)) is not None}
        inputs = Inputs(results=results, refs=refs, early=self._opened.pop(step.name, {}))
        with self.reporter.running(step):
            if kind.shared_by is None:
                result = kind.run(ctx, step, inputs)
            else:
                result = self._shared(kind.shared_by(step), lambda: kind.run(ctx, step, inputs))
        with self._lock:
            self._ran.add(step.name)
        image = image_of(result)
        if kind.stored and image is not None and step is not self.plan.steps[-1]:
            # The final step is named by the build, with the output name, once tested.
            self.engine.tag(image.image_id, step.cache_ref)
        return result

    def _pulled(self, step: Step, kind: StepKind[Any], ctx: StepContext) -> StepResult | None:
        """`step`'s result from a registry cache (`self.pull`), or None: to make."""
        pull = self.pull
        if pull is None or self.threads.failed.is_set():
            return None  # (after a failure elsewhere, nothing more is fetched)
        started = time.monotonic()
        if kind.shared_by is None:
            found = pull(ctx, step)
        else:  # builder and runtime on one base: it is looked up (and pulled) once
            found = self._pulls(kind.shared_by(step), lambda: pull(ctx, step))
        if found is None:
            return None
        self.reporter.pulled(step, time.monotonic() - started)
        return found if isinstance(found, LayerSet) else kind.from_cache(found)

    def _open_early(self, step: Step, opens: tuple[Opens[Any], ...], ctx: StepContext,
                    cache: Mapping[str, str]) -> None:
        opened: dict[type, Future[object]] = {}
        for one in opens:
            earlier = dict(opened)  # what the openers before this one make

            def open_it(one: Opens[Any] = one, earlier: dict[type, Future[object]] = earlier
                        ) -> object:
                results = {name: self.result(self.plan.step(name), ctx, cache)
                           for name in one.needs}
                if one.after_made is not None:
                    with self._lock:
                        if one.after_made not in self._ran:
                            return None
                refs = {name: self.files_of(name) for name, result in results.items()
                        if files_ref(result, self.plan.step(name).cache_ref) is not None}
                return one.open(ctx, step, Inputs(results=results, refs=refs, early=earlier))

            opened[one.makes] = self.threads.spawn(
                open_it, name=f"uvbuild-open-{step.name}-{one.makes.__name__}")
        self._opened[step.name] = opened

    def defer(self, step: Step, container: str, commit: Callable[[], object]) -> ContainerResult:
        """Store `step`'s image under its cache name in the background (`commit` does
        both: an import names the image as it stores it); later steps read `container`.

        The commit is waited for before the final image is named (`wait_deferred`), and a
        failed one fails the build.
        """
        self.in_background(commit, name=f"uvbuild-commit-{step.name}")
        return ContainerResult(container)

    def in_background(self, work: Callable[[], object], *, name: str) -> None:
        """`work` in a thread of its own, waited for (`wait_deferred`) before the final
        image is named; a failure fails the build."""
        future = self.threads.spawn(work, name=name)
        with self._lock:
            self._deferred.append(future)

    def wait_deferred(self) -> None:
        """Wait for the background commits; the first that failed is raised."""
        with self._lock:
            pending = list(self._deferred)
        for future in pending:
            future.result()
