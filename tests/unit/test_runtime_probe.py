"""runtime_probe: the runtime user's layer keyed by the base files it is made of."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from uvbuild.build.runtime_probe import content_key
from uvbuild.plan.planner import PrepareRuntime

STEP = PrepareRuntime(name="prepare-runtime", key="b" * 64, needs=("runtime-base",),
                      packages=(), user="app", python="python3")
ENV = ("PATH=/usr/local/bin:/usr/bin:/bin",)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A small runtime root: passwd, group, python3 → python3.11 in /usr/bin."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "home").mkdir()
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\n")
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "python3.11").write_bytes(b"\x7fELF python 3.11")
    os.symlink("python3.11", root / "usr" / "bin" / "python3")
    return root


def key(root: Path, step: PrepareRuntime = STEP, env: tuple[str, ...] = ENV) -> str:
    return content_key(root, step, env, 1_700_000_000)


def test_a_file_the_user_layer_does_not_read_leaves_the_key(root: Path) -> None:
    before = key(root)
    (root / "etc" / "bench-base-refresh").write_text("2\n")  # a base refresh
    (root / "usr" / "bin" / "ls").write_bytes(b"new ls")
    assert key(root) == before


@pytest.mark.parametrize("change", [
    lambda r: (r / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\nx:x:1:1::/:/bin/sh\n"),
    lambda r: (r / "etc" / "group").chmod(0o600),
    lambda r: (r / "etc" / "shadow").write_text("root:!::::::\n"),
    lambda r: (r / "home" / "app").mkdir(),
    lambda r: (r / "usr" / "sbin").mkdir(parents=True) or (r / "usr" / "sbin" / "nologin").touch(),
    lambda r: (r / "usr" / "bin" / "python3.11").write_bytes(b"\x7fELF python 3.11.9"),
    lambda r: (r / "usr" / "local" / "bin").mkdir(parents=True) or os.symlink(
        "/usr/bin/python3.11", r / "usr" / "local" / "bin" / "python3"),
], ids=["passwd", "group-mode", "shadow", "home", "nologin", "interpreter", "path-first"])
def test_what_the_user_layer_is_made_of_changes_the_key(root: Path, change: object) -> None:
    before = key(root)
    change(root)  # type: ignore[operator]
    assert key(root) != before


def test_the_step_the_path_and_the_timestamp_are_in_the_key(root: Path) -> None:
    before = key(root)
    assert key(root, dataclasses.replace(STEP, user="web")) != before
    assert key(root, dataclasses.replace(STEP, python="/usr/bin/python3.11")) != before
    assert key(root, env=("PATH=/bin",)) != before
    assert content_key(root, STEP, ENV, 1) != before
    assert key(root, dataclasses.replace(STEP, key="c" * 64)) == before  # not the base's


def test_links_resolve_inside_the_root(root: Path) -> None:
    # An absolute link points into the base's root, never at the host's /usr/bin.
    (root / "usr" / "bin" / "python3").unlink()
    os.symlink("/usr/bin/python3.11", root / "usr" / "bin" / "python3")
    absolute = key(root)
    (root / "usr" / "bin" / "python3.11").write_bytes(b"\x7fELF python 3.12")
    assert key(root) != absolute
    os.symlink("loop", root / "usr" / "bin" / "loop")
    assert key(root, dataclasses.replace(STEP, python="loop"))  # a loop: no interpreter
