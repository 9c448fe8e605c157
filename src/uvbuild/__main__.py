"""The entry point (`uvbuild` and `python -m uvbuild`): quiet about Ctrl-C while starting.

Importing the CLI (click, PyYAML, the build modules) takes a noticeable moment on a
busy CI runner; a SIGINT or SIGTERM then would end in a Python traceback. Until the
CLI's own handlers are in place, a signal ends uvbuild at once with exit 130: nothing
has been made yet, so there is nothing to remove.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType
from typing import Any


def _starting(signum: int, frame: FrameType | None) -> None:
    os.write(2, b"uvbuild: interrupted while starting; nothing was made\n")
    os._exit(130)


def main() -> Any:
    """Run the CLI (uvbuild.cli.main) with start-up signals handled."""
    # A signal the caller ignores (e.g. SIGINT for a background job) stays ignored.
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig, handler in previous.items():
        if handler is not signal.SIG_IGN:
            signal.signal(sig, _starting)
    from uvbuild.cli import main as cli_main

    # Ctrl-C is KeyboardInterrupt again from here; cli.main installs its SIGTERM handler.
    signal.signal(signal.SIGINT, previous[signal.SIGINT])
    try:
        code = cli_main()
    except SystemExit as exc:
        code = exc.code
    except KeyboardInterrupt:
        # The CLI turns a Ctrl-C during any command into its own message and exit 130;
        # one that escapes it came before (its set-up imports more modules), when
        # nothing had been made.
        _starting(signal.SIGINT, None)
    finally:
        # The command is over and its exit status decided: a signal while Python shuts
        # down would only replace that status (exit -2) or print a traceback.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
    _exit(code)


def _exit(code: object) -> None:
    """End the process with `code` (as SystemExit would) without Python's teardown of
    every module and object, which takes a build's modules about 0.07 s here: a tenth of
    an unchanged rebuild. The command has finished its work (the build waits for its
    threads and removes what it made) and its output is flushed first."""
    if isinstance(code, str):
        sys.stderr.write(code + "\n")
        code = 1
    status = code if isinstance(code, int) else (0 if code is None else 1)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


if __name__ == "__main__":
    main()
