"""A registry repository as a step cache that CI runners share (`--cache-to/--cache-from`).

Each entry is one OCI image in REGISTRY/REPO, tagged `<step>-<key[:32]>`:

- an image step's result (a base, a builder step) is the image itself, its config and
  layers unchanged, so that imported elsewhere it has the same image ID;
- a layer step's result is a small image of its layer tars, uncompressed, so a layer's
  digest in the registry is its tar's digest on every machine (and a blob is uploaded
  once: a runner that wrote the same tar finds it there by that digest).

What makes an entry an entry is in its manifest's annotations, read with one manifest
request: the step, the full key, when it was exported, and (for layers) the step's facts.
Not config labels: a label would change an image step's config, and so its image ID and
the ID of every image made on top of it. A lookup asks for the tag only (never a tag
listing); an entry whose recorded key or step differs from the one asked for is ignored.

Nothing here fails a build: an unreachable registry, a refused push, a tampered entry or a
digest that does not match is a warning (handed to `warn`, never printed here) and a miss.
After the first unreachable answer the cache is off for the rest of the run, so a registry
that is down costs one timeout, not one per step.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from uvbuild.engine.buildah import ImageConfig, RegistryAccess, registry_cause
from uvbuild.engine.protocol import RegistryEngine
from uvbuild.errors import EngineError
from uvbuild.output.oci import (
    LAYER_TAR,
    Descriptor,
    Layer,
    annotate_layout,
    layout_config_digest,
    write_layout,
)
from uvbuild.recipe.imageref import reference_problem

KEY = "io.uvbuild.cache-key"
STEP = "io.uvbuild.step"
KIND = "io.uvbuild.cache-kind"  # "image" or "layers"
EXPORTED = "io.uvbuild.exported"  # RFC 3339, UTC: when the entry was pushed (for prune)
FACTS = "io.uvbuild.facts"  # JSON: what a layer step reported besides its layers
IMAGE, LAYERS = "image", "layers"
# A layer entry's config is a function of its layers and key alone (no clock in it).
_LAYER_TIMESTAMP = 315532800

_TAG = re.compile(r"(?P<step>[a-z0-9][a-z0-9_.-]*)-(?P<key>[0-9a-f]{32})")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def repository_problem(repo: str) -> str | None:
    """What is wrong with `repo` as a cache repository (REGISTRY[:PORT]/PATH, no tag, no
    digest: the cache names its own tags), or None."""
    name = repo.removeprefix("docker://")
    first, slash, path = name.partition("/")
    if not slash or not ("." in first or ":" in first or first == "localhost"):
        return "name the registry too: REGISTRY[:PORT]/REPOSITORY, e.g. ghcr.io/org/app-cache"
    if "@" in name or ":" in path:
        return "a cache repository has no tag or digest: uvbuild tags its entries itself"
    return reference_problem(name)


def entry_tag(step: str, key: str) -> str:
    """The tag of `step`'s entry for `key`: a registry tag holds at most 128 characters,
    so the key is cut to 32 hex digits (the full key is in the annotations)."""
    tag = f"{step}-{key[:32]}"
    if not _TAG.fullmatch(tag):
        raise ValueError(f"no registry tag can be made of step {step!r} and key {key!r}")
    return tag


def tag_parts(tag: str) -> tuple[str, str] | None:
    """(step, key[:32]) of a tag that entry_tag made; None for any other tag."""
    match = _TAG.fullmatch(tag)
    return (match["step"], match["key"]) if match else None


@dataclass(frozen=True, kw_only=True, slots=True)
class Entry:
    """A cache entry as its manifest describes it."""

    step: str
    key: str
    kind: str  # IMAGE or LAYERS
    ref: str  # REGISTRY/REPO@sha256:...: the manifest read, which is what gets imported
    image_id: str  # the config's digest without "sha256:": the image ID once imported
    layers: tuple[Descriptor, ...]
    exported: str  # RFC 3339, "" when the annotation is missing
    facts: Mapping[str, object] = field(default_factory=dict)


def read_entry(repo: str, manifest: bytes) -> Entry:
    """The Entry that a manifest of `repo` describes; ValueError when it is not one that
    RegistryCache wrote (not an OCI image manifest, or without uvbuild's annotations)."""
    try:
        data = json.loads(manifest)
        notes = data.get("annotations") or {}
        config = data["config"]
        layers = tuple(Descriptor(media_type=str(d["mediaType"]), digest=str(d["digest"]),
                                  size=int(d["size"])) for d in data.get("layers") or ())
        facts = json.loads(notes.get(FACTS) or "{}")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not an OCI image manifest ({exc})") from exc
    # Digests become file names on import: only well-formed ones are taken.
    if not all(_DIGEST.fullmatch(d.digest) for d in layers):
        raise ValueError("a layer digest that is no sha256 digest")
    missing = [name for name in (KEY, STEP, KIND) if not isinstance(notes.get(name), str)]
    if missing:
        raise ValueError(f"no {', '.join(missing)} annotation")
    if notes[KIND] not in (IMAGE, LAYERS) or not _DIGEST.fullmatch(str(config.get("digest"))):
        raise ValueError("an entry of an unknown kind")
    if not isinstance(facts, dict):
        raise ValueError(f"the {FACTS} annotation is not a JSON object")
    return Entry(step=notes[STEP], key=notes[KEY], kind=notes[KIND],
                 ref=f"{repo}@sha256:{hashlib.sha256(manifest).hexdigest()}",
                 image_id=str(config["digest"]).removeprefix("sha256:"), layers=layers,
                 exported=str(notes.get(EXPORTED) or ""), facts=facts)


def entry_problem(entry: Entry, step: str, key: str, kind: str) -> str | None:
    """Why `entry` (found under the tag of `step` and `key`) must not be used for them,
    or None. The tag holds a part of the key only: the full key decides."""
    if entry.key != key:
        return f"it records the key {entry.key[:16]}..., not {key[:16]}..."
    if entry.step != step:
        return f"it records the step {entry.step!r}"
    if entry.kind != kind:
        return f"it holds {entry.kind}, not {kind}"
    if kind == LAYERS and any(d.media_type != LAYER_TAR for d in entry.layers):
        return "a layer in it is compressed: its digest is no layer tar's"
    return None


@dataclass(frozen=True, kw_only=True, slots=True)
class PulledLayers:
    """A layer entry brought back: tar files whose digests were checked, and the facts."""

    layers: tuple[Layer, ...]
    facts: Mapping[str, object]


@dataclass(frozen=True, kw_only=True, slots=True)
class Listed:
    """One tag of the repository, as prune sees it."""

    tag: str
    step: str
    ref: str  # REGISTRY/REPO@sha256:... of its manifest
    exported: str  # RFC 3339; "" sorts oldest


def choose_pruned(entries: Sequence[Listed], keep: int) -> tuple[Listed, ...]:
    """The entries that go when `keep` are kept per step: the newest by export time (the
    tag breaks ties, so the choice is the same on every run). A manifest that a kept tag
    also names is never chosen: deleting a manifest deletes all its tags."""
    if keep < 0:
        raise ValueError("keep must be 0 or more")
    by_step: dict[str, list[Listed]] = {}
    for entry in entries:
        by_step.setdefault(entry.step, []).append(entry)
    kept: list[Listed] = []
    dropped: list[Listed] = []
    for step in sorted(by_step):
        newest_first = sorted(by_step[step], key=lambda e: (e.exported, e.tag), reverse=True)
        kept += newest_first[:keep]
        dropped += newest_first[keep:]
    kept_refs = {entry.ref for entry in kept}
    return tuple(entry for entry in dropped if entry.ref not in kept_refs)


@dataclass(frozen=True, kw_only=True, slots=True)
class Pruned:
    """What prune found and did (or, with dry_run, would do)."""

    deleted: tuple[Listed, ...]
    kept: int  # entries left
    foreign: tuple[str, ...]  # tags that are not uvbuild's entries: left alone


class RegistryCache:
    """The step cache in REGISTRY/REPO `repo`, reached with `access` through `engine`.

    `warn` gets every warning (a sentence); they are also kept in `warnings`. `scratch`
    is a folder for the OCI layouts made on the way (the system's temporary folder if
    None); a layout is removed when its copy is done. `blob_pool`, a folder that the
    caller removes when its exports are done (a build's scratch folder), keeps the blobs
    of exported images for the next export_image to skip writing; None: no pool.
    """

    def __init__(self, repo: str, access: RegistryAccess, engine: RegistryEngine, *,
                 warn: Callable[[str], None] | None = None, scratch: Path | None = None,
                 clock: Callable[[], float] = time.time, blob_pool: Path | None = None) -> None:
        self.repo = repo.removeprefix("docker://").rstrip("/")
        self.access = access
        self.engine = engine
        self.warnings: list[str] = []
        self.failures = 0  # registry calls that failed (each one a warning, or the cache off)
        self.down = False  # set by the first unreachable answer: the cache is off since
        self._warn = warn
        self._scratch = scratch
        self._clock = clock
        self._blob_pool = blob_pool

    # -- looking up -----------------------------------------------------------------------

    def lookup(self, step: str, key: str, kind: str = IMAGE) -> Entry | None:
        """The entry of `step` for `key` (one manifest request), or None: none there, one
        whose recorded key, step or kind differ (a warning), or no registry (a warning)."""
        entry, problem = self._find(step, key, kind)
        if problem:
            self._say(f"registry cache: ignoring {self.repo}:{entry_tag(step, key)}: {problem}")
        return entry

    def _find(self, step: str, key: str, kind: str) -> tuple[Entry | None, str | None]:
        if self.down:
            return None, None
        ref = f"{self.repo}:{entry_tag(step, key)}"
        try:
            manifest = self.engine.registry_manifest(ref, self.access)
        except EngineError as exc:
            self._failed(f"looking up {step}", exc)
            return None, None
        if manifest is None:
            return None, None
        try:
            entry = read_entry(self.repo, manifest)
        except ValueError as exc:
            return None, str(exc)
        problem = entry_problem(entry, step, key, kind)
        return (None, problem) if problem else (entry, None)

    # -- images ---------------------------------------------------------------------------

    def export_image(self, step: str, key: str, image_id: str) -> bool:
        """Push the local image `image_id` as `step`'s entry for `key`, its config and so
        its ID unchanged. False when the entry is there already (nothing is sent) or the
        push failed (a warning); blobs the repository has are never uploaded again."""
        if self._present(step, key, IMAGE):
            return False
        with self._layout("export") as layout:
            self._from_pool(layout)
            try:
                self.engine.image_to_layout(image_id, layout)
            except EngineError as exc:
                self._say(f"registry cache: not exporting {step}: {_cause(exc.message)}")
                return False
            self._to_pool(layout)
            config = None
            wanted = "sha256:" + image_id.removeprefix("sha256:")
            if layout_config_digest(layout) != wanted:
                # The store's image was written over by another tool (a `podman load` or
                # pull of this very image): its manifest is Docker's now, and copying it
                # into an OCI layout rewrote its config, which would give a second runner
                # another image ID. The config as stored is the one whose digest is its ID.
                stored = self.engine.image_manifest(image_id)[1]
                if "sha256:" + hashlib.sha256(stored).hexdigest() == wanted:
                    config = stored
            annotate_layout(layout, self._annotations(step, key, IMAGE), config=config)
            return self._push(step, key, layout)

    def import_image(self, entry: Entry, name: str) -> str | None:
        """Pull an IMAGE entry into local storage as `name`; its image ID, or None (a
        warning) when it cannot be fetched or its ID is not the one its manifest names."""
        if self.down:
            return None
        try:
            image_id = self.engine.registry_to_store(entry.ref, name, self.access)
        except EngineError as exc:
            self._failed(f"fetching {entry.step}", exc)
            return None
        if image_id != entry.image_id:
            self.engine.rmi(name)
            self._say(f"registry cache: ignoring {entry.ref}: it became image {image_id[:12]} "
                      f"in local storage, not {entry.image_id[:12]}")
            return None
        return image_id

    # -- layers ---------------------------------------------------------------------------

    def export_layer(self, step: str, key: str, layer: Layer) -> bool:
        """export_layers of one layer and no facts."""
        return self.export_layers(step, key, (layer,))

    def export_layers(self, step: str, key: str, layers: Sequence[Layer],
                      facts: Mapping[str, object] | None = None) -> bool:
        """Push layer tars (uvbuild's, uncompressed) as `step`'s entry for `key`: an image
        of those layers alone, whose layer digests are the tars' digests. False when the
        entry is there already or the push failed (a warning)."""
        if self._present(step, key, LAYERS):
            return False
        labels = ((KEY, key), (STEP, step))
        with self._layout("export") as layout:
            write_layout(layout, None, layers, ImageConfig(labels=labels),
                         timestamp=_LAYER_TIMESTAMP)
            notes = self._annotations(step, key, LAYERS)
            annotate_layout(layout, {**notes, FACTS: json.dumps(dict(facts or {}),
                                                                  sort_keys=True)})
            return self._push(step, key, layout)

    def import_layers(self, entry: Entry, dest: Path) -> PulledLayers | None:
        """Fetch a LAYERS entry's tars into the folder `dest` (as `<hex>.tar`), each one's
        digest and size checked against the entry; None (a warning) when one differs or
        the fetch fails. `created_by` comes from the entry's config history."""
        if self.down:
            return None
        dest.mkdir(parents=True, exist_ok=True)
        # In `dest`, so the checked tars are moved, not copied, into place.
        with self._layout("import", within=dest) as layout:
            try:
                self.engine.registry_to_layout(entry.ref, layout, self.access)
            except EngineError as exc:
                self._failed(f"fetching {entry.step}", exc)
                return None
            blobs = layout / "blobs" / "sha256"
            problem = _check_blobs(blobs, entry)
            if problem:
                self._say(f"registry cache: ignoring {entry.ref}: {problem}")
                return None
            history = _history(blobs / entry.image_id, len(entry.layers))
            layers = []
            for descriptor, created_by in zip(entry.layers, history, strict=True):
                hex_digest = descriptor.digest.removeprefix("sha256:")
                target = dest / f"{hex_digest}.tar"
                if not target.exists():  # else the same bytes: a layer listed twice
                    os.replace(blobs / hex_digest, target)
                layers.append(Layer(path=target, digest=descriptor.digest,
                                    size=descriptor.size, created_by=created_by))
        return PulledLayers(layers=tuple(layers), facts=entry.facts)

    # -- retention ------------------------------------------------------------------------

    def prune(self, keep: int, *, dry_run: bool = False) -> Pruned:
        """Keep the `keep` newest entries of each step (by export time) and delete the
        others' manifests; with `dry_run`, only say which. Tags that are not uvbuild's
        entries are left alone. Unlike a build, a registry error here is an EngineError."""
        listed: list[Listed] = []
        foreign: list[str] = []
        for tag in sorted(self.engine.registry_tags(self.repo, self.access)):
            if tag_parts(tag) is None:
                foreign.append(tag)
                continue
            manifest = self.engine.registry_manifest(f"{self.repo}:{tag}", self.access)
            if manifest is None:
                continue  # gone since the listing
            try:
                entry = read_entry(self.repo, manifest)
            except ValueError:
                foreign.append(tag)
                continue
            listed.append(Listed(tag=tag, step=entry.step, ref=entry.ref,
                                 exported=entry.exported))
        chosen = choose_pruned(listed, keep)
        if not dry_run:
            for ref in dict.fromkeys(entry.ref for entry in chosen):
                self.engine.registry_delete(ref, self.access)
        return Pruned(deleted=chosen, kept=len(listed) - len(chosen), foreign=tuple(foreign))

    # -- plumbing -------------------------------------------------------------------------

    def _present(self, step: str, key: str, kind: str) -> bool:
        """Whether the entry is there already (a tampered one is replaced, unsaid)."""
        entry, _ = self._find(step, key, kind)
        return entry is not None or self.down

    def _annotations(self, step: str, key: str, kind: str) -> dict[str, str]:
        exported = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._clock()))
        return {KEY: key, STEP: step, KIND: kind, EXPORTED: exported}

    def _push(self, step: str, key: str, layout: Path) -> bool:
        try:
            self.engine.layout_to_registry(layout, f"{self.repo}:{entry_tag(step, key)}",
                                           self.access)
        except EngineError as exc:
            self._failed(f"exporting {step}", exc)
            return False
        return True

    # The step images of one build share most of their layers (a builder step's image is
    # its parent's and one more): the blobs one export wrote are hard-linked into the
    # next one's layout before skopeo writes it, which then skips them (an OCI layout
    # reuses a blob it has), so a base's layers are written once per run, not per image.

    def _from_pool(self, layout: Path) -> None:
        """`layout` made ready with the pool's blobs (an empty layout), if there is one."""
        pool = self._blob_pool
        if pool is None or not pool.is_dir():
            return
        blobs = layout / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        (layout / "index.json").write_text('{"schemaVersion": 2, "manifests": []}')
        for blob in pool.iterdir():
            with contextlib.suppress(OSError):  # a blob not linked is written again
                os.link(blob, blobs / blob.name)

    def _to_pool(self, layout: Path) -> None:
        """The blobs of `layout` kept in the pool for the next export (hard links)."""
        pool = self._blob_pool
        if pool is None:
            return
        with contextlib.suppress(OSError):
            pool.mkdir(exist_ok=True)
            for blob in (layout / "blobs" / "sha256").iterdir():
                if not (pool / blob.name).exists():
                    with contextlib.suppress(OSError):
                        os.link(blob, pool / blob.name)

    @contextlib.contextmanager
    def _layout(self, purpose: str, within: Path | None = None) -> Iterator[Path]:
        """A new folder for an OCI layout, removed after, whatever happens."""
        folder = Path(tempfile.mkdtemp(prefix=f".uvbuild-{purpose}-",
                                       dir=within or self._scratch))
        try:
            yield folder / "layout"
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _failed(self, what: str, exc: EngineError) -> None:
        """A registry call failed: a warning. A registry that cannot be reached, or that
        refuses every call until a setting changes (credentials, plain HTTP, TLS), turns
        the cache off: one warning for the run, not one per step."""
        self.failures += 1
        cause = registry_cause(exc.message)
        if cause == "unreachable":
            self.down = True
            self._say(f"registry cache {self.repo} cannot be reached ({what}); going on "
                      f"without it: {_cause(exc.message)}")
        elif cause is not None:
            self.down = True
            self._say(f"registry cache {self.repo} refused {what}; going on without it: "
                      f"{_cause(exc.message)}" + (f" ({exc.hint})" if exc.hint else ""))
        else:
            self._say(f"registry cache {self.repo}: {what} failed: {_cause(exc.message)}"
                      + (f" ({exc.hint})" if exc.hint else ""))

    def _say(self, warning: str) -> None:
        self.warnings.append(warning)
        if self._warn is not None:
            self._warn(warning)


