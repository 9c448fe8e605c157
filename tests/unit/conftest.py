"""Unit tests are pure: any attempt to start a process fails the test."""

from __future__ import annotations

import os
import subprocess

import pytest

MESSAGE = "unit tests must not run subprocesses"

_OS_SPAWNERS = (
    "system",
    "popen",
    "execl",
    "execle",
    "execlp",
    "execlpe",
    "execv",
    "execve",
    "execvp",
    "execvpe",
    "spawnl",
    "spawnle",
    "spawnlp",
    "spawnlpe",
    "spawnv",
    "spawnve",
    "spawnvp",
    "spawnvpe",
    "posix_spawn",
    "posix_spawnp",
)


def _refuse(what: str):
    def refuse(*args, **kwargs):
        if what == "subprocess.Popen":
            args = args[1:]  # drop self
        command = args[0] if args else kwargs.get("args")
        raise AssertionError(f"{MESSAGE} ({what}: {command!r})")

    return refuse


@pytest.fixture(autouse=True)
def _no_subprocesses(monkeypatch: pytest.MonkeyPatch) -> None:
    # Popen.__init__ covers run/call/check_call/check_output/getoutput and
    # asyncio's subprocess support, however they were imported.
    monkeypatch.setattr(subprocess.Popen, "__init__", _refuse("subprocess.Popen"))
    for name in ("run", "call", "check_call", "check_output", "getoutput", "getstatusoutput"):
        monkeypatch.setattr(subprocess, name, _refuse(f"subprocess.{name}"))
    for name in _OS_SPAWNERS:
        if hasattr(os, name):
            monkeypatch.setattr(os, name, _refuse(f"os.{name}"))
