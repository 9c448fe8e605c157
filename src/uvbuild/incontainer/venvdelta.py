# Run by the venv's Python. Makes the project layer small: after the dependency
# sync, `snapshot` records every file under ROOT; after the project install,
# `stage` copies only what is new or changed into OUT, so the runtime gets the
# dependencies and the project as separate layers.
# Usage: python venvdelta.py snapshot ROOT MANIFEST
#        python venvdelta.py stage ROOT MANIFEST OUT [--compile]
#                                  [--copy INDEX FROM TO]... [--tar PATH]
# With --compile, the .py files the project install added are compiled here (uv ran
# without UV_COMPILE_BYTECODE, which would recompile the whole venv every time).
# Each --copy stages a runtime.copy entry whose TO is under ROOT into OUT, one whose TO
# is elsewhere into OUT.outside (as the absolute path), as `buildah copy` would copy it
# into the runtime. --tar also writes OUT as a tar
# archive (entries relative to OUT, owned by 0:0) to PATH, a folder of the host's.
# Both report facts uvbuild records, as "@@uvbuild value NAME JSON" lines on stdout:
# snapshot the interpreter the venv uses, stage the distributions installed.
import glob
import hashlib
import json
import os
import py_compile
import re
import shutil
import stat
import sys
import tarfile

VENV_PYTHON = "/app/.venv/bin/python"
OUTSIDE = ".outside"  # OUT + this: the runtime.copy entries that land outside ROOT


def describe(path, st, known=None):
    """[kind, mode, content] of a path; reuses `known`'s hash when size and mtime agree.

    The size/mtime shortcut only compares a container with its own earlier state, so
    a file uv did not touch is not read again; what is compared is always the hash.
    """
    if stat.S_ISLNK(st.st_mode):
        return ["link", os.readlink(path)]
    if stat.S_ISDIR(st.st_mode):
        return ["dir", stat.S_IMODE(st.st_mode)]
    stamp = [st.st_size, st.st_mtime_ns]
    if known and known[0] == "file" and known[3:] == stamp:
        return ["file", stat.S_IMODE(st.st_mode), known[2]] + stamp
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return ["file", stat.S_IMODE(st.st_mode), digest.hexdigest()] + stamp


def scrubbed_lstat(path):
    """lstat, after clearing group and other write bits.

    Nothing under ROOT may be writable by the runtime user (uv makes its
    `.venv/.lock` world-writable, for one).
    """
    st = os.lstat(path)
    if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o022:
        os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o022)
        st = os.lstat(path)
    return st


def drop_uv_cache_json(top, files):
    """Drop uv's uv_cache.json from an installed dist-info folder (and from its RECORD).

    uv records the source tree's modification times there to decide on reinstalls; the
    runtime never runs uv, and those times would make two identical builds differ.
    """
    drop_dist_info_file(top, files, "uv_cache.json")


def drop_dist_info_file(top, files, file_name):
    """Remove FILE_NAME from the dist-info folder TOP, from `files`, and from its RECORD."""
    os.remove(os.path.join(top, file_name))
    files.remove(file_name)
    record = os.path.join(top, "RECORD")
    if os.path.exists(record):
        name = os.path.basename(top) + "/" + file_name + ","
        with open(record) as f:
            lines = [line for line in f if not line.startswith(name)]
        with open(record, "w") as f:
            f.writelines(lines)


def points_at_sources(top):
    """Whether a dist-info's direct_url.json names the builder's /src (a project, member
    or path dependency installed from there), which the image does not have."""
    try:
        with open(os.path.join(top, "direct_url.json")) as f:
            url = json.load(f).get("url", "")
    except (OSError, ValueError, AttributeError):
        return False
    return url == "file:///src" or url.startswith("file:///src/")


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


def walk(root, before=None):
    """Every path under ROOT → describe(), scrubbing as it goes (one pass)."""
    before = before or {}
    entries = {}
    # Every path walk_tree gives starts with ROOT and a slash: sliced, not relpath'd
    # (a fifth of a stage's time, for a venv of a thousand files).
    prefix = root if root.endswith("/") else root + "/"
    for top, dirs, files in walk_tree(root):
        if top.endswith(".dist-info") and "uv_cache.json" in files:
            drop_uv_cache_json(top, files)
        if top.endswith(".dist-info") and "direct_url.json" in files and points_at_sources(top):
            # PEP 610 says where a distribution came from; a folder of the builder
            # only leaks the build's layout and means nothing in the image.
            drop_dist_info_file(top, files, "direct_url.json")
        dirs.sort()
        for name in dirs + sorted(files):
            full = os.path.join(top, name)
            rel = full[len(prefix):]
            entries[rel] = describe(full, scrubbed_lstat(full), before.get(rel))
    return entries


