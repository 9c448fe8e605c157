"""`uvbuild doctor` against fake hosts: every status of every check, as the exact lines shown."""

from __future__ import annotations

import json
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from uvbuild.commands import doctor
from uvbuild.commands.doctor import Check, FileInfo, mask_credentials, render, report, run_checks
from uvbuild.engine.cmd import Result
from uvbuild.errors import EngineError

BUILDAH_INFO = json.dumps({"store": {"GraphDriverName": "overlay",
                                     "GraphRoot": "/var/lib/containers/storage",
                                     "RunRoot": "/run/containers/storage"}})
RUNC_CONF = """\
[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
"""
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
SETUID_ROOT = FileInfo(mode=stat.S_IFREG | stat.S_ISUID | 0o755, uid=0, size=59336)
DIRECTORY = FileInfo(mode=stat.S_IFDIR | 0o700, uid=1000, size=4096)


def regular(size: int, uid: int = 0) -> FileInfo:
    return FileInfo(mode=stat.S_IFREG | 0o644, uid=uid, size=size)


@dataclass
class FakeProbe:
    """A host described by data: commands' results, files' texts and kinds, tools on PATH."""

    environ: dict[str, str] = field(default_factory=dict)
    euid: int = 0
    username: str = "root"
    commands: dict[tuple[str, ...], Result] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    files: dict[str, FileInfo] = field(default_factory=dict)
    tools: dict[str, str] = field(default_factory=dict)
    uv: str | None = "/venv/bin/uv"
    ran: list[tuple[str, ...]] = field(default_factory=list)

    def run(self, argv: Sequence[str]) -> Result:
        self.ran.append(tuple(argv))
        if tuple(argv) in self.commands:
            return self.commands[tuple(argv)]
        # What cmd.run does for a program that is not installed.
        raise EngineError(f"`{argv[0]}` was not found on PATH")

    def read_text(self, path: str) -> str | None:
        return self.texts.get(path)

    def file(self, path: str) -> FileInfo | None:
        if path in self.files:
            return self.files[path]
        return regular(len(self.texts[path])) if path in self.texts else None

    def which(self, tool: str) -> str | None:
        return self.tools.get(tool)

    def uv_binary(self) -> str | None:
        return self.uv

    # -- editing the host -------------------------------------------------------------

    def command(self, *argv: str, stdout: str = "", stderr: str = "", rc: int = 0) -> None:
        self.commands[argv] = Result(argv, rc, stdout, stderr)
        self.tools.setdefault(argv[0], f"/usr/bin/{argv[0]}")

    def remove(self, tool: str) -> None:
        self.tools.pop(tool, None)
        self.commands = {k: v for k, v in self.commands.items() if k[0] != tool}


def healthy_root() -> FakeProbe:
    """Like this project's CI host: Debian 12, cgroups v1/hybrid, CONTAINERS_CONF set."""
    probe = FakeProbe(environ={"HOME": "/root",
                               "CONTAINERS_CONF": "/root/.config/uvbuild/containers.conf",
                               "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt"})
    probe.command("buildah", "--version",
                  stdout="buildah version 1.28.2 (image-spec 1.1.0-rc2, runtime-spec 1.0.2-dev)\n")
    probe.command("buildah", "info", stdout=BUILDAH_INFO)
    probe.command("podman", "--version", stdout="podman version 4.3.1\n")
    probe.command("runc", "--version", stdout="runc version 1.1.5+ds1\ncommit: 1.1.5\n")
    probe.command("mmdebstrap", "--version", stdout="mmdebstrap 1.3.5\n")
    probe.command("skopeo", "--version", stdout="skopeo version 1.9.3 commit: unknown\n")
    probe.command("/venv/bin/uv", "--version", stdout="uv 0.13.9 (x86_64-unknown-linux-gnu)\n")
    probe.texts["/root/.config/uvbuild/containers.conf"] = RUNC_CONF
    probe.texts["/etc/ssl/certs/ca-certificates.crt"] = PEM * 3
    probe.tools["setpriv"] = "/usr/bin/setpriv"
    return probe


