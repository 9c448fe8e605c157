"""A gated batch (batch.argv(gated=True) run with a cmd.Gate) on a real shell: it starts,
waits, and sees what was made meanwhile; shut, it runs nothing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from uvbuild import batch, cmd


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
    thread, ran = _start(batch.argv([f"cat {made}", "cat; echo stdin-ended"], gated=True),
                         gate, stream=stream)
    time.sleep(0.3)
    assert thread.is_alive(), "the batch did not wait at its gate"
    made.write_text("files\n")
    gate.open()
    thread.join(timeout=10)

    outcome = batch.parse(["cat", "cat"], ran["result"])
    assert outcome.ok
    out = outcome.steps[0].stdout if not stream else ran["result"].stdout
    assert "files" in out
    # After `go` the commands' stdin is at its end, as with no input at all.
    assert "stdin-ended" in (outcome.steps[1].stdout if not stream else ran["result"].stdout)


def test_a_shut_gate_ends_the_batch_before_its_first_command(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    gate = cmd.Gate()
    thread, ran = _start(batch.argv([f"touch {marker}"], gated=True), gate)
    gate.shut()
    thread.join(timeout=10)

    assert ran["result"].returncode == batch.GATE_SHUT
    assert not marker.exists()
