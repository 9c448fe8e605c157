"""The one module that imports subprocess: run host commands, echo them, fail clearly.

Every other module reaches the host through `run()`, so a missing binary names the
package that provides it, a signal-killed child is never taken for success, and
`--debug` shows each command line (with secret values masked) in one place.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

from .errors import EngineError, Interrupted

# Which Debian/Ubuntu package provides each tool we may call.
PACKAGE_OF = {
    "buildah": "buildah",
    "podman": "podman",
    "skopeo": "skopeo",
    "mmdebstrap": "mmdebstrap",
    "newuidmap": "uidmap",
    "git": "git",
}

# Lines that start with this are uvbuild's own bookkeeping (see batch.py): kept in the
# captured output, never echoed.
MARKER = "@@uvbuild "

_debug = False
_masked: set[str] = set()


def set_debug(on: bool) -> None:
    """Echo every command on stderr from now on."""
    global _debug
    _debug = on


def mask(value: str) -> None:
    """Never print `value` (a secret) in an echoed command line."""
    if value:
        _masked.add(value)


def _shown(argv: Sequence[str]) -> str:
    # Inline scripts are long: name them by size instead of printing them whole.
    line = shlex.join(a if len(a) <= 160 else f"<script of {len(a)} chars>" for a in argv)
    for secret in _masked:
        line = line.replace(secret, "****")
    return line


@dataclass(frozen=True, slots=True)
class Result:
    """What a finished command returned."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stream: bool = False,
    input_text: str | None = None,
    timeout: float | None = None,
    shielded: bool = False,
) -> Result:
    """Run `argv` (see `_run`); with --debug, also say how long it took.

    A `shielded` command runs in a session of its own, out of reach of Ctrl-C and of
    `interrupt_children`: for buildah's short bookkeeping commands (copy, commit, tag,
    rm...), which leave half-made containers behind when killed part-way. uvbuild
    then stops after the command, as it would have before it.
    """
    started = time.monotonic()
    try:
        return _run(argv, env=env, stream=stream, input_text=input_text, timeout=timeout,
                    shielded=shielded)
    finally:
        if _debug:
            print(f"  ({time.monotonic() - started:.2f}s)", file=sys.stderr, flush=True)


def _run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None,
    stream: bool,
    input_text: str | None,
    timeout: float | None,
    shielded: bool = False,
) -> Result:
    """Run `argv`; return its Result whatever the exit status (callers decide).

    `stream=True` lets the command's output reach the terminal (stderr) as it comes,
    which is what a user wants for `uv sync` or `apt-get`, and captures nothing.
    A missing binary raises EngineError naming the package to install.
    """
    if _debug:
        print(f"+ {_shown(argv)}", file=sys.stderr, flush=True)
    full_env = None if env is None else {**os.environ, **env}
    try:
        if stream:
            return _run_streaming(argv, full_env, timeout)
        with _started(argv, full_env, capture=True, shielded=shielded) as proc:
            try:
                stdout, stderr = proc.communicate(input_text, timeout=timeout)
            except (KeyboardInterrupt, Interrupted):
                if shielded:
                    _wait_out(proc)  # let it finish: what follows must not race it
                raise
            except subprocess.TimeoutExpired as exc:
                proc.kill()
                proc.communicate()
                raise EngineError(f"`{_shown(argv)}` did not finish within {timeout:.0f}s") \
                    from exc
    except FileNotFoundError as exc:
        tool = os.path.basename(argv[0])
        package = PACKAGE_OF.get(tool, tool)
        raise EngineError(
            f"`{tool}` was not found on PATH",
            hint=f"install it: sudo apt-get install {package}  (or run `uvbuild doctor`)",
        ) from exc
    if proc.returncode < 0 and -proc.returncode in (2, 15):
        # The child was killed by SIGINT/SIGTERM: the user is interrupting us too.
        raise Interrupted("interrupted")
    return Result(tuple(argv), proc.returncode, stdout, stderr)


# Children running now, from any thread: a build that fails in one thread stops the
# commands of the others (interrupt_children) instead of waiting for them.
_children: set[subprocess.Popen[str]] = set()
_children_lock = threading.Lock()


@contextlib.contextmanager
def _started(argv: Sequence[str], env: Mapping[str, str] | None, *,
             capture: bool, shielded: bool = False) -> Iterator[subprocess.Popen[str]]:
    with subprocess.Popen(
            list(argv), env=env, text=True, start_new_session=shielded,
            # Captured output keeps undecodable bytes (read_file needs them back).
            errors="surrogateescape" if capture else "replace",
            stdin=subprocess.PIPE if capture else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if capture else subprocess.STDOUT) as proc:
        if not shielded:
            with _children_lock:
                _children.add(proc)
        try:
            yield proc
        finally:
            with _children_lock:
                _children.discard(proc)


def _wait_out(proc: subprocess.Popen[str]) -> None:
    """Wait for `proc` to end, whatever signals arrive meanwhile (Popen's own exit
    gives up after 0.25 s on Ctrl-C, and the cleanup after it would race the child)."""
    while True:
        try:
            proc.communicate()
            return
        except (KeyboardInterrupt, Interrupted):
            continue


def interrupt_children() -> None:
    """Send SIGINT (what Ctrl-C sends) to every command still running."""
    with _children_lock:
        running = list(_children)
    for proc in running:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)


def _run_streaming(argv: Sequence[str], env: Mapping[str, str] | None,
                   timeout: float | None) -> Result:
    """Echo the command's output to stderr as it comes, and keep it for error messages."""
    lines: list[str] = []
    with _started(argv, env, capture=False) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if not line.startswith(MARKER):
                sys.stderr.write(line)
            lines.append(line)
            del lines[:-400]  # keep the tail: enough to explain a failure
        sys.stderr.flush()
        returncode = proc.wait(timeout=timeout)
    if returncode < 0 and -returncode in (2, 15):
        raise Interrupted("interrupted")
    return Result(tuple(argv), returncode, "".join(lines), "")


def describe_failure(result: Result) -> str:
    """A one-paragraph account of a failed command for an error message."""
    why = f"exit code {result.returncode}"
    if result.returncode < 0:
        why = f"killed by signal {-result.returncode}"
    elif result.returncode == 127:
        why += " (a program was not found: is it installed in that image?)"
    elif result.returncode == 126:
        why += " (a program could not be executed: permissions or architecture?)"
    tail = (result.stderr or result.stdout).strip().splitlines()[-15:]
    text = f"`{_shown(result.argv)}` failed with {why}"
    if tail:
        text += ":\n    " + "\n    ".join(tail)
    return text


def which(tool: str) -> str | None:
    """The absolute path of `tool` on PATH, or None."""
    from shutil import which as _which

    return _which(tool)
