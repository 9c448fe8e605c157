"""Deterministic tar archives of project files, for `buildah add`.

Host owners, times and umask never reach a container: entries are sorted, owned by
0:0, stamped with the build timestamp, and only the executable bit of a mode is kept.
Files are copied in chunks, never read whole, so memory stays flat for any file size
(sources.py has already refused sparse files with large holes).
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from uvbuild.errors import ProjectError


def _info(name: str, *, kind: bytes, mode: int, timestamp: int, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime, info.size = kind, mode, timestamp, size
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class _Exactly(io.RawIOBase):
    """A file read in chunks by tarfile, which must yield the `size` bytes its header
    announced: a file that shrinks meanwhile is a ProjectError, not a torn archive."""

    def __init__(self, stream: io.BufferedReader, size: int, path: Path) -> None:
        super().__init__()
        self.stream, self.left, self.path = stream, size, path

    def read(self, count: int = -1) -> bytes:
        wanted = self.left if count < 0 else min(count, self.left)
        data = self.stream.read(wanted)
        self.left -= len(data)
        if len(data) < wanted:
            raise ProjectError(f"{self.path} changed while uvbuild was copying it",
                               hint="build again when nothing writes to the project")
        return data


def write_tarball(output: Path, root: Path, files: Iterable[str], *, timestamp: int) -> None:
    """Write `files` (posix paths relative to `root`) to `output` as a reproducible tar."""
    paths = sorted(set(files))
    dirs = sorted({str(p) for f in paths for p in PurePosixPath(f).parents if str(p) != "."})
    with tarfile.open(output, "w", format=tarfile.PAX_FORMAT) as tar:
        for d in dirs:
            tar.addfile(_info(d, kind=tarfile.DIRTYPE, mode=0o755, timestamp=timestamp))
        for rel in paths:
            full = root / rel
            try:
                _add(tar, full, rel, timestamp)
            except OSError as exc:  # it vanished or became unreadable since it was listed
                raise ProjectError(f"{full} cannot be read: {exc.strerror or exc}",
                                   hint="build again when nothing changes the project's "
                                   "files; list what should not be built in "
                                   ".containerignore") from None


def _add(tar: tarfile.TarFile, full: Path, rel: str, timestamp: int) -> None:
    """Add one symlink or regular file. What the listing saw may have changed since:
    a symlink put in a file's place is not followed (O_NOFOLLOW), and a fifo or device
    there is refused, not waited on (O_NONBLOCK)."""
    st = os.lstat(full)
    if stat.S_ISLNK(st.st_mode):
        info = _info(rel, kind=tarfile.SYMTYPE, mode=0o777, timestamp=timestamp)
        info.linkname = os.readlink(full)
        tar.addfile(info)
        return
    fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb") as stream:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):
            raise ProjectError(f"{full} is no longer a regular file",
                               hint="build again when nothing changes the project's files")
        os.set_blocking(fd, True)
        mode = 0o755 if opened.st_mode & stat.S_IXUSR else 0o644
        info = _info(rel, kind=tarfile.REGTYPE, mode=mode, timestamp=timestamp,
                     size=opened.st_size)
        tar.addfile(info, _Exactly(stream, opened.st_size, full))


def append_file(archive: Path, name: str, data: bytes, *, timestamp: int) -> None:
    """Add one regular file (mode 0644, owned by 0:0) at the end of a tar (made if missing)."""
    with tarfile.open(archive, "a", format=tarfile.PAX_FORMAT) as tar:
        info = _info(name, kind=tarfile.REGTYPE, mode=0o644, timestamp=timestamp, size=len(data))
        tar.addfile(info, io.BytesIO(data))
