"""Which files uvbuild sees in a project, and the digest over them.

The two whole-tree cases were checked against the real tools: `git ls-files --others
--exclude-standard` for the .gitignore tree, and `buildah build` (COPY . of a context with
.containerignore and .dockerignore) for the Docker tree.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from uvbuild.errors import ProjectError
from uvbuild.project.archive import write_tarball
from uvbuild.project.sources import source_files


def make_tree(root: Path, files: list[str], texts: dict[str, str] | None = None) -> Path:
    """Files holding their own name, then files with the given texts."""
    for name, text in [*((f, f) for f in files), *(texts or {}).items()]:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


# (ignore file, its text, files made, files expected back)
# fmt: off
CASES = {
    # .gitignore
    "git: pattern without slash matches at any depth": (
        ".gitignore", "*.log\n", ["a.log", "x/b.log", "x/c.txt"], ["x/c.txt"],
    ),
    "git: leading slash anchors": (
        ".gitignore", "/todo.txt\n", ["todo.txt", "sub/todo.txt"], ["sub/todo.txt"],
    ),
    "git: middle slash anchors": (
        ".gitignore", "doc/frotz\n", ["doc/frotz", "a/doc/frotz"], ["a/doc/frotz"],
    ),
    "git: trailing slash is for folders only": (
        ".gitignore", "out/\n", ["out/x", "sub/out/y", "other/out"], ["other/out"],
    ),
    "git: negation re-includes a file": (
        ".gitignore", "*.log\n!keep.log\n", ["a.log", "keep.log"], ["keep.log"],
    ),
    "git: no re-including inside an ignored folder": (
        ".gitignore", "build/\n!build/keep.txt\n", ["build/keep.txt", "b.txt"], ["b.txt"],
    ),
    "git: folder/** ignores the contents, so negation works": (
        ".gitignore", "logs/**\n!logs/keep.txt\n", ["logs/a/b.txt", "logs/keep.txt"],
        ["logs/keep.txt"],
    ),
    "git: leading **/": (
        ".gitignore", "**/gen/*.py\n", ["gen/a.py", "x/y/gen/b.py", "x/gen.py"], ["x/gen.py"],
    ),
    "git: a/**/b matches zero or more folders": (
        ".gitignore", "a/**/b\n", ["a/b/z.txt", "a/x/y/b/z.txt", "ab/c.txt"], ["ab/c.txt"],
    ),
    "git: * stays within a folder": (
        ".gitignore", "foo/*/baz.txt\n", ["foo/bar/baz.txt", "foo/a/b/baz.txt"],
        ["foo/a/b/baz.txt"],
    ),
    "git: escapes, classes and trailing spaces": (
        ".gitignore", "\\#*\n\\!bang\n[a-b].txt\ntrail.txt   \n",
        ["#x", "!bang", "a.txt", "c.txt", "trail.txt"], ["c.txt"],
    ),
    # .containerignore / .dockerignore
    "docker: patterns are relative to the root": (
        ".containerignore", "*.md\n", ["a.md", "docs/b.md"], ["docs/b.md"],
    ),
    "docker: a folder pattern excludes what is under it": (
        ".containerignore", "build\n", ["build/a/b.txt", "src/build/c.txt"],
        ["src/build/c.txt"],
    ),
    "docker: negation re-includes inside an excluded folder": (
        ".containerignore", "vendor/\n!vendor/lib/b.go\n", ["vendor/lib/a.go", "vendor/lib/b.go"],
        ["vendor/lib/b.go"],
    ),
    "docker: ** matches zero or more folders": (
        ".containerignore", "**/*.log\n", ["a.log", "x/y/b.log", "c.txt"], ["c.txt"],
    ),
    "docker: last match wins": (
        ".containerignore", "*.txt\n!keep.txt\nkeep.txt\n", ["keep.txt", "a.py"], ["a.py"],
    ),
    "docker: leading slash, spaces, comments and ?": (
        ".containerignore", "# *.py\n/secret.env  \n  q?.txt\n",
        ["secret.env", "q1.txt", "q22.txt", "a.py"], ["a.py", "q22.txt"],
    ),
    "docker: .dockerignore when there is no .containerignore": (
        ".dockerignore", "*.bin\n", ["a.bin", "b.txt"], ["b.txt"],
    ),
}
# fmt: on


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_ignore_rules(tmp_path: Path, case: str) -> None:
    ignore_file, text, files, expected = CASES[case]
    make_tree(tmp_path, files)
    (tmp_path / ignore_file).write_text(text)
    assert source_files(tmp_path) == tuple(sorted([ignore_file, *expected]))


GIT_TREE = """a.txt b.log keep.log build/out.bin build/keep/x.txt src/build/y.txt src/main.py
src/main.pyc src/deep/er/thing.tmp src/deep/er/note.md docs/readme.md docs/sub/readme.md
docs/sub/other.txt logs/a/b/c.log logs/keep.txt foo/bar/baz.txt foo/qux/baz.txt
x/foo/bar/baz.txt anchored.txt sub/anchored.txt dironly/file.txt sub/dironly/file.txt
dironly2 tmpfile[1].txt trail.txt data/a.csv data/b.csv data/nested/c.csv data/nested/d.bin
data/nested/e.bin lib/gen/x.py lib/gen/important.py lib/util.py lib/util.bak hash#name.txt
!bang.txt a/x/b/y.txt a/b/z.txt ab/c.txt""".split()

GITIGNORE = """\
# comment
*.log
!keep.log
/build/
/anchored.txt
dironly/
dironly2/
**/deep/**/*.tmp
docs/**/readme.md
logs/**
!logs/keep.txt
foo/*/baz.txt
tmpfile\\[1\\].txt
trail.txt{SPACES}
\\#*
\\!bang.txt
a/**/b
*.bak
[a-b].txt
""".format(SPACES="   ")  # trailing spaces are dropped; kept out of the source text


def test_gitignore_tree_as_git_sees_it(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        GIT_TREE,
        {
            ".gitignore": GITIGNORE,
            "data/nested/.gitignore": "*.bin\n!e.bin\n/c.csv\n",
            "lib/.gitignore": "gen/\n!gen/important.py\n!/util.bak\n",
        },
    )
    assert source_files(tmp_path) == (
        ".gitignore",
        "ab/c.txt",
        "data/a.csv",
        "data/b.csv",
        "data/nested/.gitignore",
        "data/nested/e.bin",
        "dironly2",
        "docs/sub/other.txt",
        "hash#name.txt",
        "keep.log",
        "lib/.gitignore",
        "lib/util.bak",
        "lib/util.py",
        "logs/keep.txt",
        "src/build/y.txt",
        "src/deep/er/note.md",
        "src/main.py",  # git also lists src/main.pyc; uvbuild never does
        "sub/anchored.txt",
        "x/foo/bar/baz.txt",
    )


DOCKER_TREE = """a.txt b.md docs/x.md docs/sub/y.md docs/keep.txt build/out.bin build/keep/x.txt
src/build/y.txt src/main.py src/deep/er/thing.tmp src/deep/er/note.md logs/a/b/c.log
logs/keep.txt foo/bar/baz.txt foo/qux/baz.txt x/foo/bar/baz.txt secret.env sub/secret.env
vendor/lib/a.go vendor/lib/b.go vendor/keep.go tmp/one tmp/two q1.txt q22.txt dot/.hidden
""".split()

CONTAINERIGNORE = """\
# comment
*.md
!docs/**/*.md
build
!build/keep
/src/deep
**/*.log
!logs/keep.txt
foo/*/baz.txt
secret.env
vendor/
!vendor/lib/b.go
tmp/**
q?.txt
  dot/{SPACES}
Containerfile
""".format(SPACES="  ")


def test_containerignore_tree_as_buildah_sees_it(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        DOCKER_TREE,
        {
            ".containerignore": CONTAINERIGNORE,
            ".dockerignore": "a.txt\n",  # loses to .containerignore
            "Containerfile": "FROM scratch\n",
            "spaced name.txt": "x",
        },
    )
    assert source_files(tmp_path) == (
        ".containerignore",
        ".dockerignore",
        "a.txt",
        "build/keep/x.txt",
        "docs/keep.txt",
        "docs/sub/y.md",
        "docs/x.md",
        "logs/keep.txt",
        "q22.txt",
        "spaced name.txt",
        "src/build/y.txt",
        "src/main.py",
        "sub/secret.env",
        "vendor/lib/b.go",
        "x/foo/bar/baz.txt",
    )


def test_both_syntaxes_exclude(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        ["a.py", "b.log", "notes/c.txt"],
        {".gitignore": "*.log\n", ".containerignore": "notes\n.gitignore\n"},
    )
    assert source_files(tmp_path) == (".containerignore", "a.py")


def test_always_excluded(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        [".venv/bin/python", ".git/HEAD", "pkg/__pycache__/m.cpython-311.pyc", "pkg/m.pyc"],
    )
    make_tree(tmp_path, ["pkg/m.py", "member/.venv/x", "member/.git"])
    assert source_files(tmp_path) == ("pkg/m.py",)


def test_symlinks_are_listed_not_followed_and_specials_skipped(tmp_path: Path) -> None:
    make_tree(tmp_path, ["real/a.txt"])
    (tmp_path / "link-dir").symlink_to("real")
    (tmp_path / "dangling").symlink_to("nowhere")
    os.mkfifo(tmp_path / "pipe")
    assert source_files(tmp_path) == ("dangling", "link-dir", "real/a.txt")


# --- digest ------------------------------------------------------------------------------


def digest_files(root: Path, files: list[str] | tuple[str, ...]) -> str:
    """The digest that keys cover: of the tar of `files`, written nowhere."""
    return write_tarball(None, root, files, timestamp=0)


def digest(root: Path) -> str:
    return digest_files(root, source_files(root))


def test_digest_follows_content_not_mtime(tmp_path: Path) -> None:
    make_tree(tmp_path, ["a.py", "pkg/b.py"])
    before = digest(tmp_path)
    os.utime(tmp_path / "a.py", (0, 0))
    assert digest(tmp_path) == before
    (tmp_path / "a.py").write_text("changed")
    assert digest(tmp_path) != before


def test_digest_follows_the_executable_bit(tmp_path: Path) -> None:
    make_tree(tmp_path, ["run.sh"])
    before = digest(tmp_path)
    (tmp_path / "run.sh").chmod(0o755)
    after = digest(tmp_path)
    assert after != before
    (tmp_path / "run.sh").chmod(0o775)  # group and other bits do not count
    assert digest(tmp_path) == after


def test_digest_follows_names_and_link_targets(tmp_path: Path) -> None:
    make_tree(tmp_path, ["a.txt", "b.txt"])
    (tmp_path / "link").symlink_to("a.txt")
    before = digest(tmp_path)
    (tmp_path / "link").unlink()
    (tmp_path / "link").symlink_to("b.txt")
    assert digest(tmp_path) != before
    (tmp_path / "link").unlink()
    (tmp_path / "link").write_text("a.txt")  # a file holding the target text is not a link
    assert digest(tmp_path) != before
    renamed = digest(tmp_path)
    (tmp_path / "a.txt").rename(tmp_path / "c.txt")
    (tmp_path / "c.txt").write_text("a.txt")
    assert digest(tmp_path) != renamed


def test_digest_ignores_the_order_paths_come_in(tmp_path: Path) -> None:
    make_tree(tmp_path, ["a", "b", "c"])
    assert digest_files(tmp_path, ["c", "a", "b"]) == digest_files(tmp_path, ["a", "b", "c"])
    assert digest_files(tmp_path, []) != digest_files(tmp_path, ["a"])


def test_digest_of_a_missing_file_is_a_project_error(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match=r"/gone.txt cannot be read"):
        digest_files(tmp_path, ["gone.txt"])


def test_digest_reads_files_in_chunks(tmp_path: Path) -> None:
    import tracemalloc

    (tmp_path / "big.bin").write_bytes(os.urandom(24 << 20))
    tracemalloc.start()
    try:
        digest_files(tmp_path, ["big.bin"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


def test_a_file_with_large_holes_is_refused_with_its_sizes(tmp_path: Path) -> None:
    from uvbuild.project.sources import MAX_HOLE_BYTES

    make_tree(tmp_path, ["a.py"])
    with (tmp_path / "disk.img").open("wb") as stream:
        stream.write(b"header")
        stream.truncate(MAX_HOLE_BYTES + (16 << 20))  # a hole: no blocks on disk
    if os.stat(tmp_path / "disk.img").st_blocks * 512 > 1 << 20:
        pytest.fail("this filesystem does not keep holes: the test cannot run here")
    with pytest.raises(ProjectError, match=r"disk.img is a sparse file: 80 MiB long, of which "
                                           r"80 MiB are holes.*limit is 64 MiB") as caught:
        digest(tmp_path)
    assert ".containerignore" in (caught.value.hint or "")
    (tmp_path / ".containerignore").write_text("*.img\n")
    digest(tmp_path)  # excluded: never read


def test_small_holes_are_read_as_zeros(tmp_path: Path) -> None:
    (tmp_path / "sparse").mkdir()
    (tmp_path / "dense").mkdir()
    with (tmp_path / "sparse" / "data").open("wb") as stream:
        stream.write(b"x")
        stream.truncate(8 << 20)
    (tmp_path / "dense" / "data").write_bytes(b"x" + bytes((8 << 20) - 1))
    assert digest_files(tmp_path / "sparse", ["data"]) == digest_files(tmp_path / "dense",
                                                                       ["data"])


def test_an_unusable_ignore_pattern_is_a_project_error_with_its_line(tmp_path: Path) -> None:
    make_tree(tmp_path, ["a.py"])
    (tmp_path / ".containerignore").write_text("*.log\nx[z-a]\n")
    with pytest.raises(ProjectError, match=r"\.containerignore:2: unusable ignore pattern"):
        source_files(tmp_path)


def test_a_long_ignore_file_tests_only_patterns_whose_literal_start_fits(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """10,000 lines: each path is matched only against the patterns that could match it."""
    from uvbuild.project import globmatch

    make_tree(tmp_path, ["d1/keep.py", "d1/drop.txt", "d7/drop.txt", "other/x.txt"])
    lines = [f"d{i}/*.txt" for i in range(10_000)] + ["!d7/drop.txt"]
    (tmp_path / ".containerignore").write_text("\n".join(lines) + "\n")
    calls = []
    original = globmatch.Glob.matches_or_parent
    monkeypatch.setattr(globmatch.Glob, "matches_or_parent",
                        lambda self, path: calls.append(path) or original(self, path))
    assert source_files(tmp_path) == (".containerignore", "d1/keep.py", "d7/drop.txt",
                                      "other/x.txt")
    assert len(calls) < 100  # not 10,000 per path


def test_an_overlong_ignore_line_is_a_project_error_with_its_line(tmp_path: Path) -> None:
    make_tree(tmp_path, ["a.py"])
    (tmp_path / ".dockerignore").write_text("*.log\n" + "a" * 200_000 + "\n")
    with pytest.raises(ProjectError, match=r"\.dockerignore:2: unusable ignore pattern: it is "
                                           r"200,000 characters long"):
        source_files(tmp_path)


def test_a_project_deeper_than_the_recursion_limit_is_listed(tmp_path: Path) -> None:
    """Listing walked one nested call per folder: 1,500 folders deep was a traceback.
    Here the limit is made small."""
    import sys

    make_tree(tmp_path, ["/".join(["d"] * 300) + "/leaf.txt"])
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(250)
    try:
        files = source_files(tmp_path)
    finally:
        sys.setrecursionlimit(limit)
    assert files == ("/".join(["d"] * 300) + "/leaf.txt",)
