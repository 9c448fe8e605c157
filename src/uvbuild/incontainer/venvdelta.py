# Run by the builder's Python. Makes the project layer small: after the dependency
# sync, `snapshot` records every file under ROOT; after the project install,
# `stage` copies only what is new or changed into OUT, so the runtime gets the
# dependencies and the project as separate layers.
# Usage: python venvdelta.py snapshot ROOT MANIFEST
#        python venvdelta.py stage ROOT MANIFEST OUT
import hashlib
import json
import os
import shutil
import stat
import sys


def describe(path):
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return ["link", os.readlink(path)]
    if stat.S_ISDIR(st.st_mode):
        return ["dir", stat.S_IMODE(st.st_mode)]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return ["file", stat.S_IMODE(st.st_mode), digest.hexdigest()]


def walk(root):
    entries = {}
    for top, dirs, files in os.walk(root):
        dirs.sort()
        for name in dirs + sorted(files):
            full = os.path.join(top, name)
            entries[os.path.relpath(full, root)] = describe(full)
    return entries


def snapshot(root, manifest):
    os.makedirs(os.path.dirname(manifest), exist_ok=True)
    with open(manifest, "w") as f:
        json.dump(walk(root), f, sort_keys=True)


def stage(root, manifest, out):
    with open(manifest) as f:
        before = json.load(f)
    now = walk(root)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    changed = 0
    for rel in sorted(now):
        if before.get(rel) == now[rel]:
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


if __name__ == "__main__":
    if sys.argv[1] == "snapshot":
        snapshot(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "stage":
        stage(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit("usage: venvdelta.py snapshot|stage ...")
