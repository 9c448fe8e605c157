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
# records (no PAX headers, which carry times and vary between writers: a root delta's
# file with a capability is the one PAX entry, its xattr and nothing else), and `.wh.`
# whiteout entries for what the layer removes. Contents are streamed.
#
# Usage: python layertar.py [--as NAME] TAR ROOT PREFIX [--tree ROOT PREFIX]... [--whiteout PATH]...
#                           [--whiteouts-from JSON_FILE PREFIX]
#   writes every path under the folder ROOT (and each further --tree) as PREFIX/...
#   into TAR and prints "@@uvbuild value layer {"digest": "sha256:...", "size": N}";
#   a ROOT that does not exist adds nothing. --whiteouts-from reads a JSON list of
#   paths (relative to PREFIX) that the layer removes.
#        python layertar.py [--as NAME] delta TAR MARKER BEFORE SCOPE...
#   a layer of what changed under the folders SCOPE since the file MARKER was made
#   (a ctime after MARKER's: new and changed files, and the folders that lead
#   to them), with owners as on disk, and whiteouts for the paths listed in the file
#   BEFORE (one per line, as `find` printed them; "-" for none) that are gone. The
#   pseudo and scratch file systems (/proc, /sys, /dev, /run, /tmp) are left out.
# The facts are reported under NAME ("layer" by default).
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
    `owner` None: each path keeps its owner and group as on disk (a whole-root delta,
    where packages own files as other users); else every entry is owned by `owner`.

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
                tar.addfile(_info(name, tarfile.DIRTYPE, 0o755, timestamp, owner or (0, 0)))
                continue
            if path == "":
                tar.addfile(_info(name, tarfile.REGTYPE, 0o644, timestamp, owner or (0, 0)))
                continue
            st = os.lstat(path)
            mode = stat.S_IMODE(st.st_mode)
            # A root's own files keep their modes (setuid, group-writable spools: what
            # the package made); the app's files are never writable by others.
            mode = mode if owner is None else mode & ~0o022
            who = (st.st_uid, st.st_gid) if owner is None else owner
            if stat.S_ISDIR(st.st_mode):
                tar.addfile(_info(name, tarfile.DIRTYPE, mode, timestamp, who))
            elif stat.S_ISLNK(st.st_mode):
                info = _info(name, tarfile.SYMTYPE, 0o777, timestamp, who)
                info.linkname = os.readlink(path)
                tar.addfile(info)
            elif stat.S_ISREG(st.st_mode):
                info = _info(name, tarfile.REGTYPE, mode, timestamp, who)
                info.size = st.st_size
                kept = _kept_xattrs(path) if owner is None else {}
                with open(path, "rb") as data:
                    if kept:
                        # This entry alone as PAX: its xattrs in SCHILY.xattr records
                        # (sorted; no time records: the mtime is a whole number).
                        info.pax_headers = kept
                        tar.format = tarfile.PAX_FORMAT
                    try:
                        tar.addfile(info, data)
                    finally:
                        tar.format = tarfile.GNU_FORMAT
    return {"digest": "sha256:" + sink.sha256.hexdigest(), "size": sink.size}


# The extended attributes a root's files keep: file capabilities, which a package's
# install script may set (ping's cap_net_raw) and which the file does not work without.
KEPT_XATTRS = ("security.capability",)


def _kept_xattrs(path):
    """{"SCHILY.xattr.NAME": value} of KEPT_XATTRS that `path` has (values as tarfile
    writes binary data: bytes through surrogateescape)."""
    kept = {}
    for attr in KEPT_XATTRS:
        try:
            value = os.getxattr(path, attr, follow_symlinks=False)
        except OSError:  # not set, or no xattrs on this file system
            continue
        kept["SCHILY.xattr." + attr] = value.decode("utf-8", "surrogateescape")
    return dict(sorted(kept.items()))


def write_tree(tar_path, root, prefix, timestamp, owner=(0, 0), whiteouts=()):
    """Every path under `root` as `prefix`/... in a canonical layer tar at `tar_path`."""
    return write_trees(tar_path, [(root, prefix)], timestamp, owner, whiteouts)


def write_trees(tar_path, trees, timestamp, owner=(0, 0), whiteouts=()):
    """Every path under each (root, prefix) of `trees` in one canonical layer tar; a
    root that does not exist adds nothing. A folder two trees share is written once."""
    entries = {}
    for root, prefix in trees:
        if os.path.isdir(root):
            for name, path in tree_entries(root, prefix):
                if path is not None or name not in entries:
                    entries[name] = path
    return _write_file(tar_path, sorted(entries.items()), timestamp, owner, whiteouts)


def _write_file(tar_path, entries, timestamp, owner, whiteouts):
    part = tar_path + ".part"
    with open(part, "wb") as out:
        facts = write_layer(out, entries, timestamp, owner, whiteouts)
    os.replace(part, tar_path)
    return facts


