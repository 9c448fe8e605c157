"""Additions to tar archives for `buildah add` (the project's own files are written by
project/archive.py, with the same owners, times and modes)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from uvbuild.project.archive import tar_info


def append_file(archive: Path, name: str, data: bytes, *, timestamp: int) -> None:
    """Add one regular file (mode 0644, owned by 0:0) at the end of a tar (made if missing)."""
    with tarfile.open(archive, "a", format=tarfile.PAX_FORMAT) as tar:
        info = tar_info(name, kind=tarfile.REGTYPE, mode=0o644, timestamp=timestamp, size=len(data))
        tar.addfile(info, io.BytesIO(data))
