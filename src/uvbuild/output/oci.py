"""Images that uvbuild assembles itself: an OCI image layout of a base plus new layers.

buildah's commit lets the image store write the layer tars, and stores differ (overlay
writes directory-walk order, vfs sorted order), so one build gave three image IDs in
three stores. Here the layers are tars uvbuild wrote in canonical form
(`incontainer/layertar.py`), and the config and manifest are canonical JSON written by
this module, so the image ID (the config's digest) is a function of the inputs alone.

The layout holds only the new layers, the config and the manifest; the base's layers
are referenced by digest. Imported into containers-storage with
`skopeo copy --preserve-digests`, the store reuses the base layers it already has.
Pure: no process is started here (the engine imports the layout).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uvbuild.engine.buildah import ImageConfig

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
# A base pulled from a Docker registry keeps Docker's media types in its manifest; an
# OCI manifest names the same blobs with the OCI types.
_DOCKER_TO_OCI = {
    "application/vnd.docker.image.rootfs.diff.tar": LAYER_TAR,
    "application/vnd.docker.image.rootfs.diff.tar.gzip": LAYER_GZIP,
    "application/vnd.docker.image.rootfs.diff.tar.zstd": LAYER_ZSTD,
}


@dataclass(frozen=True, kw_only=True, slots=True)
class Descriptor:
    """A blob as a manifest names it."""

    media_type: str
    digest: str  # "sha256:<hex>"
    size: int

    def as_json(self) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True, kw_only=True, slots=True)
class Layer:
    """A layer tar uvbuild wrote (uncompressed: its digest is its diff ID)."""

    path: Path
    digest: str  # "sha256:<hex>" of the tar
    size: int
    created_by: str  # what the image's history says made it


@dataclass(frozen=True, kw_only=True, slots=True)
class BaseImage:
    """What assembling on top of a base needs: its manifest's layers and its config."""

    layers: tuple[Descriptor, ...]
    config: bytes  # the base's config JSON, as stored


@dataclass(frozen=True, kw_only=True, slots=True)
class Assembled:
    """An image written as an OCI layout."""

    layout: Path
    image_id: str  # the config's digest, without "sha256:": the ID in every image store
    manifest_digest: str


def base_image(manifest: bytes, config: bytes) -> BaseImage:
    """A BaseImage from a stored image's raw manifest and config (e.g. `skopeo inspect
    --raw` and `--config --raw` of `containers-storage:ID`)."""
    layers = tuple(
        Descriptor(media_type=_DOCKER_TO_OCI.get(entry["mediaType"], entry["mediaType"]),
                   digest=entry["digest"], size=int(entry["size"]))
        for entry in json.loads(manifest).get("layers") or ())
    return BaseImage(layers=layers, config=config)


def canonical_json(document: Mapping[str, Any]) -> bytes:
    """One byte sequence per document: sorted keys, no spaces, UTF-8."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def rfc3339(timestamp: int) -> str:
    """The image's creation time, as image configs spell it."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def image_config(base: BaseImage | None, layers: Sequence[Layer], settings: ImageConfig, *,
                 timestamp: int) -> dict[str, Any]:
    """The new image's config: the base's, with `layers` added and `settings` applied the
    way `buildah config` applies them (env and labels replace same-named entries)."""
    config: dict[str, Any] = (copy.deepcopy(json.loads(base.config)) if base is not None
                              else {"architecture": _architecture(), "os": "linux"})
    created = rfc3339(timestamp)
    config["created"] = created
    rootfs = config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
    rootfs["type"] = "layers"
    rootfs["diff_ids"] = [*(rootfs.get("diff_ids") or ()), *(layer.digest for layer in layers)]
    config["history"] = [*(config.get("history") or ()), *(
        {"created": created, "created_by": layer.created_by, "comment": "uvbuild"}
        for layer in layers)]
    run = config.setdefault("config", {})
    _apply(run, settings)
    return config


def _apply(run: dict[str, Any], settings: ImageConfig) -> None:
    if settings.user is not None:
        run["User"] = settings.user
    if settings.workdir is not None:
        run["WorkingDir"] = settings.workdir
    if settings.env:
        env = list(run.get("Env") or ())
        for key, value in settings.env:
            env = [item for item in env if item.partition("=")[0] != key] + [f"{key}={value}"]
        run["Env"] = env
    if settings.entrypoint is not None:
        run["Entrypoint"] = list(settings.entrypoint)
    if settings.cmd is not None:
        if settings.cmd:
            run["Cmd"] = list(settings.cmd)
        else:
            run.pop("Cmd", None)
    if settings.ports:
        ports = dict(run.get("ExposedPorts") or {})
        for port in settings.ports:
            ports[port if "/" in port else f"{port}/tcp"] = {}
        run["ExposedPorts"] = ports
    if settings.labels:
        run["Labels"] = {**(run.get("Labels") or {}), **dict(settings.labels)}
    if settings.stop_signal:
        run["StopSignal"] = settings.stop_signal


