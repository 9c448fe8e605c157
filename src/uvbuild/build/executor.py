"""Build a Plan: reuse cached steps, run the others, test, then tag. Nothing left behind.

`Build.run` sets the build up (its run claim, scratch folder, the sweep of what killed
builds left, the cache listing, the registry caches), has the `Runner` make the final
step (and, lazily, what it needs; a step found in a `--cache-from` registry cache is
pulled, not made), names the result, exports the step results to `--cache-to` and
cleans up, whatever way the build ends: the first failure interrupts the other threads'
commands, every thread is waited for, and only then are the working containers removed.

How each type of step is made is one entry of STEP_KINDS; a step function sees the
build through a `BuildContext` (context.StepContext), never the runner.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from uvbuild.build import assemble, batch, bootstrap, builder_steps, layer_steps, liveness
from uvbuild.build.containers import Containers
from uvbuild.build.context import BuildSettings
from uvbuild.build.labels import STEP_LABEL
from uvbuild.build.layercache import LayerCache
from uvbuild.build.liveness import Claim, Places
from uvbuild.build.results import ContainerResult, ImageResult, TestedImage
from uvbuild.build.runner import Opens, Runner, StepKind, StepKinds
from uvbuild.build.threads import signals_held
from uvbuild.engine import cmd, diskfull
from uvbuild.engine.buildah import CommitOptions
from uvbuild.engine.protocol import Engine
from uvbuild.output import oci
from uvbuild.output.progress import Reporter
from uvbuild.plan.planner import (
    AddProject,
    DependenciesLayer,
    InstallProject,
    Plan,
    PrepareBuilder,
    PrepareRuntime,
    ProjectLayer,
    ResolveBase,
    Step,
    SyncDependencies,
)

T = TypeVar("T")

# How long a background import waits for the project's install to start
# (BuildContext.background_import): a `buildah run` starts in about 0.4 s here.
START_WAIT = 1.0


def cache_names(listed: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """What a step looks itself up in (Step.cached): every name in a listing of the
    store's images → its image ID. The step cache is the names under CACHE_REPO; a base
    is found by its own name (a bootstrapped one under BASE_REPO)."""
    return {name: image_id for image_id, names in listed.items() for name in names}

# How each type of step is made: `StepKind(function)`, function(ctx, step, inputs) -> a
# typed result (see runner.StepKind for the options). The builder steps are images; the
# layer steps' results are layer tars in the layer cache (found there: `kept`);
# add-project assembles the runtime image from them (build/assemble.py).
STEP_KINDS: StepKinds = {
    ResolveBase: StepKind(bootstrap.resolve_base, kept=bootstrap.found_base,
                          shared_by=bootstrap.base_ref, stored=False),
    PrepareBuilder: StepKind(builder_steps.prepare_builder),
    SyncDependencies: StepKind(builder_steps.sync_dependencies,
                               from_cache=builder_steps.sync_from_cache),
    InstallProject: StepKind(builder_steps.install_project,
                             from_cache=builder_steps.install_from_cache),
    DependenciesLayer: StepKind(layer_steps.dependencies_layer, kept=layer_steps.kept),
    ProjectLayer: StepKind(layer_steps.project_layer, kept=layer_steps.kept),
    PrepareRuntime: StepKind(layer_steps.prepare_runtime, kept=layer_steps.kept),
    AddProject: StepKind(assemble.add_project, opens=(
        Opens(("runtime-base",), oci.BaseImage, assemble.open_base),
        Opens(("runtime-base", "prepare-runtime", "dependencies-layer"), assemble.Staged,
              assemble.stage, after_made="dependencies-layer"),
    )),
}


@dataclass(kw_only=True)
class BuildResult:
    """What the build produced."""

    image: str
    image_id: str
    seconds: float
    size: int = 0  # bytes of the image's layers, uncompressed
    steps: list[dict[str, object]] = field(default_factory=list)
    pushed: dict[str, str] | None = None  # {"reference", "digest"} after --push


class BuildContext:
    """What a step function may use of one build (implements context.StepContext)."""

    def __init__(self, engine: Engine, plan: Plan, settings: BuildSettings, *, runner: Runner,
                 containers: Containers, claim: Claim, scratch: Path,
                 layers: LayerCache) -> None:
        self.engine, self.plan, self.settings = engine, plan, settings
        self.layers = layers  # the host's layer cache, or this run's own (in `scratch`)
        self._runner, self._threads = runner, runner.threads
        self._containers, self._claim = containers, claim
        self._scratch = scratch  # this run's locked host folder: files steps hand over
        self._jobs = itertools.count(1)
        self._lock = threading.Lock()
        self._dropped: list[str] = []  # drop_at_end
        self._started = threading.Event()  # announce_start
        self._installing = False  # announce_start was entered
        self._imported = threading.Event()  # imported: the final image is in the store
        self._lane = threading.Lock()  # background_import: one at a time

    def submit(self, work: Callable[[], T], *, name: str) -> Future[T]:
        return self._threads.spawn(work, name=name)

    def gate(self) -> cmd.Gate:
        return self._threads.gate()

    def scratch_dir(self, name: str) -> Path:
        """A new empty host folder, removed when the build ends (or, after a kill, by the
        next sweep: it lives in this run's locked scratch folder)."""
        with self._lock:
            path = self._scratch / name
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir()
        return path

    @contextlib.contextmanager
    def job(self, commands: Sequence[batch.Command], *, env: Mapping[str, str] | None = None,
            gated: bool = False, started: str | None = None) -> Iterator[batch.Job]:
        """A batch's files for one `buildah run` (see batch.write_job), removed when the
        run is over: an environment file holds secrets. It lives in the scratch folder,
        so a build killed meanwhile leaves it where the next one's sweep looks."""
        folder = self.scratch_dir(f"job-{next(self._jobs)}")
        try:
            yield batch.write_job(folder, commands, env=env, gated=gated, started=started)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    @contextlib.contextmanager
    def announce_start(self, marker: Path) -> Iterator[None]:
        self._installing = True
        done = threading.Event()

        def watch() -> None:
            while not done.wait(0.02) and not marker.exists():
                pass
            self._started.set()

        threading.Thread(target=watch, name="uvbuild-watch-start", daemon=True).start()
        try:
            yield
        finally:
            done.set()
            self._started.set()

    def nothing_to_wait_for(self) -> None:
        self._started.set()

    @contextlib.contextmanager
    def background_import(self, *, beside_install: bool = False) -> Iterator[bool]:
        self._wait_for(self._started, timeout=START_WAIT)
        with self._lane:
            yield not self._threads.failed.is_set() and (self._installing or not beside_install)

    def open_container(self, image: str, purpose: str) -> str:
        return self._containers.open(image, purpose)

    def close_container(self, name: str) -> None:
        self._containers.close(name)

    def before_removal(self, name: str, stop: Callable[[], None]) -> None:
        self._containers.before_removal(name, stop)

    def retire_container(self, name: str) -> None:
        def retire() -> None:
            # (The build sets `_imported` before it waits for this thread, or fails.)
            self._wait_for(self._imported)
            self._containers.close(name)

        self._runner.in_background(retire, name="uvbuild-retire")

    def imported(self) -> None:
        self._imported.set()

    def _wait_for(self, event: threading.Event, *, timeout: float | None = None) -> None:
        """Wait until `event` is set, the build fails, or `timeout` seconds pass."""
        until = None if timeout is None else time.monotonic() + timeout
        while not event.wait(0.02) and not self._threads.failed.is_set():
            if until is not None and time.monotonic() > until:
                return

    def container(self, image: str, purpose: str) -> contextlib.AbstractContextManager[str]:
        return self._containers.scoped(image, purpose)

    def tracked_container(self, purpose: str) -> contextlib.AbstractContextManager[str]:
        return self._containers.tracked(purpose)

    @contextlib.contextmanager
    def host_folder(self, kind: str) -> Iterator[tuple[Path, dict[str, str]]]:
        folder = self._claim.folder(kind)
        try:
            yield folder, self._claim.owner_env(folder)
        finally:
            self._claim.release(folder)

    def base_lock(self, ref: str) -> contextlib.AbstractContextManager[None]:
        return self._claim.base_lock(ref, give_up=self._threads.failed)

    def commit_options(self, step: Step, **labels: str) -> CommitOptions:
        """How every step commits: the plan's timestamp, labelled with the step, and its
        history entry saying so (the sweep knows uvbuild's unnamed images by it)."""
        return CommitOptions(timestamp=self.plan.timestamp,
                             labels={STEP_LABEL: step.name, **labels},
                             created_by=f"uvbuild: {step.name}")

    def defer_commit(self, step: Step, container: str,
                     commit: Callable[[], object]) -> ContainerResult:
        return self._runner.defer(step, container, commit)

    def discard_image(self, image_id: str) -> None:
        """Remove an image this build made, unless something names or uses it."""
        if self.engine.rmi(image_id):
            with self._lock:
                if image_id in self._dropped:  # (else the build's end tries again)
                    self._dropped.remove(image_id)

    def drop_at_end(self, name: str) -> None:
        with self._lock:
            self._dropped.append(name)

    def take_dropped(self) -> list[str]:
        """The drop_at_end names not yet removed (the build removes them now)."""
        with self._lock:
            taken, self._dropped = self._dropped, []
        return taken


class Build:
    """One build of a plan (see the module docstring)."""

    def __init__(self, engine: Engine, plan: Plan, settings: BuildSettings,
                 reporter: Reporter, claim: Claim | None = None) -> None:
        self.engine, self.plan, self.settings, self.reporter = engine, plan, settings, reporter
        # This run's id and locks (see liveness.py): the caller's, or made (and released)
        # by run() when there is none.
        self.claim = claim
        self._own_claim = claim is None
        self.runner = Runner(plan, STEP_KINDS, engine, reporter)

    @property
    def failed(self) -> threading.Event:
        """Set once a step (or the build's own work) failed."""
        return self.runner.threads.failed

    def run(self) -> BuildResult:
        """Build the final image (or find it), test it, tag it."""
        started = time.monotonic()
        claim = self.claim = self.claim or Claim(Places.of(self.engine.run_root()))
        runner, threads = self.runner, self.runner.threads
        containers = Containers(self.engine, claim.container_name)
        scratch: Path | None = None
        ctx: BuildContext | None = None
        named: Future[bool] = Future()  # whether this build named its image (see sweep)
        try:
            # Made now: the mark that builder commands carry names it (Buildah.owner_env).
            scratch = claim.folder("build")
            self.engine.owner_env = claim.owner_env(scratch)
            layers = LayerCache(self.settings.layer_cache or scratch / "layers")
            ctx = BuildContext(self.engine, self.plan, self.settings, runner=runner,
                               containers=containers, claim=claim, scratch=scratch,
                               layers=layers)
            remote = None
            if self.settings.cache_from or self.settings.cache_to:
                # (Imported only then: a registry cache's modules are a fifth of the
                # start-up of an unchanged rebuild.)
                from uvbuild.build.remote import RemoteCache

                remote = RemoteCache(self.engine, self.settings, warn=self.reporter.warn,
                                     scratch=scratch)
                if remote.sources and not self.settings.no_cache:
                    runner.pull = remote.pull
            final = self.plan.final
            # The store's images are listed once (the cache, and whether the sweep has
            # unnamed images to look at) while the final image is looked up by its cache
            # name (its size and names, for an unchanged rebuild to end with no further
            # buildah call), and what builds that were killed (SIGKILL, power loss) left
            # is swept: each is a buildah start-up, all at once.
            # (The listing made while uvbuild started is taken if no `cache prune` ran
            # since: a build holds the store lock now, so none can run meanwhile.)
            early = self.engine.prefetched_names(liveness.store_generation(
                self.engine.run_root()))
            listing: Future[dict[str, tuple[str, ...]]] = Future()
            if early is None:
                listing = threads.spawn(self.engine.image_names, name="uvbuild-images")
            else:
                listing.set_result(early)
            known = self._known_final(listing, early is not None, claim.places)
            # The sweep goes on beside the steps. The unnamed uvbuild images it finds it
            # removes only once this build has named its image (it may have made one of
            # them again), and only those still unnamed then: `named`.
            sweep = threads.spawn(
                lambda: liveness.sweep(self.engine, claim.places, me=claim.id,
                                       unnamed=lambda: [image for image, names in
                                                        listing.result().items() if not names],
                                       listed=self.engine.prefetched_containers(),
                                       images_when=named.result),
                name="uvbuild-sweep")
            cache = {} if self.settings.no_cache else cache_names(listing.result())
            made = runner.result(final, ctx, cache)
            assert isinstance(made, ImageResult), "the final step makes an image"
            image_id = made.image_id
            ctx.imported()  # (nothing more is imported: retired containers may go)
            runner.wait_deferred()  # a step's commit that failed fails the build
            image_size = self._name(made, known.result(),
                                    listing.result().get(image_id, ()), containers, ctx)
            liveness.remember_size(claim.places, image_id, image_size)
            named.set_result(True)
            sweep.result()
            # Only a build that succeeded (its image tested) exports, after it is named.
            exported = remote.export(self.plan, runner.made(), threads) if remote else None
            if exported:
                self.reporter.note(exported)
        except BaseException as exc:
            threads.fail(exc)
            first = threads.first_error
            # A full disk is told as such, measured now, before the cleanup frees space.
            if first is not None and first is not exc:
                # Another thread failed first, and interrupted this one: say why.
                raise diskfull.translated(first, self._places) from None
            full = diskfull.translated(exc, self._places)
            if full is not exc:
                raise full from exc
            raise
        finally:
            if not named.done():
                named.set_result(False)  # (failed: the sweep removes no image)
            threads.shut_gates()  # nothing may wait at a gate for ever
            threads.join()
            try:
                containers.remove_live()
            finally:
                try:
                    with signals_held():  # (a name a killed build leaves: prune's to remove)
                        for name in ctx.take_dropped() if ctx is not None else ():
                            self.engine.rmi(name)
                finally:
                    if scratch is not None:
                        claim.release(scratch)
                    if self._own_claim:
                        claim.close()
        order = [s.name for s in self.plan.steps]
        steps = sorted(self.reporter.records, key=lambda r: order.index(str(r["step"])))
        return BuildResult(image=self.plan.image, image_id=image_id, size=image_size,
                           seconds=time.monotonic() - started, steps=steps)

    def _known_final(self, listing: Future[dict[str, tuple[str, ...]]], listed_early: bool,
                     places: Places) -> Future[tuple[str, int] | None]:
        """The final step's image (ID, size) as the store has it under its cache name
        now, or None. From the listing made while uvbuild started, and the size
        remembered when a build last named that image (an image's size never changes):
        an unchanged rebuild then asks buildah nothing more. Else `buildah inspect`."""
        final = self.plan.final.cache_ref
        known: Future[tuple[str, int] | None] = Future()
        if listed_early:
            found = next((image for image, names in listing.result().items()
                          if final in names), None)
            size = liveness.remembered_size(places, found) if found else None
            if found is None or size is not None:
                known.set_result(None if found is None else (found, size or 0))
                return known

        def look() -> tuple[str, int] | None:
            info = self.engine.image(final)
            return None if info is None else (info.id, info.size)

        return self.runner.threads.spawn(look, name="uvbuild-final")

    def _name(self, made: ImageResult, seen: tuple[str, int] | None, listed: Sequence[str],
              containers: Containers, ctx: BuildContext) -> int:
        """Give the tested final image the output name while its working containers are
        removed; return its size (for the report).

        `seen` is the final step's cache name (ID, size) as found when the build started, and
        `listed` the names the image had then: if `seen` is this image, its size is known,
        and the output name may be among those (an unchanged rebuild then needs no
        buildah call here). An image add-project made and tested this run
        (TestedImage) gets its cache name in the same call, then loses its untested one."""
        threads = self.runner.threads
        image_id = made.image_id
        cleanup = threads.spawn(containers.remove_live, name="uvbuild-cleanup")
        tested = made if isinstance(made, TestedImage) else None
        if seen is not None and seen[0] == image_id:
            # (Made again, the same image: --no-cache, or its cache name lost and found.)
            if self.plan.image not in listed:
                self.engine.tag(image_id, self.plan.image)
            if tested is not None:
                ctx.discard_image(tested.untested)  # a name only: the image has its others
            cleanup.result()
            return seen[1]
        size = threads.spawn(lambda: self.engine.image_size(image_id), name="uvbuild-size")
        names = (self.plan.final.cache_ref, self.plan.image) if tested else (self.plan.image,)
        self.engine.tag(image_id, *names)
        if tested is not None:
            ctx.discard_image(tested.untested)  # a name only: the image has its cache name
        cleanup.result()
        return size.result()

    def _places(self) -> list[diskfull.Place]:
        """Where this build writes (for a full disk's message)."""
        return diskfull.build_places(self.engine.graphroot(), self.settings.uv_cache)

