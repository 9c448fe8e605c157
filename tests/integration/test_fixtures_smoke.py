"""The integration fixtures themselves work on this host."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import pytest


def test_marked_integration(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("integration") is not None


def test_containers_conf_is_set(containers_conf: Path) -> None:
    assert os.environ["CONTAINERS_CONF"] == str(containers_conf)
    assert 'runtime = "runc"' in containers_conf.read_text()


def test_registry_answers_v2(registry: str) -> None:
    host, _, port = registry.partition(":")
    assert host == "127.0.0.1" and port.isdigit()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://{registry}/v2/", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    with opener.open(f"http://{registry}/v2/_catalog", timeout=5) as response:
        assert json.load(response) == {"repositories": []}


def test_rootless_buildah_vfs_info(rootless_user, request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("rootless") is not None
    proc = rootless_user.run(["buildah", "--storage-driver", "vfs", "info"])
    info = json.loads(proc.stdout)
    assert info["host"]["rootless"] is True
    assert info["host"]["OCIRuntime"] == "runc"  # from the copied containers.conf
    assert info["store"]["GraphDriverName"] == "vfs"
    assert info["store"]["GraphRoot"].startswith(str(rootless_user.home))


def test_rootless_buildah_from_scratch(rootless_user) -> None:
    created = rootless_user.run(["buildah", "--storage-driver", "vfs", "from", "scratch"])
    container = created.stdout.strip().splitlines()[-1]
    assert container
    rootless_user.run(["buildah", "--storage-driver", "vfs", "rm", container])


def test_rootless_user_environment(rootless_user) -> None:
    proc = rootless_user.run(["sh", "-c", 'id -u; echo "$HOME"; echo "$XDG_RUNTIME_DIR"; pwd'])
    uid, home, runtime_dir, cwd = proc.stdout.split()
    assert int(uid) == rootless_user.uid != 0
    assert home == cwd == str(rootless_user.home)
    assert runtime_dir == f"/run/user/{rootless_user.uid}"
    stat = os.stat(runtime_dir)
    assert stat.st_uid == rootless_user.uid and stat.st_mode & 0o777 == 0o700


def test_rootless_checkout_has_locked_venv(rootless_user) -> None:
    checkout = rootless_user.checkout()
    assert rootless_user.checkout() is checkout  # cached per session
    proc = rootless_user.run(
        [checkout / ".venv/bin/python", "-c", "import uvbuild, pytest; print(uvbuild.__file__)"],
        cwd=checkout,
    )
    assert proc.stdout.strip().startswith(str(checkout / "src" / "uvbuild"))
    assert (checkout / ".venv/bin/uvbuild").exists()
