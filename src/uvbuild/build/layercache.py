"""The layer cache: the canonical layer tars uvbuild wrote, on the host, by step key.

A layer step (planner.LayerStep) leaves one or more layer tars and a few facts (the
interpreter a venv was made for, the runtime user's uid:gid, what the project
installed). They are kept under $XDG_CACHE_HOME/uvbuild/layers/<store>/, one folder per
image store (pipeline.layer_cache; `cache prune` of a store empties its own):

    <step>-<key>.json       {"step", "key", "layers": [{digest, size, created_by}], "facts"}
    blobs/<sha256 hex>.tar  each layer, by its digest (shared by every key that made it)

so that a later build whose step key is the same assembles its image from them and runs
none of the steps they came from: a runtime-base refresh remakes only the layers that
depend on the base. Every file appears by an atomic rename of a finished one, so builds
that run at the same time (each writes the same bytes for the same key) and a build
killed half-way leave no torn entry.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from uvbuild.build.atomic import write_atomic
from uvbuild.build.results import LayerResult, LayerSet
from uvbuild.errors import EngineError
from uvbuild.plan.planner import LayerStep, layer_ref


class LayerCache:
    """Layer sets (results.LayerSet: a layer step's result) by step key in a host folder
    (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def blobs(self) -> Path:
        return self.root / "blobs"

    def _entry(self, step: str, key: str) -> Path:
        return self.root / f"{step}-{key}.json"

    def listing(self) -> dict[str, str]:
        """Every complete entry, by the name LayerStep.cached looks for → its file."""
        found: dict[str, str] = {}
        if not self.root.is_dir():
            return found
        for path in self.root.glob("*.json"):
            step, _, key = path.stem.rpartition("-")
            if step and key:
                found[layer_ref(step, key)] = str(path)
        return found

    def get(self, step: LayerStep) -> LayerSet | None:
        """The layer set of `step`'s key, or None if it (or one of its tars) is missing."""
        try:
            data = json.loads(self._entry(step.name, step.key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        layers = []
        for item in data.get("layers") or ():
            path = self.blobs / (str(item["digest"]).removeprefix("sha256:") + ".tar")
            if not path.is_file():
                return None
            layers.append(LayerResult(path=path, digest=str(item["digest"]), size=int(item["size"]),
                                created_by=str(item["created_by"])))
        return LayerSet(step=step.name, key=step.key, layers=tuple(layers),
                        facts=dict(data.get("facts") or {}))

    def put(self, step: LayerStep, layers: Sequence[LayerResult],
            facts: Mapping[str, object]) -> LayerSet:
        """Keep `layers` (tars anywhere on the host: moved in) and `facts` as `step`'s."""
        try:
            return self._put(step, layers, facts)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise  # told as a full disk, with where the build writes (diskfull.py)
            raise EngineError(f"keeping {step.name}'s layers in {self.root}: "
                              f"{exc.strerror or exc}",
                              hint="make that folder writable, or point XDG_CACHE_HOME at "
                              "one you can write") from exc

    def _put(self, step: LayerStep, layers: Sequence[LayerResult],
             facts: Mapping[str, object]) -> LayerSet:
        self.blobs.mkdir(parents=True, exist_ok=True)
        kept = []
        for layer in layers:
            target = self.blobs / (layer.digest.removeprefix("sha256:") + ".tar")
            if not target.exists():
                _move_in(layer.path, target)
            kept.append(LayerResult(path=target, digest=layer.digest, size=layer.size,
                              created_by=layer.created_by))
        document = {"step": step.name, "key": step.key, "facts": dict(facts), "layers": [
            {"digest": k.digest, "size": k.size, "created_by": k.created_by} for k in kept]}
        write_atomic(self._entry(step.name, step.key),
                      json.dumps(document, sort_keys=True, indent=1).encode())
        return LayerSet(step=step.name, key=step.key, layers=tuple(kept), facts=dict(facts))

    def entries(self) -> list[tuple[str, str, int]]:
        """(step, key, bytes of its layers) of every entry, for `uvbuild cache ls`."""
        listed = []
        for path in sorted(self.root.glob("*.json")) if self.root.is_dir() else ():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            listed.append((str(data.get("step", "?")), str(data.get("key", "?")),
                           sum(int(item.get("size", 0)) for item in data.get("layers") or ())))
        return listed

    def prune(self) -> int:
        """Remove every entry and tar; returns how many entries went."""
        if not self.root.is_dir():
            return 0
        removed = 0
        for path in self.root.glob("*.json"):
            path.unlink(missing_ok=True)
            removed += 1
        shutil.rmtree(self.blobs, ignore_errors=True)
        return removed


def _move_in(source: Path, target: Path) -> None:
    """`source` becomes `target`, whole or not at all (a copy first if on another
    file system)."""
    fd, part = tempfile.mkstemp(dir=target.parent, prefix=".part-")
    os.close(fd)
    try:
        try:
            os.replace(source, part)
        except OSError:  # another file system
            shutil.copyfile(source, part)
        os.chmod(part, 0o644)
        os.replace(part, target)
    except BaseException:
        Path(part).unlink(missing_ok=True)
        raise
