"""Images uvbuild assembles itself have one image ID in every kind of image store.

buildah's commit lets the store write layer tars: overlay writes directory-walk order,
vfs and fuse-overlayfs sorted order, so one build gave three IDs. A layout of canonical
layer tars (layertar.py) and canonical config/manifest (oci.py), imported with
`skopeo copy --preserve-digests`, gives the config's digest as the ID everywhere, and
a layout holding only the new layers reuses the base layers a store already has.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from uvbuild.engine.buildah import ImageConfig
from uvbuild.incontainer import layertar
from uvbuild.output.oci import Layer, base_image, write_layout

STAMP = 315532800
DRIVERS = {
    "overlay": 'driver = "overlay"\n',
    "vfs": 'driver = "vfs"\n',
    "fuse-overlayfs": 'driver = "overlay"\n[storage.options.overlay]\n'
                      'mount_program = "/usr/bin/fuse-overlayfs"\n',
}


def _run(argv: list[str], conf: Path) -> str:
    result = subprocess.run(argv, env={**os.environ, "CONTAINERS_STORAGE_CONF": str(conf)},
                            capture_output=True, text=True, stdin=subprocess.DEVNULL,
                            timeout=300, check=False)
    assert result.returncode == 0, f"{argv}: {result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """An empty image store of each kind: name -> its storage.conf."""
    for tool in ("skopeo", "buildah", "fuse-overlayfs"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} missing: run scripts/host-setup (scripts/test does)")
    root = tmp_path_factory.mktemp("stores")
    confs = {}
    for name, driver in DRIVERS.items():
        conf = root / name / "storage.conf"
        conf.parent.mkdir()
        head, _, options = driver.partition("\n")
        conf.write_text(f'[storage]\n{head}\ngraphroot = "{root / name}/graph"\n'
                        f'runroot = "{root / name}/run"\n{options}')
        confs[name] = conf
    yield confs
    for conf in confs.values():
        subprocess.run(["buildah", "rmi", "--all", "--force"], capture_output=True,
                       env={**os.environ, "CONTAINERS_STORAGE_CONF": str(conf)}, check=False)


def _tree(root: Path) -> Path:
    """Files named so that walk order and sorted order differ (click/ vs click-8...)."""
    for rel, text in {"click/__init__.py": "x = 1\n", "click-8.5.1.dist-info/METADATA": "m\n",
                      "click-8.5.1.dist-info/RECORD": "r\n", "bin/app": "#!/bin/sh\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "bin" / "app").chmod(0o755)
    return root


def _layer(tmp_path: Path, name: str, tree: Path, prefix: str) -> Layer:
    path = tmp_path / f"{name}.tar"
    facts = layertar.write_tree(str(path), str(tree), prefix, STAMP)
    return Layer(path=path, digest=str(facts["digest"]), size=int(facts["size"]),
                 created_by=f"uvbuild test: {name}")


def test_one_image_id_in_overlay_vfs_and_fuse_overlayfs_stores(
        stores: dict[str, Path], tmp_path: Path) -> None:
    base_tree = tmp_path / "base"
    (base_tree / "etc").mkdir(parents=True)
    (base_tree / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    base = write_layout(tmp_path / "base-layout", None, [_layer(tmp_path, "base", base_tree, "")],
                        ImageConfig(env=(("PATH", "/usr/bin:/bin"),)), timestamp=STAMP)
    app_layer = _layer(tmp_path, "app", _tree(tmp_path / "app"), "app")
    settings = ImageConfig(user="1000:1000", workdir="/app", entrypoint=("/app/bin/app",),
                           labels=(("org.opencontainers.image.title", "assembled"),))
    ids = {}
    for name, conf in stores.items():
        _run(["skopeo", "copy", "-q", "--preserve-digests", f"oci:{base.layout}",
              "containers-storage:localhost/assembled-base:1"], conf)
        stored = base_image(
            _run(["skopeo", "inspect", "--raw", "containers-storage:localhost/assembled-base:1"],
                 conf).encode(),
            _run(["skopeo", "inspect", "--config", "--raw",
                  "containers-storage:localhost/assembled-base:1"], conf).encode())
        # Only the new layer is in this layout: the store must reuse its base layer.
        app = write_layout(tmp_path / f"app-{name}", stored, [app_layer], settings,
                           timestamp=STAMP)
        blobs = {p.name for p in (app.layout / "blobs" / "sha256").iterdir()}
        assert base.image_id not in blobs and len(blobs) == 3  # layer, config, manifest
        _run(["skopeo", "copy", "-q", "--preserve-digests", f"oci:{app.layout}",
              "containers-storage:localhost/assembled:1"], conf)
        stored_id = _run(["buildah", "inspect", "--type", "image", "--format",
                          "{{.FromImageID}}", "localhost/assembled:1"], conf).strip()
        assert stored_id == app.image_id, name
        ids[name] = stored_id
    assert len(set(ids.values())) == 1, ids
