"""Several commands in one `buildah run`, each still judged and reported on its own.

Every `buildah run` costs a container set-up and tear-down (about 0.2 s here), more
than some of the commands uvbuild runs. A batch runs its commands in order through
`incontainer/batch.sh`, stops at the first failure, and comes back as one Result per
command that ran, so an error names the failing command and shows only its output.
Each command carries a label ("uv-sync", "builder.run[0]"...): a failure is told by the
label of the command that failed, never by its position, so a caller that adds a
command to a batch cannot make another one take the blame. On the wire (batch.sh's
marker lines) commands go by index; the index → label mapping stays in this module.
Commands report values (e.g. the venv's Python) with `@@uvbuild value NAME JSON` lines.

A batch reaches its container as a job: a host folder mounted at JOB, with one file per
command, `run.sh` (the loop) and, for builder commands, `env`, the environment as
shell text. `buildah run` gets only `/bin/sh /run/uvbuild/job/run.sh`: no value is on
any command line, where every local user could read it (/proc/PID/cmdline) and where
the kernel refuses arguments over 128 kB. `env` holds secrets (builder.secrets,
proxy credentials): a job with one is private, 0600 in a 0700 folder, removed as soon
as the run ends.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from uvbuild.engine.buildah import Mount
from uvbuild.engine.cmd import MARKER, Gate, Result
from uvbuild.incontainer import script

STEP = MARKER + "step "
FAILED = MARKER + "failed "
VALUE = MARKER + "value "


# A gated batch first waits for one line on its stdin and runs only if it is `go`
# (see cmd.Gate); it ends with GATE_SHUT if the gate was shut instead.
GATE_SHUT = 97
GATE = f'read -r uvbuild_go && [ "$uvbuild_go" = {Gate.GO} ] || exit {GATE_SHUT}\n'


JOB = "/run/uvbuild/job"  # where a job's folder is mounted in the container
RUN = f"{JOB}/run.sh"
ENV_MISSING = 125  # run.sh could not read the environment file (as buildah's own errors)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# The kernel copies each `NAME=value` of a process's environment whole, and refuses an
# exec (E2BIG) if one is longer than this (MAX_ARG_STRLEN, with its final NUL).
VARIABLE_LIMIT = 128 * 1024


def too_long(name: str, value: str) -> bool:
    """Whether `NAME=value` is over what a process can be given (see VARIABLE_LIMIT)."""
    return len(f"{name}={value}".encode("utf-8", "surrogateescape")) + 1 > VARIABLE_LIMIT


@dataclass(frozen=True, slots=True)
class Command:
    """One command of a batch: shell text, and the label a failure of it is told by."""

    label: str
    text: str


# A command of a batch made of two that run at the same time (see `together`).
TOGETHER = "# uvbuild: the two commands below run at the same time\n"
_TOGETHER_TAIL = ("uvbuild_rc=$?\nwait \"$uvbuild_bg\" || exit $?\n"
                  "exit \"$uvbuild_rc\"\n")


def together(label: str, background: Command, foreground: Command) -> Command:
    """Two commands of a batch as one (`label`), run at the same time: two readers of
    the same files on two cores. It fails if either does (the background one's status
    first); their value lines both reach the batch's output (each a line of its own)."""
    return Command(label, f"{TOGETHER}(\n{background.text}\n) &\nuvbuild_bg=$!\n"
                          f"(\n{foreground.text}\n)\n{_TOGETHER_TAIL}")


def together_parts(text: str) -> tuple[str, str] | None:
    """The two commands' texts of a `together` command, or None for any other."""
    if not text.startswith(TOGETHER) or not text.endswith(_TOGETHER_TAIL):
        return None
    body = text[len(TOGETHER):-len(_TOGETHER_TAIL)]
    background, sep, foreground = body.partition("\n) &\nuvbuild_bg=$!\n")
    if not (sep and background.startswith("(\n") and foreground.startswith("(\n")
            and foreground.endswith("\n)\n")):
        return None
    return background[2:], foreground[2:-3]


def labelled(prefix: str, texts: Sequence[str]) -> list[Command]:
    """Commands from a recipe list, labelled as the recipe names them: `prefix[0]`..."""
    return [Command(f"{prefix}[{index}]", text) for index, text in enumerate(texts)]


@dataclass(frozen=True, slots=True)
class Job:
    """A batch written to a host folder: the short argv and the mount that run it."""

    argv: tuple[str, ...]
    mount: Mount
    commands: tuple[str, ...]  # the shell text of each command, in order


