"""Liveness by locks (liveness.py): what a sweep removes and what it must leave alone.

A second `Claim` in this process stands for another live uvbuild: flock locks taken
through different open files conflict even within one process, as between processes.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

import pytest

from uvbuild.build import liveness
from uvbuild.build.liveness import LOCK, Claim, Places
from uvbuild.errors import StepFailed


class Store:
    """Containers and images, as the sweep sees a store."""

    def __init__(self, containers: list[str], dangling: dict[str, str] | None = None) -> None:
        self.names = list(containers)
        self.dangling = dict(dangling or {})  # image ID → its uvbuild label
        self.removed_images: list[str] = []
        self.listings = 0
        self.asked: list[str] = []

    def containers(self) -> list[dict[str, str]]:
        return [{"id": f"id-{n}", "name": n} for n in self.names]

    def rm(self, *containers: str) -> None:
        self.names = [n for n in self.names if n not in containers]

    def rmi(self, image: str) -> bool:
        self.removed_images.append(image)
        return self.dangling.pop(image, None) is not None

    def dangling_images(self, label: str) -> list[str]:
        self.listings += 1
        return [i for i, key in self.dangling.items() if key == label]

    def made_by_uvbuild(self, image: str) -> bool | None:
        self.asked.append(image)
        return None if image not in self.dangling else not image.startswith("theirs")


@pytest.fixture
def places(tmp_path: Path) -> Places:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    return Places.of(tmp_path / "runroot", tmp)


def dead_run_id() -> str:
    """An id whose run never locked anything: as a killed run's, once its lock is free."""
    return liveness.new_run_id().split("-")[0] + "-zzzzzzzz"


def test_a_claim_is_held_while_open_and_leaves_no_trace(places: Places) -> None:
    claim = Claim(places)
    lock = places.run_lock(claim.id)
    folder = claim.folder("build")
    assert liveness.is_held(lock) and liveness.is_held(folder / LOCK)
    assert folder.name == f"uvbuild-build-{claim.id}" and folder.parent == places.tmp
    assert liveness.CONTAINER_NAME.match(claim.container_name("sync-dependencies"))
    assert claim.id.startswith(f"{os.getpid()}-")
    claim.close()
    assert not lock.exists() and not folder.exists()
    assert liveness.live_runs(places) == 0


def test_the_sweep_removes_a_dead_runs_containers_and_keeps_a_live_ones(
        places: Places) -> None:
    live = Claim(places)
    dead = dead_run_id()
    mine, theirs = live.container_name("project"), f"uvbuild-{dead}-3-project"
    store = Store([mine, theirs, "someone-else", f"uvbuild-{os.getpid()}-2-legacy"])
    swept = liveness.sweep(store, places)
    # A legacy (pid-named) container is judged by its pid: this process lives.
    assert store.names == [mine, "someone-else", f"uvbuild-{os.getpid()}-2-legacy"]
    assert swept.containers == 1
    live.close()


def test_a_killed_runs_lock_file_is_free_and_removed(places: Places) -> None:
    places.prepare()
    dead = dead_run_id()
    places.run_lock(dead).write_text("")  # what a SIGKILL leaves: the file, no lock
    store = Store([f"uvbuild-{dead}-1-builder"])
    liveness.sweep(store, places)
    assert store.names == [] and not places.run_lock(dead).exists()


def test_the_sweep_removes_dead_folders_and_leaves_live_and_other_stores_ones(
        places: Places, tmp_path: Path) -> None:
    mine = Claim(places).folder("build")
    # A build of another store, sharing $TMPDIR: its runroot is elsewhere, its folder's
    # own lock says it lives.
    other_store = Claim(Places.of(tmp_path / "other-runroot", places.tmp))
    theirs = other_store.folder("bootstrap")
    dead = places.tmp / f"uvbuild-bootstrap-{dead_run_id()}-1"
    dead.mkdir()
    (dead / LOCK).write_text("")
    (dead / "root.tar").write_bytes(b"x" * 1000)
    lockless = places.tmp / f"uvbuild-build-{dead_run_id()}"  # cut short while removed
    lockless.mkdir()
    unrelated = places.tmp / "uvbuild-build-abc123"  # not a name this uvbuild gives
    unrelated.mkdir()

    swept = liveness.sweep(Store([]), places)

    assert mine.exists() and theirs.exists() and unrelated.exists()
    assert not dead.exists() and not lockless.exists()
    assert swept.folders == 2
    other_store.close()
    assert not theirs.exists()


