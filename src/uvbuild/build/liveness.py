"""Which uvbuild runs are alive, told by the locks they hold; and the sweep of what dead ones left.

A run (one `uvbuild build`) gets a random id, `<pid>-<8 letters>`, and for its whole life
holds an exclusive flock on `<runroot>/uvbuild/runs/<id>.lock`. The runroot is the image
store's run root (`buildah info`): containers/storage keeps its own locks there, so every
process that shares the store shares that folder too, a CI job container that mounts the
store included, whatever its PID namespace. A lock is released by the kernel when its
holder dies, however it dies: a lock that can be taken is a run that is dead. The pid in
the id is only there for people reading `buildah containers` or `ps`; it never decides.

What a run makes is named with its id:

- working containers `uvbuild-<id>-<n>-<purpose>`;
- host folders `$TMPDIR/uvbuild-build-<id>` (scratch), `uvbuild-<kind>-<id>-<n>` for the
  other FOLDER_KINDS (bootstrap tars, push files), each
  holding a `.lock` the run also keeps locked: a $TMPDIR may be shared by builds of other
  stores, which this store's runroot knows nothing of, so a folder is judged by its own lock;
- processes that could outlive it (mmdebstrap and its children, builder commands) carry
  `UVBUILD_OWNER=<folder path>` in their environment, and are killed with that folder
  once its lock is free.

`sweep` removes all of it for every dead run, with the dangling (unnamed) images that carry
uvbuild's labels when no other run is alive to tag them.

Builds also hold a shared lock on `<runroot>/uvbuild/store.lock`; `uvbuild cache prune`
removes cache images only while it holds that lock exclusively, so never under a running
build (see cache.prune). `base_lock` lets one build at a time bootstrap a given base.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import itertools
import os
import random
import re
import shutil
import signal
import string
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from uvbuild.build.atomic import write_atomic
from uvbuild.build.labels import OWNED_LABELS
from uvbuild.errors import EngineError, StepFailed

OWNER_VAR = "UVBUILD_OWNER"  # marks the processes a run starts that may outlive it
LOCK = ".lock"  # the lock file in each host folder a run makes
# A folder or lock file still being set up (made, locked, then renamed into place) is
# left alone this long: its maker may be between those calls.
SETUP_GRACE = 60.0

_RUN_ID = r"\d+-[a-z]{8}"
CONTAINER_NAME = re.compile(rf"uvbuild-(?P<id>{_RUN_ID})-\d+-")
# The kinds of host folder a run makes (Claim.folder); the sweep knows them all by name.
# ("inputs" folders, which held the project's tars, only earlier versions made: a sweep
# still removes those they left. The tars are now written in the build's own folder.)
FOLDER_KINDS = ("build", "bootstrap", "push", "inputs")
FOLDER_NAME = re.compile(rf"uvbuild-(?:{'|'.join(FOLDER_KINDS)})-(?P<id>{_RUN_ID})(?:-\d+)?")
# Names older uvbuild versions gave (uvbuild-<pid>-...): only the pid can judge them.
LEGACY_CONTAINER_NAME = re.compile(r"uvbuild-(?P<pid>\d+)-")
_NEW = ".new-"  # prefix of lock files and folders not yet in place


class Store(Protocol):
    """The part of `Buildah` the sweep needs (a fake in tests)."""

    def containers(self) -> list[dict[str, str]]: ...

    def rm(self, *containers: str) -> None: ...

    def rmi(self, image: str) -> bool: ...

    def dangling_images(self, label: str) -> list[str]: ...

    def made_by_uvbuild(self, image: str) -> bool | None: ...


def new_run_id() -> str:
    """A run id: this process's pid (for people) and 8 random letters (for uniqueness
    across PID namespaces and pid reuse)."""
    # The os.urandom source `secrets` uses, without its imports (every build makes an id).
    letters = "".join(random.SystemRandom().choice(string.ascii_lowercase) for _ in range(8))
    return f"{os.getpid()}-{letters}"


def _open_locked(path: Path, how: int) -> int:
    """Open (creating) `path` and flock it with `how`; the descriptor holds the lock."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, how)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _lock_in_place(path: Path) -> int:
    """An exclusive lock on a new file at `path`, which appears there already locked
    (made under a temporary name, then renamed): a sweeper never sees it unlocked."""
    temporary = path.with_name(f"{_NEW}{path.name}")
    fd = _open_locked(temporary, fcntl.LOCK_EX)
    os.rename(temporary, path)
    return fd


