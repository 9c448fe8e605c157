"""The one place secret values are taken out of what uvbuild prints.

uvbuild prints from many places: progress lines, `--debug` echoes, the streamed output
of builder commands (`-v`), error messages that quote a command's output, `--json`.
Masking at each of them would miss one sooner or later, so `cli.main` instead wraps
`sys.stdout` and `sys.stderr` in a `RedactingWriter`: every byte printed goes through
`redact()`, which replaces every known secret value with `***`.

The values are registered with `add()` as soon as they are known: `builder.secrets`
values read from the host, the userinfo and password of every proxy URL, `--creds`.

Very short values (under SHORT characters, e.g. a proxy password `pw`) are masked only
where they stand as a word of their own (no letter, digit or `_` touching them): masked
everywhere, a two-letter value would turn most of the output into `***` and tell
nothing it hides anyway. Lines of a multi-line value are masked one by one as well
(streamed output comes line by line), except lines under SHORT characters (`{`, `}`
of a JSON key), which would break `--json` documents. Where matches of several values
overlap, the whole stretch is masked: no part of either is left.
"""

from __future__ import annotations

import io
import json
import re
import threading
from typing import TextIO
from urllib.parse import unquote, urlsplit

MASK = "***"
SHORT = 4  # values shorter than this are masked as whole words only (see above)

_lock = threading.Lock()
_values: tuple[str, ...] = ()  # longest first (for _held_back)
_short: tuple[re.Pattern[str], ...] = ()  # the whole-word patterns of the short values
_whole: set[str] = set()  # the values as registered, whole (whole_values)
_WORD = r"[A-Za-z0-9_]"


def add(value: str) -> None:
    """Never print `value` (nor its JSON- or repr-escaped spelling) from now on."""
    global _values, _short
    if not value.strip():
        return  # blanks: masking every space would hide everything and protect nothing
    forms = {value, json.dumps(value)[1:-1], repr(value)[1:-1]}
    # Host values that are not UTF-8 (surrogate escapes) print as U+FFFD where a
    # command's output is decoded with errors="replace" (cmd's streamed output).
    forms.add(value.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))
    whole = {f for f in forms if f}
    # Output is written line by line: each line of a multi-line value (a key) on its own.
    forms.update(line.strip() for line in value.splitlines()
                 if "\n" in value and len(line.strip()) >= SHORT)
    with _lock:
        _whole.update(whole)
        _values = tuple(sorted(set(_values) | {f for f in forms if f}, key=len, reverse=True))
        _short = tuple(re.compile(f"(?<!{_WORD}){re.escape(v)}(?!{_WORD})")
                       for v in _values if len(v) < SHORT)


def values() -> tuple[str, ...]:
    """Every value registered (and its escaped spellings), longest first."""
    return _values


def whole_values() -> tuple[str, ...]:
    """Every value registered, whole (and its escaped spellings), not the single lines
    of a multi-line value masked in output: a certificate's `-----BEGIN CERTIFICATE-----`
    line is in every CA bundle, the certificate itself is not."""
    with _lock:
        return tuple(sorted(_whole, key=len, reverse=True))


def add_url(url: str) -> None:
    """Register the credentials of a URL such as a proxy's (user:pass@host): the
    userinfo as written, and the password, as written and percent-decoded."""
    try:
        parts = urlsplit(url if "://" in url else f"http://{url}")
    except ValueError:
        return
    userinfo, at, _ = parts.netloc.rpartition("@")
    if not at:
        return
    add(userinfo)
    _, colon, password = userinfo.partition(":")
    if colon:
        add(password)
        add(unquote(password))


def redact(text: str) -> str:
    """`text` with every registered secret value replaced by `***`."""
    values, short = _values, _short
    spans: list[tuple[int, int]] = []
    for value in values:
        if len(value) < SHORT:
            continue
        start = text.find(value)
        while start != -1:
            spans.append((start, start + len(value)))
            start = text.find(value, start + 1)
    for pattern in short:
        spans.extend(match.span() for match in pattern.finditer(text))
    if not spans:
        return text
    # Overlapping matches (of one value or of several) are masked as one stretch.
    pieces: list[str] = []
    done = 0
    end = -1
    for start, stop in sorted(spans):
        if start > end:
            if end >= 0:
                pieces.append(MASK)
                done = end
            pieces.append(text[done:start])
            end = stop
        else:
            end = max(end, stop)
    pieces.append(MASK)
    pieces.append(text[end:])
    return "".join(pieces)


def reset() -> None:
    """Forget every registered value (for tests)."""
    global _values, _short
    with _lock:
        _values = ()
        _short = ()
        _whole.clear()


def _held_back(text: str) -> int:
    """How many characters at the end of `text` could be the start of a secret (they
    wait for the next write, so a value split across two writes is still masked)."""
    longest = 0
    for value in _values:
        for size in range(min(len(value) - 1, len(text)), longest, -1):
            if text.endswith(value[:size]):
                longest = size
                break
    return longest


class RedactingWriter(io.TextIOBase):
    """A text stream that passes whole lines, redacted, to the stream it wraps.

    What follows the last newline is kept until the line ends, or until `flush()`,
    which writes it too, except a tail that may begin a secret.
    """

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream
        self._pending = ""
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", "utf-8")

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self.stream, "errors", None)

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            done, newline, rest = self._pending.rpartition("\n")
            if newline:
                self._pending = rest
                self.stream.write(redact(done + newline))
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self._emit(keep=_held_back(self._pending))
            self.stream.flush()

    def finish(self) -> None:
        """Write whatever is held, redacted: the stream's last words."""
        with self._lock:
            self._emit(keep=0)
            self.stream.flush()

    def _emit(self, *, keep: int) -> None:
        if len(self._pending) > keep:
            cut = len(self._pending) - keep
            self.stream.write(redact(self._pending[:cut]))
            self._pending = self._pending[cut:]
