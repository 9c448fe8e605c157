"""Canonical layer tars (incontainer/layertar.py): one byte sequence for one tree."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import time
from pathlib import Path

import pytest

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


def test_several_trees_make_one_layer(tmp_path: Path) -> None:
    (tmp_path / "app" / "x").mkdir(parents=True)
    (tmp_path / "app" / "x" / "f").write_text("f")
    (tmp_path / "outside" / "srv").mkdir(parents=True)
    (tmp_path / "outside" / "srv" / "doc").write_text("d")
    target = tmp_path / "layer.tar"

    facts = layertar.write_trees(str(target), [
        (str(tmp_path / "app"), "app"), (str(tmp_path / "outside"), ""),
        (str(tmp_path / "missing"), "gone")], STAMP, whiteouts=["app/old"])

    data = target.read_bytes()
    assert [m.name for m in members(data)] == [
        "app", "app/.wh.old", "app/x", "app/x/f", "srv", "srv/doc"]
    assert facts == {"digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}


def test_a_delta_holds_what_changed_since_the_marker_with_owners_and_whiteouts(
        tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "kept").write_text("k")
    (root / "etc" / "gone").write_text("g")
    (root / "old").mkdir()
    (root / "old" / "inside").write_text("i")
    before = tmp_path / "before"
    before.write_text("".join(f"{p}\n" for p in [root, *sorted(root.rglob("*"))]))
    marker = tmp_path / "marker"
    marker.write_text("")
    time.sleep(0.05)  # file times tick coarsely: the changes come ticks after the marker
    (root / "etc" / "new").write_text("n")
    (root / "etc" / "new").chmod(0o4755)  # setuid stays: a root's files keep their modes
    (root / "etc" / "gone").unlink()
    (root / "old" / "inside").unlink()
    (root / "old").rmdir()
    target = tmp_path / "delta.tar"

    layertar.write_delta(str(target), str(marker), str(before), [str(root)], STAMP)

    rel = str(root).lstrip("/")
    names = {m.name.removeprefix(rel + "/"): m for m in members(target.read_bytes())}
    assert {"etc/new", "etc/.wh.gone", ".wh.old"} <= set(names)
    assert "etc/kept" not in names and "old/.wh.inside" not in names
    assert names["etc/new"].mode == 0o4755
    assert (names["etc/new"].uid, names["etc/new"].gid) == (os.getuid(), os.getgid())
    assert rel in names  # the folders that lead to a change are in the layer


def test_a_file_inserted_on_the_host_takes_its_sorted_place(tmp_path: Path) -> None:
    source = tmp_path / "layer.tar"
    layertar.write_tree(str(source), str(tree(tmp_path / "t")), "app", STAMP)

    facts = layertar.insert_file(str(source), str(tmp_path / "with.tar"), "app/sbom.cdx.json",
                                 b"{}", STAMP)

    data = (tmp_path / "with.tar").read_bytes()
    names = [m.name for m in members(data)]
    assert names == sorted(names, key=lambda n: n.encode()) and "app/sbom.cdx.json" in names
    assert facts == {"digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}
    sbom = next(m for m in members(data) if m.name == "app/sbom.cdx.json")
    assert (sbom.uid, sbom.gid, sbom.mode, sbom.mtime, sbom.size) == (0, 0, 0o644, STAMP, 2)
    # Again, over a layer that has it already: replaced, not doubled.
    layertar.insert_file(str(tmp_path / "with.tar"), str(tmp_path / "again.tar"),
                         "app/sbom.cdx.json", b"{}", STAMP)
    assert (tmp_path / "again.tar").read_bytes() == data


def test_a_root_deltas_file_keeps_its_capability_as_the_one_pax_record(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # security.capability needs privileges to set: a user xattr stands in for it.
    monkeypatch.setattr(layertar, "KEPT_XATTRS", ("user.uvbuild-test",))
    ping = tmp_path / "root" / "bin" / "ping"
    ping.parent.mkdir(parents=True)
    ping.write_bytes(b"\x7fELF")
    value = b"\x01\x00\x00\x02\x00\x20\x00\x00\xff"  # binary, as a capability is
    os.setxattr(ping, "user.uvbuild-test", value)
    entries = layertar.tree_entries(str(tmp_path / "root"), "")

    out = io.BytesIO()
    layertar.write_layer(out, entries, STAMP, owner=None)
    app = io.BytesIO()
    layertar.write_layer(app, entries, STAMP)

    (member,) = [m for m in members(out.getvalue()) if m.name == "bin/ping"]
    assert member.pax_headers["SCHILY.xattr.user.uvbuild-test"].encode(
        "utf-8", "surrogateescape") == value
    assert set(member.pax_headers) <= {"SCHILY.xattr.user.uvbuild-test", "hdrcharset"}
    assert member.mtime == STAMP
    # The app's layers (one owner) carry no xattr.
    assert all(not m.pax_headers for m in members(app.getvalue()))
