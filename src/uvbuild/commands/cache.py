"""The step cache: images in local storage named localhost/uvbuild-cache/<step>:<key>,
and the layer cache: the runtime image's layer tars on the host (build/layercache.py).

`buildah images` shows the images and they survive restarts; `uvbuild cache ls` lists
both and `uvbuild cache prune` removes both, together with what killed builds left (working
containers named uvbuild-<run id>-..., host folders, orphaned processes, unnamed images),
judged by the runs' locks (see liveness.py), never by a pid.

`uvbuild cache prune --registry REGISTRY/REPO --keep N` trims a shared registry cache
(build/regcache.py) instead: the N newest entries of each step stay.
"""

from __future__ import annotations

from dataclasses import dataclass

from uvbuild.build import liveness
from uvbuild.build.assemble import UNTESTED_REPO
from uvbuild.build.layercache import LayerCache
from uvbuild.build.liveness import Places
from uvbuild.build.regcache import Pruned as RegistryPruned
from uvbuild.build.regcache import RegistryCache
from uvbuild.engine.buildah import Buildah, RegistryAccess
from uvbuild.plan.planner import cache_name_parts


@dataclass(frozen=True, slots=True)
class CacheEntry:
    name: str
    step: str
    key: str
    image_id: str
    size: str


def list_entries(engine: Buildah | None = None,
                 layers: LayerCache | None = None) -> list[CacheEntry]:
    """Every cached step image (and layer cache entry), sorted by step then key."""
    engine = engine or Buildah()
    entries = [CacheEntry(name=f"{step}-{key}", step=step, key=key, image_id="(layers)",
                          size=str(size)) for step, key, size in
               (layers.entries() if layers is not None else ())]
    for image in engine.image_list():
        for name in image.get("names") or ():  # type: ignore[attr-defined]
            name = str(name)
            parts = cache_name_parts(name)
            if parts is None:
                continue
            step, key = parts
            entries.append(CacheEntry(name=name, step=step, key=key,
                                      image_id=str(image["id"]).removeprefix("sha256:"),
                                      size=str(image["size"])))
    return sorted(entries, key=lambda e: (e.step, e.key))


@dataclass(frozen=True, slots=True)
class Pruned:
    """What `prune` removed, and how many running builds kept it from the cache images."""

    swept: liveness.Swept
    images: int
    running: int = 0  # > 0: the cache images were left alone for these builds
    layers: int = 0  # layer cache entries removed


def prune(*, everything: bool, engine: Buildah | None = None,
          layers: LayerCache | None = None) -> Pruned:
    """Remove what killed builds left (working containers, host folders, their processes,
    unnamed uvbuild images), the cache images and the layer cache; bases too with
    `everything`. The layer cache is this store's own (pipeline.layer_cache), so it goes
    under the same rule as the cache images.

    Cache images go only while no build runs in this store (builds hold the store lock
    shared, this takes it exclusively): a running build may be about to read one.
    """
    engine = engine or Buildah()
    places = Places.of(engine.run_root())
    with liveness.store_exclusive(places) as alone:
        swept = liveness.sweep(engine, places)
        if not alone:
            return Pruned(swept=swept, images=0, running=max(1, liveness.live_runs(places)))
        removed = 0
        for entry in list_entries(engine):
            if (_is_base(entry) or entry.step == "add-project") and not everything:
                continue  # bases are slow to remake; final images are what users run
            if engine.rmi(entry.name):
                removed += 1
        for image in engine.image_list():  # what killed builds imported and never tested
            for name in image.get("names") or ():  # type: ignore[attr-defined]
                if str(name).startswith(UNTESTED_REPO + "/") and engine.rmi(str(name)):
                    removed += 1
        liveness.forget_sizes(places, {str(image["id"]).removeprefix("sha256:")
                                       for image in engine.image_list()})
        layer_entries = layers.prune() if layers is not None else 0
    return Pruned(swept=swept, images=removed, layers=layer_entries)


def _is_base(entry: CacheEntry) -> bool:
    return entry.step.startswith("debian-")


def prune_registry(repo: str, *, keep: int, dry_run: bool, access: RegistryAccess,
                   engine: Buildah | None = None) -> RegistryPruned:
    """Delete all but the `keep` newest entries of each step in the registry cache `repo`
    (with `dry_run`, only say which); registry errors are EngineErrors here."""
    return RegistryCache(repo, access, engine or Buildah()).prune(keep, dry_run=dry_run)
