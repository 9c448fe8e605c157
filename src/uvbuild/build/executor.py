"""Walk a Plan: reuse cached steps, run the others, test, then tag. Nothing left behind.

Steps are evaluated lazily from the final one, so a step whose image is already in
the cache is not run and neither are the steps only it needed: a code change runs
`install-project` and `add-project` and nothing else.

A step's needs are made at the same time, each in its own thread: the runtime chain
(base, packages, user) runs while the builder syncs, and the dependencies layer is
copied while the project installs. When one thread fails, the others' commands are
interrupted, every thread is waited for, and only then are containers removed.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from uvbuild.build import assemble, batch, builder_steps, layer_steps, liveness
from uvbuild.build.bootstrap import build_bootstrap_base
from uvbuild.build.context import BuildSettings
from uvbuild.build.layercache import LayerCache
from uvbuild.build.liveness import Claim, Places
from uvbuild.engine import cmd, diskfull
from uvbuild.engine.buildah import CommitOptions
from uvbuild.engine.protocol import Engine
from uvbuild.errors import StepFailed
from uvbuild.output.progress import Reporter
from uvbuild.plan.planner import (
    CACHE_REPO,
    AddProject,
    DependenciesLayer,
    InstallProject,
    LayerStep,
    Plan,
    PrepareBuilder,
    PrepareRuntime,
    ProjectLayer,
    ResolveBase,
    Step,
    SyncDependencies,
)
from uvbuild.recipe.model import BootstrapBase

T = TypeVar("T")

# The need a runtime step's working container is made from (none since the runtime image
# is assembled from layer tars: build/assemble.py).
CONTAINER_FROM: dict[str, str] = {}


@dataclass(kw_only=True)
class BuildResult:
    """What the build produced."""

    image: str
    image_id: str
    seconds: float
    size: int = 0  # bytes of the image's layers, uncompressed
    steps: list[dict[str, object]] = field(default_factory=list)
    pushed: dict[str, str] | None = None  # {"reference", "digest"} after --push


class Build:
    """One run of the executor: holds the working containers it must remove."""

    def __init__(self, engine: Engine, plan: Plan, settings: BuildSettings,
                 reporter: Reporter, claim: Claim | None = None) -> None:
        self.engine, self.plan, self.settings, self.reporter = engine, plan, settings, reporter
        # This run's id and locks (see liveness.py): the caller's, or made (and released)
        # by run() when there is none.
        self.claim = claim
        self._own_claim = claim is None
        self._bases: dict[str, Future[str]] = {}  # base ref → its image ID: made once
        self.reported: dict[str, dict[str, object]] = {}  # step → what its commands reported
        self._sources: dict[str, str] = {}  # step name → live container with its files
        self._background: list[Future[str]] = []
        self._early: dict[str, Future[Any]] = {}  # step name → its working container(s)
        self._scratch: Path | None = None  # host folder for files steps hand over
        self._cached: dict[str, str] = {}
        self._live: set[str] = set()  # working containers to remove on any exit
        self._jobs = itertools.count(1)
        self._lock = threading.Lock()
        self._results: dict[str, Future[str]] = {}  # step name → its image ID, once made
        self._threads: list[threading.Thread] = []
        self._failed = threading.Event()
        self._first_error: BaseException | None = None
        self._gates: list[cmd.Gate] = []  # commands held at their start: shut on failure
        self._sizes: dict[str, int] = {}  # image ID → size, read while the tests run
        # The layer steps' tars (layercache.py): the host's cache, or this run's scratch.
        self._layers = LayerCache(settings.layer_cache) if settings.layer_cache else None

    # -- the pipeline -----------------------------------------------------------

    def run(self) -> BuildResult:
        """Build the final image (or find it), test it, tag it."""
        started = time.monotonic()
        if self.claim is None:
            self.claim = Claim(Places.of(self.engine.run_root()))
        try:
            # Made now: the mark that builder commands carry names it (Buildah.owner_env).
            self._scratch = self._claim.folder("build")
            self.engine.owner_env = self._claim.owner_env(self._scratch)
            # What builds that were killed (SIGKILL, power loss) left is removed while
            # the cache is listed.
            sweep = self._in_thread(self._sweep, name="uvbuild-sweep")
            if self._layers is None:
                self._layers = LayerCache(self._scratch / "layers")
            self._cached = ({} if self.settings.no_cache
                            else {**self.engine.images_named(CACHE_REPO + "/"),
                                  **self.layers.listing()})
            sweep.result()
            final = self.plan.final
            image_id = self.ensure(final)
            for pending in self._background:
                pending.result()  # a step's commit that failed fails the build
            # The image is tested: its working containers are removed and its size (for
            # the report) read while it is named.
            # (A final image made now had both done while its tests ran: finish_final.)
            cleanup = self.submit(self._remove_live, name="uvbuild-cleanup")
            known = self._sizes.get(image_id)
            size = self.submit(lambda: known if known is not None
                              else self.engine.image_size(image_id), name="uvbuild-size")
            # A final image made now gets its cache name with the output name: one call.
            names = (final.cache_ref,) if self._cached.get(final.cache_ref) != image_id else ()
            self.engine.tag(image_id, *names, self.plan.image)
            cleanup.result()
            image_size = size.result()
        except BaseException as exc:
            self._fail(exc)
            first = self._first_error
            # A full disk is told as such, measured now, before the cleanup frees space.
            if first is not None and first is not exc:
                # Another thread failed first, and interrupted this one: say why.
                raise diskfull.translated(first, self._places) from None
            full = diskfull.translated(exc, self._places)
            if full is not exc:
                raise full from exc
            raise
        finally:
            self._shut_gates()  # nothing may wait at a gate for ever
            self._join_threads()
            try:
                self._remove_live()
            finally:
                if self._scratch is not None:
                    self._claim.release(self._scratch)
                if self._own_claim:
                    self._claim.close()
        order = [s.name for s in self.plan.steps]
        steps = sorted(self.reporter.records, key=lambda r: order.index(str(r["step"])))
        return BuildResult(image=self.plan.image, image_id=image_id, size=image_size,
                           seconds=time.monotonic() - started, steps=steps)

    def ensure(self, step: Step) -> str:
        """Where `step`'s result can be read, running it (and what it needs) if not cached.

        That is its image ID, or, for a step whose commit is still under way (see
        `defer_commit`), the working container that holds the same files.

        Safe to call from several threads: each step is made once, by the first caller;
        the others wait for its result (or its exception).
        """
        def make() -> str:
            try:
                return self._make(step)
            except BaseException as exc:
                self._fail(exc)  # before anyone waiting hears of it
                raise

        return self._once(self._results, step.name, make)

    def _once(self, made: dict[str, Future[str]], key: str, make: Callable[[], str]) -> str:
        """`make()`, run once per `key` of `made` by the first caller whatever its thread;
        the others wait for its result (or its exception)."""
        with self._lock:
            future = made.get(key)
            mine = future is None
            if future is None:
                future = made[key] = Future()
        if not mine:
            return future.result()
        try:
            result = make()
        except BaseException as exc:
            future.set_exception(exc)
            raise
        future.set_result(result)
        return result

    def _make(self, step: Step) -> str:
        cached = step.cached(self._cached)
        if cached:
            self.reporter.cached(step)
            return cached
        self._open_early(step)
        self._ensure_all([self.plan.step(name) for name in step.needs])
        if self._failed.is_set():
            raise StepFailed(f"{step.name}: not started, another step failed")
        # Containers are made from names, not IDs: see Step.cache_ref for why.
        parents = {name: self.files_of(name) for name in step.needs}
        with self.reporter.running(step):
            image_id = self._execute(step, parents)
        if step.name in self._sources:
            return self._sources[step.name]
        if (not isinstance(step, ResolveBase | LayerStep)  # a layer step's are tars
                and step is not self.plan.final):
            self.engine.tag(image_id, step.cache_ref)  # the final one: with the output name
        return image_id

    def _open_early(self, step: Step) -> None:
        """Make `step`'s working container as soon as the image it starts from exists.

        A runtime step starts from one of its needs (CONTAINER_FROM); the other one (the
        builder's) usually takes longer, and `buildah from` need not wait for it.
        """
        parent = CONTAINER_FROM.get(step.name)
        if parent is None or not self.settings.parallel:
            return

        def open_it() -> object:
            self.ensure(self.plan.step(parent))
            return self._open_for(step, self.files_of(parent))

        self._early[step.name] = self._in_thread(open_it, name=f"uvbuild-from-{step.name}")

    def _open_for(self, step: Step, image: str) -> object:
        return self.open_container(image, step.name)

    @property
    def layers(self) -> LayerCache:
        """Where layer steps keep their tars (made by run())."""
        assert self._layers is not None, "run() makes it first"
        return self._layers

    def step_container(self, step: Step, image: str) -> Any:
        """The working container `step` builds in, from `image` (its CONTAINER_FROM need):
        a container name, or for the final step its FinalContainers, configured.

        Made early when the build runs in parallel (see `_open_early`); removed when the
        build ends, with the other working containers, in one call.
        """
        early = self._early.pop(step.name, None)
        return early.result() if early is not None else self._open_for(step, image)

    def submit(self, work: Callable[[], T], *, name: str) -> Future[T]:
        """`work` in a thread of its own; when not parallel, done here and now (its
        failure raised at once)."""
        if self.settings.parallel:
            return self._in_thread(work, name=name)
        done: Future[T] = Future()
        done.set_result(work())
        return done

    def run_all(self, works: list[Callable[[], object]]) -> None:
        """Run `works` at the same time (one by one when not parallel); raise the first
        failure once all have stopped."""
        if not self.settings.parallel:
            for work in works:
                work()
            return
        others = [self.submit(work, name="uvbuild-run-all") for work in works[1:]]
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
            failed = self._failed.is_set()
        if failed:
            gate.shut()
        return gate

    def _shut_gates(self) -> None:
        with self._lock:
            gates = list(self._gates)
        for gate in gates:
            gate.shut()

    def finish_final(self, container: str, options: CommitOptions, *,
                     keep: str | None = None) -> str:
        """Commit the final image from `container`; then, while its tests may still run,
        read its size and remove the working containers it no longer needs (all but
        `keep`, once the steps' own commits are done), so that the build's end is only
        the tag. Returns the image ID."""
        image_id = self.engine.commit(container, options)
        for pending in list(self._background):
            pending.result()  # they read their working containers until done

        def size() -> None:
            self._sizes[image_id] = self.engine.image_size(image_id)

        self.run_all([size, lambda: self._remove_live(keep=(keep,) if keep else ())])
        return image_id

    def _places(self) -> list[diskfull.Place]:
        """Where this build writes (for a full disk's message)."""
        return diskfull.build_places(self.engine.graphroot(), self.settings.uv_cache)

    @property
    def _claim(self) -> Claim:
        assert self.claim is not None, "run() makes the claim first"
        return self.claim

    def _sweep(self) -> liveness.Swept:
        return liveness.sweep(self.engine, self._claim.places, me=self._claim.id)

    def scratch_dir(self, name: str) -> Path:
        """A new empty host folder, removed when the build ends (or, after a kill, by the
        next sweep: it lives in this run's locked scratch folder)."""
        with self._lock:
            assert self._scratch is not None, "run() makes it first"
            path = self._scratch / name
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir()
        return path

    @contextlib.contextmanager
    def job(self, commands: Sequence[batch.Command], *, env: Mapping[str, str] | None = None,
            gated: bool = False) -> Iterator[batch.Job]:
        """A batch's files for one `buildah run` (see batch.write_job), removed when the
        run is over: an environment file holds secrets. It lives in the scratch folder,
        so a build killed meanwhile leaves it where the next one's sweep looks."""
        folder = self.scratch_dir(f"job-{next(self._jobs)}")
        try:
            yield batch.write_job(folder, commands, env=env, gated=gated)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def files_of(self, name: str) -> str:
        """What a later step reads step `name`'s files from: its image, by name, or the
        working container that holds them while the image is being committed."""
        return self._sources.get(name) or self.plan.step(name).cache_ref

    def defer_commit(self, step: Step, container: str, commit: Callable[[], str]) -> str:
        """Commit and name `step`'s image in the background; later steps read `container`.

        The container stays until the build ends (later steps copy from it); the commit
        is waited for before the final image is named, and a failed one fails the build.
        """
        self._sources[step.name] = container

        def finish() -> str:
            image_id = commit()
            self.engine.tag(image_id, step.cache_ref)
            return image_id

        self._background.append(self._in_thread(finish, name=f"uvbuild-commit-{step.name}"))
        return container

    def _ensure_all(self, steps: list[Step]) -> None:
        """Make `steps`: the first in this thread, the others each in a thread of its own."""
        self.run_all([functools.partial(self.ensure, step) for step in steps])

    def _in_thread(self, work: Callable[[], T], *, name: str) -> Future[T]:
        """Run `work` in a thread of its own; its result (or exception) in a Future."""
        done: Future[T] = Future()

        def run() -> None:
            try:
                done.set_result(work())
            except BaseException as exc:  # handed to whoever waits for the result
                self._fail(exc)
                done.set_exception(exc)

        thread = threading.Thread(target=run, name=name, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()
        return done

    def _fail(self, exc: BaseException) -> None:
        """A step failed: start no other step, and stop the commands running now."""
        with self._lock:
            if self._failed.is_set():
                return
            self._first_error = exc
            self._failed.set()
        self._shut_gates()
        cmd.interrupt_children()

    def _join_threads(self) -> None:
        """Wait for every thread (their commands were interrupted if the build failed)."""
        if self._failed.is_set():
            cmd.interrupt_children()
        with _signals_held():  # their containers are removed only after they stop
            while True:
                with self._lock:
                    running = [t for t in self._threads if t.is_alive()]
                if not running:
                    return
                for thread in running:
                    thread.join()

    def _execute(self, step: Step, parents: Mapping[str, str]) -> str:
        if isinstance(step, ResolveBase):
            return self._resolve_base(step)
        if isinstance(step, PrepareBuilder):
            return builder_steps.prepare_builder(self, step, parents["builder-base"])
        if isinstance(step, SyncDependencies):
            return builder_steps.sync_dependencies(self, step, parents["prepare-builder"])
        if isinstance(step, InstallProject):
            return builder_steps.install_project(self, step, parents["sync-dependencies"])
        if isinstance(step, DependenciesLayer):
            return layer_steps.dependencies_layer(self, step, parents["sync-dependencies"])
        if isinstance(step, ProjectLayer):
            return layer_steps.project_layer(self, step, parents["install-project"])
        if isinstance(step, PrepareRuntime):
            return layer_steps.prepare_runtime(self, step, parents["runtime-base"])
        if isinstance(step, AddProject):
            return assemble.add_project(self, step, parents)
        raise TypeError(f"unknown step {step!r}")

    def _resolve_base(self, step: ResolveBase) -> str:
        """The base's image ID; builder and runtime with the same base share one making
        (one mmdebstrap, one pull)."""
        ref = step.cache_ref if isinstance(step.base, BootstrapBase) else step.base.ref
        return self._once(self._bases, ref, lambda: self._find_or_make_base(step))

    def _find_or_make_base(self, step: ResolveBase) -> str:
        if not isinstance(step.base, BootstrapBase):
            info = self.engine.image(step.base.ref)
            return info.id if info else self.engine.pull(step.base.ref)
        info = self.engine.image(step.cache_ref)
        if info:
            return info.id
        # One build at a time bootstraps a base in a store: one that waited finds it made.
        with self._claim.base_lock(step.cache_ref, give_up=self._failed):
            info = self.engine.image(step.cache_ref)
            if info:
                return info.id
            folder = self._claim.folder("bootstrap")
            # build_bootstrap_base removes its scratch container, but a Ctrl-C just after
            # `buildah from` or during its `buildah rm` would leave it: track it as live.
            name = self.container_name("bootstrap")
            self._live.add(name)
            try:
                image_id = build_bootstrap_base(
                    self.engine, step.base, step.cache_ref, timestamp=self.plan.timestamp,
                    container_name=name, folder=folder, mark=self._claim.owner_env(folder))
            finally:
                self._claim.release(folder)
            self._live.discard(name)
            return image_id

    # -- working containers -------------------------------------------------------

    def container_name(self, purpose: str) -> str:
        """A recognisable, unique working-container name: uvbuild-<run id>-<n>-<purpose>."""
        return self._claim.container_name(purpose)

    def open_container(self, image: str, purpose: str) -> str:
        """A working container from `image`, removed when the build ends, however it ends."""
        name = self.container_name(purpose)
        with self._lock:
            self._live.add(name)
        self.engine.from_image(image, name)
        return name  # what every later command (and _live) knows it by

    @contextlib.contextmanager
    def container(self, image: str, purpose: str) -> Iterator[str]:
        """A working container from `image`, removed on any exit (Ctrl-C included)."""
        name = self.container_name(purpose)
        with self._lock:
            self._live.add(name)
        try:
            yield self.engine.from_image(image, name)
        finally:
            with _signals_held():
                self.engine.rm(name)
                with self._lock:
                    self._live.discard(name)

    def _remove_live(self, keep: tuple[str, ...] = ()) -> None:
        """Remove whatever working container is left (but `keep`): a deferred step's, or
        an interrupted one's."""
        first: BaseException | None = None
        with _signals_held():
            with self._lock:
                names = sorted(self._live.difference(keep))
            if names:
                for _attempt in range(2):  # one more try if the first was cut short
                    try:
                        self.engine.rm(*names)
                        break
                    except BaseException as exc:
                        first = first or exc
            with self._lock:
                self._live.difference_update(names)
        if first is not None:
            raise first

    def commit_options(self, step: Step, **labels: str) -> CommitOptions:
        """How every step commits: the plan's timestamp, and labelled with the step."""
        return CommitOptions(timestamp=self.plan.timestamp,
                             labels={"io.uvbuild.step": step.name, **labels})

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
