"""The registry cache over FakeEngine's in-memory registry: what the executor's wiring
will stand on. Two engines sharing one FakeRegistry are two runners sharing one cache."""

from __future__ import annotations

from pathlib import Path

from fake_engine import PY313, FakeEngine

from uvbuild.build.regcache import LAYERS, RegistryCache
from uvbuild.engine.buildah import ImageConfig, RegistryAccess
from uvbuild.output.oci import Layer, write_layout

REPO = "registry.example:5000/team/cache"
KEY = "9" * 64


def test_a_second_runner_gets_the_first_runners_image_back(tmp_path: Path) -> None:
    first, second = FakeEngine(), FakeEngine()
    second.registry = first.registry
    image_id = first.add_image("localhost/uvbuild-cache/sync-dependencies-x:latest",
                               labels={"io.uvbuild.step": "sync-dependencies"})
    exporter = RegistryCache(REPO, RegistryAccess(), first, scratch=tmp_path)
    assert exporter.export_image("sync-dependencies", KEY, image_id)
    assert not exporter.export_image("sync-dependencies", KEY, image_id)  # there already
    importer = RegistryCache(REPO, RegistryAccess(), second, scratch=tmp_path)
    entry = importer.lookup("sync-dependencies", KEY)
    assert entry is not None
    name = f"localhost/uvbuild-cache/sync-dependencies-{KEY[:32]}:latest"
    imported = importer.import_image(entry, name)
    info = second.image(name)
    assert info is not None and info.id == imported
    assert info.labels == {"io.uvbuild.step": "sync-dependencies"}
    assert second.store[info.id].python == PY313
    assert [c.method for c in second.calls] == ["registry_manifest", "registry_to_store",
                                                "image"]


def test_layers_and_a_registry_that_is_down(tmp_path: Path) -> None:
    engine = FakeEngine()
    tar = tmp_path / "layer.tar"
    tar.write_bytes(b"\0" * 1024)
    layer = Layer(path=tar, digest="sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cd"
                  "dfaf10ace3c6ef", size=1024, created_by="uvbuild: project layer")
    cache = RegistryCache(REPO, RegistryAccess(), engine, scratch=tmp_path)
    assert cache.export_layer("project-layer", KEY, layer)
    entry = cache.lookup("project-layer", KEY, LAYERS)
    assert entry is not None
    pulled = cache.import_layers(entry, tmp_path / "pulled")
    assert pulled is not None and pulled.layers[0].path.read_bytes() == tar.read_bytes()
    engine.registry.down = True
    assert cache.lookup("project-layer", KEY, LAYERS) is None
    assert cache.down and "cannot be reached" in cache.warnings[-1]


def test_an_image_another_tool_wrote_over_is_exported_with_its_own_config(
        tmp_path: Path) -> None:
    """After a `podman load` (or pull) of the very image into the store, its manifest is
    Docker's: copied into an OCI layout, its config comes out rewritten. The export puts
    the config as stored back, so a second runner gets the same image ID."""
    first, second = FakeEngine(), FakeEngine()
    second.registry = first.registry
    tar = tmp_path / "layer.tar"
    tar.write_bytes(b"\0" * 1024)
    layer = Layer(path=tar, digest="sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cd"
                  "dfaf10ace3c6ef", size=1024, created_by="uvbuild: project layer")
    layout = tmp_path / "layout"
    made = write_layout(layout, None, [layer],
                        ImageConfig(labels=(("io.uvbuild.step", "add-project"),)),
                        timestamp=1_700_000_000)
    first.import_layout(layout, "localhost/uvbuild-cache/add-project-x:latest")
    first.rewritten.add(made.image_id)

    exporter = RegistryCache(REPO, RegistryAccess(), first, scratch=tmp_path)
    assert exporter.export_image("add-project", KEY, made.image_id)
    importer = RegistryCache(REPO, RegistryAccess(), second, scratch=tmp_path)
    entry = importer.lookup("add-project", KEY)
    assert entry is not None and entry.image_id == made.image_id
    assert importer.import_image(entry, "localhost/x:1") == made.image_id