def same(a, b):
    return a is not None and a[:3] == b[:3]


def value(name, data):
    sys.stdout.write("@@uvbuild value %s %s\n" % (name, json.dumps(data, sort_keys=True)))


def python_facts():
    """The interpreter the venv runs on, as the runtime must provide it."""
    return {"python": os.path.realpath(VENV_PYTHON), "link": os.readlink(VENV_PYTHON),
            "version": "%d.%d" % sys.version_info[:2]}


def installed():
    """name → version of every distribution the venv's Python finds in the folders of
    sys.path (for the SBOM; a later one of a name wins), as importlib.metadata lists
    them, but for the working folder (/src: a stale *.egg-info a setuptools build left
    there is not installed).

    Read from the metadata's headers alone: importing importlib.metadata and parsing
    every METADATA file as an e-mail message took most of the stage's time.
    """
    found = {}
    for folder in sys.path:
        if not folder:
            continue  # the working folder
        try:
            names = sorted(os.listdir(folder))
        except OSError:
            continue  # (a zip file, or gone)
        for name in names:
            if name.endswith(".dist-info"):
                headers = os.path.join(folder, name, "METADATA")
            elif name.endswith(".egg-info"):
                path = os.path.join(folder, name)
                headers = os.path.join(path, "PKG-INFO") if os.path.isdir(path) else path
            else:
                continue
            fields = metadata_fields(headers)
            if fields.get("name") and fields.get("version"):
                found[re.sub(r"[-_.]+", "-", fields["name"]).lower()] = fields["version"]
    return found


def metadata_fields(path):
    """The Name and Version headers of a core metadata file (lowercased keys); {} if it
    cannot be read."""
    fields = {}
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                if not line.strip():
                    break  # the headers end here; the description follows
                key, sep, rest = line.partition(":")
                key = key.strip().lower()
                if sep and key in ("name", "version") and key not in fields:
                    fields[key] = rest.strip()
    except OSError:
        return {}
    return fields


def clamp_times(root, entries, timestamp):
    """Give every path the time the commit will give it, and record that time.

    `buildah commit --timestamp` sets every file's mtime in the layer to the build
    timestamp, so the project step's container (made from that image) sees those
    times: recorded as such, the size/mtime shortcut in `describe` then holds for
    every file uv leaves alone, and only what it wrote is read and hashed again.
    """
    ns = timestamp * 1000000000
    for rel, entry in entries.items():
        os.utime(os.path.join(root, rel), ns=(ns, ns), follow_symlinks=False)
        if entry[0] == "file":
            entry[4] = ns


def snapshot(root, manifest):
    entries = walk(root)
    if os.environ.get("SOURCE_DATE_EPOCH", "").isdigit():
        clamp_times(root, entries, int(os.environ["SOURCE_DATE_EPOCH"]))
    os.makedirs(os.path.dirname(manifest), exist_ok=True)
    with open(manifest, "w") as f:
        json.dump(entries, f, sort_keys=True)
    value("python", python_facts())


def compile_new(root, before, now):
    """Compile the .py files that are new or changed since the snapshot; add the .pyc."""
    from importlib.util import cache_from_source

    # Hash-checked .pyc files hold no source mtime (install time): reproducible.
    # Explicit, so it holds with or without SOURCE_DATE_EPOCH in the environment; the mode
    # PYC_INVALIDATION_MODE names (builder.env) if it names one, as for the dependencies
    # (bytecode.py; the recipe loader refuses any other value).
    mode = py_compile.PycInvalidationMode.__members__.get(
        os.environ.get("PYC_INVALIDATION_MODE") or "",
        py_compile.PycInvalidationMode.CHECKED_HASH)
    for rel in sorted(now):
        if rel.endswith(".py") and now[rel][0] == "file" and not same(before.get(rel), now[rel]):
            full = os.path.join(root, rel)
            try:
                pyc = py_compile.compile(full, doraise=True, invalidation_mode=mode)
            except py_compile.PyCompileError as exc:
                print("uvbuild: not compiled: %s" % exc, file=sys.stderr)
                continue
            pyc = pyc or cache_from_source(full)
            for path in (os.path.dirname(pyc), pyc):
                rel_path = os.path.relpath(path, root)
                now[rel_path] = describe(path, scrubbed_lstat(path), before.get(rel_path))


