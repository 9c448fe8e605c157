"""Ignore-file globs matched in time linear in the path, whatever the pattern.

A glob translated to one regex the obvious way (`**` as `(?:.*/)?`, `*` as `[^/]*`)
backtracks exponentially: `**/**/**/.../x` against a deep folder that has no `x` tries
every way to share the folders among the `**`s. Here a pattern is cut into path
segments instead. A run of `**` becomes one "any number of folders" element, and each
other segment a regex over one folder name in which every `*` but the last is matched
once, at its leftmost place (chunks between stars have a fixed length, so that place is
always a right one). A pattern with at most one `**` element is still one regex (it can
only try each folder boundary once); one with more is matched segment by segment with
the set of pattern positions reachable so far: at most (folders x elements) steps.

What a pattern matches is exactly what the old translation matched (tests/unit pins it
with a table): Docker reads `**` anywhere as "any folders", git only as a whole segment.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

MAX_ALTERNATIVES = 64  # Docker's `**` inside a name (`a**b`) splits a pattern in two
# No path a pattern could usefully match is longer (Linux's PATH_MAX is 4096 bytes); a
# longer line is a mistake or an attack (each character becomes regex work).
MAX_PATTERN_CHARS = 4096
# Each `*` inside a name is a regex group, and compiling thousands of them takes seconds
# per line; no real pattern has more than a few.
MAX_STARS = 64

_SEP, _STAR, _DEEP, _DEEP_END = "/", "*", "**/", "**"  # token kinds besides text


@dataclass(frozen=True, slots=True)
class _Text:
    """A token matching exactly one character that is not "/", as a regex."""

    regex: str


_Token = str | _Text
_Segment = tuple[_Text | str, ...]  # the tokens of one folder name: _Text and _STAR
_Element = _Segment | None  # None: any number of folders (a `**`)


class GlobError(ValueError):
    """A pattern that cannot be compiled (a bad character class, too many `**` in names)."""


@dataclass(frozen=True, slots=True)
class _Alternative:
    """One way a pattern can match: one regex, or segment regexes with `**` (None) among them."""

    whole: re.Pattern[str] | None
    elements: tuple[re.Pattern[str] | None, ...]

    def match(self, segments: list[str], *, parents: bool) -> bool:
        """Whether the path (or, with `parents`, one of its leading parts) matches."""
        if self.whole is not None:
            if parents:
                return any(self.whole.fullmatch("/".join(segments[:n]))
                           for n in range(1, len(segments) + 1))
            return self.whole.fullmatch("/".join(segments)) is not None
        end = len(self.elements)
        states = self._closure({0})
        for index, segment in enumerate(segments):
            following = set()
            for at in states:
                if at == end:
                    continue
                element = self.elements[at]
                if element is None:
                    following.add(at)  # `**` takes this folder and may take more
                elif element.fullmatch(segment):
                    following.add(at + 1)
            states = self._closure(following)
            if end in states and (parents or index == len(segments) - 1):
                return True
            if not states:
                return False
        return False

    def _closure(self, states: set[int]) -> set[int]:
        """Add the positions reached by letting each `**` take no folder."""
        for at in sorted(states):
            while at < len(self.elements) and self.elements[at] is None:
                at += 1
                states.add(at)
        return states


@dataclass(frozen=True, slots=True)
class Glob:
    """A compiled ignore pattern over posix paths relative to the ignore file's folder."""

    pattern: str
    alternatives: tuple[_Alternative, ...]

    def fullmatch(self, path: str) -> bool:
        """Whether the pattern matches the whole of `path`."""
        segments = path.split("/")
        return any(alt.match(segments, parents=False) for alt in self.alternatives)

    def matches_or_parent(self, path: str) -> bool:
        """Whether the pattern matches `path` or one of the folders above it."""
        segments = path.split("/")
        return any(alt.match(segments, parents=True) for alt in self.alternatives)


