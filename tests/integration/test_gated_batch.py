"""A batch job (batch.write_job) on the host's real shell: gated (run with a cmd.Gate), it
starts, waits, and sees what was made meanwhile; shut, it runs nothing. Its environment
file gives each command its values byte for byte, and no command or value is on any
command line, whatever its size."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from uvbuild.build import batch
from uvbuild.engine import cmd
from uvbuild.errors import EngineError


def _job(folder: Path, commands: list[str], **options: Any) -> list[str]:
    """The argv that runs a job written in `folder` (here seen where it is)."""
    folder.mkdir(exist_ok=True)
    return list(batch.write_job(folder, batch.labelled("command", commands), at=str(folder),
                                **options).argv)


def _start(argv: list[str], gate: cmd.Gate, *, stream: bool = False) -> tuple[
        threading.Thread, dict[str, cmd.Result]]:
    ran: dict[str, cmd.Result] = {}
    thread = threading.Thread(target=lambda: ran.update(result=cmd.run(argv, gate=gate,
                                                                       stream=stream)))
    thread.start()
    return thread, ran


@pytest.mark.parametrize("stream", [False, True], ids=["captured", "streamed"])
def test_the_batch_waits_for_the_gate_and_sees_what_was_made_meanwhile(
        tmp_path: Path, stream: bool) -> None:
    made = tmp_path / "layer"
    gate = cmd.Gate()
    thread, ran = _start(_job(tmp_path / "job", [f"cat {made}", "cat; echo stdin-ended"],
                              gated=True), gate, stream=stream)
    time.sleep(0.3)
    assert thread.is_alive(), "the batch did not wait at its gate"
    made.write_text("files\n")
    gate.open()
    thread.join(timeout=10)

    outcome = batch.parse(batch.labelled("command", ["cat", "cat"]), ran["result"])
    assert outcome.ok
    out = outcome.results[0].stdout if not stream else ran["result"].stdout
    assert "files" in out
    # After `go` the commands' stdin is at its end, as with no input at all.
    assert "stdin-ended" in (outcome.results[1].stdout if not stream else ran["result"].stdout)


def test_a_shut_gate_ends_the_batch_before_its_first_command(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    gate = cmd.Gate()
    thread, ran = _start(_job(tmp_path / "job", [f"touch {marker}"], gated=True), gate)
    gate.shut()
    thread.join(timeout=10)

    assert ran["result"].returncode == batch.GATE_SHUT
    assert not marker.exists()


NASTY = {
    "QUOTES": "it's \"quoted\"",
    "NEWLINES": "one\ntwo\n\nlast\n",
    "DOLLARS": "$HOME ${PATH} $(id) `id` $1",
    "BACKSLASHES": "a\\b\\\\c\\n\\",
    "EMPTY": "",
    "UNICODE": "h\u00e9llo \u2603",
    "BIG": "x" * (batch.VARIABLE_LIMIT - len("BIG=") - 1),  # the most a variable can be
}


def test_the_environment_file_reaches_each_command_byte_for_byte(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    # Each command writes each variable as it sees it (printf %s: no interpretation).
    commands = [" ; ".join(f'printf %s "${name}" > {out}/{i}-{name}' for name in NASTY)
                for i in range(2)]
    result = cmd.run(_job(tmp_path / "job", commands, env=NASTY))

    assert result.ok, result
    for i in range(2):
        for name, value in NASTY.items():
            assert (out / f"{i}-{name}").read_text() == value, name


def test_a_command_of_200_kb_runs_off_the_command_line(tmp_path: Path) -> None:
    big = "x" * 200_000
    result = cmd.run(_job(tmp_path / "job", [f"echo {big} | wc -c", "exit 3"], env={}))

    outcome = batch.parse(batch.labelled("command", [f"echo {big} | wc -c", "exit 3"]), result)
    assert outcome.results[0].stdout.strip() == str(len(big) + 1)
    assert outcome.failed == "command[1]" and result.returncode == 3


def test_an_argument_over_the_systems_limit_is_a_clear_error() -> None:
    with pytest.raises(EngineError) as raised:
        cmd.run(["/bin/true", "x" * 200_000])

    assert "command line is too long" in raised.value.message
    assert "200000 bytes" in raised.value.message


def test_a_command_that_ignores_the_interrupt_is_killed_after_its_grace() -> None:
    """mmdebstrap catches SIGINT and finishes its tarball first (a minute): a command
    run with interrupt_grace gets SIGKILL once that is over, so an interrupted build
    does not wait for it."""
    import threading
    import time

    results: list[cmd.Result | BaseException] = []

    def run() -> None:
        try:
            results.append(cmd.run(["/bin/sh", "-c", "trap '' INT; sleep 30"],
                                   interrupt_grace=0.5))
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            results.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(0.5)  # the command is running
    started = time.monotonic()
    cmd.interrupt_children()
    worker.join(timeout=10)
    assert not worker.is_alive(), "the command outlived its grace"
    assert time.monotonic() - started < 5
    result = results[0]
    assert isinstance(result, cmd.Result) and result.returncode == -9, result


def test_two_commands_together_run_at_once_and_fail_as_either(tmp_path: Path) -> None:
    """batch.together: the background command's failure first, else the foreground's;
    an `exit` in either ends only that one (each runs in a subshell)."""
    def status(background: str, foreground: str) -> tuple[int, str]:
        command = batch.together("both", batch.Command("a", background),
                                 batch.Command("b", foreground))
        assert batch.together_parts(command.text) == (background, foreground)
        done = subprocess.run(["/bin/sh", "-c", command.text], capture_output=True,
                              text=True, check=False)
        return done.returncode, done.stdout

    assert status("sleep 0.2; echo A", "echo B") == (0, "B\nA\n")  # at the same time
    assert status("sleep 0.1; exit 3", "echo B; exit 4")[0] == 3
    assert status("echo A", "exit 4")[0] == 4
    assert batch.together_parts("echo plain") is None
