"""The one place secret values are taken out of what uvbuild prints.

uvbuild prints from many places: progress lines, `--debug` echoes, the streamed output
of builder commands (`-v`), error messages that quote a command's output, `--json`.
Masking at each of them would miss one sooner or later, so `cli.main` instead wraps
`sys.stdout` and `sys.stderr` in a `RedactingWriter`: every byte printed goes through
`redact()`, which replaces every known secret value with `***`.

The values are registered with `add()` as soon as they are known: `builder.secrets`
values read from the host, the userinfo and password of every proxy URL, `--creds`.
"""

from __future__ import annotations

import io
import json
import threading
from typing import TextIO
from urllib.parse import unquote, urlsplit

MASK = "***"

_lock = threading.Lock()
_values: tuple[str, ...] = ()  # longest first: a secret that holds another is masked whole


def add(value: str) -> None:
    """Never print `value` (nor its JSON- or repr-escaped spelling) from now on."""
    global _values
    if not value:
        return
    forms = {value, json.dumps(value)[1:-1], repr(value)[1:-1]}
    # Output is written line by line: each line of a multi-line value (a key) on its own.
    forms.update(line.strip() for line in value.splitlines() if "\n" in value)
    with _lock:
        _values = tuple(sorted(set(_values) | {f for f in forms if f}, key=len, reverse=True))


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
    for value in _values:
        if value in text:
            text = text.replace(value, MASK)
    return text


def reset() -> None:
    """Forget every registered value (for tests)."""
    global _values
    with _lock:
        _values = ()


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
