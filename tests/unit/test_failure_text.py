"""How failed commands read: both output streams, no Go stack dumps, a full disk and a
failed push told by their cause."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from uvbuild.engine.buildah import push_hint
from uvbuild.engine.cmd import Result, describe_failure
from uvbuild.engine.diskfull import DiskFull, Place, as_disk_full, failed_for_space, says_disk_full
from uvbuild.errors import StepFailed

GO_DUMP = """\
Error: committing container for step {...}: copying layers and metadata: writing blob: \
write /var/tmp/storage123/1: no space left on device
panic: runtime error: invalid memory address or nil pointer dereference
[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x55d3]

goroutine 1 [running]:
github.com/containers/storage.(*store).Layers(0x0)
\t/build/buildah/vendor/github.com/containers/storage/store.go:2112 +0x1d
main.main()
\t/build/buildah/cmd/buildah/main.go:160 +0x2e5

goroutine 18 [chan receive]:
created by os/signal.Notify.func1.1
\t/usr/lib/go/src/os/signal/signal.go:151 +0x2a
"""


def test_both_streams_are_shown() -> None:
    text = describe_failure(Result(("sh", "-c", "x"), 1, "out 1\nout 2\n", "err 1\n"))
    assert text == ("`sh -c x` failed with exit code 1:\n    --- stdout:\n    out 1\n    out 2\n"
                    "    --- stderr:\n    err 1")


def test_one_stream_is_shown_alone() -> None:
    assert describe_failure(Result(("x",), 2, "", "only err\n")).endswith(":\n    only err")
    assert describe_failure(Result(("x",), 2, "only out\n", "")).endswith(":\n    only out")


def test_a_go_stack_dump_is_left_out() -> None:
    text = describe_failure(Result(("buildah", "commit"), 125, "", GO_DUMP))
    assert "no space left on device" in text
    assert "panic: runtime error" in text
    assert "goroutine" not in text and ".go:" not in text and "+0x" not in text
    assert "[a Go stack trace of" in text


@pytest.mark.parametrize("text", [
    "No space left on device (os error 28)", "OSError: [Errno 28] No space left on device",
    "write /var/tmp/x: no space left on device", "E: You don't have enough free space in "
    "/var/cache/apt/archives/.", "disk quota exceeded",
])
def test_full_disks_are_recognised(text: str) -> None:
    assert says_disk_full(text)


def test_a_full_disk_names_the_full_place_and_cache_prune(tmp_path: Path) -> None:
    full = Place("image store", str(tmp_path / "graph"))
    error = as_disk_full(StepFailed("uv sync failed:\n    Caused by: No space left on device"),
                         [full, Place("uv cache", str(tmp_path))])
    assert isinstance(error, DiskFull) and error.exit_code == 5
    assert error.message.startswith("no space left on device: one of these filled up: "
                                    f"image store {tmp_path}/graph (")
    assert "\n  while: uv sync failed:\n    Caused by: No space left on device" in error.message
    assert error.hint is not None and "uvbuild cache prune" in error.hint
    assert f"the image store is {tmp_path}/graph" in error.hint


def test_a_host_write_names_its_folder_first(tmp_path: Path) -> None:
    target = tmp_path / "out" / "sbom.json"
    exc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))
    error = as_disk_full(exc, [Place("image store", "/var/lib/containers/storage")])
    assert error is not None
    assert error.message.startswith(f"no space left on device: one of these filled up: "
                                    f"folder {tmp_path}/out")


def test_other_failures_are_not_disk_full() -> None:
    assert as_disk_full(StepFailed("exit code 1: no such file"), []) is None
    assert as_disk_full(OSError(errno.EACCES, "denied"), []) is None
    assert failed_for_space("all fine\n", "x failed") is None


def test_the_lines_that_say_why_are_kept_from_a_long_log() -> None:
    output = "No space left on device\n" + "noise\n" * 100
    error = failed_for_space(output, "running a command failed: ...")
    assert error is not None and "No space left on device" in error.message


PUSH_ERRORS = {
    "auth": ("Error: pushing image: writing blob: initiating layer upload to /v2/x/blobs/uploads/ "
             "in 127.0.0.1:5000: unauthorized: authentication required",
             "--creds USER:PASSWORD or --authfile FILE"),
    "forbidden": ("received unexpected HTTP status: 403 Forbidden", "podman login 127.0.0.1:5000"),
    "plain http": ('pinging container registry 127.0.0.1:5000: Get "https://127.0.0.1:5000/v2/": '
                   "http: server gave HTTP response to HTTPS client", "--no-tls-verify"),
    "unknown CA": ("x509: certificate signed by unknown authority", "certs.d/127.0.0.1:5000/ca.crt"),
    "refused": ('Get "https://127.0.0.1:5000/v2/": dial tcp 127.0.0.1:5000: connect: connection '
                "refused", "check the registry address"),
    "dns": ("dial tcp: lookup nowhere.invalid: no such host", "check the registry address"),
}


@pytest.mark.parametrize("case", list(PUSH_ERRORS), ids=list(PUSH_ERRORS))
def test_a_failed_push_gets_a_hint_by_cause(case: str) -> None:
    output, expected = PUSH_ERRORS[case]
    hint = push_hint(output, "docker://127.0.0.1:5000/team/app:1")
    assert expected in hint
    assert hint.startswith("the image is built and tagged locally as 127.0.0.1:5000/team/app:1")


def test_buildahs_own_exit_status_lines_are_left_out() -> None:
    err = "said-on-stderr\nsubprocess exited with status 3\nError: exit status 3\n"
    text = describe_failure(Result(("sh",), 3, "said-on-stdout\n", err))
    assert text.endswith("--- stderr:\n    said-on-stderr")