def is_held(path: Path) -> bool:
    """Whether a live process holds a lock on `path` (False when there is no such file).

    Opened without creating, so a sweep never brings back a lock file another sweep removed.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # not ours to judge (another user's): leave it alone
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    finally:
        os.close(fd)  # closing releases the lock if we took it
    return False


@dataclass(frozen=True, slots=True)
class Places:
    """Where runs keep their locks (`home`, in the store's runroot) and folders (`tmp`)."""

    home: Path
    tmp: Path

    @classmethod
    def of(cls, run_root: Path, tmp: Path | None = None) -> Places:
        return cls(home=run_root / "uvbuild",
                   tmp=Path(tmp if tmp is not None else tempfile.gettempdir()))

    @property
    def runs(self) -> Path:
        return self.home / "runs"

    def run_lock(self, run_id: str) -> Path:
        return self.runs / f"{run_id}.lock"

    def prepare(self) -> None:
        for folder in (self.home, self.runs, self.home / "bases"):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)


class Claim:
    """One live run: its id, the locks that say it is alive, and the host folders it made.

    `close()` removes its folders and releases every lock (the kernel does the same if
    the process dies first; then the next sweep removes the rest).
    """

    def __init__(self, places: Places, *, shared_store: bool = True) -> None:
        self.places = places
        self.id = new_run_id()
        self._serial = itertools.count(1)
        self._folder_serial = itertools.count(1)
        self._guard = threading.Lock()
        self._folders: dict[Path, int] = {}  # folder → descriptor holding its .lock
        self._fds: list[int] = []
        try:
            places.prepare()
            self._fds.append(_lock_in_place(places.run_lock(self.id)))
            if shared_store:
                # Waits while `cache prune` removes cache images, never longer.
                self._fds.append(_open_locked(places.home / "store.lock", fcntl.LOCK_SH))
        except OSError as exc:
            self.close()
            raise EngineError(
                f"cannot keep uvbuild's run locks in {places.home}: {exc.strerror}",
                hint="that folder is in the image store's runroot (`buildah info`): it must "
                "be writable by the user who builds") from exc

    def container_name(self, purpose: str) -> str:
        """A readable, unique working-container name: uvbuild-<id>-<n>-<purpose>."""
        return f"uvbuild-{self.id}-{next(self._serial)}-{purpose}"

    def folder(self, kind: str) -> Path:
        """A new private host folder `uvbuild-<kind>-<id>[-<n>]` in $TMPDIR, locked by this
        run until `release(folder)` or `close()` removes it."""
        assert kind in FOLDER_KINDS, f"a sweep would not know {kind!r} folders"
        n = next(self._folder_serial)
        name = f"uvbuild-{kind}-{self.id}" + (f"-{n}" if kind != "build" else "")
        try:
            made = Path(tempfile.mkdtemp(prefix=f"{_NEW}uvbuild-", dir=self.places.tmp))
            fd = _open_locked(made / LOCK, fcntl.LOCK_EX)
        except OSError as exc:
            raise EngineError(f"cannot make a folder in {self.places.tmp}: {exc.strerror}",
                              hint="set TMPDIR to a writable folder with free space") from exc
        final = self.places.tmp / name
        os.rename(made, final)  # appears whole and locked
        with self._guard:
            self._folders[final] = fd
        return final

    def owner_env(self, folder: Path) -> dict[str, str]:
        """The environment mark for processes that work in `folder` (see the module doc)."""
        return {OWNER_VAR: str(folder)}

    def release(self, folder: Path) -> None:
        """Remove `folder` (and any process still marked with it), then drop its lock."""
        with self._guard:
            fd = self._folders.pop(folder, None)
        kill_marked(lambda owner: owner == str(folder))
        shutil.rmtree(folder, ignore_errors=True)
        if fd is not None:
            os.close(fd)

    @contextlib.contextmanager
    def base_lock(self, ref: str, *, give_up: threading.Event) -> Iterator[None]:
        """One run at a time makes the base `ref` in this store: the others wait, then
        find it made. Waiting stops with StepFailed once `give_up` is set (the build
        failed elsewhere): a blocked flock could not be interrupted."""
        path = self.places.home / "bases" / (hashlib.sha256(ref.encode()).hexdigest()[:24]
                                             + ".lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if give_up.wait(0.25):
                        raise StepFailed(f"{ref}: not made, another step failed") from None
            yield
        finally:
            os.close(fd)

    def close(self) -> None:
        """The run is over: its folders go, its locks are released, its lock file removed."""
        with self._guard:
            folders = list(self._folders)
        for folder in folders:
            self.release(folder)
        with contextlib.suppress(OSError):
            self.places.run_lock(self.id).unlink()
        for fd in self._fds:
            os.close(fd)
        self._fds = []


@contextlib.contextmanager
def store_exclusive(places: Places) -> Iterator[bool]:
    """Hold the store lock exclusively if no build holds it (yields True), else yield
    False at once: `cache prune` never waits for builds, and builds wait only for it."""
    places.prepare()
    fd = os.open(places.home / "store.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        # A new generation: what a build listed before it took the store lock (a
        # listing made while uvbuild starts, Buildah.prefetch) is older than this.
        _new_generation(fd)
        try:
            yield True
        finally:
            # And another as the prune ends: a build that listed the store while images
            # were being removed (it waits for the lock only after its listing) must not
            # take that listing for the store as it is now.
            _new_generation(fd)
    finally:
        os.close(fd)


def _new_generation(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, new_run_id().encode(), 0)


def store_generation(run_root: Path) -> str:
    """The store's generation: changed by each `cache prune` that may remove images (see
    store_exclusive). A listing of the store's images made under one generation shows
    every cache image that still exists while the generation is the same and a build
    holds the store lock (Claim): only a prune removes them."""
    try:
        return (Places.of(run_root).home / "store.lock").read_text()
    except (OSError, UnicodeDecodeError):
        return ""


# -- the sweep -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Swept:
    """What a sweep removed."""

    containers: int = 0
    folders: int = 0
    processes: int = 0
    images: int = 0


def sweep(store: Store, places: Places, *, images: bool = True, me: str | None = None,
          unnamed: Callable[[], Collection[str]] | None = None,
          listed: list[dict[str, str]] | None = None,
          images_when: Callable[[], bool] | None = None) -> Swept:
    """Remove what dead runs left in this store and this $TMPDIR: working containers, host
    folders, the processes marked with those folders, their lock files, and (`images`)
    dangling uvbuild images once no run (but `me`, the sweeping run's id) is alive to tag them.

    `unnamed`, if given, gives the IDs of the unnamed images in a listing of the store
    made before this call: when each is one the sweep already knows is not uvbuild's
    (another tool's, built on a uvbuild image: see `_Foreign`), there is no dangling
    image of uvbuild's to look for, and the store is not asked. `listed`, if given, is a
    listing of the working containers (store.containers) made before this call.

    `images_when`, if given, is the sweeping build's: the dangling images found are
    removed only once it returns True (the build has named every image it makes: it may
    have made one of them again, which the store then gave its name), and only those
    still unnamed then; not at all if it returns False (the build failed: the next
    sweep removes them). Its steps need not wait for the sweep.

    Safe while other runs live: each thing removed belongs to a run whose lock was free.
    """
    places.prepare()
    foreign = _Foreign(places.home / "foreign-images")
    # Listed before the locks are read: an image made after this list was made by a run
    # whose lock exists by then (runs lock first, then make things).
    # The store is asked its questions at once: each is a buildah start-up (about
    # 0.05 s), and every build sweeps.
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="uvbuild-sweep") as pool:
        found = pool.submit(store.containers) if listed is None else None
        seen = None if unnamed is None else set(unnamed())
        look = images and (seen is None or not foreign.covers(seen))
        labelled = [pool.submit(store.dangling_images, label)
                    for label in (OWNED_LABELS if look else ())]
        candidates = list(dict.fromkeys(
            image for found in labelled for image in found.result()))
        # Another tool's image stays another tool's: each is asked about once.
        # (`cache prune`, which gives no listing, asks about every one.)
        unknown = [i for i in candidates if seen is None or i not in foreign]
        asked = list(zip(unknown, pool.map(store.made_by_uvbuild, unknown), strict=True))
        dangling = [image for image, ours in asked if ours]
        if look and seen is not None:
            # An unnamed image without uvbuild's labels is not uvbuild's either.
            foreign.update({image for image, ours in asked if ours is False}
                           | (seen - set(candidates)), still=seen)
        containers = found.result() if found is not None else listed or []
    dead_containers = [c["name"] for c in containers if _container_is_dead(c["name"], places)]
    if dead_containers:
        store.rm(*dead_containers)
    folders = _dead_folders(places.tmp)
    # Only marks naming a dead folder seen here: a mark that names no folder here may be
    # a process of another mount namespace (a container with its own /tmp).
    dead = {str(folder) for folder in folders}
    killed = kill_marked(lambda owner: owner in dead) if dead else 0
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    removed_images = 0
    if dangling and images_when is not None:
        still: set[str] = set()
        if images_when():
            try:
                still = {image for label in OWNED_LABELS
                         for image in store.dangling_images(label)}
            except EngineError:
                pass  # (the build is done: the next sweep removes them)
        dangling = [image for image in dangling if image in still]
    if dangling and not live_runs(places, besides=me):
        removed_images = sum(store.rmi(image) for image in dangling)
    _remove_dead_lock_files(places)
    return Swept(containers=len(dead_containers), folders=len(folders), processes=killed,
                 images=removed_images)


class _Foreign:
    """The IDs of unnamed images the sweep found are not uvbuild's, kept in a file in the
    store's run root: an image's history never changes, so once asked, never again.
    Without it, every build would inspect each of another tool's unnamed images (a
    `buildah bud --layers` cache holds many), one buildah start-up each."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.ids = set(path.read_text().split())
        except (OSError, UnicodeDecodeError):
            self.ids = set()

    def __contains__(self, image: object) -> bool:
        return image in self.ids

    def covers(self, images: set[str]) -> bool:
        return images <= self.ids

    def update(self, found: set[str], *, still: set[str]) -> None:
        """Add `found`; forget the IDs no longer among the store's unnamed images."""
        ids = (self.ids | found) & still
        if ids == self.ids:
            return
        self.ids = ids
        with contextlib.suppress(OSError):  # only a memo: the next sweep asks again
            write_atomic(self.path, "".join(f"{i}\n" for i in sorted(ids)).encode())


def _sizes(places: Places) -> Path:
    """The folder of the size notes: a file per image ID, holding its size."""
    return places.home / "sizes"


def remembered_size(places: Places, image_id: str) -> int | None:
    """The size a build noted for the image `image_id` in this store (None: not noted).
    An image's size never changes: an unchanged rebuild reads it here instead of asking
    buildah (`buildah inspect`)."""
    try:
        return int((_sizes(places) / image_id).read_text())
    except (OSError, ValueError):
        return None


def remember_size(places: Places, image_id: str, size: int) -> None:
    """Note a final image's size (a file per image ID in the store's run root)."""
    path = _sizes(places) / image_id
    if size <= 0 or path.exists():
        return
    with contextlib.suppress(OSError):  # only a memo: the next build asks buildah
        path.parent.mkdir(mode=0o700, exist_ok=True)
        write_atomic(path, str(size).encode())


def forget_sizes(places: Places, present: Collection[str]) -> int:
    """Remove the size notes (remember_size) of images no longer in the store, `present`
    being the IDs it holds; how many went. (`cache prune`: one small file per final image
    ever built would otherwise stay until the run root is cleared at boot.)"""
    gone = 0
    try:
        notes = list(_sizes(places).iterdir())
    except OSError:
        return 0
    for note in notes:
        if note.name not in present:
            with contextlib.suppress(OSError):
                note.unlink()
                gone += 1
    return gone


def live_runs(places: Places, *, besides: str | None = None) -> int:
    """How many runs (but `besides`) hold their lock in this store now."""
    try:
        entries = list(places.runs.iterdir())
    except FileNotFoundError:
        return 0
    mine = f"{besides}.lock"
    return sum(1 for p in entries if p.suffix == ".lock" and not p.name.startswith(_NEW)
               and p.name != mine and is_held(p))


def _container_is_dead(name: str, places: Places) -> bool:
    found = CONTAINER_NAME.match(name)
    if found:
        return not is_held(places.run_lock(found["id"]))
    legacy = LEGACY_CONTAINER_NAME.match(name)
    return legacy is not None and not _pid_alive(int(legacy["pid"]))


def _pid_alive(pid: int) -> bool:
    """Only for names older versions gave: a pid says little across PID namespaces."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _dead_folders(tmp: Path) -> list[Path]:
    """uvbuild's host folders in `tmp` whose lock is free (or never came: set-up cut short)."""
    dead = []
    try:
        # Names only, and a prefix test before anything else: a shared $TMPDIR may hold
        # tens of thousands of entries, and every build sweeps it.
        names = [name for name in os.listdir(tmp) if name.startswith(("uvbuild-", _NEW))]
    except OSError:
        return []
    now = time.time()
    for entry in (tmp / name for name in names):
        if FOLDER_NAME.fullmatch(entry.name):
            if not is_held(entry / LOCK):
                dead.append(entry)
        elif entry.name.startswith(f"{_NEW}uvbuild-") and not is_held(entry / LOCK):
            with contextlib.suppress(OSError):
                if now - entry.stat().st_mtime > SETUP_GRACE:
                    dead.append(entry)
    return dead


def _remove_dead_lock_files(places: Places) -> None:
    try:
        entries = list(places.runs.iterdir())
    except OSError:
        return
    now = time.time()
    for entry in entries:
        if entry.name.startswith(_NEW):
            with contextlib.suppress(OSError):
                if now - entry.stat().st_mtime <= SETUP_GRACE:
                    continue
        if not is_held(entry):
            with contextlib.suppress(OSError):
                entry.unlink()


def kill_marked(dead: Callable[[str], bool]) -> int:
    """SIGKILL every process (visible in this PID namespace) whose mark (a folder path)
    `dead` accepts; return how many.

    A few rounds: a process may start a child between the scan and the kill.
    """
    killed = 0
    for _round in range(5):
        found = _marked_processes()
        targets = [pid for pid, owner in found if dead(owner)]
        if not targets:
            break
        for pid in targets:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        time.sleep(0.05)
    return killed


def _marked_processes() -> list[tuple[int, str]]:
    """(pid, owner) of every live process (visible here) whose environment has OWNER_VAR:
    mmdebstrap's children, and builder commands (`buildah run -e`, see Buildah.owner_env),
    which run in a mount namespace of their own."""
    prefix = f"{OWNER_VAR}=".encode()
    marked = []
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return []
    me = os.getpid()
    for pid in pids:
        if pid == me:
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as handle:
                environ = handle.read()
        except OSError:
            continue  # gone, a zombie, or another user's
        if prefix not in environ:
            continue
        for entry in environ.split(b"\0"):
            if entry.startswith(prefix):
                marked.append((pid, entry[len(prefix):].decode(errors="replace")))
                break
    return marked