def write_job(folder: Path, commands: Sequence[Command], *, env: Mapping[str, str] | None = None,
              gated: bool = False, at: str = JOB, started: str | None = None) -> Job:
    """Write `commands` (run one after another) into `folder`, an empty
    host folder for this one run; with `env`, first export it; `gated`: only once its
    gate opens (a `buildah run` with a cmd.Gate). `at`: where the runner sees `folder`
    (the mount's target). `started`: a file the job makes (empty) as it begins, in a
    folder the run can write to (the host sees the run begin).

    A job with `env` is private (0700 folder, 0600 files: the builder runs as root); one
    without is readable by all (runtime.test runs as the runtime user).
    """
    private = env is not None
    folder.chmod(0o700 if private else 0o755)
    head = GATE if gated else ""
    if started is not None:
        head += f": > {shlex.quote(started)}\n"
    if private:
        _write(folder / "env", render_env(env or {}), private=True)
        head += f". {shlex.quote(at + '/env')} || exit {ENV_MISSING}\n"
    for index, command in enumerate(commands):
        _write(folder / f"{index}.sh", command.text + "\n", private=private)
    _write(folder / "run.sh",
           f"{head}job={shlex.quote(at)}\nn={len(commands)}\n{script('batch.sh')}",
           private=private)
    return Job(argv=("/bin/sh", f"{at}/run.sh"), mount=Mount(str(folder), at),
               commands=tuple(c.text for c in commands))


NEXT = "next"  # the folder of a launcher's job (write_launcher)


def write_launcher(folder: Path) -> Job:
    """A job to start now, whose batch is not known yet: held at its gate (a
    `buildah run` with a cmd.Gate), it then runs the job written into `folder`/NEXT
    (write_job with `at` = JOB/NEXT), which must be there before the gate opens. So a
    run pays its start-up while the commands it is for are still being decided."""
    folder.chmod(0o700)
    _write(folder / "run.sh", f"{GATE}exec /bin/sh {shlex.quote(f'{JOB}/{NEXT}/run.sh')}\n",
           private=True)
    return Job(argv=("/bin/sh", RUN), mount=Mount(str(folder), JOB), commands=())


def render_env(env: Mapping[str, str]) -> str:
    """`env` as shell text that exports it, each value quoted to reach the command
    byte for byte (quotes, newlines, `$`, backslashes and all)."""
    lines = []
    for name, value in env.items():
        if not _NAME.fullmatch(name):
            raise ValueError(f"not a variable name: {name!r}")  # the loader refuses these
        lines.append(f"export {name}={shlex.quote(value)}\n")
    return "".join(lines)


def _write(path: Path, text: str, *, private: bool) -> None:
    # Created with its final mode: a private file is never readable by others, not even
    # for a moment. Host values that are not UTF-8 go through unchanged.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with open(fd, "w", encoding="utf-8", errors="surrogateescape") as handle:
        handle.write(text)
    os.chmod(path, 0o600 if private else 0o644)  # whatever the umask


def shell(argv_: Sequence[str]) -> str:
    """An argv as one shell command of a batch."""
    return shlex.join(argv_)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a batch did: the whole run, and one Result per command that ran."""

    run: Result
    results: tuple[Result, ...]  # one per command that ran, in order
    failed: str | None  # the label of the command that failed; None if none did
    reported: dict[str, object] = field(default_factory=dict)  # NAME → JSON value lines

    @property
    def ok(self) -> bool:
        return self.run.ok

    @property
    def failure(self) -> Result:
        """The Result of the command that failed (the last that ran); only if one did."""
        assert self.failed is not None and self.results, "no command failed"
        return self.results[-1]

    @property
    def engine_failed(self) -> bool:
        """The run failed but no command did: buildah itself (or the shell) failed."""
        return not self.run.ok and self.failed is None


def parse(commands: Sequence[Command], run: Result) -> Outcome:
    """Split a batch's output per command (see batch.sh) and read its value lines."""
    assert len({c.label for c in commands}) == len(commands), "labels must tell commands apart"
    stdout, stderr = split_markers(run.stdout), split_markers(run.stderr)
    out = _segments(stdout)
    err = _segments(stderr)
    failed: str | None = None
    returncode = {}
    for line in stderr.splitlines() + stdout.splitlines():
        if line.startswith(FAILED):
            index, code = (int(word) for word in line[len(FAILED):].split())
            failed = commands[index].label
            returncode[index] = code
    reported: dict[str, object] = {}
    for line in stdout.splitlines():
        if line.startswith(VALUE):
            name, _, data = line[len(VALUE):].partition(" ")
            reported[name] = json.loads(data)
    ran = max([*out, *err], default=-1) + 1
    results = tuple(
        Result(("/bin/sh", "-c", commands[i].text), returncode.get(i, 0),
               _clean(out.get(i, "")), _clean(err.get(i, "")))
        for i in range(min(ran, len(commands))))
    return Outcome(run=run, results=results, failed=failed, reported=reported)


def split_markers(text: str) -> str:
    """`text` with each marker line on a line of its own: a command whose output does
    not end in a newline (`printf done`) has batch.sh's next marker glued to it."""
    if MARKER not in text:
        return text
    return re.sub(f"(?<=[^\n]){re.escape(MARKER)}", lambda m: "\n" + m.group(0), text)


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
