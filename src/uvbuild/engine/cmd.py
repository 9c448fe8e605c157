"""The one module that imports subprocess: run host commands, echo them, fail clearly.

Every other module reaches the host through `run()`, so a missing binary names the
package that provides it, a signal-killed child is never taken for success, and
`--debug` shows each command line in one place. Secret values are masked in everything
uvbuild prints, this echo included, by redact.py; none is ever put on a command line
(builder environments travel in files: see batch.py).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from uvbuild import redact
from uvbuild.errors import EngineError, Interrupted

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
_START = time.monotonic()  # --debug lines say when, from here (about process start)


def set_debug(on: bool) -> None:
    """Echo every command on stderr from now on."""
    global _debug
    _debug = on


def mask(value: str) -> None:
    """Never print `value` (a secret): see redact.py, which masks all output."""
    redact.add(value)


def _echo(line: str) -> None:
    """A --debug line, led by the seconds since start: "  1.23 + buildah from ..."."""
    print(f"{time.monotonic() - _START:6.2f} {line}", file=sys.stderr, flush=True)


def _shown(argv: Sequence[str]) -> str:
    # Inline scripts are long: name them by size instead of printing them whole.
    line = shlex.join(a if len(a) <= 160 else f"<script of {len(a)} chars>" for a in argv)
    # Printed output is redacted anyway (cli.main); this also covers messages kept as data.
    return redact.redact(line)


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


class Gate:
    """Holds a command at its start until `open()`: the command's stdin is a pipe that
    stays empty until then, gets `go` and ends there (`shut()` ends it with nothing).

    The command is expected to wait with `read -r word` and go on only if the word is
    `go` (see batch.argv's `gated`). So a command can pay its start-up (a `buildah run`
    sets up its container) while what it needs is still being made.
    """

    GO = "go"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fd: int | None = None  # the pipe's write end, while the command runs
        self._word: bytes | None = None  # once decided: b"go\n" or b"" (shut)
        self._decided = threading.Event()

    def open(self) -> None:
        """Let the command go on (now, or as soon as it starts)."""
        self._settle(f"{self.GO}\n".encode())

    def shut(self) -> None:
        """Stop the command at its gate (it ends without doing its work); no-op once open."""
        self._settle(b"")

    @property
    def settled(self) -> bool:
        """Whether the gate was opened or shut already."""
        return self._decided.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the gate is opened or shut; True if opened."""
        self._decided.wait(timeout)
        return bool(self._word)

    def _settle(self, word: bytes) -> None:
        with self._lock:
            if self._word is not None:
                return
            self._word = word
            fd, self._fd = self._fd, None
        self._decided.set()
        if fd is not None:
            _send(fd, word)

    def _attach(self, fd: int) -> None:
        """The command started: `fd` writes to its stdin."""
        with self._lock:
            if self._word is None:
                self._fd = fd
                return
            word = self._word
        _send(fd, word)

    def _detach(self) -> None:
        """The command ended: close its stdin if nobody did; the gate stays shut."""
        with self._lock:
            fd, self._fd = self._fd, None
            if self._word is None:
                self._word = b""
        self._decided.set()
        if fd is not None:
            os.close(fd)


