"""Project tarballs: same files → same bytes, whatever the host's owners, times and umask."""

from __future__ import annotations

import io
import itertools
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from uvbuild.project.archive import write_tarball

TIMESTAMP = 315532800
_serial = itertools.count()
FILES = ("pyproject.toml", "src/app/__init__.py", "src/app/cli.py", "bin/run", "link.py")


@pytest.fixture
def umask() -> Iterator[None]:
    """Restore the process umask after a test changes it."""
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)


def make_tree(root: Path, *, file_mode: int = 0o644, script_mode: int = 0o755) -> Path:
    """A small project: nested sources, an executable script and a symlink."""
    (root / "src" / "app").mkdir(parents=True)
    (root / "bin").mkdir()
    (root / "pyproject.toml").write_text("[project]\nname = 'app'\n")
    (root / "src" / "app" / "__init__.py").write_text("VERSION = '1.0'\n")
    (root / "src" / "app" / "cli.py").write_text("def main() -> None: ...\n")
    (root / "bin" / "run").write_text("#!/bin/sh\nexec python -m app\n")
    for rel in ("pyproject.toml", "src/app/__init__.py", "src/app/cli.py"):
        (root / rel).chmod(file_mode)
    (root / "bin" / "run").chmod(script_mode)
    (root / "link.py").symlink_to("src/app/cli.py")
    return root


def tar_bytes(tmp: Path, root: Path, files: tuple[str, ...] = FILES,
              timestamp: int = TIMESTAMP) -> bytes:
    out = tmp / f"out-{next(_serial)}.tar"
    write_tarball(out, root, files, timestamp=timestamp)
    return out.read_bytes()


