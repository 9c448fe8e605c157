"""A full disk, wherever it shows, becomes one message that says which folder filled up.

A full disk shows in many guises: a builder command that fails (uv, apt-get, a user's
command) printing "No space left on device", buildah failing to commit or copy (at
times with a Go stack dump), or uvbuild's own writes on the host raising ENOSPC. Each
would otherwise read as that step's failure, with that step's hint. `as_disk_full`
recognises all of them and names the places a build writes to, the full ones first:
the image store (buildah's graphroot), the host scratch space ($TMPDIR) and uv's cache.
"""

from __future__ import annotations

import errno
import functools
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from uvbuild.errors import EngineError, UvbuildError

# What uv (os error 28), Python (Errno 28), Go (buildah), apt and coreutils print.
_NO_SPACE = re.compile(r"no space left on device|errno 28\b|os error 28\b|ENOSPC"
                       r"|disk quota exceeded|enough free space", re.IGNORECASE)
# A filesystem with less than this free (or 1 % of its size, up to _SURELY_ROOM) counts
# as full: the write that failed was larger than what is left.
_NEARLY_FULL = 64 * 1024 * 1024
_SURELY_ROOM = 1024 * 1024 * 1024


F = TypeVar("F", bound=Callable[..., Any])


class DiskFull(EngineError):
    """A filesystem uvbuild or buildah writes to is full (exit code 5, as engine errors)."""


@dataclass(frozen=True, slots=True)
class Place:
    """A folder a build writes to, and what it is for."""

    what: str  # "image store", "scratch space ($TMPDIR)"...
    path: str

    def free(self) -> tuple[int, bool] | None:
        """Bytes free on its filesystem, and whether that is nearly none (None: unknown)."""
        path = Path(self.path)
        while not path.exists() and path != path.parent:
            path = path.parent  # not made yet: its filesystem is its parent's
        try:
            stats = os.statvfs(path)
        except OSError:
            return None
        free = stats.f_bavail * stats.f_frsize
        size = stats.f_blocks * stats.f_frsize
        return free, free < min(max(_NEARLY_FULL, size // 100), _SURELY_ROOM)


def says_disk_full(text: str) -> bool:
    """Whether a command's output or an error message tells of a full disk."""
    return bool(_NO_SPACE.search(text))


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` is (or tells of) a full disk."""
    if isinstance(exc, DiskFull):
        return True
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if isinstance(exc, UvbuildError):
        return says_disk_full(exc.message)
    return False


def scratch_place() -> Place:
    return Place("scratch space ($TMPDIR)", tempfile.gettempdir())


def as_disk_full(exc: BaseException, places: Sequence[Place]) -> DiskFull | None:
    """`exc` as a DiskFull naming the full folder among `places`; None if it is not
    about a full disk. Call it before the build's scratch folders are removed, so the
    full one is still full when measured."""
    if isinstance(exc, DiskFull) or not is_disk_full(exc):
        return None
    if isinstance(exc, OSError):
        # A write of uvbuild's own, on the host: where, when the error says.
        detail = (f"writing {exc.filename} on the host: {exc.strerror}" if exc.filename
                  else f"a write of uvbuild's on the host: {exc.strerror or exc}")
        target = str(exc.filename or "")
        if target and not any(_under(target, p.path) for p in places):
            places = [Place("folder", os.path.dirname(os.path.abspath(target))), *places]
        places = sorted(places, key=lambda p: not (target and _under(target, p.path)))
    else:
        detail = str(exc.message) if isinstance(exc, UvbuildError) else str(exc)
    measured = [(place, place.free()) for place in places]
    full = sorted(((place, free) for place, free in measured if free is not None and free[1]),
                  key=lambda item: item[1][0])  # the fullest first
    named = full or measured
    lines = [f"{place.what} {place.path}" + (f" ({_mb(free[0])} free)" if free else "")
             for place, free in named]
    lead = "no space left on device: " + ("full: " if full else "one of these filled up: ")
    message = lead + "; ".join(lines) + "\n  while: " + _indented(detail)
    store = next((p.path for p in places if p.what == "image store"), None)
    hint = ("free space there: `uvbuild cache prune` removes uvbuild's cached step images "
            "and leftover working containers (`--all` also bootstrapped bases and final "
            "images)")
    if store:
        hint += f"; the image store is {store}"
    if any(p.what.startswith("scratch") for p, _ in named):
        hint += "; or point TMPDIR at a folder with room"
    return DiskFull(message, hint=hint)


def failed_for_space(output: str, failure: str) -> EngineError | None:
    """An EngineError telling of a full disk if a failed command's `output` says so
    (the lines that do are kept: the tail in `failure` may not hold them)."""
    if not says_disk_full(output):
        return None
    lines = [line.strip() for line in output.splitlines() if says_disk_full(line)]
    return EngineError(failure.splitlines()[0] + "\n    " + "\n    ".join(lines[-5:]))


def build_places(graphroot: str | None, uv_cache: Path) -> list[Place]:
    """Where a build writes: the image store, the scratch space, uv's cache."""
    places = [Place("image store", graphroot)] if graphroot else []
    return [*places, scratch_place(), Place("uv cache", str(uv_cache))]


def reported(places: Callable[[], Sequence[Place]]) -> Callable[[F], F]:
    """Decorate a function so that a full disk it runs into is raised as DiskFull."""
    def decorate(function: F) -> F:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return function(*args, **kwargs)
            except BaseException as exc:
                full = translated(exc, places)
                if full is exc:
                    raise
                raise full from exc
        return wrapper  # type: ignore[return-value]
    return decorate


def translated(exc: BaseException, places: Callable[[], Sequence[Place]]) -> BaseException:
    """`exc`, or the DiskFull it stands for (`places` asked only then)."""
    if isinstance(exc, DiskFull) or not is_disk_full(exc):
        return exc
    return as_disk_full(exc, places()) or exc


def _under(path: str, folder: str) -> bool:
    folder = os.path.realpath(folder)
    return os.path.realpath(path) == folder or os.path.realpath(path).startswith(folder + "/")


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size < 10**9 else f"{size / 1e9:.1f} GB"


def _indented(text: str) -> str:
    lines = text.strip().splitlines()
    # Keep what tells the story: the first line (what failed) and the lines that say
    # why, not a whole log.
    kept = lines[:1] + [line for line in lines[1:] if says_disk_full(line)][-5:]
    return "\n    ".join(line.strip() for line in kept)