def healthy_rootless() -> FakeProbe:
    probe = healthy_root()
    probe.euid, probe.username = 1000, "alice"
    probe.environ.update({"HOME": "/home/alice", "XDG_RUNTIME_DIR": "/run/user/1000",
                          "CONTAINERS_CONF": "/home/alice/.config/uvbuild/containers.conf"})
    probe.texts["/home/alice/.config/uvbuild/containers.conf"] = RUNC_CONF
    probe.texts["/etc/subuid"] = "bob:100000:65536\nalice:165536:65536\n"
    probe.texts["/etc/subgid"] = "bob:100000:65536\nalice:165536:65536\n"
    probe.texts["/proc/sys/user/max_user_namespaces"] = "96365\n"
    probe.tools.update(newuidmap="/usr/bin/newuidmap", newgidmap="/usr/bin/newgidmap")
    probe.files.update({"/usr/bin/newuidmap": SETUID_ROOT, "/usr/bin/newgidmap": SETUID_ROOT,
                        "/run/user/1000": DIRECTORY})
    probe.command("buildah", "unshare", "cat", "/proc/self/uid_map",
                  stdout="         0       1000          1\n         1     165536      65536\n")
    return probe


def lines(probe: FakeProbe, name: str) -> list[str]:
    """The rendered lines of the check called `name` (without the summary)."""
    found = [c for c in run_checks(probe) if c.name == name]
    assert len(found) == 1, [c.name for c in run_checks(probe)]
    return render(found)[:-1]


# -- whole reports --------------------------------------------------------------------


def test_healthy_root_host() -> None:
    assert render(run_checks(healthy_root())) == [
        "ok   buildah 1.28.2 (storage: overlay)",
        "ok   storage: overlay at /var/lib/containers/storage",
        "ok   isolation: chroot for builder commands: needs no OCI runtime",
        "ok   podman 4.3.1",
        ("ok   podman runtime: runc 1.1.5, cgroupfs, no default ulimits "
        "(CONTAINERS_CONF=/root/.config/uvbuild/containers.conf; cgroups v1/hybrid)"),
        ("ok   rootless: not checked, running as root (run `uvbuild doctor` as the user who "
        "builds to check rootless builds)"),
        "ok   mmdebstrap 1.3.5 (for `bootstrap:` bases; --mode=root)",
        "ok   skopeo 1.9.3 (imports the assembled images with their digests)",
        ("ok   leftovers: running builds hold locks in /run/containers/storage/uvbuild; "
         "what a killed one left is removed by the next build or `uvbuild cache prune`"),
        "ok   uv 0.13.9 (/venv/bin/uv)",
        ("ok   network: SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt (3 certificates; "
        "mounted read-only into builder commands)"),
        "ok   proxy: none set",
        "12 checks: 12 ok, 0 warnings, 0 problems",
    ]


def test_healthy_rootless_host() -> None:
    assert render(run_checks(healthy_rootless()))[5:10] == [
        "ok   subids: alice has subuid 165536-231071, subgid 165536-231071",
        "ok   uidmap: /usr/bin/newuidmap and /usr/bin/newgidmap (setuid root)",
        "ok   XDG_RUNTIME_DIR: /run/user/1000",
        "ok   user namespaces: `buildah unshare` maps 65537 uids",
        ("ok   mmdebstrap 1.3.5 (for `bootstrap:` bases; --mode=unshare: needs the user "
        "namespace checks above)"),
    ]
    assert "rootless" not in [c.name for c in run_checks(healthy_rootless())]


