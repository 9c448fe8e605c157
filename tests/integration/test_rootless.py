"""A rootless build: an unprivileged user builds recipes/fastapi.yaml into its own storage.

The user runs the uvbuild of its own checkout and venv (``rootless_user``), with
no help from root: the Debian base is bootstrapped in a user namespace, the
image lands in ``~/.local/share/containers``, and the user's podman runs it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

TAG = "localhost/uvbuild-itest/rootless-restapipy:latest"


def container_names(rootless_user) -> set[str]:
    proc = rootless_user.run(["buildah", "containers", "--json"])
    return {str(c["containername"]) for c in json.loads(proc.stdout or "null") or []}


def test_rootless_build_runs(rootless_user, record_property) -> None:
    started = time.monotonic()
    checkout = rootless_user.checkout()
    setup_seconds = time.monotonic() - started
    before = container_names(rootless_user)

    started = time.monotonic()
    # --no-cache: each session proves a whole rootless build, not a cache hit (the
    # bootstrapped base is still reused from the user's storage).
    build = rootless_user.uvbuild(
        ["recipes/fastapi.yaml", "--tag", TAG, "--no-cache"], timeout=1500
    )
    build_seconds = time.monotonic() - started
    assert "Traceback" not in build.stderr

    left = {n for n in container_names(rootless_user) - before if n.startswith("uvbuild-")}
    assert left == set(), f"the rootless build left working containers: {sorted(left)}"

    info = rootless_user.run(["podman", "image", "inspect", TAG])
    config = json.loads(info.stdout)[0]["Config"]
    assert re.fullmatch(r"[1-9]\d*:\d+", config.get("User", "")), config.get("User")

    started = time.monotonic()
    probe = rootless_user.run(
        [
            "podman",
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "python",
            TAG,
            "-c",
            "import os, restapipy, fastapi; print(os.getuid(), restapipy.__file__)",
        ],
        timeout=300,
    )
    run_seconds = time.monotonic() - started
    uid, module = probe.stdout.split()
    assert uid == config["User"].split(":")[0]
    assert module.startswith("/app/.venv/lib/python3.11/site-packages/restapipy/")

    timings = {
        "checkout_and_venv": round(setup_seconds, 1),
        "uvbuild": round(build_seconds, 1),
        "podman_run": round(run_seconds, 1),
        **{k: round(v, 1) for k, v in rootless_user.timings.items()},
    }
    record_property("rootless_timings", timings)
    print(f"\nrootless build of recipes/fastapi.yaml ({checkout}): {json.dumps(timings)}")
    print(build.stderr)


SAME_ID_ROOT_TAG = "localhost/uvbuild-itest/same-id-root:latest"
SAME_ID_USER_TAG = "localhost/uvbuild-itest/same-id-rootless:latest"


def _bases_of(plan_text: str, names: list[str]) -> list[str]:
    """The bootstrapped bases' names (of `names`, the store's localhost/uvbuild-base/...)
    that `uvbuild plan` lists for builder-base and runtime-base (by their key's start)."""
    keys = [line.split()[1] for line in plan_text.splitlines()
            if line.split()[:1] in (["builder-base"], ["runtime-base"])]
    found = [name for key in keys for name in names
             if name.rpartition(":")[0].rpartition("-")[2].startswith(key)]
    assert len(found) == len(keys) == 2, (keys, names)
    return found


def test_rootless_and_root_builds_give_one_image_id(rootless_user, run_uvbuild,
                                                    tmp_path) -> None:
    """Issue 12: the same inputs give one image ID rootless (the user's own store, a
    user namespace, its own uv cache) and as root. The user's store is given root's
    bootstrapped bases under the same names: a base bootstrapped at another time may hold
    other Debian package versions, and that is a different input."""
    checkout = rootless_user.checkout()
    recipe = checkout / "recipes" / "flask.yaml"
    root = run_uvbuild([recipe, "--tag", SAME_ID_ROOT_TAG])
    print(root.stderr)
    plan = run_uvbuild(["plan", recipe]).stdout
    listed = subprocess.run(["buildah", "images", "--json"], capture_output=True, text=True,
                            check=True).stdout
    names = [n for entry in json.loads(listed or "[]") for n in entry.get("names") or ()
             if n.startswith("localhost/uvbuild-base/")]
    share = Path(tempfile.mkdtemp(prefix="same-id-", dir="/tmp"))
    share.chmod(0o755)
    try:
        for i, name in enumerate(_bases_of(plan, names)):
            archive = share / f"base-{i}.tar"
            subprocess.run(["skopeo", "copy", "--quiet", f"containers-storage:{name}",
                            f"oci-archive:{archive}"], check=True, capture_output=True)
            archive.chmod(0o644)
            rootless_user.run(["skopeo", "copy", "--quiet", f"oci-archive:{archive}",
                               f"containers-storage:{name}"], timeout=600)
    finally:
        shutil.rmtree(share, ignore_errors=True)
    built = rootless_user.uvbuild([recipe, "--tag", SAME_ID_USER_TAG, "--no-cache"],
                                  timeout=1500)
    print(built.stderr)
    root_id = subprocess.run(["buildah", "inspect", "--type", "image", "--format", "{{.FromImageID}}",
                              SAME_ID_ROOT_TAG], capture_output=True, text=True,
                             check=True).stdout.strip()
    user_id = rootless_user.run(["buildah", "inspect", "--type", "image", "--format", "{{.FromImageID}}",
                                 SAME_ID_USER_TAG]).stdout.strip()
    print(f"root: {root_id}\nrootless: {user_id}")
    subprocess.run(["buildah", "rmi", SAME_ID_ROOT_TAG], capture_output=True, check=False)
    assert user_id == root_id
