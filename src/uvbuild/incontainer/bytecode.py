# Run by the venv's Python after `uv sync` of the dependencies (which ran with
# UV_COMPILE_BYTECODE=0). Compiles every .py file of the venv's site-packages as uv's
# --compile-bytecode does: the same files, with compileall.compile_file as uv calls it
# (hash-checked .pyc files under SOURCE_DATE_EPOCH, or as PYC_INVALIDATION_MODE names
# it; warnings ignored; failures skipped), in worker processes of the venv's Python that
# do nothing else (WORKER), so the bytes depend only on the source, its path and the
# interpreter; and reuses the .pyc files earlier builds made for the same source at the
# same path from CACHE, a folder of the host's: uv recompiles the whole venv on every
# sync, most of a lock change's sync time.
# (marshal marks an object it writes as shared when more than one reference to it
# exists in the process, so what else a compiling process holds can change the bytes,
# not the code: the workers hold nothing but what WORKER needs.)
# Usage: python bytecode.py CACHE [--fresh]
# --fresh: read nothing from CACHE (compile every file; still write what it compiles).
# Prints "@@uvbuild value bytecode {"compiled": N, "reused": M}"; exits 3 if the venv has
# no site-packages folder, 1 for a PYC_INVALIDATION_MODE that names no mode.
import hashlib
import importlib.util
import json
import os
import py_compile
import subprocess
import sys
import sysconfig
import tempfile

# A compiling process: its mode's name as its argument, the paths on its standard input
# (one a line), each compiled as uv's compile script does. Its text is in the cache key.
WORKER = """
import compileall, py_compile, sys, warnings
with warnings.catch_warnings():
    warnings.filterwarnings("ignore")
    mode = py_compile.PycInvalidationMode[sys.argv[1]]
    force = mode != py_compile.PycInvalidationMode.TIMESTAMP
    for line in sys.stdin:
        if line.strip():
            compileall.compile_file(line.strip(), invalidation_mode=mode, force=force, quiet=2)
"""
# The header flags of a hash-based .pyc (PEP 552): bit 0 hash-based, bit 1 check_source.
FLAGS = {py_compile.PycInvalidationMode.CHECKED_HASH: b"\x03\x00\x00\x00",
         py_compile.PycInvalidationMode.UNCHECKED_HASH: b"\x01\x00\x00\x00"}
DIGEST = 32  # a cache entry: the sha256 of the .pyc, then the .pyc


def invalidation_mode():
    """The mode uv's compile script uses: the one PYC_INVALIDATION_MODE names
    (TIMESTAMP, CHECKED_HASH, UNCHECKED_HASH), else py_compile's default (hash-checked
    with SOURCE_DATE_EPOCH, which uvbuild sets)."""
    named = os.environ.get("PYC_INVALIDATION_MODE")
    if named is None:
        return (py_compile.PycInvalidationMode.CHECKED_HASH
                if os.environ.get("SOURCE_DATE_EPOCH")
                else py_compile.PycInvalidationMode.TIMESTAMP)
    try:
        return py_compile.PycInvalidationMode[named]
    except KeyError:
        print("uvbuild: PYC_INVALIDATION_MODE is %r; it may be %s" % (named, ", ".join(
            mode.name for mode in py_compile.PycInvalidationMode)), file=sys.stderr)
        sys.exit(1)


def interpreter(mode):
    """What the .pyc bytes depend on besides the source and its path: the interpreter,
    the mode, and the compiling process (WORKER)."""
    return "\0".join([hashlib.sha256(WORKER.encode()).hexdigest(),
                      importlib.util.MAGIC_NUMBER.hex(), sys.implementation.cache_tag or "",
                      sys.version, mode.name, "optimize=%d" % sys.flags.optimize])


def site_folders():
    """The venv's site-packages folders uv compiles: purelib, and platlib unless it is
    the same folder (a lib64 link to lib, on Fedora-family Pythons)."""
    purelib, platlib = sysconfig.get_path("purelib"), sysconfig.get_path("platlib")
    folders = [folder for folder in (purelib, platlib) if os.path.isdir(folder)]
    if len(folders) == 2 and os.path.samefile(*folders):
        folders = folders[:1]
    return folders


