"""Outputs beyond local storage: `--push` to a registry and `--output` archives.

Each image is taken into an EMPTY podman store (its own --root/--runroot) and run
there, so what is checked is what was pushed or written, not the builder's storage.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
FASTAPI_RECIPE = REPO_ROOT / "recipes" / "fastapi.yaml"
PROBE = "import os, restapipy, fastapi; print(os.getuid(), restapipy.__file__)"


@pytest.fixture
def empty_store(tmp_path: Path) -> Iterator[Callable[..., subprocess.CompletedProcess[str]]]:
    """``podman(*args)`` against a fresh, empty store under tmp_path."""
    # podman refuses a runroot path longer than 50 characters.
    runroot = tempfile.mkdtemp(prefix="uvbuild-itest-", dir="/tmp")
    store = ["--root", str(tmp_path / "root"), "--runroot", runroot]

    def podman(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["podman", *store, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert proc.returncode == 0, (
            f"podman {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
        return proc

    images = json.loads(podman("images", "--format", "json").stdout or "[]")
    assert images == [], "the new store is not empty"
    try:
        yield podman
    finally:
        shutil.rmtree(runroot, ignore_errors=True)


def check_runs(podman: Callable[..., subprocess.CompletedProcess[str]], image: str) -> None:
    config = json.loads(podman("image", "inspect", image).stdout)[0]["Config"]
    user = config.get("User", "")
    assert re.fullmatch(r"[1-9]\d*:\d+", user), f"User is {user!r}"
    assert "VIRTUAL_ENV=/app/.venv" in config.get("Env", [])
    out = podman(
        "run", "--rm", "--network", "none", "--entrypoint", "python", image, "-c", PROBE
    ).stdout.split()
    assert out[0] == user.split(":")[0]
    assert out[1].startswith("/app/.venv/lib/python3.11/site-packages/restapipy/")


def test_push_then_pull_into_empty_store(registry, uvbuild_popen, empty_store) -> None:
    ref = f"{registry}/restapipy:test"
    # The registry asks for no login: the credentials go to buildah (in an auth file, not
    # on its command line) and are never printed.
    password = f"pa55-{secrets.token_hex(6)}"
    run = uvbuild_popen(["--debug", FASTAPI_RECIPE, "--tag", ref, "--push", "--no-tls-verify",
                         "--creds", f"itest:{password}"], cwd=REPO_ROOT)
    # The registry's port changes every session: drop the name from local storage.
    subprocess.run(["buildah", "rmi", ref], capture_output=True, check=False)
    assert run.returncode == 0, f"uvbuild --push failed\n{run}"
    assert run.leftover_containers() == []
    assert password not in run.stdout + run.stderr
    assert re.search(r"\+ buildah push .*--authfile \S+/auth.json", run.stderr), run.stderr

    empty_store("pull", "--quiet", "--tls-verify=false", ref)
    names = [
        n
        for i in json.loads(empty_store("images", "--format", "json").stdout)
        for n in i.get("Names") or ()
    ]
    assert names == [ref], f"the store holds {names}"
    check_runs(empty_store, ref)


@pytest.mark.parametrize("transport", ["oci-archive", "docker-archive"])
def test_archive_output(transport: str, tmp_path: Path, uvbuild_popen, empty_store) -> None:
    archive = tmp_path / f"restapipy-{transport}.tar"
    tag = "localhost/uvbuild-itest/archive:latest"
    run = uvbuild_popen(
        [FASTAPI_RECIPE, "--tag", tag, "--output", f"{transport}:{archive}"], cwd=REPO_ROOT
    )
    assert run.returncode == 0, f"uvbuild --output {transport}:... failed\n{run}"
    assert run.leftover_containers() == []
    assert archive.is_file() and archive.stat().st_size > 1_000_000

    inspect = subprocess.run(
        ["skopeo", "inspect", f"{transport}:{archive}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert inspect.returncode == 0, f"skopeo inspect {transport}: failed\n{inspect.stderr}"
    info = json.loads(inspect.stdout)
    assert "VIRTUAL_ENV=/app/.venv" in info.get("Env", [])
    assert len(info.get("Layers", [])) >= 2

    loaded = empty_store("load", "--input", str(archive)).stdout
    match = re.search(r"Loaded image(?:\(s\))?: (\S+)", loaded)
    assert match, f"podman load printed {loaded!r}"
    check_runs(empty_store, match[1].split(",")[0])
