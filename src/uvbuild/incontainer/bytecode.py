# Run by the venv's Python after `uv sync` of the dependencies (which ran with
# UV_COMPILE_BYTECODE=0). Compiles every .py file of the venv's site-packages as uv's
# --compile-bytecode does (the same files, the same .pyc bytes: hash-checked, no
# optimisation, the source's own path in the code), reusing the .pyc files earlier
# builds made for the same source at the same path from CACHE, a folder of the host's:
# uv recompiles the whole venv on every sync, most of a lock change's sync time.
# Usage: python bytecode.py CACHE [--fresh]
# --fresh: read nothing from CACHE (compile every file; still write what it compiles).
# Prints "@@uvbuild value bytecode {"compiled": N, "reused": M}".
import hashlib
import importlib.util
import json
import os
import py_compile
import sys
import sysconfig
import warnings

CHECKED = py_compile.PycInvalidationMode.CHECKED_HASH
# What the .pyc bytes depend on besides the source and its path: the interpreter.
INTERPRETER = "\0".join([importlib.util.MAGIC_NUMBER.hex(), sys.implementation.cache_tag or "",
                         sys.version, "checked-hash", "optimize=%d" % sys.flags.optimize])


def sources(folder):
    """The .py files uv compiles under `folder`: regular files (not links), in every
    folder but __pycache__ (links to folders not followed), in a stable order."""
    found = []
    waiting = [folder]
    while waiting:
        top = waiting.pop()
        try:
            entries = sorted(os.scandir(top), key=lambda entry: entry.name)
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if entry.name != "__pycache__":
                    waiting.append(entry.path)
            elif entry.name.endswith(".py") and entry.is_file(follow_symlinks=False):
                found.append(entry.path)
    return sorted(found)


def key_of(path, source):
    digest = hashlib.sha256()
    for part in (INTERPRETER.encode(), os.fsencode(path), source):
        digest.update(b"%d:" % len(part))
        digest.update(part)
    return digest.hexdigest()


def cached(cache, key, source):
    """The cached .pyc bytes for `key`, if they are whole and of this source."""
    try:
        with open(os.path.join(cache, key[:2], key), "rb") as f:
            data = f.read()
    except OSError:
        return None
    if (len(data) > 16 and data[:4] == importlib.util.MAGIC_NUMBER
            and data[4:8] == b"\x03\x00\x00\x00"
            and data[8:16] == importlib.util.source_hash(source)):
        return data
    return None


def write_pyc(path, data):
    """`data` as the .pyc of `path`, made as py_compile makes it (its folder, its mode:
    the source's, writable by its owner, under the umask)."""
    target = importlib.util.cache_from_source(path)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    mode = (os.stat(path).st_mode | 0o200) & 0o666
    part = "%s.%d.part" % (target, os.getpid())
    fd = os.open(part, os.O_EXCL | os.O_CREAT | os.O_WRONLY, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(part, target)


def keep(cache, key, data):
    """Put `data` in the cache (whole or not at all: another build may read it now)."""
    folder = os.path.join(cache, key[:2])
    try:
        os.makedirs(folder, exist_ok=True)
        part = os.path.join(folder, "%s.%d.part" % (key, os.getpid()))
        with open(part, "wb") as f:
            f.write(data)
        os.replace(part, os.path.join(folder, key))
    except OSError:
        pass  # a cache that cannot be written only costs the next build the time


def compile_all(paths):
    """Compile `paths` (their .pyc beside them, as uv would), in as many processes as
    there are CPUs; a file that does not compile gets none (as with uv and pip)."""
    workers = max(1, min(len(paths) // 20, os.cpu_count() or 1))
    children = []
    for worker in range(1, workers):
        pid = os.fork()
        if pid == 0:
            status = 0
            try:
                compile_some(paths[worker::workers])
            except BaseException:
                status = 1
            finally:
                os._exit(status)
        children.append(pid)
    compile_some(paths[0::workers])
    failed = 0
    for pid in children:
        _, status = os.waitpid(pid, 0)
        failed += status != 0
    if failed:
        sys.exit("uvbuild: %d bytecode compiler process(es) failed" % failed)


def compile_some(paths):
    # As uv's compile script: warnings (an invalid escape in an old package) are neither
    # printed nor, whatever PYTHONWARNINGS says, errors.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in paths:
            try:
                py_compile.compile(path, doraise=True, invalidation_mode=CHECKED)
            except (py_compile.PyCompileError, SyntaxError, ValueError, UnicodeError,
                    OSError):
                pass  # (compileall, which uv runs, reports these and goes on)


def main(cache, fresh=False):
    folders = sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})
    missing = []  # (path, key) of the sources no cached .pyc is there for
    reused = 0
    for folder in folders:
        for path in sources(folder):
            with open(path, "rb") as f:
                source = f.read()
            key = key_of(path, source)
            data = None if fresh else cached(cache, key, source)
            if data is None:
                missing.append((path, key))
            else:
                write_pyc(path, data)
                reused += 1
    compile_all([path for path, _ in missing])
    for path, key in missing:
        try:
            with open(importlib.util.cache_from_source(path), "rb") as f:
                keep(cache, key, f.read())
        except OSError:
            pass  # it did not compile
    sys.stdout.write("@@uvbuild value bytecode %s\n" % json.dumps(
        {"compiled": len(missing), "reused": reused}, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1], fresh=sys.argv[2:] == ["--fresh"])
