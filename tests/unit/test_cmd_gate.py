"""cmd.Gate: what a held command reads on its stdin, whichever comes first."""

from __future__ import annotations

import os

from uvbuild.engine.cmd import Gate


def _pipe_into(gate: Gate) -> int:
    """A command's stdin, as _started makes it: the gate gets the write end."""
    read_end, write_end = os.pipe()
    gate._attach(write_end)
    return read_end


def _read_all(fd: int) -> bytes:
    with os.fdopen(fd, "rb") as stdin:
        return stdin.read()


def test_opened_after_the_command_started_it_reads_go_then_the_end() -> None:
    gate = Gate()
    stdin = _pipe_into(gate)
    assert not gate.wait(timeout=0)  # undecided
    gate.open()
    assert _read_all(stdin) == b"go\n"
    assert gate.wait(timeout=0)


def test_opened_before_the_command_started_it_reads_go_at_once() -> None:
    gate = Gate()
    gate.open()
    assert _read_all(_pipe_into(gate)) == b"go\n"


def test_shut_it_reads_nothing_and_opening_later_changes_nothing() -> None:
    gate = Gate()
    stdin = _pipe_into(gate)
    gate.shut()
    gate.open()
    assert _read_all(stdin) == b""
    assert not gate.wait(timeout=0)


def test_a_command_that_ended_leaves_the_gate_shut() -> None:
    gate = Gate()
    stdin = _pipe_into(gate)
    gate._detach()
    assert _read_all(stdin) == b""
    gate.open()  # too late: nothing to write to, no error
    assert not gate.wait(timeout=0)


def test_a_command_that_stopped_reading_does_not_fail_the_opener() -> None:
    gate = Gate()
    stdin = _pipe_into(gate)
    os.close(stdin)  # the command died at its gate
    gate.open()  # the write meets a closed pipe: ignored
    assert gate.wait(timeout=0)
