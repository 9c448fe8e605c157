"""The project's source files as uvbuild sees them.

One list serves two ends: it is what gets copied into containers, as a tar whose bytes
are hashed into cache keys (project/archive.py), so the two can never disagree. Left
out are `.venv/`, `.git/`, `__pycache__/` and `*.pyc` at any depth, what the root
`.containerignore` (else `.dockerignore`) excludes with Docker's rules, and what
`.gitignore` files exclude with git's. In a uv workspace, each member's own ignore file
excludes from that member's folder too (project/model.py), as it does for the member
built alone.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from uvbuild.errors import ProjectError
from uvbuild.project.globmatch import Glob, GlobError, compile_glob

# A sparse file is copied whole (holes become zeros in the tar, the layer and the image),
# so a file with more than this in holes is refused: a `truncate -s 1T` file would fill
# the disk. Dense files of any size are fine: they are hashed and copied in chunks.
MAX_HOLE_BYTES = 64 << 20
ALWAYS_EXCLUDED = frozenset({".venv", ".git", "__pycache__"})
CONTAINER_IGNORE_FILES = (".containerignore", ".dockerignore")  # the first that exists wins


@dataclass(frozen=True, kw_only=True, slots=True)
class Rule:
    """One ignore pattern, compiled."""

    glob: Glob
    negated: bool  # a leading "!": include what earlier patterns excluded
    dir_only: bool = False  # gitignore's trailing "/"
    base: str = ""  # gitignore: the folder holding the .gitignore, relative to root
    literal_prefix: str = ""  # dockerignore: the pattern up to its first wildcard


def source_files(root: Path) -> tuple[str, ...]:
    """Sorted posix paths, relative to `root`, of the regular files and symlinks uvbuild uses.

    Symlinks are listed, never followed; sockets, fifos and devices are skipped.
    """
    container_rules = _container_ignore(root)
    found: list[str] = []
    for rel, kind in _walk(root, "", (), container_rules):
        if kind != "dir" and not docker_excludes(container_rules, rel):
            found.append(rel)
    return tuple(sorted(found))


def docker_excludes(rules: tuple[Rule, ...], path: str) -> bool:
    """Docker's rule: the last pattern matching the path, or a folder above it, decides."""
    excluded = False
    for rule in rules:
        if rule.negated != excluded:
            continue  # cannot change the outcome
        # What the pattern matches starts with its literal prefix, and so does any path
        # below it: a cheap test that keeps a long ignore file fast.
        if not path.startswith(rule.literal_prefix):
            continue
        if rule.glob.matches_or_parent(path):
            excluded = not rule.negated
    return excluded


def git_ignores(rules: Iterable[Rule], path: str, *, is_dir: bool) -> bool:
    """gitignore's rule: the last pattern matching the path decides (deeper files come later)."""
    ignored = False
    for rule in rules:
        if rule.dir_only and not is_dir:
            continue
        if rule.base:
            if not path.startswith(rule.base + "/"):
                continue
            relative = path[len(rule.base) + 1 :]
        else:
            relative = path
        if rule.glob.fullmatch(relative):
            ignored = not rule.negated
    return ignored


def parse_dockerignore(text: str, file: str = ".containerignore") -> tuple[Rule, ...]:
    """Patterns of a .containerignore/.dockerignore, relative to the root, in file order."""
    rules = []
    for number, line in enumerate(text.removeprefix("\ufeff").splitlines(), 1):
        if line.startswith("#"):
            continue
        pattern = line.strip()
        negated = pattern.startswith("!")
        if negated:
            pattern = pattern[1:].strip()
        if not pattern:
            continue
        pattern = os.path.normpath(pattern).replace(os.sep, "/")
        if len(pattern) > 1 and pattern.startswith("/"):
            pattern = pattern.lstrip("/")
        prefix = re.split(r"[*?\[\\]", pattern, maxsplit=1)[0]
        glob = _compile(pattern, f"{file}:{number}", docker=True)
        rules.append(Rule(glob=glob, negated=negated, literal_prefix=prefix))
    return tuple(rules)


def parse_gitignore(text: str, base: str = "") -> tuple[Rule, ...]:
    """Patterns of a .gitignore in folder `base` (relative to root, "" for the root)."""
    rules = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.rstrip("\r")
        while line.endswith(" ") and not line.endswith("\\ "):
            line = line[:-1]
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:] if negated else line
        pattern = pattern[1:] if pattern.startswith(("\\!", "\\#")) else pattern
        dir_only = pattern.endswith("/")
        pattern = pattern.rstrip("/")
        if not pattern:
            continue
        anchored = "/" in pattern
        where = f"{base}/.gitignore:{number}" if base else f".gitignore:{number}"
        glob = _compile(pattern.lstrip("/"), where, docker=False, any_depth=not anchored)
        rules.append(Rule(glob=glob, negated=negated, dir_only=dir_only, base=base))
    return tuple(rules)


