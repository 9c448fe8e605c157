"""batch: one `buildah run` of several commands, written as a job, judged command by command."""

from __future__ import annotations

from pathlib import Path

import pytest

from uvbuild.build import batch
from uvbuild.engine.buildah import Mount
from uvbuild.engine.cmd import Result
from uvbuild.incontainer import script

TEXTS = ["uv sync --locked", "make assets", "venvdelta stage"]
COMMANDS = [batch.Command("uv-sync", TEXTS[0]), batch.Command("builder.run[0]", TEXTS[1]),
            batch.Command("stage-layer", TEXTS[2])]


def run_of(returncode: int, stdout: str, stderr: str) -> Result:
    return Result(("/bin/sh", batch.RUN), returncode, stdout, stderr)


def test_a_job_holds_each_command_in_a_file_and_runs_them_through_batch_sh(
        tmp_path: Path) -> None:
    job = batch.write_job(tmp_path, COMMANDS)
    assert job.argv == ("/bin/sh", "/run/uvbuild/job/run.sh")
    assert job.mount == Mount(str(tmp_path), "/run/uvbuild/job", read_only=True)
    assert [(tmp_path / f"{i}.sh").read_text() for i in range(3)] == [t + "\n" for t in TEXTS]
    assert job.commands == tuple(TEXTS)
    run_sh = (tmp_path / "run.sh").read_text()
    assert run_sh == f"job=/run/uvbuild/job\nn=3\n{script('batch.sh')}"
    assert not (tmp_path / "env").exists()
    # runtime.test runs as the runtime user: a job without environment is readable by all.
    assert _modes(tmp_path) == {".": 0o755, "0.sh": 0o644, "1.sh": 0o644, "2.sh": 0o644,
                                "run.sh": 0o644}


def test_a_job_with_an_environment_is_private_and_reads_it_first(tmp_path: Path) -> None:
    job = batch.write_job(tmp_path, [batch.Command("make", "make")], env={"TOKEN": "S3NT1NEL"}, gated=True)
    assert "S3NT1NEL" not in repr(job.argv)
    assert (tmp_path / "env").read_text() == "export TOKEN=S3NT1NEL\n"
    run_sh = (tmp_path / "run.sh").read_text()
    assert run_sh.startswith(batch.GATE + ". /run/uvbuild/job/env || exit 125\n")
    assert _modes(tmp_path) == {".": 0o700, "0.sh": 0o600, "env": 0o600, "run.sh": 0o600}


def test_a_command_of_any_size_stays_off_the_command_line(tmp_path: Path) -> None:
    command = "echo " + "x" * 300_000
    job = batch.write_job(tmp_path, [batch.Command("big", command)], env={"BIG": "y" * 200_000})
    assert sum(map(len, job.argv)) < 100
    assert (tmp_path / "0.sh").read_text() == command + "\n"


def test_environment_values_are_quoted_for_the_shell() -> None:
    text = batch.render_env({"A": "it's", "B": "two\nlines", "C": "$HOME `id` \\ \"q\"",
                             "D": ""})
    assert text == ("export A='it'\"'\"'s'\n"
                    "export B='two\nlines'\n"
                    "export C='$HOME `id` \\ \"q\"'\n"
                    "export D=''\n")


def test_a_name_that_is_not_a_variable_name_is_refused() -> None:
    with pytest.raises(ValueError):
        batch.render_env({"A=B; rm -rf /": "x"})


def _modes(folder: Path) -> dict[str, int]:
    modes = {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()}
    return {".": folder.stat().st_mode & 0o777, **modes}


def test_shell_quotes_an_argv_as_one_command() -> None:
    assert batch.shell(["echo", "a b", "it's"]) == "echo 'a b' 'it'\"'\"'s'"


def test_output_is_split_per_command_and_values_are_read() -> None:
    stdout = ("@@uvbuild step 0\nResolved 3 packages\n@@uvbuild step 1\nbuilt\n"
              "@@uvbuild step 2\n@@uvbuild value installed {\"app\": \"1.0\"}\n")
    stderr = "@@uvbuild step 0\nInstalled 1 package\n@@uvbuild step 1\n@@uvbuild step 2\n"
    outcome = batch.parse(COMMANDS, run_of(0, stdout, stderr))

    assert outcome.ok and outcome.failed is None and not outcome.engine_failed
    assert [s.stdout for s in outcome.results] == ["Resolved 3 packages\n", "built\n", ""]
    assert [s.stderr for s in outcome.results] == ["Installed 1 package\n", "", ""]
    assert [s.argv for s in outcome.results] == [("/bin/sh", "-c", t) for t in TEXTS]
    assert outcome.reported == {"installed": {"app": "1.0"}}


