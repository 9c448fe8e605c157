"""Executor tests drive `executor.Build` against `FakeEngine`: no process may start here either.

The guard is the unit tier's own fixture, loaded from its file (conftest modules are
not importable by name), so both tiers refuse subprocesses in exactly the same way.
"""

from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "uvbuild_unit_subprocess_guard", Path(__file__).parent.parent / "unit" / "conftest.py")
assert _spec is not None and _spec.loader is not None
_guard = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_guard)

_no_subprocesses = _guard._no_subprocesses  # autouse: every executor test is guarded


@pytest.fixture(autouse=True)
def _private_tmpdir(tmp_path_factory: pytest.TempPathFactory,
                    monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """What a test makes in $TMPDIR (the fake store's run root, a build's folders) goes to
    a folder of its own that pytest removes: the host's /tmp keeps nothing. (It had
    gathered tens of thousands of fake run roots, which every real build's sweep, which
    scans $TMPDIR, then had to read past.)"""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("tmpdir")))
    yield
