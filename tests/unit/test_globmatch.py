"""The ignore-pattern matcher: the same answers as the regex translation it replaced, in
time linear in the path (that translation took minutes on `**/**/.../x`)."""

from __future__ import annotations

import functools
import random
import re

import pytest

from uvbuild.project.globmatch import GlobError, compile_glob


def old_translate(pattern: str, *, docker: bool) -> str:
    """The translation sources.py used before (a nested optional group per `**`)."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**", i) and (docker or _whole_segment(pattern, i)):
            i += 2
            if i == len(pattern):
                out.append(".*")
            else:
                out.append("(?:.*/)?")
                i += 1 if pattern[i] == "/" else 0
            continue
        char = pattern[i]
        if char == "*":
            out.append("[^/]*")
            i += 2 if pattern.startswith("**", i) else 1
        elif char == "?":
            out.append("[^/]")
            i += 1
        elif char == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1 : end].replace("\\", "\\\\")
            negated = body[0] in "!^" and len(body) > 1
            out.append("(?!/)[" + ("^" + body[1:] if negated else body) + "]")
            i = end + 1
        elif char == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
        else:
            out.append(re.escape(char))
            i += 1
    return "".join(out)


def _whole_segment(pattern: str, i: int) -> bool:
    before = i == 0 or pattern[i - 1] == "/"
    after = i + 2 == len(pattern) or pattern[i + 2] == "/"
    return before and after


def old_match(pattern: str, path: str, *, docker: bool, any_depth: bool, parents: bool) -> bool:
    body = old_translate(pattern, docker=docker)
    regex = re.compile(f"(?:.*/)?{body}" if any_depth else body)
    if not parents:
        return regex.fullmatch(path) is not None
    parts = path.split("/")
    return any(regex.fullmatch("/".join(parts[:n])) for n in range(1, len(parts) + 1))


@functools.cache
def compiled(pattern: str, docker: bool, any_depth: bool):  # type: ignore[no-untyped-def]
    return compile_glob(pattern, docker=docker, any_depth=any_depth)


def new_match(pattern: str, path: str, *, docker: bool, any_depth: bool, parents: bool) -> bool:
    glob = compiled(pattern, docker, any_depth)
    return glob.matches_or_parent(path) if parents else glob.fullmatch(path)


PATTERNS = [
    "*.log", "build", "build/", "/todo.txt", "doc/frotz", "logs/**", "**/gen/*.py", "a/**/b",
    "foo/*/baz.txt", "\\#*", "\\!bang", "[a-b].txt", "[!a].txt", "[^ab]x", "q?.txt", "**",
    "**/*.log", "docs/**/readme.md", "**/deep/**/*.tmp", "a**b", "**.py", "x/**y/z", "a/**",
    "*_*_*.txt", "*a*b*", "a*", "*", "?", "src/*/tests/**", "**/node_modules", "a\\*b",
    "tmpfile\\[1\\].txt", "**/**/x", "a/**/**/b", "*.tar.gz", "v*/**/*.so", "a**", "***",
    "[ab", "a[]b]", "a\\", "[a-c]*/**", "**/b/**", "b/**/", "a/*/", "*/b", "\\[ab]",
]
PATHS = [
    "a.log", "x/b.log", "build", "build/a/b.txt", "src/build/c.txt", "todo.txt", "sub/todo.txt",
    "doc/frotz", "a/doc/frotz", "logs/a/b.txt", "logs/keep.txt", "gen/a.py", "x/y/gen/b.py",
    "x/gen.py", "a/b", "a/x/y/b", "ab", "ab/c.txt", "foo/bar/baz.txt", "foo/a/b/baz.txt", "#x",
    "!bang", "a.txt", "c.txt", "x.txt", "bx", "q1.txt", "q22.txt", "docs/readme.md",
    "docs/sub/readme.md", "src/deep/er/thing.tmp", "deep/a.tmp", "axb", "a/b/c/b", "x.py",
    "y/x.py", "x/y/z", "x/ay/z", "x/q/y/z", "a_b_c.txt", "a_b.txt", "zab", "ba", "a", "aa/b",
    "src/pkg/tests/t.py", "web/node_modules/x/y.js", "a*b", "axxb", "tmpfile[1].txt",
    "q/x", "x", "a/b/b", "pkg.tar.gz", "v1/lib/m.so", "v1/m.so", "ab/x/b", "a/y/b",
    "[ab", "a]b", "a\\", "c/x/y", "[ab]", "b/x", "x/b/y/z",
]


@pytest.mark.parametrize("docker", [True, False], ids=["docker", "git"])
@pytest.mark.parametrize("any_depth", [False, True], ids=["anchored", "any-depth"])
@pytest.mark.parametrize("parents", [False, True], ids=["path", "or-parent"])
def test_same_answers_as_the_old_regex(docker: bool, any_depth: bool, parents: bool) -> None:
    for pattern in PATTERNS:
        for path in PATHS:
            options = {"docker": docker, "any_depth": any_depth, "parents": parents}
            assert new_match(pattern, path, **options) == old_match(pattern, path, **options), (
                pattern, path, options)


def test_same_answers_on_random_patterns() -> None:
    """Patterns and paths made of the characters that matter, compared case by case."""
    rng = random.Random(10)
    pieces = ["a", "b", "*", "**", "?", "/", "[ab]", "[!a]", "\\*"]
    for _ in range(1500):
        pattern = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 7))).strip("/") or "a"
        path = "/".join("".join(rng.choice("ab*") for _ in range(rng.randint(1, 3)))
                        for _ in range(rng.randint(1, 5)))
        for docker in (True, False):
            options = {"docker": docker, "any_depth": rng.random() < 0.3,
                       "parents": rng.random() < 0.5}
            assert new_match(pattern, path, **options) == old_match(pattern, path, **options), (
                pattern, path, options)


def test_many_double_stars_on_a_deep_path_are_linear() -> None:
    """12 `**` and a 22-deep path that does not match: the old regex never finished."""
    deep = "/".join(["d"] * 22) + "/file"
    for docker in (True, False):
        glob = compile_glob("/".join(["**"] * 12) + "/x", docker=docker)
        assert not glob.fullmatch(deep) and not glob.matches_or_parent(deep)
        assert glob.fullmatch(deep.replace("file", "x"))
        spread = compile_glob("d/**/d/**/d/**/d/**/d/**/d/**/d/**/d/**/x", docker=docker)
        assert not spread.matches_or_parent(deep)
        assert spread.fullmatch("/".join(["d"] * 30) + "/x")


def test_many_stars_in_a_name_are_linear() -> None:
    glob = compile_glob("*a*a*a*a*a*a*a*a*a*a*b", docker=True)
    assert not glob.fullmatch("a" * 250)
    assert glob.fullmatch("a" * 250 + "b")


def test_docker_double_stars_inside_names() -> None:
    glob = compile_glob("a**b**c", docker=True)
    assert glob.fullmatch("abc") and glob.fullmatch("ax/y/bz/c") and glob.fullmatch("ab/c")
    assert not glob.fullmatch("ac")
    with pytest.raises(GlobError, match="too many"):
        compile_glob("a" + "**a" * 8, docker=True)


def test_a_bad_character_class_is_a_glob_error() -> None:
    with pytest.raises(GlobError):
        compile_glob("x[z-a]", docker=True)


def test_a_pattern_longer_than_any_path_is_refused_at_once() -> None:
    """A 200 kB line: before, compiling it took minutes (quadratic list copies)."""
    compile_glob("a" * 4096, docker=True)
    with pytest.raises(GlobError, match="200,000 characters long; patterns are at most 4,096"):
        compile_glob("a" * 200_000, docker=True)


def test_a_pattern_with_thousands_of_stars_is_refused() -> None:
    """Each `*` is a regex group: 2,000 of them take a second to compile, per line."""
    assert compile_glob("*a" * 64, docker=True).fullmatch("a" * 64)
    with pytest.raises(GlobError, match="2,048 `\\*` wildcards; a pattern may have at most 64"):
        compile_glob("*a" * 2048, docker=True)


@pytest.mark.parametrize("pattern", ["[", "a[b", "\\", "foo\\", "a\0b", "\udcff*.py"])
def test_odd_but_usable_patterns_compile(pattern: str) -> None:
    compile_glob(pattern, docker=True)
    compile_glob(pattern, docker=False)
