"""Builds of one image name wait for each other only within one image store."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from uvbuild.pipeline import build_lock


def test_builds_of_one_image_name_wait_for_each_other_only_in_one_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    entered = threading.Event()

    def same_store() -> None:
        with build_lock("localhost/app:1", Path("/run/store-a")):
            entered.set()

    with build_lock("localhost/app:1", Path("/run/store-a")):
        # Another store's build of the same name (a CI job, a benchmark) goes ahead.
        with build_lock("localhost/app:1", Path("/run/store-b")):
            pass
        waiting = threading.Thread(target=same_store)
        waiting.start()
        assert not entered.wait(0.2)  # this store's: waits for the first to end
    waiting.join(5)
    assert entered.is_set()
