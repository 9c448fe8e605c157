# Layer tars in one canonical form, written the same way on every machine and store.
#
# Runs in build containers (any Python 3.8+, standard library only: `python -c` with
# this text, or as `python layertar.py ...`) and on the host (imported as
# uvbuild.incontainer.layertar). A layer that uvbuild writes itself does not depend on
# the image store's driver: buildah's commit writes overlay diffs in directory-walk
# order and vfs diffs in sorted order, so the same files gave different layer digests
# in different stores.
#
# The form: entries sorted by their path's bytes (a folder before what it holds),
# owner and group as given (0:0 by default) with no user or group names, every time
# set to the build's timestamp, modes as on disk less group/other write, hard links
# written as separate files, sockets and devices left out, long names as GNU long-name
# records (no PAX headers, which carry times and vary between writers), and `.wh.`
# whiteout entries for what the layer removes. Contents are streamed.
#
# Usage: python layertar.py TAR ROOT PREFIX [--whiteout PATH]...
#   writes every path under the folder ROOT as PREFIX/... into TAR and prints
#   "@@uvbuild value layer {"digest": "sha256:...", "size": N}".
import hashlib
import json
import os
import stat
import sys
import tarfile

CHUNK = 1 << 20
WHITEOUT = ".wh."


class _Hashing:
    """A write-only file that hashes and counts what passes through it."""

    def __init__(self, raw):
        self.raw = raw
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data):
        self.sha256.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def tell(self):
        return self.size


def _name_key(name):
    return name.encode("utf-8", "surrogateescape")


def _info(name, kind, mode, timestamp, owner):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.mtime = timestamp
    info.uid, info.gid = owner
    info.uname = info.gname = ""
    return info


def walk_tree(root):
    """os.walk(root) (top-down, symlinks not followed), without recursion: Python
    before 3.12 recurses per folder level, and a tree a thousand folders deep (a path
    may be 4096 bytes long) ends in RecursionError. Same order as os.walk: a caller
    may sort or prune `dirs` before the walk goes into them."""
    waiting = [root]
    while waiting:
        top = waiting.pop()
        dirs, files = [], []
        try:
            entries = list(os.scandir(top))
        except OSError:
            continue
        for entry in entries:
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            (dirs if is_dir else files).append(entry.name)
        yield top, dirs, files
        for name in reversed(dirs):
            path = os.path.join(top, name)
            if not os.path.islink(path):
                waiting.append(path)


def tree_entries(root, prefix):
    """(tar name, host path) for PREFIX's own folders and every path under ROOT."""
    prefix = prefix.strip("/")
    entries = []
    parts = prefix.split("/") if prefix else []
    for depth in range(1, len(parts) + 1):
        entries.append(("/".join(parts[:depth]), root if depth == len(parts) else None))
    for top, dirs, files in walk_tree(root):
        rel = os.path.relpath(top, root)
        for name in dirs + files:
            inner = name if rel == "." else rel + "/" + name
            entries.append((prefix + "/" + inner if prefix else inner, os.path.join(top, name)))
    return entries


def write_layer(out, entries, timestamp, owner=(0, 0), whiteouts=()):
    """Write `entries` ((tar name, host path or None for a plain folder)) and the
    `whiteouts` (tar names of removed paths) to the file object `out` in canonical form.

    Returns {"digest": "sha256:...", "size": bytes}: the layer's diff ID and size.
    """
    items = [(name, path) for name, path in entries]
    for removed in whiteouts:
        head, _, tail = removed.strip("/").rpartition("/")
        items.append(((head + "/" if head else "") + WHITEOUT + tail, ""))
    items.sort(key=lambda item: _name_key(item[0]))
    sink = _Hashing(out)
    with tarfile.open(fileobj=sink, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, path in items:
            if path is None:
                tar.addfile(_info(name, tarfile.DIRTYPE, 0o755, timestamp, owner))
                continue
            if path == "":
                tar.addfile(_info(name, tarfile.REGTYPE, 0o644, timestamp, owner))
                continue
            st = os.lstat(path)
            mode = stat.S_IMODE(st.st_mode) & ~0o022
            if stat.S_ISDIR(st.st_mode):
                tar.addfile(_info(name, tarfile.DIRTYPE, mode, timestamp, owner))
            elif stat.S_ISLNK(st.st_mode):
                info = _info(name, tarfile.SYMTYPE, 0o777, timestamp, owner)
                info.linkname = os.readlink(path)
                tar.addfile(info)
            elif stat.S_ISREG(st.st_mode):
                info = _info(name, tarfile.REGTYPE, mode, timestamp, owner)
                info.size = st.st_size
                with open(path, "rb") as data:
                    tar.addfile(info, data)
    return {"digest": "sha256:" + sink.sha256.hexdigest(), "size": sink.size}


def write_tree(tar_path, root, prefix, timestamp, owner=(0, 0), whiteouts=()):
    """Every path under `root` as `prefix`/... in a canonical layer tar at `tar_path`."""
    part = tar_path + ".part"
    with open(part, "wb") as out:
        facts = write_layer(out, tree_entries(root, prefix), timestamp, owner, whiteouts)
    os.replace(part, tar_path)
    return facts


def main(args):
    tar_path, root, prefix = args[0], args[1], args[2]
    whiteouts = []
    rest = list(args[3:])
    while rest:
        flag = rest.pop(0)
        if flag != "--whiteout" or not rest:
            sys.exit("usage: layertar.py TAR ROOT PREFIX [--whiteout PATH]...")
        whiteouts.append(rest.pop(0))
    timestamp = int(os.environ.get("SOURCE_DATE_EPOCH") or 0)
    facts = write_tree(tar_path, root, prefix, timestamp, whiteouts=whiteouts)
    print("@@uvbuild value layer " + json.dumps(facts, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1:])
