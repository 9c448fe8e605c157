"""Canonical layer tars (incontainer/layertar.py): one byte sequence for one tree."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

from uvbuild.incontainer import layertar

STAMP = 315532800


def tree(root: Path) -> Path:
    (root / ".venv" / "lib").mkdir(parents=True)
    (root / "click").mkdir()
    (root / "click-8.5.1.dist-info").mkdir()
    (root / "click" / "__init__.py").write_text("x = 1\n")
    (root / "click-8.5.1.dist-info" / "METADATA").write_text("Name: click\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o775)  # group-writable on disk: never in the layer
    (root / ".venv" / "python").symlink_to("/usr/bin/python3")
    return root


def write(root: Path, prefix: str = "app", **kwargs: object) -> tuple[bytes, dict[str, object]]:
    out = io.BytesIO()
    facts = layertar.write_layer(out, layertar.tree_entries(str(root), prefix), STAMP, **kwargs)
    return out.getvalue(), facts


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getmembers()


def test_entries_are_sorted_by_path_bytes_with_folders_first(tmp_path: Path) -> None:
    data, _ = write(tree(tmp_path / "t"))
    assert [m.name for m in members(data)] == [
        "app", "app/.venv", "app/.venv/lib", "app/.venv/python", "app/click",
        "app/click-8.5.1.dist-info", "app/click-8.5.1.dist-info/METADATA",
        "app/click/__init__.py", "app/run.sh",
    ]


def test_owner_times_and_modes_are_fixed(tmp_path: Path) -> None:
    data, _ = write(tree(tmp_path / "t"))
    infos = {m.name: m for m in members(data)}
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in infos.values()} == {
        (0, 0, "", "", STAMP)}
    assert infos["app/run.sh"].mode == 0o755
    assert infos["app/click/__init__.py"].mode == 0o644
    assert infos["app/.venv/python"].linkname == "/usr/bin/python3"
    assert not any(m.pax_headers for m in infos.values())


def test_the_same_tree_gives_the_same_bytes_whatever_the_disk_says(tmp_path: Path) -> None:
    first, facts = write(tree(tmp_path / "a"))
    other = tree(tmp_path / "b")
    os.utime(other / "click" / "__init__.py", (1, 1))  # other times, other inode order
    (other / "zzz").mkdir()
    (other / "zzz").rmdir()
    second, _ = write(other)
    assert first == second
    assert facts == {"digest": "sha256:" + hashlib.sha256(first).hexdigest(), "size": len(first)}


def test_owner_and_whiteouts(tmp_path: Path) -> None:
    data, _ = write(tree(tmp_path / "t"), owner=(1000, 1000),
                    whiteouts=("app/old.txt", "gone"))
    infos = {m.name: m for m in members(data)}
    assert infos["app/.wh.old.txt"].size == 0
    assert ".wh.gone" in infos
    assert infos["app/click/__init__.py"].uid == 1000


def test_long_names_use_gnu_records_not_pax(tmp_path: Path) -> None:
    deep = tmp_path / "t" / ("d" * 120) / ("e" * 120)
    deep.mkdir(parents=True)
    (deep / "f.py").write_text("")
    data, _ = write(tmp_path / "t")
    assert b"././@LongLink" in data
    assert b"PaxHeader" not in data
    assert members(data)[-1].name.endswith("/f.py")


def test_hard_links_are_separate_files(tmp_path: Path) -> None:
    root = tmp_path / "t"
    root.mkdir()
    (root / "a").write_text("same")
    os.link(root / "a", root / "b")
    data, _ = write(root, "")
    assert [(m.name, m.isreg(), m.size) for m in members(data)] == [("a", True, 4), ("b", True, 4)]


def test_write_tree_replaces_the_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "layer.tar"
    facts = layertar.write_tree(str(target), str(tree(tmp_path / "t")), "app", STAMP)
    assert facts["size"] == target.stat().st_size
    assert not (tmp_path / "layer.tar.part").exists()


def test_a_tree_deeper_than_the_recursion_limit_is_walked(tmp_path: Path) -> None:
    """Builder Pythons before 3.12 recurse in os.walk: a tree deeper than the recursion
    limit (1,500 folders: a real build) was a traceback. Here the limit is made small."""
    import sys

    from uvbuild.incontainer import venvdelta

    deep = tmp_path.joinpath(*["d"] * 300)
    deep.mkdir(parents=True)
    (deep / "leaf.txt").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "d")  # listed, not followed
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(250)
    try:
        for walk in (layertar.walk_tree, venvdelta.walk_tree):
            names = [name for _, dirs, files in walk(str(tmp_path)) for name in dirs + files]
            assert names.count("leaf.txt") == 1 and names.count("link") == 1
        names = [name for name, _ in layertar.tree_entries(str(tmp_path), "app")]
    finally:
        sys.setrecursionlimit(limit)
    assert "app/link" in names and sum(name.endswith("/d/leaf.txt") for name in names) == 1


def test_walk_tree_matches_os_walk_order(tmp_path: Path) -> None:
    from uvbuild.incontainer import venvdelta

    for rel in ("a/b/c.txt", "a/d/e.txt", "f/g.txt", "h.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    (tmp_path / "a" / "to-f").symlink_to(tmp_path / "f")
    assert list(layertar.walk_tree(str(tmp_path))) == list(os.walk(tmp_path))
    assert list(venvdelta.walk_tree(str(tmp_path))) == list(os.walk(tmp_path))
