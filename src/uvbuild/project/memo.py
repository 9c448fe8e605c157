"""What uvbuild worked out from file contents, kept on the host between runs.

An unchanged rebuild reads the same pyproject.toml and uv.lock as the build before: it
need not parse uv.lock's TOML again (10 ms for a 50 kB lock here), nor judge again that
the lock is current (which imports `packaging`, a tenth of its start-up). Both are
pure functions of the bytes read, so they are kept under a key made of those bytes
(and this Python's version and uvbuild's): a changed byte is another key. Nothing here
is needed: a folder that cannot be written, or an entry that cannot be read, is the
same as no entry.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import sys
from pathlib import Path

from uvbuild import __version__

# Where entries are kept (set by the pipeline: under uvbuild's cache folder); None: none.
folder: Path | None = None
_FORMAT = 1  # bump when what an entry holds changes


def key(*parts: bytes) -> str:
    """A key for `parts`, the bytes an entry was worked out from (and the code that
    did it), with this uvbuild's and Python's versions."""
    digest = hashlib.sha256(f"{_FORMAT} {__version__} {sys.version_info[:2]}".encode())
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def seen(kind: str, entry: str | None) -> bool:
    """Whether `remember(kind, entry)` was called (by any run)."""
    return folder is not None and entry is not None and (folder / kind / entry).is_file()


def remember(kind: str, entry: str | None, value: object = None) -> None:
    """Keep `value` (marshal's types) as `kind`'s entry `entry`."""
    if folder is None or entry is None:
        return
    try:
        data = marshal.dumps(value)  # type: ignore[arg-type]
        place = folder / kind
        place.mkdir(parents=True, exist_ok=True)
        part = place / f".{entry}.{os.getpid()}"
        part.write_bytes(data)
        part.replace(place / entry)
    except (OSError, ValueError):
        return


def recall(kind: str, entry: str | None) -> object | None:
    """The value remembered as `kind`'s `entry`, or None."""
    if folder is None or entry is None:
        return None
    try:
        value: object = marshal.loads((folder / kind / entry).read_bytes())
        return value
    except (OSError, EOFError, ValueError, TypeError):
        return None
