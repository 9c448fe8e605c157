"""The step cache: images in local storage named localhost/uvbuild-cache/<step>:<key>.

`buildah images` shows them and they survive restarts; `uvbuild cache ls` lists them
and `uvbuild cache prune` removes them together with leftover working containers
(named uvbuild-<pid>-...) whose process is gone, e.g. after a SIGKILL.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .engine import CONTAINER_PREFIX, Buildah
from .plan import BASE_REPO, CACHE_REPO

_KEY = re.compile(r"[0-9a-f]{16}|[0-9a-f]{32}")


@dataclass(frozen=True, slots=True)
class CacheEntry:
    name: str
    step: str
    key: str
    image_id: str
    size: str


def list_entries(engine: Buildah | None = None) -> list[CacheEntry]:
    """Every cached step image, sorted by step then key."""
    engine = engine or Buildah()
    entries = []
    for image in engine.image_list():
        for name in image.get("names") or ():  # type: ignore[union-attr]
            name = str(name)
            # localhost/uvbuild-cache/<step>-<key32>:latest,
            # localhost/uvbuild-base/debian-<suite>-<key16>:latest (older: <name>:<key>)
            prefix = next((p for p in (CACHE_REPO + "/", BASE_REPO + "/") if name.startswith(p)),
                          None)
            if prefix is None:
                continue
            repo, _, tag = name[len(prefix):].rpartition(":")
            step, _, key = repo.rpartition("-")
            if not _KEY.fullmatch(key):
                step, key = repo, tag
            entries.append(CacheEntry(name=name, step=step, key=key,
                                      image_id=str(image["id"]).removeprefix("sha256:"),
                                      size=str(image["size"])))
    return sorted(entries, key=lambda e: (e.step, e.key))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_containers(engine: Buildah) -> list[str]:
    """Working containers uvbuild made whose build process no longer runs."""
    stale = []
    for container in engine.containers():
        name = container["name"]
        if not name.startswith(CONTAINER_PREFIX):
            continue
        pid = name[len(CONTAINER_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or not _pid_alive(int(pid)):
            stale.append(name)
    return stale


def remove_stale_containers(engine: Buildah) -> int:
    """Remove the stale working containers (one `buildah rm`); return how many."""
    names = stale_containers(engine)
    if names:
        engine.rm(*names)
    return len(names)


def prune(*, everything: bool, engine: Buildah | None = None) -> tuple[int, int]:
    """Remove stale working containers and cache images; bases too with `everything`."""
    engine = engine or Buildah()
    containers = remove_stale_containers(engine)
    removed = 0
    for entry in list_entries(engine):
        if (_is_base(entry) or entry.step == "add-project") and not everything:
            continue  # bases are slow to remake; final images are what users run
        if engine.rmi(entry.name):
            removed += 1
    return containers, removed


def _is_base(entry: CacheEntry) -> bool:
    return entry.step.startswith("debian-")
