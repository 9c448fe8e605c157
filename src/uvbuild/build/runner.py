"""Run a plan's steps as a graph: threads, futures and failure propagation.

Steps are made lazily from the one asked for (the final one), so a step whose image is
already in the cache is not run and neither are the steps only it needed: a code change
runs `install-project` and `add-project` and nothing else.

A step's needs (the plan's `needs`) are made at the same time, each in its own thread:
the runtime chain (base, packages, user) runs while the builder syncs. A step kind may
also open its working container from one need while the others are still being made
(`StepKind.opens`). When one thread fails, no other step starts, the others' commands
are interrupted and the gates shut; `join()` waits for every thread, and only then may
the caller remove containers.

How a type of step is made is a `StepKind`, looked up in a table: adding a step type
is one entry there (executor.STEP_KINDS).
"""

from __future__ import annotations

import contextlib
import functools
import signal
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from uvbuild.build.context import Inputs, StepContext
from uvbuild.build.results import ContainerResult, ImageResult, StepResult, files_ref
from uvbuild.engine import cmd
from uvbuild.engine.protocol import Engine
from uvbuild.errors import StepFailed
from uvbuild.output.progress import Reporter
from uvbuild.plan.planner import Plan, Step

T = TypeVar("T")
S = TypeVar("S", bound=Step)


@dataclass(frozen=True, slots=True)
class Opens(Generic[S]):
    """A step kind's working container, opened as soon as need `need` is made, while the
    step's other needs are still being made (`buildah from` need not wait for them).
    The step function gets it with `inputs.opened(...)`."""

    need: str
    open: Callable[[StepContext, S, str], object]  # (ctx, step, the need's files_ref)


def _image_as_is(image: ImageResult) -> StepResult:
    return image


@dataclass(frozen=True, slots=True)
class StepKind(Generic[S]):
    """How one type of step is made.

    `run(ctx, step, inputs)` makes it and returns its typed result. A step found in the
    cache is not run: its result is `from_cache(ImageResult(id))`. Steps of the kind that
    have the same `shared_by(step)` are made once (builder and runtime with one base).
    A `stored` kind's image is named by its cache name when made (a base is found by its
    own name instead); the final step is named with the output name at the end.
    """

    run: Callable[[StepContext, S, Inputs], StepResult]
    opens: Opens[S] | None = None
    from_cache: Callable[[ImageResult], StepResult] = _image_as_is
    shared_by: Callable[[S], str] | None = None
    stored: bool = True


StepKinds = Mapping[type[Step], StepKind[Any]]