def _architecture() -> str:
    machine = os.uname().machine
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def write_layout(layout: Path, base: BaseImage | None, layers: Sequence[Layer],
                 settings: ImageConfig, *, timestamp: int) -> Assembled:
    """Write an OCI image layout at `layout` (a new or empty folder) holding the new
    `layers` (hard-linked when they are on the same filesystem), the config and the
    manifest; the base's layers are only referenced."""
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    for layer in layers:
        _place(layer.path, blobs / layer.digest.removeprefix("sha256:"))
    config = canonical_json(image_config(base, layers, settings, timestamp=timestamp))
    config_digest = _store(blobs, config)
    manifest = canonical_json({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": Descriptor(media_type=CONFIG_TYPE, digest=config_digest,
                             size=len(config)).as_json(),
        "layers": [*(d.as_json() for d in (base.layers if base else ())),
                   *(Descriptor(media_type=LAYER_TAR, digest=layer.digest,
                                size=layer.size).as_json() for layer in layers)],
    })
    manifest_digest = _store(blobs, manifest)
    index = {"schemaVersion": 2, "manifests": [
        {"mediaType": MANIFEST_TYPE, "digest": manifest_digest, "size": len(manifest)}]}
    (layout / "index.json").write_bytes(canonical_json(index))
    (layout / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
    return Assembled(layout=layout, image_id=config_digest.removeprefix("sha256:"),
                     manifest_digest=manifest_digest)


def _store(blobs: Path, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (blobs / digest.removeprefix("sha256:")).write_bytes(data)
    return digest


def _place(source: Path, target: Path) -> None:
    if target.exists():
        return
    try:
        os.link(source, target)
    except OSError:  # another filesystem
        shutil.copyfile(source, target)


# The first bytes of a compressed layer blob: gzip, zstd.
_COMPRESSED = (b"\x1f\x8b", b"\x28\xb5\x2f\xfd")


def _one_image(layout: Path) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """The blobs folder, index and manifest of the one image in the OCI layout `layout`."""
    blobs = layout / "blobs" / "sha256"
    index = json.loads((layout / "index.json").read_bytes())
    if len(index.get("manifests") or ()) != 1:
        raise ValueError(f"{layout}: an OCI layout of one image was expected")
    digest = index["manifests"][0]["digest"]
    return blobs, index, json.loads((blobs / digest.removeprefix("sha256:")).read_bytes())


def layout_config_digest(layout: Path) -> str:
    """The config digest (the image ID) of the one image in the OCI layout `layout`."""
    return str(_one_image(layout)[2]["config"]["digest"])


def annotate_layout(layout: Path, annotations: Mapping[str, str], *,
                    config: bytes | None = None) -> str:
    """Put `annotations` into the manifest of the one image in the OCI layout `layout`
    (keeping those it has) and return the new manifest's digest; the config, and so the
    image ID, stay as they are, or (`config`) become those exact bytes.

    A layer whose blob is an uncompressed tar is also named so (LAYER_TAR): skopeo 1.9,
    copying a pulled image out of containers-storage, writes the uncompressed blob but
    keeps the `+gzip` media type of the manifest it was pulled with.
    """
    blobs, index, manifest = _one_image(layout)
    old = index["manifests"][0]
    for layer in manifest.get("layers") or ():
        with open(blobs / layer["digest"].removeprefix("sha256:"), "rb") as blob:
            head = blob.read(4)
        if not head.startswith(_COMPRESSED):
            layer["mediaType"] = LAYER_TAR
    manifest["annotations"] = {**(manifest.get("annotations") or {}), **annotations}
    if config is not None:
        manifest["config"] = {"mediaType": CONFIG_TYPE, "digest": _store(blobs, config),
                              "size": len(config)}
    data = canonical_json(manifest)
    digest = _store(blobs, data)
    if digest != old["digest"]:
        (blobs / old["digest"].removeprefix("sha256:")).unlink()
    index["manifests"] = [{"mediaType": MANIFEST_TYPE, "digest": digest, "size": len(data)}]
    (layout / "index.json").write_bytes(canonical_json(index))
    return digest