def _walk(
    root: Path, folder: str, git_rules: tuple[Rule, ...], container_rules: tuple[Rule, ...]
) -> Iterator[tuple[str, str]]:
    """(relative path, "file" | "link" | "dir") under `folder`, pruning what git ignores.

    Folders wait on a list, not in nested calls: a project nested a few thousand folders
    deep (paths may be 4096 bytes long) must not end in Python's RecursionError.
    """
    waiting = [(folder, git_rules)]
    while waiting:
        folder, inherited = waiting.pop()
        rules = inherited + _gitignore(root, folder)
        for entry in _entries(root / folder):
            rel = f"{folder}/{entry.name}" if folder else entry.name
            kind = _kind(entry)
            if kind is None or entry.name in ALWAYS_EXCLUDED:
                continue
            if kind == "file" and entry.name.endswith(".pyc"):
                continue
            if git_ignores(rules, rel, is_dir=kind == "dir"):
                continue
            yield rel, kind
            if kind == "dir" and not _prunable(container_rules, rel):
                waiting.append((rel, rules))


def _prunable(rules: tuple[Rule, ...], folder: str) -> bool:
    """A folder the container ignore file excludes, with no "!" pattern able to reach inside."""
    if not docker_excludes(rules, folder):
        return False
    inside = folder + "/"
    reaching = (
        rule.literal_prefix.startswith(inside) or inside.startswith(rule.literal_prefix)
        for rule in rules
        if rule.negated
    )
    return not any(reaching)


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except OSError as exc:
        raise ProjectError(
            f"cannot list {folder}: {exc.strerror}",
            hint="make it readable, or exclude it in .containerignore",
        ) from None


def _kind(entry: os.DirEntry[str]) -> str | None:
    """ "link", "dir" or "file"; None for sockets, fifos, devices and what vanished."""
    try:
        if entry.is_symlink():
            return "link"
        if entry.is_dir(follow_symlinks=False):
            return "dir"
        if entry.is_file(follow_symlinks=False):
            return "file"
    except OSError:
        pass
    return None


def container_ignore(root: Path) -> tuple[Rule, ...]:
    """The rules of the `.containerignore` (else `.dockerignore`) in folder `root`."""
    return _container_ignore(root)


def _container_ignore(root: Path) -> tuple[Rule, ...]:
    for name in CONTAINER_IGNORE_FILES:
        path = root / name
        if path.is_file():
            return parse_dockerignore(_read_text(path), name)
    return ()


def _gitignore(root: Path, folder: str) -> tuple[Rule, ...]:
    path = root / folder / ".gitignore"
    if not path.is_file():
        return ()
    return parse_gitignore(_read_text(path), folder)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise ProjectError(f"cannot read {path}: {exc.strerror}") from None


def _compile(pattern: str, where: str, *, docker: bool, any_depth: bool = False) -> Glob:
    try:
        return compile_glob(pattern, docker=docker, any_depth=any_depth)
    except GlobError as exc:
        raise ProjectError(f"{where}: unusable ignore pattern: {exc}",
                           hint="fix or remove the line") from None


def refuse_sparse(path: Path, fd: int) -> None:
    """Raise a ProjectError for an open file with more than MAX_HOLE_BYTES of holes."""
    info = os.fstat(fd)
    if info.st_size - info.st_blocks * 512 <= MAX_HOLE_BYTES:
        return  # too few blocks missing to hide that many holes
    holes = _hole_bytes(fd, info.st_size)  # few blocks: holes, or a compressing filesystem
    if holes > MAX_HOLE_BYTES:
        raise ProjectError(
            f"{path} is a sparse file: {_size(info.st_size)} long, of which "
            f"{_size(holes)} are holes; uvbuild copies files whole, so it would take "
            f"{_size(info.st_size)} in the build's scratch folder and in the image "
            f"(the limit is {_size(MAX_HOLE_BYTES)} of holes per file)",
            hint="exclude it in .containerignore, or make it dense "
                 "(cp --sparse=never) if the image needs it",
        )


def _hole_bytes(fd: int, size: int) -> int:
    """How much of a file is holes (lseek's SEEK_HOLE/SEEK_DATA), counted up to just past
    MAX_HOLE_BYTES; 0 where the filesystem cannot tell."""
    holes = offset = 0
    try:
        while offset < size and holes <= MAX_HOLE_BYTES:
            hole = os.lseek(fd, offset, os.SEEK_HOLE)
            if hole >= size:
                break
            try:
                offset = os.lseek(fd, hole, os.SEEK_DATA)
            except OSError:  # ENXIO: the hole runs to the end
                offset = size
            holes += offset - hole
    except OSError:
        return holes
    finally:
        os.lseek(fd, 0, os.SEEK_SET)
    return holes


def _size(count: int) -> str:
    """A byte count for people: 1.0 GiB, 64 MiB, 512 B."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if count >= 1 << shift:
            return f"{count / (1 << shift):.1f} {unit}".replace(".0 ", " ")
    return f"{count} B"
