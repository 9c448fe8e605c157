"""packages.sh on the host's real shell, as a batch job (batch.write_job), with a PATH
of stubs in place of an image's package manager: no buildah, no root.

apt-get fails with exit status 100 whatever went wrong, so the status cannot also say
that the image has no package manager: the script says that with a value line, and the
error message comes from what it reported, never from the status.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from uvbuild.build import batch
from uvbuild.build.builder_steps import NO_PACKAGE_MANAGER, packages_command, packages_failure
from uvbuild.engine import cmd

MISSPELT = "build-essentail"

# apt-get as it answers a package it cannot find (its `update` succeeds, and prints
# nothing with -qq). A stub that only fails: a succeeding install would go on to clean
# the host's apt folders.
APT_GET = """\
#!/bin/sh
[ "$1" = update ] && exit 0
echo "Reading package lists..."
for word in "$@"; do last=$word; done
echo "E: Unable to locate package $last" >&2
exit 100
"""


def _run_packages(tmp_path: Path, path: Path, *, stream: bool) -> batch.Outcome:
    """packages.sh MISSPELT run as uvbuild runs it in a container, with PATH = `path`."""
    commands = [packages_command((MISSPELT,))]
    job = tmp_path / "job"
    job.mkdir()
    argv = batch.write_job(job, commands, env={"PATH": str(path)}, at=str(job)).argv
    return batch.parse(commands, cmd.run(argv, stream=stream))


@pytest.mark.parametrize("stream", [False, True], ids=["captured", "streamed"])
def test_apt_get_s_exit_status_100_is_its_own_failure_with_its_message(
        tmp_path: Path, stream: bool) -> None:
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "apt-get").write_text(APT_GET)
    (stubs / "apt-get").chmod(0o755)

    outcome = _run_packages(tmp_path, stubs, stream=stream)

    assert outcome.failure.returncode == 100
    assert NO_PACKAGE_MANAGER not in outcome.reported
    failure = packages_failure(outcome, (MISSPELT,), "builder")
    assert failure is not None
    assert failure.message.startswith(
        f"builder.packages: installing {MISSPELT} failed: `packages.sh {MISSPELT}` failed "
        "with exit code 100:\n")
    assert failure.message.endswith(f"E: Unable to locate package {MISSPELT}")
    assert failure.hint == "check the package names for this base's distribution"


@pytest.mark.parametrize("stream", [False, True], ids=["captured", "streamed"])
def test_no_package_manager_on_path_is_reported_as_such(tmp_path: Path, stream: bool) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()

    outcome = _run_packages(tmp_path, empty, stream=stream)

    assert outcome.failed == "packages"
    assert outcome.reported == {NO_PACKAGE_MANAGER: True}
    failure = packages_failure(outcome, (MISSPELT,), "runtime")
    assert failure is not None
    assert failure.message == "runtime.packages: the runtime base has no supported package manager"
    assert failure.hint == ("use a Debian, Ubuntu, Alpine or Fedora-family base, or a base "
                            "that already has these packages")
