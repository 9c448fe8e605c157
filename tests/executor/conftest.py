"""Executor tests drive `executor.Build` against `FakeEngine`: no process may start here either.

The guard is the unit tier's own fixture, loaded from its file (conftest modules are
not importable by name), so both tiers refuse subprocesses in exactly the same way.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "uvbuild_unit_subprocess_guard", Path(__file__).parent.parent / "unit" / "conftest.py")
assert _spec is not None and _spec.loader is not None
_guard = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_guard)

_no_subprocesses = _guard._no_subprocesses  # autouse: every executor test is guarded
