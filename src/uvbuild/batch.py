"""Several commands in one `buildah run`, each still judged and reported on its own.

Every `buildah run` costs a container set-up and tear-down (about 0.2 s here), more
than some of the commands uvbuild runs. A batch runs its commands in order through
`incontainer/batch.sh`, stops at the first failure, and comes back as one Result per
command that ran, so an error names the failing command and shows only its output.
Commands report values (e.g. the venv's Python) with `@@uvbuild value NAME JSON` lines.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Sequence

from .cmd import MARKER, Gate, Result
from .incontainer import script

STEP = MARKER + "step "
FAILED = MARKER + "failed "
VALUE = MARKER + "value "


# A gated batch first waits for one line on its stdin and runs only if it is `go`
# (see cmd.Gate); it ends with GATE_SHUT if the gate was shut instead.
GATE_SHUT = 97
GATE = f'read -r uvbuild_go && [ "$uvbuild_go" = {Gate.GO} ] || exit {GATE_SHUT}\n'


def argv(commands: Sequence[str], *, gated: bool = False) -> list[str]:
    """The argv that runs `commands` (shell text each) one after another; `gated`: only
    once its gate opens (a `buildah run` with a cmd.Gate)."""
    return ["/bin/sh", "-c", (GATE if gated else "") + script("batch.sh"), "uvbuild-batch",
            *commands]


def shell(argv_: Sequence[str]) -> str:
    """An argv as one shell command of a batch."""
    return shlex.join(argv_)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a batch did: the whole run, and one Result per command that ran."""

    run: Result
    steps: tuple[Result, ...]
    failed: int | None  # index of the command that failed; None if none did
    values: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.run.ok

    @property
    def engine_failed(self) -> bool:
        """The run failed but no command did: buildah itself (or the shell) failed."""
        return not self.run.ok and self.failed is None


def parse(commands: Sequence[str], run: Result) -> Outcome:
    """Split a batch's output per command (see batch.sh) and read its value lines."""
    out = _segments(run.stdout)
    err = _segments(run.stderr)
    failed: int | None = None
    returncode = {}
    for line in run.stderr.splitlines() + run.stdout.splitlines():
        if line.startswith(FAILED):
            index, code = line[len(FAILED):].split()
            failed = int(index)
            returncode[failed] = int(code)
    values: dict[str, object] = {}
    for line in run.stdout.splitlines():
        if line.startswith(VALUE):
            name, _, data = line[len(VALUE):].partition(" ")
            values[name] = json.loads(data)
    ran = max([*out, *err], default=-1) + 1
    steps = tuple(
        Result(("/bin/sh", "-c", commands[i]), returncode.get(i, 0),
               _clean(out.get(i, "")), _clean(err.get(i, "")))
        for i in range(min(ran, len(commands))))
    return Outcome(run=run, steps=steps, failed=failed, values=values)


def _segments(text: str) -> dict[int, str]:
    segments: dict[int, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines(keepends=True):
        if line.startswith(STEP):
            current = segments.setdefault(int(line[len(STEP):]), [])
        elif current is not None:
            current.append(line)
    return {i: "".join(lines) for i, lines in segments.items()}


def _clean(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True)
                   if not line.startswith(MARKER))