def _send(fd: int, word: bytes) -> None:
    try:
        if word:
            os.write(fd, word)  # a few bytes: a pipe takes them without blocking
    except OSError:
        pass  # the command ended already
    finally:
        os.close(fd)


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stream: bool = False,
    shielded: bool = False,
    gate: Gate | None = None,
    drop_env: Sequence[str] = (),
    die_with_parent: bool = False,
    interrupt_grace: float | None = None,
) -> Result:
    """Run `argv`; return its Result whatever the exit status (callers decide). With
    --debug, the command is echoed, and how long it took said when it ends.

    `stream=True` lets the command's output reach the terminal (stderr) as it comes,
    which is what a user wants for `uv sync` or `apt-get`, and captures nothing.
    A missing binary raises EngineError naming the package to install.

    `drop_env` names variables the command must not inherit from uvbuild's environment.

    A `shielded` command runs in a session of its own, out of reach of Ctrl-C and of
    `interrupt_children`: for buildah's short bookkeeping commands (copy, commit, tag,
    rm...), which leave half-made containers behind when killed part-way. uvbuild
    then stops after the command, as it would have before it.

    A `gate` holds the command at its start (see Gate).

    `die_with_parent`: the command gets SIGKILL when the thread that started it dies, a
    `kill -9` of uvbuild included (PR_SET_PDEATHSIG, set by util-linux's setpriv), so a
    long command (mmdebstrap) does not go on for minutes after uvbuild is gone.

    `interrupt_grace`: seconds the command has to stop after `interrupt_children`'s
    SIGINT before it gets SIGKILL. mmdebstrap catches SIGINT and finishes writing its
    tarball first (a minute, seen here), so a Ctrl-C or a failed step elsewhere would
    wait for it; what it leaves is removed with the run's folder.
    """
    started = time.monotonic()
    try:
        if _debug:
            _echo(f"+ {_shown(argv)}")
        full_env: dict[str, str] | None = None
        if env is not None or drop_env:
            full_env = {**os.environ, **(env or {})}
            for name in drop_env:
                full_env.pop(name, None)
        try:
            if stream:
                return _run_streaming(argv, full_env, gate, die_with_parent, interrupt_grace)
            with _started(argv, full_env, capture=True, shielded=shielded, gate=gate,
                          die_with_parent=die_with_parent,
                          interrupt_grace=interrupt_grace) as proc:
                try:
                    stdout, stderr = proc.communicate()
                except (KeyboardInterrupt, Interrupted):
                    if shielded:
                        _wait_out(proc)  # let it finish: what follows must not race it
                    raise
        except FileNotFoundError as exc:
            tool = os.path.basename(argv[0])
            package = PACKAGE_OF.get(tool, tool)
            raise EngineError(
                f"`{tool}` was not found on PATH",
                hint=f"install it: sudo apt-get install {package}  (or run `uvbuild doctor`)",
            ) from exc
        except OSError as exc:
            if exc.errno != errno.E2BIG:
                raise
            # Values that may be long travel in files (batch.py); this is the last guard.
            longest = max(len(a.encode("utf-8", "surrogateescape")) for a in argv)
            raise EngineError(
                f"`{os.path.basename(argv[0])}` could not be started: its command line is too "
                f"long for the system (longest argument: {longest} bytes; at most "
                f"{128 * 1024} bytes each)",
                hint="shorten the recipe value that is that long (a label or env value)",
            ) from exc
        if proc.returncode < 0 and -proc.returncode in (2, 15):
            # The child was killed by SIGINT/SIGTERM: the user is interrupting us too.
            raise Interrupted("interrupted")
        return Result(tuple(argv), proc.returncode, stdout, stderr)
    finally:
        if _debug:
            # Commands overlap: the line names the one that ended.
            name = " ".join(argv[:2]) if argv else "?"
            _echo(f"  {time.monotonic() - started:.2f}s {name}")


# Children running now, from any thread: a build that fails in one thread stops the
# commands of the others (interrupt_children) instead of waiting for them.
# Each with the seconds it has after a SIGINT before SIGKILL (None: as long as it takes).
_children: dict[subprocess.Popen[str], float | None] = {}
_children_lock = threading.Lock()


@contextlib.contextmanager
def _started(argv: Sequence[str], env: Mapping[str, str] | None, *, capture: bool,
             shielded: bool = False, gate: Gate | None = None,
             die_with_parent: bool = False, interrupt_grace: float | None = None,
             ) -> Iterator[subprocess.Popen[str]]:
    stdin: int = subprocess.PIPE if capture else subprocess.DEVNULL
    if die_with_parent and which("setpriv") and which(argv[0]):
        # setpriv sets the signal, then execs the command (same pid): what Popen's
        # preexec_fn would do, without its risk of a deadlock in a threaded parent.
        # (A missing command is run as it is, to fail with the message that names it.)
        argv = ["setpriv", "--pdeathsig", "KILL", *argv]
    write_end = None
    if gate is not None:
        # Not inheritable (PEP 446): no other child holds the write end open.
        stdin, write_end = os.pipe()
    try:
        proc = subprocess.Popen(
            list(argv), env=env, text=True,
            # A command with an interrupt grace leads a process group of its own, so that
            # its SIGKILL reaches what it started too (else they hold its output open).
            start_new_session=shielded or interrupt_grace is not None,
            # Captured output keeps undecodable bytes (read_file needs them back).
            errors="surrogateescape" if capture else "replace",
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if capture else subprocess.STDOUT)
    except BaseException:
        if write_end is not None:
            os.close(stdin)
            os.close(write_end)
        raise
    with proc:
        if gate is not None and write_end is not None:
            os.close(stdin)
            gate._attach(write_end)
        if not shielded:
            with _children_lock:
                _children[proc] = interrupt_grace
        try:
            yield proc
        finally:
            with _children_lock:
                _children.pop(proc, None)
            if gate is not None:
                gate._detach()


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
    """Send SIGINT (what Ctrl-C sends) to every command still running; SIGKILL to
    those with an `interrupt_grace` that are still running when it is over."""
    with _children_lock:
        running = list(_children.items())
    for proc, grace in running:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
        if grace is not None:
            timer = threading.Timer(grace, _kill_if_running, (proc,))
            timer.daemon = True
            timer.start()


