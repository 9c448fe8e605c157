"""A rootless build: an unprivileged user builds recipes/fastapi.yaml into its own storage.

The user runs the uvbuild of its own checkout and venv (``rootless_user``), with
no help from root: the Debian base is bootstrapped in a user namespace, the
image lands in ``~/.local/share/containers``, and the user's podman runs it.
"""

from __future__ import annotations

import json
import re
import time

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