@pytest.mark.parametrize("kind", ["build", "bootstrap", "push", "inputs"])
def test_every_kind_of_folder_a_run_makes_is_swept_once_the_run_is_dead(
        places: Places, kind: str) -> None:
    # ("inputs" folders, for the project's tars, only earlier versions made.)
    claim = Claim(places)
    made = claim.folder(kind)
    (made / LOCK).unlink()  # what a SIGKILL leaves: no lock held (nor, here, its file)
    assert liveness.FOLDER_NAME.fullmatch(made.name)

    liveness.sweep(Store([]), places)

    assert not made.exists()
    claim.close()


def test_a_folder_being_set_up_is_left_alone_for_a_while(places: Places) -> None:
    fresh = places.tmp / ".new-uvbuild-x1"
    fresh.mkdir()
    stale = places.tmp / ".new-uvbuild-x2"
    stale.mkdir()
    old = time.time() - liveness.SETUP_GRACE - 5
    os.utime(stale, (old, old))
    liveness.sweep(Store([]), places)
    assert fresh.exists() and not stale.exists()


def test_dangling_uvbuild_images_go_only_when_no_other_run_lives(places: Places) -> None:
    store = Store([], dangling={"img-step": "io.uvbuild.step",
                                "img-base": "io.uvbuild.bootstrap", "img-other": "x"})
    me = Claim(places)
    other = Claim(places)
    liveness.sweep(store, places, me=me.id)
    assert store.removed_images == []  # `other` may be about to tag them
    other.close()
    swept = liveness.sweep(store, places, me=me.id)
    assert sorted(store.removed_images) == ["img-base", "img-step"]
    assert swept.images == 2 and list(store.dangling) == ["img-other"]
    me.close()


def test_another_tools_unnamed_images_are_asked_about_once(places: Places) -> None:
    """A `buildah bud --layers` cache built on a uvbuild base carries its labels: each
    such image is inspected by one sweep, remembered as not uvbuild's, and later sweeps
    given a listing with only those unnamed images ask the store nothing."""
    store = Store([], dangling={"theirs-1": "io.uvbuild.step", "theirs-2": "io.uvbuild.step",
                                "img-step": "io.uvbuild.step"})
    swept = liveness.sweep(store, places, unnamed=lambda: set(store.dangling) | {"plain"})
    assert swept.images == 1 and sorted(store.asked) == ["img-step", "theirs-1", "theirs-2"]
    assert sorted(store.dangling) == ["theirs-1", "theirs-2"]
    store.asked.clear()
    listings = store.listings
    swept = liveness.sweep(store, places, unnamed=lambda: set(store.dangling) | {"plain"})
    assert swept.images == 0 and store.asked == [] and store.listings == listings
    # A new unnamed image: listed again, and only it is asked about.
    store.dangling["img-new"] = "io.uvbuild.bootstrap"
    swept = liveness.sweep(store, places, unnamed=lambda: set(store.dangling))
    assert swept.images == 1 and store.asked == ["img-new"]
    # `cache prune` (no listing) asks about every one.
    store.asked.clear()
    liveness.sweep(store, places)
    assert sorted(store.asked) == ["theirs-1", "theirs-2"]


def test_a_builds_sweep_removes_images_only_once_the_build_named_its_own(
        places: Places) -> None:
    """A build's steps do not wait for its sweep: the dangling uvbuild images it finds
    go only once the build has named its image, and only those still unnamed then (the
    build may have made one of them again, and the store gave it the build's name); a
    build that failed removes none."""
    store = Store([], dangling={"img-step": "io.uvbuild.step",
                                "img-again": "io.uvbuild.step"})
    asked: list[str] = []

    def failed() -> bool:
        asked.append("failed")
        return False

    swept = liveness.sweep(store, places, images_when=failed)
    assert asked == ["failed"] and swept.images == 0 and store.removed_images == []

    def named() -> bool:
        asked.append("named")
        del store.dangling["img-again"]  # the build named it meanwhile
        return True

    swept = liveness.sweep(store, places, images_when=named)
    assert asked == ["failed", "named"]
    assert store.removed_images == ["img-step"] and swept.images == 1


def test_prune_gets_the_store_only_when_no_build_holds_it(places: Places) -> None:
    with liveness.store_exclusive(places) as alone:
        assert alone
    build = Claim(places)
    with liveness.store_exclusive(places) as alone:
        assert not alone
    build.close()