class Runner:
    """One build's step graph, threads and failure state (see the module docstring)."""

    def __init__(self, plan: Plan, kinds: StepKinds, engine: Engine, reporter: Reporter) -> None:
        self.plan, self.kinds, self.engine, self.reporter = plan, kinds, engine, reporter
        self.failed = threading.Event()  # set by the first failure
        self.first_error: BaseException | None = None
        self._lock = threading.Lock()
        self._once: dict[Hashable, Future[Any]] = {}
        self._threads: list[threading.Thread] = []
        self._gates: list[cmd.Gate] = []  # commands held at their start: shut on failure
        self._opened: dict[str, Future[object]] = {}  # step name → its early container(s)
        self._deferred: list[Future[str]] = []  # commits under way in the background

    # -- the graph ------------------------------------------------------------------------

    def result(self, step: Step, ctx: StepContext, cache: Mapping[str, str]) -> StepResult:
        """`step`'s result, running it (and what it needs) unless `cache` (cache name →
        image ID) has it. Safe from several threads: each step is made once, by the first
        caller; the others wait for its result (or its exception)."""
        def make() -> StepResult:
            try:
                return self._make(step, ctx, cache)
            except BaseException as exc:
                self.fail(exc)  # before anyone waiting hears of it
                raise

        return self.once(("step", step.name), make)

    def files_of(self, name: str) -> str:
        """Where a later step reads made step `name`'s files (results.files_ref)."""
        result = self._done(name)
        ref = files_ref(result, self.plan.step(name).cache_ref)
        if ref is None:
            raise TypeError(f"{name} handed on a {type(result).__name__}: no files to read")
        return ref

    def _done(self, name: str) -> StepResult:
        with self._lock:
            made = self._once[("step", name)]
        result: StepResult = made.result()
        return result

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
        if kind.opens is not None:
            self._open_early(step, kind.opens, ctx, cache)
        self.all([functools.partial(self.result, self.plan.step(name), ctx, cache)
                  for name in step.needs])
        if self.failed.is_set():
            raise StepFailed(f"{step.name}: not started, another step failed")
        results = {name: self._done(name) for name in step.needs}
        refs = {name: ref for name, result in results.items()
                if (ref := files_ref(result, self.plan.step(name).cache_ref)) is not None}
        inputs = Inputs(results=results, refs=refs, early=self._opened.pop(step.name, None))
        with self.reporter.running(step):
            if kind.shared_by is None:
                result = kind.run(ctx, step, inputs)
            else:
                result = self.once(("shared", kind.shared_by(step)),
                                   lambda: kind.run(ctx, step, inputs))
        if kind.stored and isinstance(result, ImageResult) and step is not self.plan.steps[-1]:
            self.engine.tag(result.image_id, step.cache_ref)  # the final one: with the output name
        return result

    def _open_early(self, step: Step, opens: Opens[Any], ctx: StepContext,
                    cache: Mapping[str, str]) -> None:
        def open_it() -> object:
            self.result(self.plan.step(opens.need), ctx, cache)
            return opens.open(ctx, step, self.files_of(opens.need))

        self._opened[step.name] = self.spawn(open_it, name=f"uvbuild-from-{step.name}")

    def defer(self, step: Step, container: str, commit: Callable[[], str]) -> ContainerResult:
        """Commit and name `step`'s image in the background; later steps read `container`.

        The commit is waited for before the final image is named (`wait_deferred`), and a
        failed one fails the build.
        """
        def finish() -> str:
            image_id = commit()
            self.engine.tag(image_id, step.cache_ref)
            return image_id

        future = self.spawn(finish, name=f"uvbuild-commit-{step.name}")
        with self._lock:
            self._deferred.append(future)
        return ContainerResult(container)

    def wait_deferred(self) -> None:
        """Wait for the background commits; the first that failed is raised."""
        with self._lock:
            pending = list(self._deferred)
        for future in pending:
            future.result()

    # -- threads, failure, gates --------------------------------------------------------------

    def once(self, key: Hashable, make: Callable[[], T]) -> T:
        """`make()`, run once per `key` by the first caller whatever its thread; the others
        wait for its result (or its exception)."""
        with self._lock:
            future = self._once.get(key)
            mine = future is None
            if future is None:
                future = self._once[key] = Future()
        if not mine:
            result: T = future.result()
            return result
        try:
            made = make()
        except BaseException as exc:
            future.set_exception(exc)
            raise
        future.set_result(made)
        return made

    def spawn(self, work: Callable[[], T], *, name: str) -> Future[T]:
        """Run `work` in a thread of its own; its result (or exception) in a Future. A
        failure fails the build (`fail`) before anyone waiting hears of it."""
        done: Future[T] = Future()

        def run() -> None:
            try:
                done.set_result(work())
            except BaseException as exc:  # handed to whoever waits for the result
                self.fail(exc)
                done.set_exception(exc)

        thread = threading.Thread(target=run, name=name, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()
        return done

    def all(self, works: list[Callable[[], object]]) -> None:
        """Run `works` at the same time (the first in this thread); raise the first
        failure once all have stopped."""
        others = [self.spawn(work, name="uvbuild-run-all") for work in works[1:]]
        first: BaseException | None = None
        try:
            if works:
                works[0]()
        except BaseException as exc:
            first = exc
        for other in others:
            first = first or other.exception()  # waits for it
        if first is not None:
            raise first

    def gate(self) -> cmd.Gate:
        """A gate for a command started early (see cmd.Gate); shut if the build fails."""
        gate = cmd.Gate()
        with self._lock:
            self._gates.append(gate)
            failed = self.failed.is_set()
        if failed:
            gate.shut()
        return gate

    def shut_gates(self) -> None:
        """Nothing may wait at a gate for ever."""
        with self._lock:
            gates = list(self._gates)
        for gate in gates:
            gate.shut()

    def fail(self, exc: BaseException) -> None:
        """A step failed: start no other step, and stop the commands running now."""
        with self._lock:
            if self.failed.is_set():
                return
            self.first_error = exc
            self.failed.set()
        self.shut_gates()
        cmd.interrupt_children()

    def join(self) -> None:
        """Wait for every thread (their commands were interrupted if the build failed)."""
        if self.failed.is_set():
            cmd.interrupt_children()
        with signals_held():  # their containers are removed only after they stop
            while True:
                with self._lock:
                    running = [t for t in self._threads if t.is_alive()]
                if not running:
                    return
                for thread in running:
                    thread.join()


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Clean-up must finish: a second Ctrl-C or SIGTERM waits until it has."""
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