def members(data_path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(data_path) as tar:
        return tar.getmembers()


def test_same_tree_gives_same_bytes(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "project")

    assert tar_bytes(tmp_path, root) == tar_bytes(tmp_path, root)


def test_bytes_ignore_mtimes(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "project")
    before = tar_bytes(tmp_path, root)
    for rel in FILES[:-1]:
        os.utime(root / rel, (1_700_000_000, 1_700_000_000))
    os.utime(root / "src", (1_600_000_000, 1_600_000_000))

    assert tar_bytes(tmp_path, root) == before


def test_bytes_ignore_umask_and_group_other_bits(tmp_path: Path, umask: None) -> None:
    os.umask(0o022)
    first = make_tree(tmp_path / "first")
    os.umask(0o077)
    second = make_tree(tmp_path / "second", file_mode=0o600, script_mode=0o700)
    os.umask(0o002)
    third = make_tree(tmp_path / "third", file_mode=0o664, script_mode=0o775)

    expected = tar_bytes(tmp_path, first)
    assert tar_bytes(tmp_path, second) == expected
    assert tar_bytes(tmp_path, third) == expected


def test_bytes_ignore_the_order_and_repeats_of_the_file_list(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "project")

    assert tar_bytes(tmp_path, root, tuple(reversed(FILES)) + FILES) == tar_bytes(tmp_path, root)


def test_bytes_follow_content_and_timestamp(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "project")
    before = tar_bytes(tmp_path, root)

    assert tar_bytes(tmp_path, root, timestamp=TIMESTAMP + 1) != before
    (root / "src" / "app" / "cli.py").write_text("def main() -> int: ...\n")
    assert tar_bytes(tmp_path, root) != before


def test_entries_sorted_with_parent_dirs_first(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "project")
    out = tmp_path / "files.tar"
    write_tarball(out, root, FILES, timestamp=TIMESTAMP)

    assert [(m.name, m.type) for m in members(out)] == [
        ("bin", tarfile.DIRTYPE),
        ("src", tarfile.DIRTYPE),
        ("src/app", tarfile.DIRTYPE),
        ("bin/run", tarfile.REGTYPE),
        ("link.py", tarfile.SYMTYPE),
        ("pyproject.toml", tarfile.REGTYPE),
        ("src/app/__init__.py", tarfile.REGTYPE),
        ("src/app/cli.py", tarfile.REGTYPE),
    ]


def test_owners_times_and_modes_are_normalised(tmp_path: Path, umask: None) -> None:
    os.umask(0o077)
    root = make_tree(tmp_path / "project", file_mode=0o600, script_mode=0o744)
    out = tmp_path / "files.tar"
    write_tarball(out, root, FILES, timestamp=TIMESTAMP)

    modes = {}
    for member in members(out):
        assert (member.uid, member.gid, member.uname, member.gname) == (0, 0, "", ""), member.name
        assert member.mtime == TIMESTAMP, member.name
        modes[member.name] = member.mode
    assert modes == {
        "bin": 0o755, "src": 0o755, "src/app": 0o755,
        "bin/run": 0o755,  # only the owner's exec bit is looked at, and kept for everyone
        "link.py": 0o777,
        "pyproject.toml": 0o644, "src/app/__init__.py": 0o644, "src/app/cli.py": 0o644,
    }


def test_only_the_owner_exec_bit_counts(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "project", file_mode=0o645)  # exec for others only
    out = tmp_path / "files.tar"
    write_tarball(out, root, ("pyproject.toml",), timestamp=TIMESTAMP)

    assert [m.mode for m in members(out)] == [0o644]


def test_symlinks_are_kept_as_links(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "project")
    out = tmp_path / "files.tar"
    write_tarball(out, root, FILES, timestamp=TIMESTAMP)

    with tarfile.open(out) as tar:
        link = tar.getmember("link.py")
        assert link.issym()
        assert link.linkname == "src/app/cli.py"
        assert link.size == 0


def test_file_contents_are_stored(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "project")
    out = tmp_path / "files.tar"
    write_tarball(out, root, FILES, timestamp=TIMESTAMP)

    with tarfile.open(out) as tar:
        handle = tar.extractfile("bin/run")
        assert handle is not None
        assert handle.read() == b"#!/bin/sh\nexec python -m app\n"


def test_top_level_files_need_no_directories(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "project")
    out = tmp_path / "files.tar"
    write_tarball(out, root, ("pyproject.toml",), timestamp=TIMESTAMP)

    assert [m.name for m in members(out)] == ["pyproject.toml"]


def old_write_tarball(output: Path, root: Path, files: tuple[str, ...], *, timestamp: int) -> None:
    """write_tarball as it was when it read each file whole: the bytes must not change
    (they feed layer digests, so image IDs would)."""
    import io
    import stat
    from pathlib import PurePosixPath

    def info_for(name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime, info.size = kind, mode, timestamp, size
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    paths = sorted(set(files))
    dirs = sorted({str(p) for f in paths for p in PurePosixPath(f).parents if str(p) != "."})
    with tarfile.open(output, "w", format=tarfile.PAX_FORMAT) as tar:
        for d in dirs:
            tar.addfile(info_for(d, tarfile.DIRTYPE, 0o755))
        for rel in paths:
            full = root / rel
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                info = info_for(rel, tarfile.SYMTYPE, 0o777)
                info.linkname = os.readlink(full)
                tar.addfile(info)
                continue
            data = full.read_bytes()
            mode = 0o755 if st.st_mode & stat.S_IXUSR else 0o644
            tar.addfile(info_for(rel, tarfile.REGTYPE, mode, len(data)), io.BytesIO(data))


def test_streaming_gives_the_same_bytes_as_reading_whole(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "project")
    (root / "data.bin").write_bytes(os.urandom(3 << 20) + b"tail")  # several copy chunks
    (root / "empty").write_bytes(b"")
    files = (*FILES, "data.bin", "empty")
    before = tmp_path / "before.tar"
    old_write_tarball(before, root, files, timestamp=TIMESTAMP)
    assert tar_bytes(tmp_path, root, files) == before.read_bytes()


def test_a_large_file_is_copied_in_chunks(tmp_path: Path) -> None:
    import tracemalloc

    root = tmp_path / "project"
    root.mkdir()
    with (root / "big.bin").open("wb") as stream:
        for _ in range(32):
            stream.write(os.urandom(1 << 20))
    tracemalloc.start()
    try:
        write_tarball(tmp_path / "out.tar", root, ("big.bin",), timestamp=TIMESTAMP)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20  # the old code held the whole 32 MiB
    [member] = members(tmp_path / "out.tar")
    assert member.size == 32 << 20


def test_a_file_that_shrinks_while_copied_is_a_project_error(tmp_path: Path) -> None:
    import io

    from uvbuild.errors import ProjectError
    from uvbuild.project.archive import _Exactly

    source = io.BufferedReader(io.BytesIO(b"abc"))  # type: ignore[arg-type]
    stream = _Exactly(source, 10, tmp_path / "f")
    with pytest.raises(ProjectError, match="changed while uvbuild was copying it"):
        stream.read(16 << 10)


def test_a_listed_file_that_became_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    from uvbuild.errors import ProjectError

    os.mkfifo(tmp_path / "was-a-file")  # swapped in after the listing: open() would block
    with pytest.raises(ProjectError, match="was-a-file is no longer a regular file"):
        write_tarball(tmp_path / "out.tar", tmp_path, ["was-a-file"], timestamp=0)


def test_a_listed_file_that_vanished_is_a_project_error(tmp_path: Path) -> None:
    from uvbuild.errors import ProjectError

    with pytest.raises(ProjectError, match="gone.py cannot be read: No such file"):
        write_tarball(tmp_path / "out.tar", tmp_path, ["gone.py"], timestamp=0)


def test_a_symlink_swapped_in_after_lstat_is_not_followed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The race: the file is a regular file when checked, a link to a secret when opened."""
    from uvbuild.errors import ProjectError
    from uvbuild.project import archive as tarball

    (tmp_path / "secret").write_text("host secret")
    (tmp_path / "app.py").symlink_to(tmp_path / "secret")
    regular = os.lstat(tmp_path / "secret")
    monkeypatch.setattr(tarball.os, "lstat", lambda path: regular)
    with pytest.raises(ProjectError, match="app.py cannot be read"):
        write_tarball(tmp_path / "out.tar", tmp_path, ["app.py"], timestamp=0)


# -- the digest keys cover: of the bytes written, read once -------------------------------


def test_the_digest_is_of_the_bytes_written(tmp_path: Path) -> None:
    import hashlib

    root = make_tree(tmp_path / "project")
    out = tmp_path / "out.tar"

    digest = write_tarball(out, root, FILES, timestamp=TIMESTAMP)

    assert digest == hashlib.sha256(out.read_bytes()).hexdigest()
    assert write_tarball(None, root, FILES, timestamp=TIMESTAMP) == digest  # written nowhere


def test_a_full_disk_while_writing_is_not_an_unreadable_project_file(tmp_path: Path) -> None:
    import errno

    root = make_tree(tmp_path / "project")
    out = tmp_path / "out.tar"

    class Full(io.BufferedWriter):
        def write(self, data: Any) -> int:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    from uvbuild.project import archive

    with pytest.raises(OSError) as raised:
        archive._write(archive._Digesting(Full(io.BytesIO()), out), root, FILES, TIMESTAMP)
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(out)


def test_a_file_with_large_holes_is_refused_while_written(tmp_path: Path) -> None:
    from uvbuild.errors import ProjectError
    from uvbuild.project.sources import MAX_HOLE_BYTES

    with (tmp_path / "disk.img").open("wb") as stream:
        stream.truncate(MAX_HOLE_BYTES + (16 << 20))
    if os.stat(tmp_path / "disk.img").st_blocks * 512 > 1 << 20:
        pytest.fail("this filesystem does not keep holes: the test cannot run here")
    with pytest.raises(ProjectError, match="disk.img is a sparse file"):
        write_tarball(None, tmp_path, ["disk.img"], timestamp=TIMESTAMP)