def compile_glob(pattern: str, *, docker: bool, any_depth: bool = False) -> Glob:
    """Compile an ignore pattern; `any_depth`: it may match below any folder (git's
    patterns without a slash). Raises GlobError for a pattern that cannot be used."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise GlobError(f"it is {len(pattern):,} characters long; patterns are at most "
                        f"{MAX_PATTERN_CHARS:,} (no path is longer)")
    tokens = ([_DEEP] if any_depth else []) + _tokens(pattern, docker=docker)
    if tokens.count(_STAR) > MAX_STARS:
        raise GlobError(f"it has {tokens.count(_STAR):,} `*` wildcards; a pattern may have "
                        f"at most {MAX_STARS}")
    shapes = _shapes(tokens)
    if len(shapes) > MAX_ALTERNATIVES:
        raise GlobError(f"too many `**` inside names in {pattern!r}")
    counter = itertools.count()
    try:
        alternatives = tuple(_compile(shape, counter) for shape in shapes)
    except re.error as exc:
        raise GlobError(f"cannot read {pattern!r}: {exc}") from None
    return Glob(pattern=pattern, alternatives=alternatives)


def _tokens(pattern: str, *, docker: bool) -> list[_Token]:
    """The pattern's tokens: `*` stays within a folder, `**` crosses folders, `[...]`
    never matches "/". Docker reads `**` anywhere as "any folders"; git only as a whole
    segment (elsewhere it is `*`)."""
    out: list[_Token] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i) and (docker or _whole_segment(pattern, i)):
            i += 2
            if i == len(pattern):
                out.append(_DEEP_END)  # anything at all, "/" included
            else:
                out.append(_DEEP)  # nothing, or anything that ends with "/"
                i += 1 if pattern[i] == "/" else 0
            continue
        char = pattern[i]
        if char == "*":
            out.append(_STAR)
            i += 2 if pattern.startswith("**", i) else 1
        elif char == "?":
            out.append(_Text("[^/]"))
            i += 1
        elif char == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1 : end].replace("\\", "\\\\")
            negated = body[0] in "!^" and len(body) > 1
            out.append(_Text("(?!/)[" + ("^" + body[1:] if negated else body) + "]"))
            i = end + 1
        elif char == "\\" and i + 1 < len(pattern):
            out.append(_SEP if pattern[i + 1] == "/" else _Text(re.escape(pattern[i + 1])))
            i += 2
        else:
            out.append(_SEP if char == "/" else _Text(re.escape(char)))
            i += 1
    return out


def _whole_segment(pattern: str, i: int) -> bool:
    before = i == 0 or pattern[i - 1] == "/"
    after = i + 2 == len(pattern) or pattern[i + 2] == "/"
    return before and after


def _shapes(tokens: list[_Token]) -> list[tuple[_Element, ...]]:
    """The pattern as sequences of folder-name segments and `**` elements (None).

    `(?:.*/)?` at the start of a name is "any number of folders". Inside a name (Docker's
    `a**b`) it is two ways to match: `ab` in one name, or `a*`, any folders, then `b...`.
    `.*` at the end is the name so far with a `*`, then any folders.
    """
    shapes: list[tuple[_Element, ...]] = []
    pending: list[tuple[int, list[_Element], list[_Text | str]]] = [(0, [], [])]
    while pending:
        i, done, name = pending.pop()
        ended = False
        # `done` and `name` belong to this alternative alone (a pending one gets copies):
        # they grow in place, so a long pattern costs time linear in its length.
        while i < len(tokens) and len(shapes) + len(pending) <= MAX_ALTERNATIVES:
            token = tokens[i]
            i += 1
            if token == _SEP:
                done.append(tuple(name))
                name = []
            elif token == _DEEP and not name:
                if not done or done[-1] is not None:
                    done.append(None)
            elif token == _DEEP:
                pending.append((i, done + [(*name, _STAR), None], []))
            elif token == _DEEP_END:
                done.extend([(*name, _STAR), None])
                ended = True
            else:
                name.append(token)
        shapes.append(tuple(done) if ended else (*done, tuple(name)))
    return shapes


def _compile(shape: tuple[_Element, ...], counter: itertools.count[int]) -> _Alternative:
    if sum(element is None for element in shape) > 1:
        return _Alternative(whole=None, elements=tuple(
            None if element is None else re.compile(_name_regex(element, counter))
            for element in shape))
    parts = []
    for index, element in enumerate(shape):
        first, last = index == 0, index == len(shape) - 1
        if element is None:
            # Any folders: before a name they end with "/", after one they start with it.
            parts.append(".*" if first and last else "(?:[^/]*/)*" if first
                         else "(?:/[^/]*)*" if last else "/(?:[^/]*/)*")
        else:
            after_deep = index > 0 and shape[index - 1] is None
            parts.append(("" if first or after_deep else "/") + _name_regex(element, counter))
    return _Alternative(whole=re.compile("".join(parts)), elements=())


def _name_regex(segment: _Segment, counter: itertools.count[int]) -> str:
    """A regex for one folder name in which no `*` backtracks over another.

    Between stars are fixed-length chunks: each chunk but the last is taken at the
    first place it matches, and kept there (a lookahead with a backreference: an
    atomic group that Python 3.10 can read); the last chunk ends the name.
    """
    chunks: list[list[str]] = [[]]
    for token in segment:
        if token == _STAR:
            chunks.append([])
        else:
            assert isinstance(token, _Text)
            chunks[-1].append(token.regex)
    texts = ["".join(chunk) for chunk in chunks]
    if len(texts) == 1:
        return texts[0]
    middle = []
    for text in texts[1:-1]:
        group = f"g{next(counter)}"
        middle.append(f"(?=(?P<{group}>[^/]*?{text}))(?P={group})")
    return texts[0] + "".join(middle) + "[^/]*" + texts[-1]
