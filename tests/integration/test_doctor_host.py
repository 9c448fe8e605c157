"""`uvbuild doctor` on this host: as root, as the rootless user, and with a broken setting."""

from __future__ import annotations

import json
import re


def statuses(stdout: str) -> dict[str, str]:
    return {c["name"]: c["status"] for c in json.loads(stdout)["checks"]}


def test_doctor_as_root(run_uvbuild) -> None:
    proc = run_uvbuild(["doctor"])
    lines = proc.stdout.splitlines()
    print(proc.stdout)
    assert re.fullmatch(r"ok   buildah \d+\.\d+(\.\d+)? \(storage: \w+\)", lines[0]), lines[0]
    assert "ok   rootless: not checked, running as root" in proc.stdout
    assert re.fullmatch(r"\d+ checks: \d+ ok, \d+ warnings?, 0 problems", lines[-1]), lines[-1]
    assert "FAIL" not in proc.stdout

    checks = statuses(run_uvbuild(["doctor", "--json"]).stdout)
    assert checks["buildah"] == checks["storage"] == checks["uv"] == "ok"
    # The session's CONTAINERS_CONF (runc, cgroupfs, no default ulimits) satisfies podman.
    assert checks["podman-runtime"] == "ok"


def test_doctor_as_rootless_user(rootless_user) -> None:
    proc = rootless_user.uvbuild(["doctor"])
    print(proc.stdout)
    user = rootless_user.name
    assert re.search(rf"^ok   subids: {user} has subuid \d+-\d+, subgid \d+-\d+$",
                     proc.stdout, re.MULTILINE)
    assert "ok   uidmap: /usr/bin/newuidmap and /usr/bin/newgidmap (setuid root)" in proc.stdout
    assert f"ok   XDG_RUNTIME_DIR: {rootless_user.runtime_dir}\n" in proc.stdout
    assert re.search(r"^ok   user namespaces: `buildah unshare` maps \d+ uids$", proc.stdout, re.MULTILINE)
    assert "--mode=unshare" in proc.stdout
    assert "not checked, running as root" not in proc.stdout

    checks = statuses(rootless_user.uvbuild(["doctor", "--json"]).stdout)
    for name in ("buildah", "subids", "uidmap", "xdg-runtime-dir", "userns", "uv"):
        assert checks[name] == "ok", (name, checks)


def test_doctor_fails_on_a_missing_ca_bundle_and_masks_proxy_passwords(run_uvbuild) -> None:
    proc = run_uvbuild(
        ["doctor"],
        env={"SSL_CERT_FILE": "/nonexistent/ca.pem",
             "HTTPS_PROXY": "http://alice:hunter2@proxy.invalid:3128"},
        check=False,
    )
    assert proc.returncode == 5, proc.stderr
    assert "FAIL network: SSL_CERT_FILE=/nonexistent/ca.pem does not exist\n     fix: " in proc.stdout
    assert "HTTPS_PROXY=http://alice:****@proxy.invalid:3128" in proc.stdout
    assert "hunter2" not in proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "uvbuild: engine error: doctor found 1 problem(s)"
