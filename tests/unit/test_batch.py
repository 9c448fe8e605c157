"""batch.parse: one `buildah run` of several commands, judged command by command."""

from __future__ import annotations

from uvbuild import batch
from uvbuild.cmd import Result

COMMANDS = ["uv sync --locked", "make assets", "venvdelta stage"]


def run_of(returncode: int, stdout: str, stderr: str) -> Result:
    return Result(tuple(batch.argv(COMMANDS)), returncode, stdout, stderr)


def test_a_batch_runs_each_command_through_batch_sh() -> None:
    argv = batch.argv(COMMANDS)
    assert argv[:2] == ["/bin/sh", "-c"]
    assert argv[3:] == ["uvbuild-batch", *COMMANDS]


def test_shell_quotes_an_argv_as_one_command() -> None:
    assert batch.shell(["echo", "a b", "it's"]) == "echo 'a b' 'it'\"'\"'s'"


def test_output_is_split_per_command_and_values_are_read() -> None:
    stdout = ("@@uvbuild step 0\nResolved 3 packages\n@@uvbuild step 1\nbuilt\n"
              "@@uvbuild step 2\n@@uvbuild value installed {\"app\": \"1.0\"}\n")
    stderr = "@@uvbuild step 0\nInstalled 1 package\n@@uvbuild step 1\n@@uvbuild step 2\n"
    outcome = batch.parse(COMMANDS, run_of(0, stdout, stderr))

    assert outcome.ok and outcome.failed is None and not outcome.engine_failed
    assert [s.stdout for s in outcome.steps] == ["Resolved 3 packages\n", "built\n", ""]
    assert [s.stderr for s in outcome.steps] == ["Installed 1 package\n", "", ""]
    assert [s.argv for s in outcome.steps] == [("/bin/sh", "-c", c) for c in COMMANDS]
    assert outcome.values == {"installed": {"app": "1.0"}}


def test_the_failed_command_is_named_with_its_own_output_and_exit_code() -> None:
    stdout = "@@uvbuild step 0\n@@uvbuild step 1\nmake: *** No rule\n"
    stderr = "@@uvbuild step 0\nwarning: old\n@@uvbuild step 1\nboom\n@@uvbuild failed 1 2\n"
    outcome = batch.parse(COMMANDS, run_of(2, stdout, stderr))

    assert not outcome.ok and outcome.failed == 1 and not outcome.engine_failed
    assert len(outcome.steps) == 2  # the third never ran
    failed = outcome.steps[-1]
    assert (failed.returncode, failed.stdout, failed.stderr) == (2, "make: *** No rule\n",
                                                                 "boom\n")
    assert outcome.steps[0].ok


def test_merged_streams_as_streaming_gives_them_are_split_too() -> None:
    merged = ("@@uvbuild step 0\n@@uvbuild step 0\nok\n@@uvbuild step 1\n@@uvbuild step 1\n"
              "oops\n@@uvbuild failed 1 1\n")
    outcome = batch.parse(COMMANDS, run_of(1, merged, ""))

    assert outcome.failed == 1
    assert outcome.steps[1].stdout == "oops\n"


def test_a_failure_before_any_command_is_the_engine_s() -> None:
    outcome = batch.parse(COMMANDS, run_of(125, "", "Error: container not known\n"))

    assert outcome.engine_failed
    assert outcome.steps == ()
