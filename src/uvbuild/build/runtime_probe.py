"""The runtime user's layer found by what it is made of, not by the runtime base's ID.

prepare-runtime's key follows the runtime base's ID, so a base refresh (a security
update: same Python, same /etc/passwd) would make the user layer again: a container
of the new base and a `buildah run` of mkuser.py and layertar.py, about a second here.
Without `runtime.packages`, that layer and the facts made with it (uid:gid, the
interpreter) are a function of a few files of the base: /etc/passwd, group, shadow and
gshadow, the folders /etc and /home (their modes and owners are in the layer),
/home/USER, /usr/sbin/nologin (the new user's shell), and the interpreter `python`
names through the base's PATH (every link on the way and the binary's bytes: the same
binary at the same path is the same version). `content_key` reads them from the base's
mounted root on the host and digests them, so the layer cache finds the layer a base
with the same files made.

Pure but for reading a mounted root: no process is started here.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import stat
from pathlib import Path

from uvbuild.plan.planner import LAYER_FORM, STANDARD_PATH, PrepareRuntime

# What mkuser.py and the user layer's delta (of /etc and /home) read or write.
READ = ("etc", "home", "etc/passwd", "etc/group", "etc/shadow", "etc/gshadow")
_MAX_LINKS = 40  # as the kernel's ELOOP limit


def content_key(root: Path, step: PrepareRuntime, base_env: tuple[str, ...],
                timestamp: int) -> str:
    """The digest of everything the user layer of `step` (no runtime.packages) is made
    of, read from `root`, the runtime base's files (see the module docstring)."""
    assert not step.packages, "a packages layer depends on the whole base"
    path = next((item[len("PATH="):] for item in base_env if item.startswith("PATH=")),
                STANDARD_PATH)
    facts: dict[str, object] = {
        "form": LAYER_FORM, "timestamp": timestamp, "user": step.user,
        "python": step.python, "path": path,
        "files": {name: _describe(root, name) for name in (*READ, f"home/{step.user}")},
        "nologin": _resolve(root, "/usr/sbin/nologin"),
        "interpreter": _interpreter(root, step.python, path),
    }
    data = json.dumps(facts, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(b"runtime-user\0" + data).hexdigest()


def _describe(root: Path, name: str) -> list[object] | None:
    """A path's kind, mode, owner and (a file) content digest or (a link) target."""
    path = root / name
    try:
        st = os.lstat(path)
    except OSError:
        return None
    described: list[object] = [stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode),
                                st.st_uid, st.st_gid]
    if stat.S_ISLNK(st.st_mode):
        described.append(os.readlink(path))
    elif stat.S_ISREG(st.st_mode):
        described.append(_digest(path))
    return described


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


def _resolve(root: Path, path: str) -> list[object] | None:
    """Follow `path` (absolute, inside `root`) through every symlink as the container
    would see it: the links met on the way and the final file's description; None if
    it does not exist."""
    hops: list[object] = []
    pending = [part for part in path.split("/") if part]
    current = "/"
    seen = 0
    while pending:
        part = pending.pop(0)
        if part == ".":
            continue
        if part == "..":
            current = posixpath.dirname(current) or "/"
            continue
        candidate = posixpath.join(current, part)
        host = root / candidate.lstrip("/")
        try:
            st = os.lstat(host)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            seen += 1
            if seen > _MAX_LINKS:
                return None
            target = os.readlink(host)
            hops.append([candidate, target])
            pending = [p for p in target.split("/") if p] + pending
            current = "/" if target.startswith("/") else current
            continue
        current = candidate
    return [hops, current, _describe(root, current.lstrip("/") or ".")]


def _interpreter(root: Path, python: str, path: str) -> list[object] | None:
    """What `python` runs in the container: a path as given, or the first executable
    of that name in PATH's folders (as the shell looks it up)."""
    if "/" in python:
        return _resolve(root, python if python.startswith("/") else "/" + python)
    for folder in path.split(":"):
        if not folder.startswith("/"):
            continue
        found = _resolve(root, posixpath.join(folder, python))
        if found is not None:
            return found
    return None