def _check_blobs(blobs: Path, entry: Entry) -> str | None:
    """Why the fetched layer blobs are not the entry's layers, or None."""
    for descriptor in entry.layers:
        path = blobs / descriptor.digest.removeprefix("sha256:")
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as blob:
                while chunk := blob.read(1 << 20):
                    digest.update(chunk)
            size = path.stat().st_size
        except OSError as exc:
            return f"layer {descriptor.digest[:19]} is missing ({exc.strerror})"
        if f"sha256:{digest.hexdigest()}" != descriptor.digest or size != descriptor.size:
            return (f"layer {descriptor.digest[:19]} has the digest "
                    f"sha256:{digest.hexdigest()[:12]} ({size} bytes)")
    return None


def _history(config_path: Path, count: int) -> list[str]:
    """The `created_by` of the last `count` history entries of a config (the layers')."""
    try:
        history = json.loads(config_path.read_bytes()).get("history") or []
    except (OSError, ValueError):
        history = []
    said = [str(item.get("created_by", "")) for item in history if not item.get("empty_layer")]
    return ([""] * count + said)[-count:] if count else []


def _cause(text: str) -> str:
    """What a failed skopeo call said last (its `msg="..."`), for a one-line warning."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else text
    said = re.search(r'msg="(.*)"', last)
    return said[1].replace('\\"', '"') if said else last