def stage_copy(root, out, index, source, dest):
    """One runtime.copy entry into OUT, with `buildah copy`'s rules.

    A folder's contents are copied into TO; a file becomes TO, or goes into it when TO
    ends with / or is a folder in the runtime's ROOT (the builder's ROOT after the
    install is exactly that) or several files match. The source itself is followed if
    it is a symbolic link; links inside a folder stay links. A missing source is
    reported as a value and exits 3.
    """
    sources = sorted(glob.glob(source)) if glob.has_magic(source) else [source]
    sources = [s for s in sources if os.path.exists(s)]
    if not sources:
        value("copy_missing", {"index": index, "from": source})
        sys.exit(3)
    rel = os.path.relpath(os.path.normpath(dest), root)
    if rel == ".." or rel.startswith("../"):
        # Outside ROOT: staged in OUT.outside as the absolute path (the layer holds both).
        out, root, rel = out + OUTSIDE, "/", os.path.normpath(dest).lstrip("/") or "."
    target = out if rel == "." else os.path.join(out, rel)
    into = (dest.endswith("/") or len(sources) > 1 or os.path.isdir(target)
            or os.path.isdir(os.path.join(root, rel)))
    for src in sources:
        if os.path.isdir(src):
            shutil.copytree(src, target, symlinks=True, dirs_exist_ok=True)
            continue
        path = os.path.join(target, os.path.basename(src)) if into else target
        os.makedirs(os.path.dirname(path), exist_ok=True)
        shutil.copy2(src, path)


def write_tar(out, path, timestamp):
    """OUT's contents as a tar at PATH: sorted, owned by 0:0, stamped with `timestamp`."""
    def clean(info):
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = timestamp
        return info

    with tarfile.open(path + ".part", "w", format=tarfile.PAX_FORMAT) as tar:
        for top, dirs, files in walk_tree(out):
            dirs.sort()
            for name in dirs + sorted(files):
                full = os.path.join(top, name)
                tar.add(full, os.path.relpath(full, out), recursive=False, filter=clean)
    os.replace(path + ".part", path)


def stage(root, manifest, out, compile_bytecode=False, copies=(), tar=None):
    with open(manifest) as f:
        before = json.load(f)
    now = walk(root, before)
    if compile_bytecode:
        compile_new(root, before, now)
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(out + OUTSIDE, ignore_errors=True)
    os.makedirs(out)
    changed = 0
    for rel in sorted(now):
        if same(before.get(rel), now[rel]):
            continue
        src, dst = os.path.join(root, rel), os.path.join(out, rel)
        kind = now[rel][0]
        if kind == "dir":
            os.makedirs(dst, exist_ok=True)
            os.chmod(dst, now[rel][1])
            continue
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if kind == "link":
            os.symlink(now[rel][1], dst)
        else:
            shutil.copy2(src, dst)
        changed += 1
    removed = sorted(rel for rel in before if rel not in now)
    with open(out + ".removed", "w") as f:
        json.dump(removed, f)
    print("uvbuild: project layer holds %d new or changed files, %d removed"
          % (changed, len(removed)), file=sys.stderr)
    for index, source, dest in copies:
        stage_copy(root, out, index, source, dest)
    if tar:
        write_tar(out, tar, int(os.environ.get("SOURCE_DATE_EPOCH") or 0))
    value("installed", installed())


def stage_options(args):
    """--compile, --copy INDEX FROM TO (repeated) and --tar PATH, in any order."""
    options = {"compile_bytecode": False, "copies": [], "tar": None}
    while args:
        flag = args.pop(0)
        if flag == "--compile":
            options["compile_bytecode"] = True
        elif flag == "--copy":
            options["copies"].append((int(args[0]), args[1], args[2]))
            del args[:3]
        elif flag == "--tar":
            options["tar"] = args.pop(0)
        else:
            sys.exit("venvdelta.py stage: unknown option %s" % flag)
    return options


if __name__ == "__main__":
    if sys.argv[1] == "snapshot":
        snapshot(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "stage":
        stage(sys.argv[2], sys.argv[3], sys.argv[4], **stage_options(sys.argv[5:]))
    else:
        sys.exit("usage: venvdelta.py snapshot|stage ...")