def sources(folder):
    """The .py files uv compiles under `folder`: regular files (not links), in every
    folder but __pycache__ (links to folders not followed), in a stable order; not one
    whose path has a line break (uv skips those too)."""
    found = []
    waiting = [folder]
    while waiting:
        top = waiting.pop()
        try:
            entries = list(os.scandir(top))
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if entry.name != "__pycache__":
                    waiting.append(entry.path)
            elif (entry.name.endswith(".py") and entry.is_file(follow_symlinks=False)
                  and "\n" not in entry.path and "\r" not in entry.path):
                found.append(entry.path)
    return sorted(found)


def key_of(prefix, path, source):
    digest = hashlib.sha256()
    for part in (prefix.encode(), os.fsencode(path), source):
        digest.update(b"%d:" % len(part))
        digest.update(part)
    return digest.hexdigest()


def cached(cache, key, source, flags):
    """The cached .pyc bytes for `key`, if the entry is whole (its digest holds) and of
    this source (the .pyc's header)."""
    try:
        with open(os.path.join(cache, key[:2], key), "rb") as f:
            entry = f.read()
    except OSError:
        return None
    data = entry[DIGEST:]
    if (len(data) > 16 and hashlib.sha256(data).digest() == entry[:DIGEST]
            and data[:4] == importlib.util.MAGIC_NUMBER and data[4:8] == flags
            and data[8:16] == importlib.util.source_hash(source)):
        return data
    return None


def write_pyc(path, data):
    """`data` as the .pyc of `path`, made as py_compile makes it (its folder, its mode:
    the source's, writable by its owner, under the umask); False if it cannot be."""
    target = importlib.util.cache_from_source(path)
    part = "%s.%d.part" % (target, os.getpid())
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        mode = (os.stat(path).st_mode | 0o200) & 0o666
        fd = os.open(part, os.O_EXCL | os.O_CREAT | os.O_WRONLY, mode)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(part, target)
    except OSError:
        try:
            os.remove(part)
        except OSError:
            pass
        return False
    return True


def keep(cache, key, data):
    """Put `data` in the cache, with its digest (a reader takes it whole, or not at all:
    another build may read it now, from another PID namespace)."""
    folder = os.path.join(cache, key[:2])
    try:
        os.makedirs(folder, exist_ok=True)
        fd, part = tempfile.mkstemp(dir=folder, prefix=key, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(hashlib.sha256(data).digest() + data)
            os.replace(part, os.path.join(folder, key))
        except BaseException:
            os.remove(part)
            raise
    except OSError:
        pass  # a cache that cannot be written only costs the next build the time


def compile_all(paths, mode):
    """Compile `paths` (their .pyc beside them, as uv would) in as many WORKER processes
    as there are CPUs (one for a few files), all at once: each reads its share from a
    file of its own."""
    if not paths:
        return
    workers = max(1, min(len(paths) // 20, os.cpu_count() or 1))
    running = []
    try:
        for worker in range(workers):
            listed = tempfile.TemporaryFile()
            listed.write("".join(path + "\n" for path in paths[worker::workers])
                         .encode("utf-8", "surrogateescape"))
            listed.seek(0)
            running.append((subprocess.Popen([sys.executable, "-c", WORKER, mode.name],
                                             stdin=listed), listed))
    finally:
        failed = sum(process.wait() != 0 for process, _ in running)
        for _, listed in running:
            listed.close()
    if failed:
        sys.exit("uvbuild: %d bytecode compiler process(es) failed" % failed)


def main(cache, fresh=False):
    folders = site_folders()
    if not folders:
        print("uvbuild: the venv has no site-packages folder (%s)"
              % sysconfig.get_path("purelib"), file=sys.stderr)
        sys.exit(3)
    mode = invalidation_mode()
    # A timestamp-based .pyc holds its source's time, which is not in the key: not kept.
    flags = FLAGS.get(mode)
    prefix = interpreter(mode)
    missing = []  # (path, key) of the sources no cached .pyc is there for
    reused = 0
    for folder in folders:
        for path in sources(folder):
            with open(path, "rb") as f:
                source = f.read()
            key = key_of(prefix, path, source)
            data = None if fresh or flags is None else cached(cache, key, source, flags)
            if data is not None and write_pyc(path, data):
                reused += 1
            else:
                missing.append((path, key))
    compile_all([path for path, _ in missing], mode)
    for path, key in missing if flags is not None else ():
        try:
            with open(importlib.util.cache_from_source(path), "rb") as f:
                keep(cache, key, f.read())
        except OSError:
            pass  # it did not compile
    sys.stdout.write("@@uvbuild value bytecode %s\n" % json.dumps(
        {"compiled": len(missing), "reused": reused}, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1], fresh=sys.argv[2:] == ["--fresh"])