# Never part of a root's layer: kernel and scratch file systems, and uvbuild's mounts.
SKIPPED = ("/proc", "/sys", "/dev", "/run", "/tmp")


def changed_since(marker, scopes):
    """(tar name, path) of what under `scopes` has a ctime after `marker`'s, with
    the folders that lead to each (a layer holds a path's parents)."""
    since = os.stat(marker).st_ctime_ns
    found = {}
    for scope in scopes:
        for top, dirs, files in walk_tree(scope):
            dirs[:] = [d for d in dirs if os.path.join(top, d) not in SKIPPED]
            for name in dirs + files:
                path = os.path.join(top, name)
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                # Strictly after: file times come from a coarse clock (a tick of a few
                # ms), and what changed in the marker's own tick was there before it (the
                # container's set-up); what the commands after it write comes ticks later.
                if st.st_ctime_ns <= since:
                    continue
                rel = path.lstrip("/")
                found[rel] = path
                head = os.path.dirname(rel)
                while head and head not in found:
                    found[head] = "/" + head
                    head = os.path.dirname(head)
    return sorted(found.items())


def removed_since(before):
    """The paths listed in the file `before` that are gone, less those inside a gone
    folder (its whiteout covers them)."""
    with open(before, "rb") as listing:
        paths = [line.rstrip(b"\n").decode("utf-8", "surrogateescape") for line in listing]
    gone = sorted(p for p in paths if p.startswith("/") and p != "/"
                  and not os.path.lexists(p))
    kept = []
    for path in gone:
        if kept and path.startswith(kept[-1] + "/"):
            continue
        kept.append(path)
    return [p.lstrip("/") for p in kept]


def write_delta(tar_path, marker, before, scopes, timestamp):
    """The layer of what changed under `scopes` since `marker` (see the usage above)."""
    whiteouts = removed_since(before) if before != "-" else []
    return _write_file(tar_path, changed_since(marker, scopes), timestamp, None, whiteouts)


def insert_file(source, tar_path, name, data, timestamp):
    """Copy the canonical layer `source` to `tar_path` with the file `name` (bytes `data`,
    0644, owned by 0:0) in its sorted place, replacing an entry of that name.

    For a file made on the host after the layer was written in a container (the SBOM,
    which lists what that same container installed). Returns the new layer's facts.
    """
    import io

    new = _info(name, tarfile.REGTYPE, 0o644, timestamp, (0, 0))
    new.size = len(data)
    part = tar_path + ".part"
    with open(part, "wb") as raw, tarfile.open(source) as src:
        sink = _Hashing(raw)
        with tarfile.open(fileobj=sink, mode="w", format=tarfile.GNU_FORMAT) as tar:
            placed = False
            for member in src:
                if member.name == name:
                    continue
                if not placed and _name_key(name) < _name_key(member.name):
                    tar.addfile(new, io.BytesIO(data))
                    placed = True
                tar.addfile(member, src.extractfile(member) if member.isfile() else None)
            if not placed:
                tar.addfile(new, io.BytesIO(data))
    os.replace(part, tar_path)
    return {"digest": "sha256:" + sink.sha256.hexdigest(), "size": sink.size}


def _usage():
    sys.exit("usage: layertar.py TAR ROOT PREFIX [--tree ROOT PREFIX]... [--whiteout PATH]..."
             " [--whiteouts-from FILE PREFIX] | layertar.py delta TAR MARKER BEFORE SCOPE...")


def main(args):
    timestamp = int(os.environ.get("SOURCE_DATE_EPOCH") or 0)
    value = "layer"
    if args[:1] == ["--as"] and len(args) > 1:  # the name the facts are reported by
        value, args = args[1], args[2:]
    if args[:1] == ["delta"]:
        if len(args) < 5:
            _usage()
        facts = write_delta(args[1], args[2], args[3], args[4:], timestamp)
        print("@@uvbuild value %s %s" % (value, json.dumps(facts, sort_keys=True)))
        return
    if len(args) < 3:
        _usage()
    tar_path, trees = args[0], [(args[1], args[2])]
    whiteouts = []
    rest = list(args[3:])
    while rest:
        flag = rest.pop(0)
        if flag == "--whiteout" and rest:
            whiteouts.append(rest.pop(0))
        elif flag == "--tree" and len(rest) >= 2:
            trees.append((rest.pop(0), rest.pop(0)))
        elif flag == "--whiteouts-from" and len(rest) >= 2:
            listing, prefix = rest.pop(0), rest.pop(0).strip("/")
            if os.path.exists(listing):
                with open(listing) as f:
                    whiteouts += [(prefix + "/" if prefix else "") + p for p in json.load(f)]
        else:
            _usage()
    facts = write_trees(tar_path, trees, timestamp, whiteouts=whiteouts)
    print("@@uvbuild value %s %s" % (value, json.dumps(facts, sort_keys=True)))


if __name__ == "__main__":
    main(sys.argv[1:])
