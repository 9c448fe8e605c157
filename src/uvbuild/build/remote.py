"""The registry cache in a build (`--cache-from`, `--cache-to`): steps pulled instead of
made, and the build's step results exported once it has succeeded.

The runner asks `RemoteCache.pull` for a step it would otherwise run (neither in local
storage nor in the layer cache). Each `--cache-from` repository, in order, is asked for
the step's entry with one manifest request (regcache.RegistryCache.lookup), and the
first usable entry is brought in:

- an image step's (a builder step's, the final image's, a bootstrapped base's) into local
  storage under the step's own name (Step.cache_ref), with the image ID it had where it
  was exported;
- a layer step's tars into the host's layer cache (LayerCache.put), as if made here.

The runner makes steps lazily from the final one, so a hit ends the walk there: an
unchanged build pulls the final image alone and runs no container; after a code edit
the final image and the project's steps miss, and what install-project and the assembly
need is pulled. Bases: one named by a registry reference is never looked up (its own
registry has it, and planning pulled it to key the plan). A bootstrapped one is, when
local storage lacks it: assembling the final image from pulled layers needs the runtime
base here (its manifest, its layers in the store), and its entry spares a bootstrap of
about 40 s. It is exported like any step, so the cache holds it.

`export` pushes every step result the build has (made, found or pulled: what the build
used), each once: the images one after the other (each reuses the blobs the one before
wrote), the layer entries beside them. Nothing here fails a build: every registry
problem is a warning (see regcache.py), and so is a host problem during an export.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from uvbuild.build.context import BuildSettings, StepContext
from uvbuild.build.regcache import IMAGE, LAYERS, RegistryCache
from uvbuild.build.results import ImageResult, LayerSet, StepResult, stored
from uvbuild.build.threads import Threads
from uvbuild.engine.protocol import RegistryEngine
from uvbuild.errors import Interrupted, UvbuildError
from uvbuild.plan.planner import LayerStep, Plan, ResolveBase, Step
from uvbuild.recipe.model import BootstrapBase

# Layer entries exported at once, beside the images (one after the other): each is a
# few skopeo calls that mostly wait on the network or the disk; more would only compete.
LAYER_EXPORTS_AT_ONCE = 2


def entry_kind(step: Step) -> str | None:
    """What `step`'s entry holds (regcache.IMAGE or LAYERS); None: never in the cache."""
    if isinstance(step, LayerStep):
        return LAYERS
    if isinstance(step, ResolveBase):
        return IMAGE if isinstance(step.base, BootstrapBase) else None
    return IMAGE


class RemoteCache:
    """The registry caches of one build: `sources` (--cache-from, in order) and `target`
    (--cache-to). A repository named by both is one RegistryCache, so a registry found
    down while looking up is not asked again to export."""

    def __init__(self, engine: RegistryEngine, settings: BuildSettings, *,
                 warn: Callable[[str], None], scratch: Path) -> None:
        caches: dict[str, RegistryCache] = {}

        def cache_of(repo: str) -> RegistryCache:
            made = RegistryCache(repo, settings.registry, engine, warn=warn, scratch=scratch,
                                 blob_pool=scratch / "export-blobs")
            return caches.setdefault(made.repo, made)

        self.sources = tuple(dict.fromkeys(cache_of(repo) for repo in settings.cache_from))
        self.target = cache_of(settings.cache_to) if settings.cache_to else None
        self._warn = warn
        self._lock = threading.Lock()
        self._not_exported = 0  # exports that failed on the host (export)

    # -- pulling --------------------------------------------------------------------------

    def pull(self, ctx: StepContext, step: Step) -> ImageResult | LayerSet | None:
        """`step`'s result brought in from the first repository that has a usable entry
        for its key, or None (none has, or none can be reached: warned): to make."""
        kind = entry_kind(step)
        if kind is None or not self.sources:
            return None
        # (A base local storage has is found before this is asked: StepKind.kept.)
        for cache in self.sources:
            entry = cache.lookup(step.name, step.key, kind)
            if entry is None:
                continue
            if isinstance(step, LayerStep):
                pulled = cache.import_layers(entry, ctx.scratch_dir(f"pulled-{step.name}"))
                if pulled is not None:
                    return ctx.layers.put(step, pulled.layers, pulled.facts)
            else:
                image_id = cache.import_image(entry, step.cache_ref)
                if image_id is not None:
                    return ImageResult(image_id)
        return None

    # -- exporting ------------------------------------------------------------------------

    def export(self, plan: Plan, results: Mapping[str, StepResult],
               threads: Threads) -> str | None:
        """Push each of `results` (step name → what the build had of it) that an entry
        can hold to the target, in the build's `threads`; a line that says what was sent
        (None: no target). Waits for the exports.

        The images go one after the other, in the plan's order: each shares most of its
        layers with the one before, whose blobs the next layout reuses (regcache's blob
        pool) instead of writing them again. The layer entries go beside them."""
        target = self.target
        if target is None:
            return None
        steps = [step for step in plan.steps
                 if step.name in results and entry_kind(step) is not None
                 and stored(results[step.name])]
        images = [step for step in steps if not isinstance(results[step.name], LayerSet)]
        layers = [step for step in steps if isinstance(results[step.name], LayerSet)]
        started = time.monotonic()
        sent: list[str] = []
        lock = threading.Lock()
        failures = target.failures  # (regcache counts the registry's refusals)
        self._not_exported = 0

        def work(queue: Iterator[Step]) -> None:
            while True:
                with lock:
                    step = next(queue, None)
                if step is None:
                    return
                if self._export(target, step, results[step.name]):
                    with lock:
                        sent.append(step.name)

        image_queue, layer_queue = iter(images), iter(layers)
        workers = [threads.spawn(functools.partial(work, image_queue),
                                 name="uvbuild-export-images")] if images else []
        workers += [threads.spawn(functools.partial(work, layer_queue),
                                  name=f"uvbuild-export-layers-{n}")
                    for n in range(min(LAYER_EXPORTS_AT_ONCE, len(layers)))]
        for worker in workers:
            worker.result()
        seconds = time.monotonic() - started
        failed = target.failures - failures + self._not_exported
        if target.down:
            return (f"cache {target.repo}: NOT exported, the registry refused or could not "
                    f"be reached (see the warning above) ({seconds:.1f}s)")
        there = max(len(steps) - len(sent) - failed, 0)
        return (f"cache {target.repo}: {len(sent)} new entr{'y' if len(sent) == 1 else 'ies'}"
                f", {there} there already" + (f", {failed} NOT sent (see the warnings above)"
                                              if failed else "") + f" ({seconds:.1f}s)")

    def _export(self, target: RegistryCache, step: Step, result: StepResult) -> bool:
        """One step's entry pushed (True), or there already / not sent (a warning)."""
        try:
            if isinstance(result, LayerSet):
                return target.export_layers(step.name, step.key, result.layers, result.facts)
            # By its name in local storage: a builder step committed in the background
            # (install-project) has it by now, and so has every image step the build had.
            return target.export_image(step.name, step.key, step.cache_ref)
        except Interrupted:
            raise
        except (UvbuildError, OSError, ValueError) as exc:
            # The build succeeded: a host problem here (a full disk while the layout is
            # written, a layer tar pruned meanwhile, a layout skopeo wrote otherwise than
            # expected) costs the cache an entry, no more.
            self._warn(f"registry cache {target.repo}: not exporting {step.name}: {exc}")
            with self._lock:
                self._not_exported += 1
            return False