def _kill_if_running(proc: subprocess.Popen[str]) -> None:
    with _children_lock:
        running = proc in _children
    if running:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # it leads its group: see _started


def _run_streaming(argv: Sequence[str], env: Mapping[str, str] | None,
                   gate: Gate | None = None, die_with_parent: bool = False,
                   interrupt_grace: float | None = None) -> Result:
    """Echo the command's output to stderr as it comes, and keep it for error messages."""
    lines: list[str] = []
    with _started(argv, env, capture=False, gate=gate, die_with_parent=die_with_parent,
                  interrupt_grace=interrupt_grace) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            # (A marker glued to output with no newline of its own: the output is shown,
            # with the newline it lacked.)
            shown, glued, _ = line.partition(MARKER)
            if shown:
                sys.stderr.write(shown if not glued or shown.endswith("\n") else shown + "\n")
            lines.append(line)
            del lines[:-400]  # keep the tail: enough to explain a failure
        sys.stderr.flush()
        returncode = proc.wait()
    if returncode < 0 and -returncode in (2, 15):
        raise Interrupted("interrupted")
    return Result(tuple(argv), returncode, "".join(lines), "")


def describe_failure(result: Result) -> str:
    """A one-paragraph account of a failed command for an error message: why it ended,
    and the tail of what it printed, on stdout and on stderr (a command that explains
    itself on stdout is not hidden by a warning on stderr)."""
    why = f"exit code {result.returncode}"
    if result.returncode < 0:
        why = f"killed by signal {-result.returncode}"
    elif result.returncode == 127:
        why += " (a program was not found: is it installed in that image?)"
    elif result.returncode == 126:
        why += " (a program could not be executed: permissions or architecture?)"
    text = f"`{_shown(result.argv)}` failed with {why}"
    out, err = shown_output(result.stdout), shown_output(result.stderr)
    if out and err:
        text += (":\n    --- stdout:\n    " + "\n    ".join(out[-10:])
                 + "\n    --- stderr:\n    " + "\n    ".join(err[-15:]))
    elif out or err:
        text += ":\n    " + "\n    ".join((out or err)[-15:])
    return text


_GOROUTINE = re.compile(r"goroutine \d+ \[.*\]:$")
# What `buildah run` adds when its command fails: the exit code, said already.
_BUILDAH_STATUS = re.compile(r"subprocess exited with status \d+|Error: exit status \d+")


def shown_output(text: str) -> list[str]:
    """A command's output as lines to show: bookkeeping lines and Go stack dumps (buildah
    panics on some I/O errors, e.g. a full disk) left out; the panic line itself stays."""
    shown: list[str] = []
    dumped = 0
    in_dump = False
    for line in text.strip().splitlines():
        if line.startswith(MARKER) or _BUILDAH_STATUS.fullmatch(line):
            continue
        if _GOROUTINE.match(line):
            in_dump = True
        elif in_dump and not line.strip():
            continue  # a blank line between goroutines: another may follow
        elif in_dump and (line.startswith(("\t", "created by ", "exit status"))
                          or line.endswith(")") or "+0x" in line):
            pass
        else:
            in_dump = False
        if in_dump:
            dumped += 1
            continue
        shown.append(line)
    if dumped:
        shown.append(f"[a Go stack trace of {dumped} lines left out]")
    return shown


def which(tool: str) -> str | None:
    """The absolute path of `tool` on PATH, or None."""
    from shutil import which as _which

    return _which(tool)
