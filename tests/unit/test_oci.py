"""Images uvbuild assembles itself (oci.py): config, manifest and layout are canonical."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from uvbuild.engine.buildah import ImageConfig
from uvbuild.output.oci import (
    LAYER_GZIP,
    Layer,
    base_image,
    canonical_json,
    image_config,
    write_layout,
)

STAMP = 315532800
BASE_MANIFEST = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
               "digest": "sha256:" + "c" * 64, "size": 10},
    "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "digest": "sha256:" + "a" * 64, "size": 1234}],
}).encode()
BASE_CONFIG = json.dumps({
    "architecture": "amd64", "os": "linux", "created": "2024-05-01T10:00:00Z",
    "config": {"Env": ["PATH=/usr/bin", "LANG=C.UTF-8"], "Cmd": ["python3"],
               "Labels": {"base": "yes"}},
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "b" * 64]},
    "history": [{"created": "2024-05-01T10:00:00Z", "created_by": "debootstrap"}],
}).encode()


def layer(tmp_path: Path, name: str = "deps", data: bytes = b"tar bytes") -> Layer:
    path = tmp_path / f"{name}.tar"
    path.write_bytes(data)
    return Layer(path=path, digest="sha256:" + hashlib.sha256(data).hexdigest(),
                 size=len(data), created_by=f"uvbuild: {name}")


SETTINGS = ImageConfig(user="1000:1000", workdir="/app",
                       env=(("PATH", "/app/.venv/bin:/usr/bin"), ("VIRTUAL_ENV", "/app/.venv")),
                       entrypoint=("python", "-m", "app"), cmd=(), ports=("8000",),
                       labels=(("org.opencontainers.image.title", "app"),),
                       stop_signal="SIGINT")


def test_config_applies_settings_like_buildah_config(tmp_path: Path) -> None:
    base = base_image(BASE_MANIFEST, BASE_CONFIG)
    config = image_config(base, [layer(tmp_path)], SETTINGS, timestamp=STAMP)
    run = config["config"]
    assert run["Env"] == ["LANG=C.UTF-8", "PATH=/app/.venv/bin:/usr/bin", "VIRTUAL_ENV=/app/.venv"]
    assert "Cmd" not in run  # an empty cmd clears the base's
    assert run["Entrypoint"] == ["python", "-m", "app"]
    assert run["ExposedPorts"] == {"8000/tcp": {}}
    assert run["Labels"] == {"base": "yes", "org.opencontainers.image.title": "app"}
    assert (run["User"], run["WorkingDir"], run["StopSignal"]) == ("1000:1000", "/app", "SIGINT")
    assert config["created"] == "1980-01-01T00:00:00Z"
    assert config["rootfs"]["diff_ids"] == ["sha256:" + "b" * 64, layer(tmp_path).digest]
    assert [h["created_by"] for h in config["history"]] == ["debootstrap", "uvbuild: deps"]


def test_docker_base_layers_are_named_with_oci_types(tmp_path: Path) -> None:
    base = base_image(BASE_MANIFEST, BASE_CONFIG)
    assert [(d.media_type, d.size) for d in base.layers] == [(LAYER_GZIP, 1234)]


def test_layout_holds_new_layers_config_and_manifest_only(tmp_path: Path) -> None:
    base = base_image(BASE_MANIFEST, BASE_CONFIG)
    new = [layer(tmp_path, "deps", b"deps"), layer(tmp_path, "project", b"project")]
    assembled = write_layout(tmp_path / "layout", base, new, SETTINGS, timestamp=STAMP)
    blobs = tmp_path / "layout" / "blobs" / "sha256"
    index = json.loads((tmp_path / "layout" / "index.json").read_bytes())
    manifest_hex = index["manifests"][0]["digest"].removeprefix("sha256:")
    manifest = json.loads((blobs / manifest_hex).read_bytes())
    assert manifest["config"]["digest"] == "sha256:" + assembled.image_id
    assert [entry["digest"] for entry in manifest["layers"]] == [
        "sha256:" + "a" * 64, new[0].digest, new[1].digest]
    assert sorted(p.name for p in blobs.iterdir()) == sorted(
        [assembled.image_id, manifest_hex, *(n.digest.removeprefix("sha256:") for n in new)])
    config_bytes = (blobs / assembled.image_id).read_bytes()
    assert hashlib.sha256(config_bytes).hexdigest() == assembled.image_id
    assert config_bytes == canonical_json(json.loads(config_bytes))


def test_same_inputs_same_image_id(tmp_path: Path) -> None:
    base = base_image(BASE_MANIFEST, BASE_CONFIG)
    first = write_layout(tmp_path / "a", base, [layer(tmp_path)], SETTINGS, timestamp=STAMP)
    second = write_layout(tmp_path / "b", base, [layer(tmp_path)], SETTINGS, timestamp=STAMP)
    other = write_layout(tmp_path / "c", base, [layer(tmp_path)], SETTINGS, timestamp=STAMP + 1)
    assert first.image_id == second.image_id != other.image_id


def test_no_base(tmp_path: Path) -> None:
    assembled = write_layout(tmp_path / "l", None, [layer(tmp_path)], ImageConfig(),
                             timestamp=STAMP)
    config = json.loads((tmp_path / "l" / "blobs" / "sha256" / assembled.image_id).read_bytes())
    assert config["os"] == "linux" and config["rootfs"]["diff_ids"] == [layer(tmp_path).digest]