def test_a_build_waits_while_prune_holds_the_store(places: Places) -> None:
    started = threading.Event()
    claims: list[Claim] = []

    def start_build() -> None:
        started.set()
        claims.append(Claim(places))

    with liveness.store_exclusive(places) as alone:
        assert alone
        thread = threading.Thread(target=start_build)
        thread.start()
        started.wait()
        time.sleep(0.2)
        assert claims == []  # still waiting for the shared lock
    thread.join(5)
    assert len(claims) == 1
    claims[0].close()


def test_a_listing_made_during_a_prune_is_not_taken_after_it(places: Places) -> None:
    """A build lists the store while it starts and takes that listing if the store's
    generation has not changed by the time it holds the store lock. A prune changes
    it as it starts and again as it ends: a listing made while it removed images is
    not taken for the store after it."""
    generation = places.home / "store.lock"  # (what store_generation reads)
    with liveness.store_exclusive(places):
        pass
    before = generation.read_text()
    with liveness.store_exclusive(places) as alone:
        assert alone
        during = generation.read_text()
    after = generation.read_text()
    assert len({before, during, after}) == 3


def test_one_run_at_a_time_makes_a_base(places: Places) -> None:
    first, second = Claim(places), Claim(places)
    never = threading.Event()
    order: list[str] = []

    def other() -> None:
        with second.base_lock("localhost/uvbuild-base/debian-bookworm-1", give_up=never):
            order.append("second")

    with first.base_lock("localhost/uvbuild-base/debian-bookworm-1", give_up=never):
        thread = threading.Thread(target=other)
        thread.start()
        time.sleep(0.4)
        order.append("first")
    thread.join(5)
    assert order == ["first", "second"]
    first.close()
    second.close()


def test_waiting_for_a_base_stops_when_the_build_fails(places: Places) -> None:
    holder = places.home / "bases"
    places.prepare()
    first = Claim(places)
    failed = threading.Event()
    with first.base_lock("ref", give_up=threading.Event()):
        failed.set()
        with pytest.raises(StepFailed, match="another step failed"):
            with Claim(places).base_lock("ref", give_up=failed):
                pass
    assert holder.is_dir()
    first.close()


def test_is_held_never_creates_a_lock_file(tmp_path: Path) -> None:
    assert not liveness.is_held(tmp_path / "gone.lock")
    assert not (tmp_path / "gone.lock").exists()
    held = tmp_path / "held.lock"
    fd = os.open(held, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_SH)
    assert liveness.is_held(held)
    os.close(fd)
    assert not liveness.is_held(held)


def test_builder_commands_carry_the_mark_and_die_with_uvbuild(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from uvbuild.engine import cmd
    from uvbuild.engine.buildah import Buildah

    seen: list[tuple[list[str], dict[str, object]]] = []

    def run(argv: list[str], **options: object) -> cmd.Result:
        seen.append((list(argv), options))
        return cmd.Result(tuple(argv), 0, "", "")

    monkeypatch.setattr(cmd, "run", run)
    engine = Buildah(isolation="chroot")
    engine.owner_env = {liveness.OWNER_VAR: "/tmp/uvbuild-build-1-abcdefgh"}
    engine.run("ctr", ["true"])
    argv, options = seen[0]
    # The mark is the only variable on the command line: builder environments travel
    # in a job's file (secrets never reach argv).
    assert [a for i, a in enumerate(argv) if i and argv[i - 1] == "-e"] == [
        "UVBUILD_OWNER=/tmp/uvbuild-build-1-abcdefgh"]
    assert options["die_with_parent"] is True


def test_only_images_uvbuild_committed_count_as_its_own() -> None:
    """A label is inherited by what other tools build on a uvbuild image; the last history
    entry is not (Buildah.dangling_images keeps only uvbuild's own)."""
    from uvbuild.engine.buildah import made_by_uvbuild

    base = {"created_by": "/bin/sh"}  # a bootstrapped base: one entry from scratch
    step = {"created_by": "uvbuild: sync-dependencies"}
    theirs = {"created_by": "/bin/sh -c #(nop) LABEL x=y", "empty_layer": True}
    assert made_by_uvbuild([base])
    assert made_by_uvbuild([base, {"created_by": "uvbuild: prepare-builder"}, step])
    assert not made_by_uvbuild([base, theirs])  # `FROM` a uvbuild base, built by bud
    assert not made_by_uvbuild([base, step, theirs])
    assert not made_by_uvbuild([]) and not made_by_uvbuild(None)
