"""The layer cache (build/layercache.py): layer tars and facts by step key, on the host."""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest

from uvbuild.build.layercache import LayerCache
from uvbuild.errors import EngineError
from uvbuild.output.oci import Layer
from uvbuild.plan.planner import DependenciesLayer, PrepareRuntime, layer_ref

DEPS = DependenciesLayer(name="dependencies-layer", key="a" * 64, needs=("sync-dependencies",))
RUNTIME = PrepareRuntime(name="prepare-runtime", key="b" * 64, needs=("runtime-base",),
                         packages=(), user="app", python="python3")


def tar(path: Path, data: bytes = b"layer bytes") -> Layer:
    path.write_bytes(data)
    return Layer(path=path, digest="sha256:" + hashlib.sha256(data).hexdigest(),
                 size=len(data), created_by="uvbuild: test")


def test_put_then_get_gives_the_layers_and_facts(tmp_path: Path) -> None:
    cache = LayerCache(tmp_path / "layers")
    made = tar(tmp_path / "made.tar")

    kept = cache.put(DEPS, [made], {"python": {"version": "3.13"}})

    assert not made.path.exists()  # moved in, not copied
    found = cache.get(DEPS)
    assert found == kept
    assert found is not None and found.facts == {"python": {"version": "3.13"}}
    (layer,) = found.layers
    assert layer.path == tmp_path / "layers" / "blobs" / (layer.digest[7:] + ".tar")
    assert layer.path.read_bytes() == b"layer bytes"
    assert (layer.digest, layer.size, layer.created_by) == (made.digest, made.size,
                                                            "uvbuild: test")


def test_a_step_with_no_layer_is_an_entry_too(tmp_path: Path) -> None:
    cache = LayerCache(tmp_path)
    cache.put(RUNTIME, [], {"user": "0:0"})

    found = cache.get(RUNTIME)
    assert found is not None and found.layers == () and found.facts == {"user": "0:0"}


def test_listing_names_entries_as_the_steps_look_for_them(tmp_path: Path) -> None:
    cache = LayerCache(tmp_path / "layers")
    assert cache.listing() == {}  # no folder yet
    cache.put(DEPS, [tar(tmp_path / "d.tar")], {})
    cache.put(RUNTIME, [], {})

    listing = cache.listing()
    assert set(listing) == {layer_ref("dependencies-layer", "a" * 64),
                            layer_ref("prepare-runtime", "b" * 64)}
    assert DEPS.cached(listing) and RUNTIME.cached(listing)
    assert DEPS.cache_ref == layer_ref("dependencies-layer", "a" * 64)


def test_an_entry_whose_tar_is_gone_is_missing(tmp_path: Path) -> None:
    cache = LayerCache(tmp_path)
    (layer,) = cache.put(DEPS, [tar(tmp_path / "d.tar")], {}).layers
    layer.path.unlink()

    assert cache.get(DEPS) is None


def test_a_torn_or_foreign_entry_is_missing(tmp_path: Path) -> None:
    cache = LayerCache(tmp_path)
    (tmp_path / f"dependencies-layer-{'a' * 64}.json").write_text("{not json")

    assert cache.get(DEPS) is None


def test_the_same_layer_is_kept_once_for_several_keys(tmp_path: Path) -> None:
    cache = LayerCache(tmp_path / "layers")
    other = DependenciesLayer(name="dependencies-layer", key="c" * 64, needs=())
    cache.put(DEPS, [tar(tmp_path / "one.tar")], {})
    cache.put(other, [tar(tmp_path / "two.tar")], {})

    assert len(list((tmp_path / "layers" / "blobs").iterdir())) == 1
    assert cache.get(DEPS) is not None and cache.get(other) is not None


def test_builds_putting_the_same_key_at_once_leave_one_whole_entry(tmp_path: Path) -> None:
    cache = LayerCache(tmp_path / "layers")
    tars = [tar(tmp_path / f"{n}.tar", b"x" * 100_000) for n in range(8)]
    threads = [threading.Thread(target=cache.put, args=(DEPS, [t], {"n": 1})) for t in tars]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    found = cache.get(DEPS)
    assert found is not None and found.layers[0].path.read_bytes() == b"x" * 100_000
    leftovers = [p.name for p in (tmp_path / "layers").rglob(".part-*")]
    assert leftovers == []


def test_entries_and_prune(tmp_path: Path) -> None:
    cache = LayerCache(tmp_path / "layers")
    assert cache.prune() == 0
    cache.put(DEPS, [tar(tmp_path / "d.tar")], {})
    cache.put(RUNTIME, [], {})

    assert sorted(cache.entries()) == [("dependencies-layer", "a" * 64, 11),
                                       ("prepare-runtime", "b" * 64, 0)]
    assert cache.prune() == 2
    assert cache.listing() == {} and not (tmp_path / "layers" / "blobs").exists()


def test_the_entry_file_says_what_it_holds(tmp_path: Path) -> None:
    cache = LayerCache(tmp_path)
    made = tar(tmp_path / "d.tar")
    cache.put(DEPS, [made], {"k": "v"})

    data = json.loads((tmp_path / f"dependencies-layer-{'a' * 64}.json").read_text())
    assert data == {"step": "dependencies-layer", "key": "a" * 64, "facts": {"k": "v"},
                    "layers": [{"digest": made.digest, "size": made.size,
                                "created_by": "uvbuild: test"}]}


def test_an_unwritable_cache_is_an_engine_error_that_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    cache = LayerCache(tmp_path / "file" / "layers")

    with pytest.raises(EngineError) as raised:
        cache.put(DEPS, [tar(tmp_path / "d.tar")], {})

    assert raised.value.message.startswith(
        f"keeping dependencies-layer's layers in {tmp_path / 'file' / 'layers'}: ")
    assert "XDG_CACHE_HOME" in str(raised.value.hint)


def test_each_image_store_has_a_layer_cache_of_its_own(tmp_path, monkeypatch) -> None:
    """`cache prune` of one store waits for that store's builds only: its layer cache must
    not be another store's (a prune of store B took layers from a build in store A)."""
    from uvbuild.pipeline import layer_cache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    a, b = layer_cache(Path("/run/containers/storage")), layer_cache(Path("/tmp/x/run"))
    assert a.root != b.root
    assert a.root == layer_cache(Path("/run/containers/storage")).root
    assert a.root.parent == b.root.parent == tmp_path / "uvbuild" / "layers"
