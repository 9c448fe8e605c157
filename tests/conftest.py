"""Fixtures shared by every test tier (unit, executor, integration).

Conftest modules are not importable by name (each tier has its own
``conftest``), so anything shared is exposed as a fixture here.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

# Same text as scripts/host-setup writes. crun fails on cgroups-v1/hybrid
# hosts, and setting default ulimits fails in some sandboxes.
CONTAINERS_CONF_TEXT = """\
[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
"""


def default_containers_conf_path() -> Path:
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "uvbuild" / "containers.conf"


@pytest.fixture
def incontainer_script() -> Callable[[str], ModuleType]:
    """A loader of src/uvbuild/incontainer's scripts (what builders run with `python -c`)
    as modules of their own: each call a fresh one, so a test may change its globals."""

    def load(name: str) -> ModuleType:
        path = REPO_ROOT / "src" / "uvbuild" / "incontainer" / name
        spec = importlib.util.spec_from_file_location(f"{path.stem}_under_test", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The checkout under test (the directory holding pyproject.toml)."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def containers_conf() -> Iterator[Path]:
    """Path of the containers.conf that podman/buildah need on this host.

    Uses $CONTAINERS_CONF when it names an existing file (scripts/test sets it);
    otherwise writes the default one (as scripts/host-setup does) and sets
    $CONTAINERS_CONF for the rest of the session.
    """
    current = os.environ.get("CONTAINERS_CONF")
    if current and Path(current).is_file():
        yield Path(current)
        return
    path = default_containers_conf_path()
    if not path.is_file() or path.read_text() != CONTAINERS_CONF_TEXT:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp.{os.getpid()}")
        tmp.write_text(CONTAINERS_CONF_TEXT)
        tmp.replace(path)
    os.environ["CONTAINERS_CONF"] = str(path)
    try:
        yield path
    finally:
        if current is None:
            os.environ.pop("CONTAINERS_CONF", None)
        else:
            os.environ["CONTAINERS_CONF"] = current