def test_the_failed_command_is_named_with_its_own_output_and_exit_code() -> None:
    stdout = "@@uvbuild step 0\n@@uvbuild step 1\nmake: *** No rule\n"
    stderr = "@@uvbuild step 0\nwarning: old\n@@uvbuild step 1\nboom\n@@uvbuild failed 1 2\n"
    outcome = batch.parse(COMMANDS, run_of(2, stdout, stderr))

    assert not outcome.ok and outcome.failed == "builder.run[0]" and not outcome.engine_failed
    assert len(outcome.results) == 2  # the third never ran
    failed = outcome.failure
    assert (failed.returncode, failed.stdout, failed.stderr) == (2, "make: *** No rule\n",
                                                                 "boom\n")
    assert outcome.results[0].ok


def test_merged_streams_as_streaming_gives_them_are_split_too() -> None:
    merged = ("@@uvbuild step 0\n@@uvbuild step 0\nok\n@@uvbuild step 1\n@@uvbuild step 1\n"
              "oops\n@@uvbuild failed 1 1\n")
    outcome = batch.parse(COMMANDS, run_of(1, merged, ""))

    assert outcome.failed == "builder.run[0]"
    assert outcome.failure.stdout == "oops\n"


def test_a_failure_before_any_command_is_the_engine_s() -> None:
    outcome = batch.parse(COMMANDS, run_of(125, "", "Error: container not known\n"))

    assert outcome.engine_failed
    assert outcome.results == ()


def test_a_variable_fits_up_to_the_kernels_limit_per_variable() -> None:
    fits = "x" * (batch.VARIABLE_LIMIT - len("BIG=") - 1)
    assert not batch.too_long("BIG", fits)
    assert batch.too_long("BIG", fits + "x")


def test_a_failure_is_told_by_label_so_an_inserted_command_takes_no_blame() -> None:
    # The same run of the same commands, with one more command put in front: the
    # wire speaks of positions, but the failed command comes back by its label.
    stderr = "@@uvbuild step {0}\n@@uvbuild step {1}\nboom\n@@uvbuild failed {1} 2\n"
    before = batch.parse(COMMANDS, run_of(2, "", stderr.format(0, 1)))
    extra = [batch.Command("unpack", "python unpack.py"), *COMMANDS]
    after = batch.parse(extra, run_of(2, "", stderr.format(1, 2)))

    assert before.failed == after.failed == "builder.run[0]"
    assert before.failure.argv == after.failure.argv == ("/bin/sh", "-c", "make assets")


def test_labelled_names_recipe_entries_as_the_recipe_does() -> None:
    assert batch.labelled("runtime.test", ["a", "b"]) == [
        batch.Command("runtime.test[0]", "a"), batch.Command("runtime.test[1]", "b")]


def test_commands_with_the_same_label_are_refused() -> None:
    with pytest.raises(AssertionError):
        batch.parse([batch.Command("x", "a"), batch.Command("x", "b")], run_of(0, "", ""))


def test_a_marker_glued_to_output_without_a_newline_is_still_read() -> None:
    """`printf done` (no newline) followed by batch.sh's next marker: both commands are
    still told apart, and the value line is read."""
    commands = [batch.Command("builder.run[0]", "printf done"),
                batch.Command("stage", "stage")]
    run = Result(("buildah", "run"), 0,
                 '@@uvbuild step 0\ndone@@uvbuild step 1\n@@uvbuild value layer {"size": 1}\n',
                 "@@uvbuild step 0\nwarn@@uvbuild step 1\n")
    outcome = batch.parse(commands, run)
    assert [r.stdout for r in outcome.results] == ["done\n", ""]
    assert [r.stderr for r in outcome.results] == ["warn\n", ""]
    assert outcome.reported == {"layer": {"size": 1}}
    failing = Result(("buildah", "run"), 3, "@@uvbuild step 0\n",
                     "@@uvbuild step 0\noops@@uvbuild failed 0 3\n")
    assert batch.parse(commands[:1], failing).failed == "builder.run[0]"

