"""The registry step cache (build/regcache.py) without a registry: tag names, what an
entry's manifest must say, which entries prune keeps, and RegistryCache's decisions
(miss, warning, cache off, digests checked) against an in-memory registry engine."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from uvbuild.build.regcache import (
    EXPORTED,
    FACTS,
    IMAGE,
    KEY,
    KIND,
    LAYERS,
    STEP,
    Listed,
    RegistryCache,
    choose_pruned,
    entry_problem,
    entry_tag,
    read_entry,
    repository_problem,
    tag_parts,
)
from uvbuild.engine.buildah import ImageConfig, RegistryAccess
from uvbuild.engine.protocol import RegistryEngine
from uvbuild.errors import EngineError
from uvbuild.output.oci import LAYER_GZIP, LAYER_TAR, Layer, annotate_layout, write_layout

KEY_A = "a" * 64
KEY_B = "b" * 64
REPO = "registry.example:5000/team/app-cache"


def layer_tar(folder: Path, name: str, text: str) -> Layer:
    """A one-file layer tar, written with fixed metadata."""
    data = text.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(f"app/{name}")
        info.size, info.mtime = len(data), 315532800
        tar.addfile(info, io.BytesIO(data))
    path = folder / f"{name}.tar"
    path.write_bytes(buffer.getvalue())
    return Layer(path=path, digest="sha256:" + hashlib.sha256(buffer.getvalue()).hexdigest(),
                 size=len(buffer.getvalue()), created_by=f"made {name}")


class MemoryRegistry:
    """A RegistryEngine over dictionaries: one registry, and local images kept as OCI
    layouts. It records the blobs each push uploaded (those the registry lacked)."""

    def __init__(self) -> None:
        self.tags: dict[str, str] = {}  # "REPO:TAG" → manifest digest
        self.manifests: dict[str, bytes] = {}  # digest → bytes
        self.blobs: dict[str, bytes] = {}  # digest → bytes
        self.local: dict[str, Path] = {}  # image ID or name → its layout
        self.uploaded: list[str] = []
        self.unreachable = False
        self.refusal: str | None = None  # the registry's answer to every call, when set
        self.calls: list[str] = []
        self.store_id: str | None = None  # what registry_to_store says, when set
        self.found_in_layout: list[str] = []  # blobs a layout held before the image came

    def _reach(self, what: str) -> None:
        self.calls.append(what)
        if self.unreachable:
            raise EngineError(f"{what}: dial tcp 10.0.0.1:5000: connect: connection refused")
        if self.refusal is not None:
            raise EngineError(f"{what}: {self.refusal}")

    def _digest_of(self, ref: str) -> str | None:
        repo, at, digest = ref.partition("@")
        return digest if at else self.tags.get(ref)

    def registry_manifest(self, ref: str, access: RegistryAccess) -> bytes | None:
        self._reach("manifest")
        digest = self._digest_of(ref)
        return self.manifests.get(digest) if digest else None

    def registry_tags(self, repo: str, access: RegistryAccess) -> tuple[str, ...]:
        self._reach("tags")
        return tuple(ref.rpartition(":")[2] for ref in self.tags if ref.startswith(repo + ":"))

    def registry_delete(self, ref: str, access: RegistryAccess) -> None:
        self._reach("delete")
        digest = ref.partition("@")[2]
        del self.manifests[digest]
        self.tags = {tag: d for tag, d in self.tags.items() if d != digest}

    def image_to_layout(self, image: str, layout: Path) -> None:
        blobs = layout / "blobs" / "sha256"
        self.found_in_layout = sorted(p.name for p in blobs.iterdir()) if blobs.is_dir() else []
        shutil.copytree(self.local[image], layout, dirs_exist_ok=True)

    def layout_to_registry(self, layout: Path, dest: str, access: RegistryAccess) -> None:
        self._reach("push")
        blobs = layout / "blobs" / "sha256"
        index = json.loads((layout / "index.json").read_text())
        digest = index["manifests"][0]["digest"]
        manifest = (blobs / digest[7:]).read_bytes()
        data = json.loads(manifest)
        for descriptor in [data["config"], *data["layers"]]:
            if descriptor["digest"] not in self.blobs:
                self.blobs[descriptor["digest"]] = (blobs / descriptor["digest"][7:]).read_bytes()
                self.uploaded.append(descriptor["digest"])
        self.manifests[digest] = manifest
        self.tags[dest] = digest

    def registry_to_layout(self, ref: str, layout: Path, access: RegistryAccess) -> None:
        self._reach("fetch")
        digest = self._digest_of(ref)
        assert digest
        manifest = self.manifests[digest]
        data = json.loads(manifest)
        blobs = layout / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        (blobs / digest[7:]).write_bytes(manifest)
        for descriptor in [data["config"], *data["layers"]]:
            (blobs / descriptor["digest"][7:]).write_bytes(self.blobs[descriptor["digest"]])
        (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
            {"mediaType": data["mediaType"], "digest": digest, "size": len(manifest)}]}))

    def registry_to_store(self, ref: str, name: str, access: RegistryAccess) -> str:
        self._reach("pull")
        digest = self._digest_of(ref)
        assert digest
        image_id = self.store_id or json.loads(self.manifests[digest])["config"]["digest"][7:]
        self.local[name] = Path("/nonexistent")
        return image_id

    def rmi(self, image: str) -> bool:
        return self.local.pop(image, None) is not None


def local_image(engine: MemoryRegistry, tmp_path: Path) -> str:
    """An image in the fake local store (a layout of one layer); its ID."""
    layer = layer_tar(tmp_path, "base", "base files\n")
    made = write_layout(tmp_path / "image", None, [layer], ImageConfig(user="1000"),
                        timestamp=315532800)
    engine.local[made.image_id] = made.layout
    return made.image_id


def cache_of(engine: MemoryRegistry, tmp_path: Path) -> RegistryCache:
    access = RegistryAccess(tls_verify=False)
    checked: RegistryEngine = engine  # mypy holds MemoryRegistry to the protocol
    return RegistryCache(REPO, access, checked, scratch=tmp_path, clock=lambda: 1700000000.0)


# -- names ------------------------------------------------------------------------------


def test_an_entry_is_tagged_by_step_and_the_keys_first_32_digits() -> None:
    tag = entry_tag("sync-dependencies", KEY_A)
    assert tag == f"sync-dependencies-{'a' * 32}"
    assert tag_parts(tag) == ("sync-dependencies", "a" * 32)
    assert tag_parts("latest") is None and tag_parts("sync-dependencies-abc") is None
    with pytest.raises(ValueError):
        entry_tag("Step With Spaces", KEY_A)


@pytest.mark.parametrize("repo, problem", [
    ("ghcr.io/org/app-cache", None),
    ("docker://127.0.0.1:5000/cache", None),
    ("localhost/cache", None),
    ("org/app-cache", "name the registry too"),
    ("ghcr.io/org/app-cache:v1", "no tag or digest"),
    ("ghcr.io/org/App", "uppercase"),
])
def test_a_cache_repository_names_its_registry_and_no_tag(repo: str, problem: str | None) -> None:
    found = repository_problem(repo)
    assert (found is None) if problem is None else (problem in (found or ""))


# -- what an entry's manifest says -----------------------------------------------------


def manifest_with(notes: dict[str, str], media_type: str = LAYER_TAR) -> bytes:
    return json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": "sha256:" + "c" * 64, "size": 10},
        "layers": [{"mediaType": media_type, "digest": "sha256:" + "d" * 64, "size": 5}],
        "annotations": notes}).encode()


def test_an_entry_is_read_from_its_manifests_annotations() -> None:
    raw = manifest_with({KEY: KEY_A, STEP: "project-layer", KIND: LAYERS,
                         EXPORTED: "2026-01-02T03:04:05Z", FACTS: '{"user": "10001:10001"}'})
    entry = read_entry(REPO, raw)
    assert entry.ref == f"{REPO}@sha256:{hashlib.sha256(raw).hexdigest()}"
    assert (entry.step, entry.key, entry.kind, entry.image_id) == (
        "project-layer", KEY_A, LAYERS, "c" * 64)
    assert entry.facts == {"user": "10001:10001"} and entry.exported.startswith("2026")
    assert entry_problem(entry, "project-layer", KEY_A, LAYERS) is None


def test_an_entry_with_another_key_step_or_kind_is_refused() -> None:
    entry = read_entry(REPO, manifest_with({KEY: KEY_A, STEP: "project-layer", KIND: LAYERS}))
    # Same tag (the first 32 digits agree), another full key: the full key decides.
    same_tag = "a" * 32 + "f" * 32
    assert "records the key" in (entry_problem(entry, "project-layer", same_tag, LAYERS) or "")
    assert "records the step" in (entry_problem(entry, "install-project", KEY_A, LAYERS) or "")
    assert "holds layers" in (entry_problem(entry, "project-layer", KEY_A, IMAGE) or "")
    gzipped = read_entry(REPO, manifest_with(
        {KEY: KEY_A, STEP: "project-layer", KIND: LAYERS}, media_type=LAYER_GZIP))
    assert "compressed" in (entry_problem(gzipped, "project-layer", KEY_A, LAYERS) or "")


@pytest.mark.parametrize("raw, why", [
    (b"not json", "not an OCI image manifest"),
    (manifest_with({STEP: "x", KIND: IMAGE}), f"no {KEY}"),
    (manifest_with({KEY: KEY_A, STEP: "x", KIND: "tarball"}), "unknown kind"),
    (manifest_with({KEY: KEY_A, STEP: "x", KIND: IMAGE, FACTS: "[1]"}), "not a JSON object"),
    (manifest_with({KEY: KEY_A, STEP: "x", KIND: LAYERS}).replace(
        b"sha256:" + b"d" * 64, b"sha256:../../../etc/passwd"), "no sha256 digest"),
])
def test_a_manifest_that_is_no_entry_says_why(raw: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        read_entry(REPO, raw)


# -- retention ---------------------------------------------------------------------------


def listed(tag: str, step: str, exported: str, ref: str | None = None) -> Listed:
    return Listed(tag=tag, step=step, ref=ref or f"{REPO}@{tag}", exported=exported)


def test_prune_keeps_the_newest_entries_of_each_step() -> None:
    entries = [listed("s1", "sync", "2026-01-01T00:00:00Z"),
               listed("s2", "sync", "2026-01-03T00:00:00Z"),
               listed("s3", "sync", "2026-01-02T00:00:00Z"),
               listed("p1", "project", "2026-01-01T00:00:00Z"),
               listed("x", "sync", "")]  # no export time: the oldest
    assert [e.tag for e in choose_pruned(entries, 2)] == ["s1", "x"]
    assert [e.tag for e in choose_pruned(entries, 1)] == ["s3", "s1", "x"]
    assert [e.tag for e in choose_pruned(entries, 0)] == ["p1", "s2", "s3", "s1", "x"]
    assert choose_pruned(entries, 5) == ()


def test_prune_spares_a_manifest_that_a_kept_tag_names() -> None:
    shared = f"{REPO}@sha256:" + "e" * 64
    entries = [listed("new", "sync", "2026-01-02T00:00:00Z", ref=shared),
               listed("old", "sync", "2026-01-01T00:00:00Z", ref=shared)]
    assert choose_pruned(entries, 1) == ()


# -- the layout's manifest ----------------------------------------------------------------


def test_annotating_a_layout_keeps_its_config_and_names_plain_tars(tmp_path: Path) -> None:
    layer = layer_tar(tmp_path, "x", "x\n")
    made = write_layout(tmp_path / "l", None, [layer], ImageConfig(), timestamp=0)
    blobs = made.layout / "blobs" / "sha256"
    index = json.loads((made.layout / "index.json").read_text())
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_text())
    manifest["layers"][0]["mediaType"] = LAYER_GZIP  # as skopeo 1.9 leaves a pulled base
    (blobs / index["manifests"][0]["digest"][7:]).write_text(json.dumps(manifest))
    digest = annotate_layout(made.layout, {KEY: KEY_A})
    written = json.loads((blobs / digest[7:]).read_text())
    assert written["annotations"] == {KEY: KEY_A}
    assert written["layers"][0]["mediaType"] == LAYER_TAR
    assert written["config"]["digest"] == f"sha256:{made.image_id}"
    assert json.loads((made.layout / "index.json").read_text())["manifests"][0]["digest"] == digest


# -- RegistryCache -------------------------------------------------------------------------


def test_an_image_goes_out_once_and_comes_back_with_its_id(tmp_path: Path) -> None:
    engine = MemoryRegistry()
    image_id = local_image(engine, tmp_path)
    cache = cache_of(engine, tmp_path)
    assert cache.lookup("sync-dependencies", KEY_A) is None
    assert cache.export_image("sync-dependencies", KEY_A, image_id)
    assert len(engine.uploaded) == 2  # the layer and the config
    entry = cache.lookup("sync-dependencies", KEY_A)
    assert entry is not None and entry.image_id == image_id and entry.exported
    # Exported again (e.g. by a runner that reused it): nothing is pushed.
    engine.calls.clear()
    assert not cache.export_image("sync-dependencies", KEY_A, image_id)
    assert engine.calls == ["manifest"]
    # The same image as another step's entry: its blobs are in the registry already.
    assert cache.export_image("install-project", KEY_B, image_id)
    assert len(engine.uploaded) == 2
    assert cache.import_image(entry, "localhost/uvbuild-cache/x:latest") == image_id
    assert cache.warnings == []
    assert list(tmp_path.glob(".uvbuild-*")) == []  # no layout left behind


def test_a_blob_pool_hands_the_next_export_the_blobs_written_before(tmp_path: Path) -> None:
    engine = MemoryRegistry()
    image_id = local_image(engine, tmp_path)
    pool = tmp_path / "pool"
    cache = RegistryCache(REPO, RegistryAccess(), engine, scratch=tmp_path, blob_pool=pool)
    assert cache.export_image("sync-dependencies", KEY_A, image_id)
    assert engine.found_in_layout == []  # nothing written yet: an empty pool
    layer_and_config = {d.name for d in (engine.local[image_id] / "blobs" / "sha256").iterdir()}
    assert cache.export_image("install-project", KEY_B, image_id)
    # The layout was made ready with them: skopeo skips writing a blob a layout has.
    assert layer_and_config <= set(engine.found_in_layout)
    assert {blob.name for blob in pool.iterdir()} >= layer_and_config
    assert list(tmp_path.glob(".uvbuild-*")) == []  # the layouts are gone, the pool stays


def test_an_image_whose_id_changes_on_import_is_a_warning_and_a_miss(tmp_path: Path) -> None:
    engine = MemoryRegistry()
    cache = cache_of(engine, tmp_path)
    cache.export_image("sync-dependencies", KEY_A, local_image(engine, tmp_path))
    entry = cache.lookup("sync-dependencies", KEY_A)
    assert entry is not None
    engine.store_id = "f" * 64
    assert cache.import_image(entry, "localhost/uvbuild-cache/x:latest") is None
    assert "localhost/uvbuild-cache/x:latest" not in engine.local
    assert "not " + entry.image_id[:12] in cache.warnings[0]


def test_layers_come_back_as_the_same_tars_with_their_facts(tmp_path: Path) -> None:
    engine = MemoryRegistry()
    cache = cache_of(engine, tmp_path)
    layers = [layer_tar(tmp_path, "one", "1\n"), layer_tar(tmp_path, "two", "2\n")]
    assert cache.export_layers("prepare-runtime", KEY_A, layers, {"user": "10001:10001"})
    assert cache.lookup("prepare-runtime", KEY_A) is None  # an image was asked for
    assert "holds layers, not image" in cache.warnings.pop()
    entry = cache.lookup("prepare-runtime", KEY_A, LAYERS)
    assert entry is not None and [d.digest for d in entry.layers] == [x.digest for x in layers]
    pulled = cache.import_layers(entry, tmp_path / "pulled")
    assert pulled is not None and pulled.facts == {"user": "10001:10001"}
    assert [(x.digest, x.size, x.created_by) for x in pulled.layers] == [
        (x.digest, x.size, x.created_by) for x in layers]
    for got, want in zip(pulled.layers, layers, strict=True):
        assert got.path.read_bytes() == want.path.read_bytes()
    assert sorted(p.name for p in (tmp_path / "pulled").iterdir()) == sorted(
        f"{x.digest[7:]}.tar" for x in layers)
    assert cache.warnings == []


def test_a_layer_whose_bytes_differ_from_its_digest_is_a_miss(tmp_path: Path) -> None:
    engine = MemoryRegistry()
    cache = cache_of(engine, tmp_path)
    layer = layer_tar(tmp_path, "one", "1\n")
    cache.export_layer("project-layer", KEY_A, layer)
    entry = cache.lookup("project-layer", KEY_A, LAYERS)
    assert entry is not None
    engine.blobs[layer.digest] = b"tampered"
    assert cache.import_layers(entry, tmp_path / "pulled") is None
    assert "has the digest" in cache.warnings[0]
    assert list((tmp_path / "pulled").iterdir()) == []  # nothing half-fetched left


def test_a_tampered_entry_is_ignored_with_a_warning_and_replaced_on_export(
        tmp_path: Path) -> None:
    engine = MemoryRegistry()
    cache = cache_of(engine, tmp_path)
    image_id = local_image(engine, tmp_path)
    cache.export_image("sync-dependencies", KEY_A, image_id)
    tag = f"{REPO}:{entry_tag('sync-dependencies', KEY_A)}"
    forged = manifest_with({KEY: "a" * 32 + "0" * 32, STEP: "sync-dependencies", KIND: IMAGE})
    digest = "sha256:" + hashlib.sha256(forged).hexdigest()
    engine.manifests[digest], engine.tags[tag] = forged, digest
    assert cache.lookup("sync-dependencies", KEY_A) is None
    assert len(cache.warnings) == 1 and "records the key aaaaaaaaaaaaaaaa" in cache.warnings[0]
    assert cache.export_image("sync-dependencies", KEY_A, image_id)  # the right one again
    assert cache.lookup("sync-dependencies", KEY_A) is not None


def test_an_unreachable_registry_is_one_warning_and_the_cache_is_off(tmp_path: Path) -> None:
    engine = MemoryRegistry()
    engine.unreachable = True
    told: list[str] = []
    cache = RegistryCache(REPO, RegistryAccess(), engine, warn=told.append, scratch=tmp_path)
    assert cache.lookup("sync-dependencies", KEY_A) is None
    assert cache.down and len(told) == 1 and "cannot be reached" in told[0]
    assert cache.lookup("install-project", KEY_A) is None
    assert not cache.export_image("install-project", KEY_A, "0" * 64)
    assert engine.calls == ["manifest"] and told == cache.warnings


@pytest.mark.parametrize("refusal", [
    "pinging container registry: http: server gave HTTP response to HTTPS client",
    "reading manifest: unauthorized: authentication required (401 Unauthorized)",
    "x509: certificate signed by unknown authority"])
def test_a_registry_that_refuses_every_call_is_one_warning_and_the_cache_is_off(
        tmp_path: Path, refusal: str) -> None:
    """Plain HTTP without --no-tls-verify, missing credentials, an untrusted certificate:
    every call would fail the same way until a setting changes, so one warning says so."""
    engine = MemoryRegistry()
    engine.refusal = refusal
    told: list[str] = []
    cache = RegistryCache(REPO, RegistryAccess(), engine, warn=told.append, scratch=tmp_path)
    assert cache.lookup("sync-dependencies", KEY_A) is None
    assert cache.down and cache.failures == 1
    assert len(told) == 1 and "going on without it" in told[0], told
    assert cache.lookup("install-project", KEY_A) is None
    assert not cache.export_image("install-project", KEY_A, "0" * 64)
    assert engine.calls == ["manifest"] and len(told) == 1


def test_prune_deletes_the_older_entries_and_leaves_other_tags(tmp_path: Path) -> None:
    engine = MemoryRegistry()
    image_id = local_image(engine, tmp_path)
    now = [1700000000.0]
    cache = RegistryCache(REPO, RegistryAccess(), engine, scratch=tmp_path, clock=lambda: now[0])
    for key in ("1", "2", "3"):
        now[0] += 86400
        cache.export_image("sync-dependencies", key * 64, image_id)
    cache.export_layer("project-layer", KEY_A, layer_tar(tmp_path, "p", "p\n"))
    engine.tags[f"{REPO}:release"] = engine.tags[f"{REPO}:{entry_tag('project-layer', KEY_A)}"]
    dry = cache.prune(1, dry_run=True)
    assert [e.tag for e in dry.deleted] == [entry_tag("sync-dependencies", "2" * 64),
                                            entry_tag("sync-dependencies", "1" * 64)]
    assert dry.foreign == ("release",) and len(engine.tags) == 5
    done = cache.prune(1)
    assert done.deleted == dry.deleted and done.kept == 2
    assert sorted(engine.tags) == sorted([
        f"{REPO}:{entry_tag('sync-dependencies', '3' * 64)}",
        f"{REPO}:{entry_tag('project-layer', KEY_A)}", f"{REPO}:release"])


# -- the engine's skopeo command lines -------------------------------------------------


def test_skopeo_calls_keep_credentials_off_argv_and_say_tls_on_the_registry_side(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from uvbuild.engine import cmd
    from uvbuild.engine.buildah import Buildah

    seen: list[list[str]] = []
    authfiles: list[dict[str, dict[str, object]]] = []

    def run(argv: list[str], **kwargs: object) -> cmd.Result:
        seen.append(list(argv))
        for flag in ("--authfile", "--src-authfile", "--dest-authfile"):
            if flag in argv:
                path = Path(argv[argv.index(flag) + 1])
                assert path.stat().st_mode & 0o777 == 0o600
                authfiles.append(json.loads(path.read_text()))
        if argv[:4] == ["skopeo", "--command-timeout", "60s", "inspect"]:
            return cmd.Result(tuple(argv), 1, "", 'level=fatal msg="reading manifest x in '
                              'r:5000/c: manifest unknown: manifest unknown"')
        return cmd.Result(tuple(argv), 0, "", "")

    monkeypatch.setattr(cmd, "run", run)
    access = RegistryAccess(tls_verify=False, creds="ci:S3CR3T")
    engine = Buildah()
    assert engine.registry_manifest("r:5000/c:step-1", access) is None  # 404: a miss
    engine.layout_to_registry(tmp_path / "l", "r:5000/c:step-1", access)
    assert all("S3CR3T" not in " ".join(argv) for argv in seen)
    assert len(authfiles) == 2 and all("r:5000" in a["auths"] for a in authfiles)
    inspect, push = seen
    assert inspect[:6] == ["skopeo", "--command-timeout", "60s", "inspect", "--tls-verify=false",
                           "--authfile"]
    assert inspect[-2:] == ["--raw", "docker://r:5000/c:step-1"]
    assert push[:5] == ["skopeo", "copy", "--quiet", "--preserve-digests",
                        "--dest-tls-verify=false"]
    assert push[5] == "--dest-authfile" and push[-2:] == [f"oci:{tmp_path / 'l'}",
                                                         "docker://r:5000/c:step-1"]


def test_an_unreachable_registry_is_an_engine_error_that_says_so(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from uvbuild.engine import cmd
    from uvbuild.engine.buildah import Buildah

    def run(argv: list[str], **kwargs: object) -> cmd.Result:
        return cmd.Result(tuple(argv), 1, "", 'level=fatal msg="pinging container registry '
                          'r:5000: dial tcp 10.0.0.1:5000: connect: connection refused"')

    monkeypatch.setattr(cmd, "run", run)
    with pytest.raises(EngineError) as raised:
        Buildah().registry_manifest("r:5000/c:x", RegistryAccess())
    assert raised.value.hint is not None and "cannot be reached" in raised.value.hint


def test_a_layer_listed_twice_comes_back_twice(tmp_path: Path) -> None:
    engine = MemoryRegistry()
    cache = cache_of(engine, tmp_path)
    empty = layer_tar(tmp_path, "empty", "")
    assert cache.export_layers("prepare-runtime", KEY_A, [empty, empty])
    entry = cache.lookup("prepare-runtime", KEY_A, LAYERS)
    assert entry is not None
    pulled = cache.import_layers(entry, tmp_path / "pulled")
    assert pulled is not None and [x.path for x in pulled.layers] == [
        tmp_path / "pulled" / f"{empty.digest[7:]}.tar"] * 2