def test_a_bare_host_fails_and_says_what_to_install() -> None:
    probe = FakeProbe(environ={"HOME": "/root"}, uv=None)
    assert render(run_checks(probe)) == [
        "FAIL buildah: not found on PATH",
        "     fix: sudo apt-get install buildah",
        "ok   isolation: chroot for builder commands: needs no OCI runtime",
        "warn podman: not found (needed to run the images, not to build them)",
        "     fix: sudo apt-get install podman",
        ("ok   rootless: not checked, running as root (run `uvbuild doctor` as the user who "
        "builds to check rootless builds)"),
        "warn mmdebstrap: not found (needed only for `from: {bootstrap: ...}` bases)",
        "     fix: sudo apt-get install mmdebstrap",
        "FAIL skopeo: not found (it imports every image uvbuild assembles)",
        "     fix: sudo apt-get install skopeo",
        "FAIL uv: the `uv` package's binary was not found",
        "     fix: reinstall uvbuild with its dependencies (`uv sync` in a checkout)",
        ("ok   network: SSL_CERT_FILE not set: builder commands use the images' own CA "
        "certificates"),
        "ok   proxy: none set",
        "9 checks: 4 ok, 2 warnings, 3 problems",
    ]


def test_json_report() -> None:
    checks = [Check("podman", "warn", "podman: not found", "sudo apt-get install podman")]
    assert json.loads(report(checks, as_json=True)) == {
        "checks": [{"name": "podman", "status": "warn", "detail": "podman: not found",
                    "fix": "sudo apt-get install podman"}],
        "problems": 0,
    }


