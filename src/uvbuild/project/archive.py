"""Project files as a deterministic tar: what builder steps unpack, and what their keys
cover (the sha256 of the tar's bytes).

Host owners, times and umask never reach a container: entries are sorted, owned by
0:0, stamped with the build timestamp, and only the executable bit of a mode is kept.
Files are copied in chunks, never read whole, so memory stays flat for any file size
(sources.py has already refused sparse files with large holes).

A build plans its tars (`ProjectTar.plan`: digested, written nowhere) and writes one
only when a step that unpacks it runs (`ProjectTar.write`), so an unchanged rebuild
writes nothing. What is written is digested again as it is written and must give the
planned digest, which the step's key covers: a file edited in between fails the build
clearly, and never ships under the old content's key.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, BinaryIO

from uvbuild.errors import ProjectError
from uvbuild.project.sources import refuse_sparse

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer


ARCHIVE_NAME = "files.tar"


@dataclass(frozen=True, slots=True)
class ProjectTar:
    """Project files as the tar a builder step unpacks: planned with the digest of its
    bytes (which the step's key covers), written only when that step runs."""

    name: str  # what the files are ("manifests", "sources"): names its folder
    root: Path  # the host folder the paths are relative to
    files: tuple[str, ...]  # posix paths relative to `root`
    timestamp: int
    digest: str  # sha256 hex of the tar's bytes

    @classmethod
    def plan(cls, name: str, root: Path, files: tuple[str, ...], *,
             timestamp: int) -> ProjectTar:
        """The tar of `files`, digested (each file read once) and written nowhere."""
        return cls(name=name, root=root, files=files, timestamp=timestamp,
                   digest=write_tarball(None, root, files, timestamp=timestamp))

    def write(self, folder: Path) -> Path:
        """Write the tar as folder/ARCHIVE_NAME and return its path; a ProjectError if the
        files no longer give the planned bytes (an edit since the build was planned)."""
        path = folder / ARCHIVE_NAME
        if write_tarball(path, self.root, self.files, timestamp=self.timestamp) != self.digest:
            path.unlink()
            raise ProjectError(f"the project's files in {self.root} changed while uvbuild was "
                               f"building (its {self.name} differ from what the build "
                               "planned)", hint="build again when nothing writes to the project")
        return path


def tar_info(name: str, *, kind: bytes, mode: int, timestamp: int,
             size: int = 0) -> tarfile.TarInfo:
    """A tar entry as every uvbuild tar has them: owned by 0:0, stamped `timestamp`."""
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


def write_tarball(output: Path | None, root: Path, files: Iterable[str], *,
                  timestamp: int) -> str:
    """Write `files` (posix paths relative to `root`) to `output` as a reproducible tar
    (None: nowhere), and return the sha256 hex of its bytes: each file is read once,
    and what was read is both what the tar holds and what the digest covers."""
    with contextlib.ExitStack() as stack:
        file = None if output is None else stack.enter_context(open(output, "wb"))
        sink = _Digesting(file, output)
        _write(sink, root, files, timestamp)
    return sink.digest.hexdigest()


class _Digesting(io.RawIOBase):
    """Where tarfile writes: the bytes go to a file (if any) and into a sha256."""

    def __init__(self, file: BinaryIO | None, path: Path | None) -> None:
        super().__init__()
        self.file, self.path, self.digest, self.written = file, path, hashlib.sha256(), 0
        self.failed: OSError | None = None  # a write that failed (a full disk): not a read

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        view = memoryview(data)
        self.digest.update(view)
        if self.file is not None:
            try:
                self.file.write(view)
            except OSError as exc:  # named by the tar's path (for a full disk's message)
                self.failed = OSError(exc.errno, exc.strerror, str(self.path))
                raise self.failed from exc
        self.written += len(view)
        return len(view)

    def tell(self) -> int:
        return self.written


def _write(sink: _Digesting, root: Path, files: Iterable[str], timestamp: int) -> None:
    paths = sorted(set(files))
    dirs = sorted({str(p) for f in paths for p in PurePosixPath(f).parents if str(p) != "."})
    with tarfile.open(fileobj=sink, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in dirs:
            tar.addfile(tar_info(d, kind=tarfile.DIRTYPE, mode=0o755, timestamp=timestamp))
        for rel in paths:
            full = root / rel
            try:
                _add(tar, full, rel, timestamp)
            except OSError as exc:  # it vanished or became unreadable since it was listed
                if exc is sink.failed:
                    raise
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
        info = tar_info(rel, kind=tarfile.SYMTYPE, mode=0o777, timestamp=timestamp)
        info.linkname = os.readlink(full)
        tar.addfile(info)
        return
    fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb") as stream:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):
            raise ProjectError(f"{full} is no longer a regular file",
                               hint="build again when nothing changes the project's files")
        refuse_sparse(full, fd)
        os.set_blocking(fd, True)
        mode = 0o755 if opened.st_mode & stat.S_IXUSR else 0o644
        info = tar_info(rel, kind=tarfile.REGTYPE, mode=mode, timestamp=timestamp,
                        size=opened.st_size)
        tar.addfile(info, _Exactly(stream, opened.st_size, full))