def test_an_engine_error_inside_one_check_does_not_hide_the_others(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(probe: object) -> Check:
        raise EngineError("`buildah info` did not finish within 60s", hint="is storage locked?")

    monkeypatch.setattr(doctor, "CHECKS", (broken, doctor.check_proxies))
    assert render(run_checks(healthy_root())) == [
        "FAIL `buildah info` did not finish within 60s",
        "     fix: is storage locked?",
        "ok   proxy: none set",
        "2 checks: 1 ok, 0 warnings, 1 problem",
    ]


def test_commands_are_asked_once_each_in_the_engine_spelling() -> None:
    probe = healthy_root()
    probe.environ["UVBUILD_STORAGE_DRIVER"] = "overlay"
    probe.command("buildah", "--storage-driver", "overlay", "info", stdout=BUILDAH_INFO)
    assert lines(probe, "storage") == [
        "ok   storage: overlay at /var/lib/containers/storage (UVBUILD_STORAGE_DRIVER=overlay)"]
    assert ("buildah", "info") not in probe.ran


# -- buildah and storage --------------------------------------------------------------


def test_buildah_too_old() -> None:
    probe = healthy_root()
    probe.command("buildah", "--version", stdout="buildah version 1.19.6 (image-spec 1.0.1)\n")
    assert lines(probe, "buildah") == [
        "FAIL buildah 1.19.6 is too old: uvbuild needs 1.23 or newer",
        ("     fix: install buildah >= 1.23 (Debian 12 and Ubuntu 22.04 ship it): "
        "sudo apt-get install buildah"),
    ]


def test_buildah_version_fails() -> None:
    probe = healthy_root()
    probe.command("buildah", "--version", stderr="error while loading shared libraries\n", rc=127)
    assert lines(probe, "buildah") == [
        "FAIL buildah: `buildah --version` failed: error while loading shared libraries",
        "     fix: sudo apt-get install --reinstall buildah",
    ]


def test_buildah_version_unreadable() -> None:
    probe = healthy_root()
    probe.command("buildah", "--version", stdout="buildah dev\n")
    assert lines(probe, "buildah") == [
        "warn buildah: cannot read a version in 'buildah dev'",
        "     fix: uvbuild needs buildah 1.23 or newer",
    ]


def test_buildah_info_fails() -> None:
    probe = healthy_root()
    probe.command("buildah", "info", rc=125,
                  stderr='Error: "/etc/containers/storage.conf": unknown driver "zfs2"\n')
    assert lines(probe, "buildah") == ["ok   buildah 1.28.2"]
    assert lines(probe, "storage") == [
        ('FAIL storage: `buildah info` failed: Error: "/etc/containers/storage.conf": '
        'unknown driver "zfs2"'),
        ("     fix: run `buildah info` to see the whole error; check /etc/containers/storage.conf "
        "(rootless: ~/.config/containers/storage.conf)"),
    ]


def test_buildah_info_without_json() -> None:
    probe = healthy_root()
    probe.command("buildah", "info", stdout="not json")
    assert lines(probe, "storage") == ["FAIL storage: `buildah info` printed no JSON"]


def test_vfs_storage() -> None:
    probe = healthy_root()
    probe.command("buildah", "info", stdout=json.dumps(
        {"store": {"GraphDriverName": "vfs", "GraphRoot": "/home/alice/.local/share/containers"}}))
    assert lines(probe, "storage") == [
        ("warn storage: vfs at /home/alice/.local/share/containers: every layer is a full copy "
        "(slow, large)"),
        ("     fix: a store keeps the driver it was made with: empty it (`podman system reset`), "
        'and see that no storage.conf says driver = "vfs" (/etc/containers/storage.conf, '
        "~/.config/containers/storage.conf)"),
        ("          rootless on kernels before 5.13 also needs: sudo apt-get install "
        "fuse-overlayfs"),
    ]


def test_vfs_storage_asked_for() -> None:
    probe = healthy_root()
    probe.environ["UVBUILD_STORAGE_DRIVER"] = "vfs"
    probe.command("buildah", "--storage-driver", "vfs", "info", stdout=json.dumps(
        {"store": {"GraphDriverName": "vfs", "GraphRoot": "/var/lib/containers/storage"}}))
    assert lines(probe, "storage") == [
        ("warn storage: vfs at /var/lib/containers/storage (UVBUILD_STORAGE_DRIVER=vfs): every "
        "layer is a full copy (slow, large)"),
        "     fix: unset UVBUILD_STORAGE_DRIVER",
    ]


# -- isolation --------------------------------------------------------------------------


def test_isolation_chroot_set_explicitly() -> None:
    probe = healthy_root()
    probe.environ["BUILDAH_ISOLATION"] = "chroot"
    assert lines(probe, "isolation") == [
        ("ok   isolation: chroot for builder commands (BUILDAH_ISOLATION=chroot): "
        "needs no OCI runtime")]


def test_isolation_oci_override() -> None:
    probe = healthy_root()
    probe.environ["BUILDAH_ISOLATION"] = "oci"
    assert lines(probe, "isolation") == [
        ("warn isolation: BUILDAH_ISOLATION=oci overrides uvbuild's chroot (runtime runc): "
        "needs working cgroups and namespaces"),
        "     fix: if builder commands fail to start, unset BUILDAH_ISOLATION",
    ]


def test_isolation_oci_without_its_runtime() -> None:
    probe = healthy_root()
    probe.environ.update(BUILDAH_ISOLATION="rootless", UVBUILD_OCI_RUNTIME="crun")
    assert lines(probe, "isolation") == [
        ("FAIL isolation: BUILDAH_ISOLATION=rootless needs the OCI runtime crun, which is not "
        "installed"),
        ("     fix: sudo apt-get install crun, or unset BUILDAH_ISOLATION (uvbuild then uses "
        "chroot)"),
    ]


def test_isolation_unknown() -> None:
    probe = healthy_root()
    probe.environ["BUILDAH_ISOLATION"] = "jail"
    assert lines(probe, "isolation") == [
        "FAIL isolation: BUILDAH_ISOLATION='jail' is not chroot, oci or rootless",
        "     fix: unset BUILDAH_ISOLATION (uvbuild then uses chroot)",
    ]


# -- podman -----------------------------------------------------------------------------


def test_podman_version_fails() -> None:
    probe = healthy_root()
    probe.command("podman", "--version", stderr="segfault\n", rc=139)
    assert lines(probe, "podman") == [
        "warn podman: `podman --version` failed: segfault",
        "     fix: sudo apt-get install --reinstall podman",
    ]


def test_podman_runtime_skipped_without_podman() -> None:
    probe = healthy_root()
    probe.remove("podman")
    assert "podman-runtime" not in [c.name for c in run_checks(probe)]


def test_podman_runtime_on_cgroups_v2() -> None:
    probe = healthy_root()
    probe.texts["/sys/fs/cgroup/cgroup.controllers"] = "cpuset cpu io memory pids\n"
    assert lines(probe, "podman-runtime") == [
        "ok   podman runtime: cgroups v2, podman's defaults work"]


def test_podman_runtime_unconfigured_with_host_setup_file_present() -> None:
    probe = healthy_root()
    del probe.environ["CONTAINERS_CONF"]
    assert lines(probe, "podman-runtime") == [
        ('warn podman runtime: cgroups v1/hybrid host, CONTAINERS_CONF is not set: podman needs '
        'runtime = "runc", cgroup_manager = "cgroupfs", default_ulimits = []'),
        ("     fix: export CONTAINERS_CONF=/root/.config/uvbuild/containers.conf  "
        "(scripts/host-setup wrote it)"),
    ]


def test_podman_runtime_unconfigured_says_how_host_setup_writes_it() -> None:
    probe = healthy_root()
    del probe.environ["CONTAINERS_CONF"]
    del probe.texts["/root/.config/uvbuild/containers.conf"]
    probe.texts["/etc/containers/containers.conf"] = '[engine]\ncgroup_manager = "cgroupfs"\n'
    assert lines(probe, "podman-runtime") == [
        ('warn podman runtime: cgroups v1/hybrid host, CONTAINERS_CONF is not set: podman needs '
        'runtime = "runc", default_ulimits = []'),
        ("     fix: run scripts/host-setup: it writes /root/.config/uvbuild/containers.conf as "
        "below; then export CONTAINERS_CONF=/root/.config/uvbuild/containers.conf"),
        "          [containers]",
        "          default_ulimits = []",
        "          [engine]",
        '          runtime = "runc"',
        '          cgroup_manager = "cgroupfs"',
    ]


def test_podman_runtime_settings_in_system_files_count() -> None:
    probe = healthy_root()
    del probe.environ["CONTAINERS_CONF"]
    probe.texts["/usr/share/containers/containers.conf"] = '[engine]\nruntime = "crun"\n'
    probe.texts["/etc/containers/containers.conf"] = RUNC_CONF
    assert lines(probe, "podman-runtime") == [
        ("ok   podman runtime: runc 1.1.5, cgroupfs, no default ulimits (CONTAINERS_CONF is not "
        "set; cgroups v1/hybrid)")]


def test_podman_runtime_conf_file_missing() -> None:
    probe = healthy_root()
    probe.environ["CONTAINERS_CONF"] = "/nowhere/containers.conf"
    assert lines(probe, "podman-runtime") == [
        "FAIL podman runtime: CONTAINERS_CONF=/nowhere/containers.conf names no file",
        ("     fix: run scripts/host-setup and export the CONTAINERS_CONF it prints, or unset "
        "CONTAINERS_CONF"),
    ]


def test_podman_runtime_conf_not_toml() -> None:
    probe = healthy_root()
    probe.texts["/root/.config/uvbuild/containers.conf"] = "[engine\n"
    [line, fix] = lines(probe, "podman-runtime")
    assert line.startswith("FAIL podman runtime: a containers.conf is not valid TOML: ")
    assert fix == ("     fix: fix its syntax, or run scripts/host-setup and use the file it "
                   "writes")


def test_podman_runtime_runc_missing() -> None:
    probe = healthy_root()
    probe.remove("runc")
    assert lines(probe, "podman-runtime") == [
        "FAIL podman runtime: containers.conf asks for runc, which is not installed",
        "     fix: sudo apt-get install runc",
    ]


# -- rootless -----------------------------------------------------------------------------


def test_subids_missing() -> None:
    probe = healthy_rootless()
    probe.texts["/etc/subuid"] = probe.texts["/etc/subgid"] = "bob:100000:65536\n"
    assert lines(probe, "subids") == [
        "FAIL subids: alice has no range in /etc/subuid and /etc/subgid",
        "     fix: sudo usermod --add-subuids 165536-231071 --add-subgids 165536-231071 alice",
    ]


def test_subids_file_absent() -> None:
    probe = healthy_rootless()
    del probe.texts["/etc/subgid"]
    assert lines(probe, "subids") == [
        "FAIL subids: alice has no range in /etc/subgid",
        "     fix: sudo usermod --add-subgids 100000-165535 alice",
    ]


def test_subids_too_few() -> None:
    probe = healthy_rootless()
    probe.texts["/etc/subuid"] = "1000:300000:1000\n"
    assert lines(probe, "subids") == [
        "warn subids: alice has too few subordinate ids (1000 in /etc/subuid; images need 65536)",
        "     fix: sudo usermod --add-subuids 100000-165535 alice",
    ]


def test_subids_one_short_one_missing() -> None:
    probe = healthy_rootless()
    probe.texts["/etc/subuid"] = "alice:300000:1000\n"
    probe.texts["/etc/subgid"] = ""
    assert lines(probe, "subids") == [
        ("FAIL subids: alice has too few subordinate ids (1000 in /etc/subuid, 0 in /etc/subgid; "
        "images need 65536)"),
        "     fix: sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 alice",
    ]


def test_uidmap_missing() -> None:
    probe = healthy_rootless()
    del probe.tools["newgidmap"]
    assert lines(probe, "uidmap") == [
        "FAIL uidmap: newgidmap not found",
        "     fix: sudo apt-get install uidmap",
    ]


def test_uidmap_with_file_capabilities() -> None:
    probe = healthy_rootless()
    caps = FileInfo(mode=stat.S_IFREG | 0o755, uid=0, size=59336, caps=True)
    probe.files.update({"/usr/bin/newuidmap": caps, "/usr/bin/newgidmap": caps})
    assert lines(probe, "uidmap") == [
        "ok   uidmap: /usr/bin/newuidmap and /usr/bin/newgidmap (file capabilities)"]


def test_uidmap_without_privilege() -> None:
    probe = healthy_rootless()
    probe.files["/usr/bin/newuidmap"] = FileInfo(mode=stat.S_IFREG | 0o755, uid=0, size=59336)
    assert lines(probe, "uidmap") == [
        "FAIL uidmap: /usr/bin/newuidmap is neither setuid root nor has file capabilities",
        ("     fix: sudo apt-get install --reinstall uidmap  "
        "(or: sudo chmod u+s /usr/bin/newuidmap /usr/bin/newgidmap)"),
    ]


def test_runtime_dir_unset() -> None:
    probe = healthy_rootless()
    del probe.environ["XDG_RUNTIME_DIR"]
    assert lines(probe, "xdg-runtime-dir") == [
        ("warn XDG_RUNTIME_DIR is not set: buildah and podman fall back to /tmp, and podman may "
        "refuse to run"),
        ("     fix: log in as alice (ssh, or `machinectl shell alice@`), or: sudo loginctl "
        "enable-linger alice, then export XDG_RUNTIME_DIR=/run/user/1000"),
    ]


def test_runtime_dir_of_root_after_su() -> None:
    probe = healthy_rootless()
    probe.environ["XDG_RUNTIME_DIR"] = "/run/user/0"
    probe.files["/run/user/0"] = FileInfo(mode=stat.S_IFDIR | 0o700, uid=0, size=4096)
    assert lines(probe, "xdg-runtime-dir") == [
        "FAIL XDG_RUNTIME_DIR=/run/user/0 belongs to uid 0, not alice (1000)",
        "     fix: sudo loginctl enable-linger alice, then export XDG_RUNTIME_DIR=/run/user/1000",
    ]


def test_runtime_dir_missing() -> None:
    probe = healthy_rootless()
    del probe.files["/run/user/1000"]
    assert lines(probe, "xdg-runtime-dir") == [
        "FAIL XDG_RUNTIME_DIR=/run/user/1000 is not a directory",
        ("     fix: sudo loginctl enable-linger alice, then export XDG_RUNTIME_DIR=/run/user/1000"
        "  (or: sudo install -d -m 700 -o alice /run/user/1000)"),
    ]


def test_user_namespaces_disabled_by_sysctl() -> None:
    probe = healthy_rootless()
    probe.texts["/proc/sys/kernel/unprivileged_userns_clone"] = "0\n"
    assert lines(probe, "userns") == [
        "FAIL user namespaces: disabled (kernel.unprivileged_userns_clone = 0)",
        ("     fix: sudo sysctl -w kernel.unprivileged_userns_clone=1  "
        "(and keep it in /etc/sysctl.d/)"),
    ]


def test_user_namespaces_limited_to_zero() -> None:
    probe = healthy_rootless()
    probe.texts["/proc/sys/user/max_user_namespaces"] = "0\n"
    assert lines(probe, "userns")[0] == (
        "FAIL user namespaces: disabled (user.max_user_namespaces = 0)")


def test_buildah_unshare_fails() -> None:
    probe = healthy_rootless()
    probe.command("buildah", "unshare", "cat", "/proc/self/uid_map", rc=125,
                  stderr="Error: cannot find mappings for user alice: No subuid ranges found\n")
    assert lines(probe, "userns") == [
        ("FAIL user namespaces: `buildah unshare` failed: Error: cannot find mappings for user "
        "alice: No subuid ranges found"),
        "     fix: fix the subids and uidmap checks above; then try `buildah unshare id`",
    ]


def test_buildah_unshare_maps_only_the_user() -> None:
    probe = healthy_rootless()
    probe.command("buildah", "unshare", "cat", "/proc/self/uid_map",
                  stdout="         0       1000          1\n")
    assert lines(probe, "userns") == [
        "FAIL user namespaces: `buildah unshare` maps only 1 uid(s)",
        ("     fix: fix the subids check above; then run `podman system migrate` so rootless "
        "storage picks up the new ranges"),
    ]


def test_user_namespaces_without_buildah() -> None:
    probe = healthy_rootless()
    probe.remove("buildah")
    assert lines(probe, "userns") == [
        "ok   user namespaces: enabled (buildah missing: not tried)"]


# -- mmdebstrap and uv ------------------------------------------------------------------


def test_mmdebstrap_version_fails() -> None:
    probe = healthy_root()
    probe.command("mmdebstrap", "--version", stderr="Can't locate Dpkg.pm\n", rc=2)
    assert lines(probe, "mmdebstrap") == [
        ("warn mmdebstrap: `mmdebstrap --version` failed: Can't locate Dpkg.pm (needed only for "
        "`from: {bootstrap: ...}` bases)"),
        "     fix: sudo apt-get install mmdebstrap",
    ]


def test_uv_binary_gone() -> None:
    probe = healthy_root()
    probe.remove("/venv/bin/uv")
    assert lines(probe, "uv") == [
        "FAIL uv: /venv/bin/uv does not exist",
        "     fix: reinstall uvbuild with its dependencies (`uv sync` in a checkout)",
    ]


def test_uv_binary_broken() -> None:
    probe = healthy_root()
    probe.command("/venv/bin/uv", "--version", stderr="Exec format error\n", rc=126)
    assert lines(probe, "uv") == [
        "FAIL uv: /venv/bin/uv --version failed: Exec format error",
        "     fix: reinstall uvbuild with its dependencies (`uv sync` in a checkout)",
    ]


# -- network ----------------------------------------------------------------------------

BUNDLE_FIX = ("     fix: point SSL_CERT_FILE at a PEM bundle (e.g. "
              "/etc/ssl/certs/ca-certificates.crt) or unset it")


def test_ca_bundle_missing() -> None:
    probe = healthy_root()
    probe.environ["SSL_CERT_FILE"] = "/corp/ca.pem"
    assert lines(probe, "ssl-cert-file") == [
        "FAIL network: SSL_CERT_FILE=/corp/ca.pem does not exist", BUNDLE_FIX]


def test_ca_bundle_empty() -> None:
    probe = healthy_root()
    probe.environ["SSL_CERT_FILE"] = "/corp/ca.pem"
    probe.texts["/corp/ca.pem"] = ""
    assert lines(probe, "ssl-cert-file") == [
        "FAIL network: SSL_CERT_FILE=/corp/ca.pem is empty", BUNDLE_FIX]


def test_ca_bundle_without_certificates() -> None:
    probe = healthy_root()
    probe.environ["SSL_CERT_FILE"] = "/corp/ca.der"
    probe.texts["/corp/ca.der"] = "0\x82\x03"
    assert lines(probe, "ssl-cert-file") == [
        "FAIL network: SSL_CERT_FILE=/corp/ca.der holds no PEM certificate", BUNDLE_FIX]


def test_ca_bundle_is_a_directory() -> None:
    probe = healthy_root()
    probe.environ["SSL_CERT_FILE"] = "/etc/ssl/certs"
    probe.files["/etc/ssl/certs"] = DIRECTORY
    assert lines(probe, "ssl-cert-file") == [
        "FAIL network: SSL_CERT_FILE=/etc/ssl/certs is not a file", BUNDLE_FIX]


def test_proxies_are_shown_with_credentials_masked() -> None:
    probe = healthy_root()
    probe.environ.update(HTTPS_PROXY="http://alice:s3cr:t@proxy.corp:3128",
                         http_proxy="http://proxy.corp:3128/",
                         NO_PROXY="localhost,.corp")
    assert lines(probe, "proxy") == [
        ("ok   proxy: http_proxy=http://proxy.corp:3128/, HTTPS_PROXY=http://alice:****@proxy.corp:3128, "
        "NO_PROXY=localhost,.corp (passed to builder commands at build time only, never stored "
        "in the image)")]
    assert "s3cr" not in report(run_checks(probe), as_json=True)


@pytest.mark.parametrize(("url", "shown"), [
    ("http://user:pw@host:3128", "http://user:****@host:3128"),
    ("http://user:p@ss@host:3128/path", "http://user:****@host:3128/path"),
    ("http://token@host:3128", "http://****@host:3128"),
    ("user:pw@host:3128", "user:****@host:3128"),
    ("http://host:3128", "http://host:3128"),
    ("socks5h://u:p@h", "socks5h://u:****@h"),
])
def test_mask_credentials(url: str, shown: str) -> None:
    assert mask_credentials(url) == shown


def test_leftovers_says_where_the_run_locks_are() -> None:
    assert lines(healthy_root(), "leftovers") == [
        "ok   leftovers: running builds hold locks in /run/containers/storage/uvbuild; "
        "what a killed one left is removed by the next build or `uvbuild cache prune`"]


def test_leftovers_warns_without_setpriv() -> None:
    probe = healthy_root()
    probe.remove("setpriv")
    found = [c for c in run_checks(probe) if c.name == "leftovers"]
    assert [(c.status, c.fix) for c in found] == [("warn", "sudo apt-get install util-linux")]
    assert "run on until the next build" in found[0].detail
