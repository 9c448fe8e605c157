"""`uvbuild doctor`: can this host build (and run) images, and if not, what exactly to fix.

Each check is a function of a `Probe` (run a command, read a file, stat a path, the
environment, who we are) returning a `Check`, or None when it does not apply here
(rootless checks as root, podman settings without podman). `HostProbe` asks the real
host; unit tests hand in a fake one. Nothing here changes the host.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import stat
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Literal, Protocol

from uvbuild.engine import cmd, subids
from uvbuild.engine.buildah import STORAGE_DRIVER, buildah_argv
from uvbuild.engine.netenv import PROXY_VARIABLES
from uvbuild.errors import EngineError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

Status = Literal["ok", "warn", "fail"]

MIN_BUILDAH = (1, 23)
SUBID_COUNT = subids.COUNT  # images need this many subordinate ids
# What podman needs on cgroups v1/hybrid hosts, as scripts/host-setup writes it: crun
# fails there, and setting the default ulimits is refused in some sandboxes.
RUNC_SETTINGS = {"runtime": "runc", "cgroup_manager": "cgroupfs", "default_ulimits": []}
HOST_SETUP_CONF = (
    '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"'
)


@dataclass(frozen=True, slots=True)
class Check:
    """One verdict: `detail` is the line shown, `fix` the command or change that cures it."""

    name: str
    status: Status
    detail: str
    fix: str | None = None


@dataclass(frozen=True, slots=True)
class FileInfo:
    """What the checks need to know of a path (after symlinks)."""

    mode: int
    uid: int
    size: int
    caps: bool = False  # has file capabilities (the security.capability xattr)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)


class Probe(Protocol):
    """The host, as the checks see it."""

    @property
    def environ(self) -> Mapping[str, str]:
        """The environment uvbuild runs (and passes to its commands) with."""

    @property
    def euid(self) -> int:
        """Who runs uvbuild: 0 builds rootful, anyone else rootless."""

    @property
    def username(self) -> str:
        """The name /etc/subuid and /etc/subgid know that user by."""

    def run(self, argv: Sequence[str]) -> cmd.Result:
        """Run a read-only command; raise EngineError when its program is missing."""

    def read_text(self, path: str) -> str | None:
        """A file's text, or None when it cannot be read."""

    def file(self, path: str) -> FileInfo | None:
        """What `path` is, or None when it does not exist."""

    def which(self, tool: str) -> str | None:
        """The absolute path of `tool` on PATH, or None."""

    def uv_binary(self) -> str | None:
        """The path of the `uv` package's binary, or None when the package is missing."""


class HostProbe:
    """The real host. Each command runs at most once (several checks ask `buildah info`)."""

    def __init__(self) -> None:
        self.environ: Mapping[str, str] = os.environ
        self.euid = os.geteuid()
        try:
            self.username = pwd.getpwuid(self.euid).pw_name
        except KeyError:
            self.username = str(self.euid)
        self._results: dict[tuple[str, ...], cmd.Result] = {}

    def run(self, argv: Sequence[str]) -> cmd.Result:
        key = tuple(argv)
        if key not in self._results:
            self._results[key] = cmd.run(argv)
        return self._results[key]

    def read_text(self, path: str) -> str | None:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return None

    def file(self, path: str) -> FileInfo | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        try:
            caps = bool(os.getxattr(path, "security.capability"))
        except OSError:
            caps = False
        return FileInfo(mode=st.st_mode, uid=st.st_uid, size=st.st_size, caps=caps)

    def which(self, tool: str) -> str | None:
        return cmd.which(tool)

    def uv_binary(self) -> str | None:
        from uvbuild.plan.inputs import uv_binary

        try:
            return uv_binary()
        except (ImportError, FileNotFoundError):
            return None


# -- helpers ----------------------------------------------------------------------------


def _ask(probe: Probe, argv: Sequence[str]) -> cmd.Result | None:
    """`argv`'s Result, or None when its program is not installed."""
    try:
        return probe.run(argv)
    except EngineError:
        return None


def _buildah(probe: Probe, *args: str) -> list[str]:
    """A buildah command line as the engine spells it (same storage driver override)."""
    return buildah_argv(*args, storage_driver=probe.environ.get(STORAGE_DRIVER))


def _tail(result: cmd.Result) -> str:
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[-1].strip() if lines else f"exit code {result.returncode}"


def _version(text: str) -> str | None:
    match = re.search(r"\d+\.\d+(?:\.\d+)?", text)
    return match.group(0) if match else None


def _buildah_info(probe: Probe) -> dict[str, object] | None:
    result = _ask(probe, _buildah(probe, "info"))
    if result is None or not result.ok:
        return None
    try:
        info = json.loads(result.stdout)
    except ValueError:
        return None
    return info if isinstance(info, dict) else None


def _store(info: Mapping[str, object]) -> tuple[str, str]:
    store = info.get("store")
    store = store if isinstance(store, dict) else {}
    return str(store.get("GraphDriverName", "?")), str(store.get("GraphRoot", "?"))


def _config_home(probe: Probe) -> str:
    home = probe.environ.get("HOME") or "~"
    return probe.environ.get("XDG_CONFIG_HOME") or f"{home}/.config"


def mask_credentials(url: str) -> str:
    """`url` with its password shown as **** (a user name without a password may be a token)."""
    scheme, sep, rest = url.partition("://")
    prefix = scheme + sep if sep else ""
    rest = rest if sep else url
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    shown = f"{user}:****" if colon else "****"
    return f"{prefix}{shown}@{host}{slash}{path}"


# -- the checks -------------------------------------------------------------------------


def check_buildah(probe: Probe) -> Check:
    """buildah is installed and new enough; its line also names the storage driver."""
    result = _ask(probe, buildah_argv("--version", storage_driver=None))
    if result is None:
        return Check("buildah", "fail", "buildah: not found on PATH",
                     "sudo apt-get install buildah")
    if not result.ok:
        return Check("buildah", "fail", f"buildah: `buildah --version` failed: {_tail(result)}",
                     "sudo apt-get install --reinstall buildah")
    version = _version(result.stdout)
    if version is None:
        return Check("buildah", "warn",
                     f"buildah: cannot read a version in {result.stdout.strip()!r}",
                     "uvbuild needs buildah 1.23 or newer")
    if tuple(int(p) for p in version.split(".")[:2]) < MIN_BUILDAH:
        return Check("buildah", "fail",
                     f"buildah {version} is too old: uvbuild needs 1.23 or newer",
                     "install buildah >= 1.23 (Debian 12 and Ubuntu 22.04 ship it): "
                     "sudo apt-get install buildah")
    info = _buildah_info(probe)
    storage = f" (storage: {_store(info)[0]})" if info else ""
    return Check("buildah", "ok", f"buildah {version}{storage}")


def check_storage(probe: Probe) -> Check | None:
    """`buildah info` works; the storage driver is not vfs (a full copy per layer)."""
    result = _ask(probe, _buildah(probe, "info"))
    if result is None:
        return None
    if not result.ok:
        return Check("storage", "fail", f"storage: `buildah info` failed: {_tail(result)}",
                     "run `buildah info` to see the whole error; check /etc/containers/"
                     "storage.conf (rootless: ~/.config/containers/storage.conf)")
    info = _buildah_info(probe)
    if info is None:
        return Check("storage", "fail", "storage: `buildah info` printed no JSON", None)
    driver, root = _store(info)
    override = probe.environ.get(STORAGE_DRIVER)
    note = f" ({STORAGE_DRIVER}={override})" if override else ""
    if driver == "vfs":
        fix = ("unset UVBUILD_STORAGE_DRIVER" if override == "vfs" else
               "a store keeps the driver it was made with: empty it (`podman system reset`), "
               'and see that no storage.conf says driver = "vfs" (/etc/containers/storage.conf, '
               "~/.config/containers/storage.conf)\n"
               "rootless on kernels before 5.13 also needs: sudo apt-get install fuse-overlayfs")
        return Check("storage", "warn",
                     f"storage: vfs at {root}{note}: every layer is a full copy (slow, large)", fix)
    return Check("storage", "ok", f"storage: {driver} at {root}{note}")


def check_isolation(probe: Probe) -> Check:
    """How `buildah run` isolates builder commands (chroot unless BUILDAH_ISOLATION says)."""
    # Not checkable by running something: that needs an image. chroot needs no OCI
    # runtime, cgroups or network namespaces, so it works rootless and on cgroups v1.
    value = probe.environ.get("BUILDAH_ISOLATION")
    if not value or value == "chroot":
        note = " (BUILDAH_ISOLATION=chroot)" if value else ""
        return Check("isolation", "ok",
                     f"isolation: chroot for builder commands{note}: needs no OCI runtime")
    if value not in ("oci", "rootless"):
        return Check("isolation", "fail",
                     f"isolation: BUILDAH_ISOLATION={value!r} is not chroot, oci or rootless",
                     "unset BUILDAH_ISOLATION (uvbuild then uses chroot)")
    runtime = probe.environ.get("UVBUILD_OCI_RUNTIME", "runc")
    if probe.which(runtime) is None:
        return Check("isolation", "fail",
                     f"isolation: BUILDAH_ISOLATION={value} needs the OCI runtime {runtime}, "
                     "which is not installed",
                     f"sudo apt-get install {runtime}, or unset BUILDAH_ISOLATION "
                     "(uvbuild then uses chroot)")
    return Check("isolation", "warn",
                 f"isolation: BUILDAH_ISOLATION={value} overrides uvbuild's chroot "
                 f"(runtime {runtime}): needs working cgroups and namespaces",
                 "if builder commands fail to start, unset BUILDAH_ISOLATION")


def check_podman(probe: Probe) -> Check:
    """podman runs the built images (`runtime.test` and you); building does not need it."""
    result = _ask(probe, ["podman", "--version"])
    if result is None:
        return Check("podman", "warn",
                     "podman: not found (needed to run the images, not to build them)",
                     "sudo apt-get install podman")
    if not result.ok:
        return Check("podman", "warn", f"podman: `podman --version` failed: {_tail(result)}",
                     "sudo apt-get install --reinstall podman")
    return Check("podman", "ok", f"podman {_version(result.stdout) or result.stdout.strip()}")


def _conf_files(probe: Probe) -> list[str]:
    """The containers.conf files podman reads: CONTAINERS_CONF replaces the usual ones."""
    chosen = probe.environ.get("CONTAINERS_CONF")
    if chosen:
        return [chosen]
    user = [f"{_config_home(probe)}/containers/containers.conf"] if probe.euid != 0 else []
    return ["/usr/share/containers/containers.conf", "/etc/containers/containers.conf", *user]


def _missing_settings(probe: Probe, files: Sequence[str]) -> list[str]:
    """Which of RUNC_SETTINGS `files` (later ones win) do not set, as TOML lines."""
    settings: dict[str, object] = {}
    for path in files:
        text = probe.read_text(path)
        if text is None:
            continue
        data = tomllib.loads(text)
        for table, key in (("engine", "runtime"), ("engine", "cgroup_manager"),
                           ("containers", "default_ulimits")):
            section = data.get(table)
            if isinstance(section, dict) and key in section:
                settings[key] = section[key]
    return [f"{key} = {json.dumps(want)}" for key, want in RUNC_SETTINGS.items()
            if settings.get(key) != want]


def check_podman_runtime(probe: Probe) -> Check | None:
    """On cgroups v1/hybrid, podman needs runc + cgroupfs + no default ulimits."""
    if probe.which("podman") is None:
        return None
    chosen = probe.environ.get("CONTAINERS_CONF")
    where = f"CONTAINERS_CONF={chosen}" if chosen else "CONTAINERS_CONF is not set"
    setup_path = f"{_config_home(probe)}/uvbuild/containers.conf"
    if chosen and probe.file(chosen) is None:
        return Check("podman-runtime", "fail", f"podman runtime: {where} names no file",
                     "run scripts/host-setup and export the CONTAINERS_CONF it prints, "
                     "or unset CONTAINERS_CONF")
    if probe.file("/sys/fs/cgroup/cgroup.controllers") is not None:
        return Check("podman-runtime", "ok",
                     "podman runtime: cgroups v2, podman's defaults work")
    try:
        missing = _missing_settings(probe, _conf_files(probe))
        setup_ready = (not chosen and probe.file(setup_path) is not None
                       and not _missing_settings(probe, [setup_path]))
    except tomllib.TOMLDecodeError as exc:
        return Check("podman-runtime", "fail",
                     f"podman runtime: a containers.conf is not valid TOML: {exc}",
                     "fix its syntax, or run scripts/host-setup and use the file it writes")
    if missing:
        if setup_ready:
            fix = f"export CONTAINERS_CONF={setup_path}  (scripts/host-setup wrote it)"
        else:
            fix = (f"run scripts/host-setup: it writes {setup_path} as below; then "
                   f"export CONTAINERS_CONF={setup_path}\n{HOST_SETUP_CONF}")
        return Check("podman-runtime", "warn",
                     f"podman runtime: cgroups v1/hybrid host, {where}: podman needs "
                     f"{', '.join(missing)}", fix)
    runc = _ask(probe, ["runc", "--version"])
    if runc is None or not runc.ok:
        return Check("podman-runtime", "fail",
                     "podman runtime: containers.conf asks for runc, which is not installed",
                     "sudo apt-get install runc")
    return Check("podman-runtime", "ok",
                 f"podman runtime: runc {_version(runc.stdout)}, cgroupfs, no default ulimits "
                 f"({where}; cgroups v1/hybrid)")


def check_rootless_mode(probe: Probe) -> Check | None:
    """As root, say that rootless readiness was not looked at."""
    if probe.euid != 0:
        return None
    return Check("rootless", "ok", "rootless: not checked, running as root (run `uvbuild "
                 "doctor` as the user who builds to check rootless builds)")


def check_subids(probe: Probe) -> Check | None:
    """Rootless: the user has subordinate uid and gid ranges to map image owners onto."""
    if probe.euid == 0:
        return None
    user = probe.username
    texts = {name: probe.read_text(f"/etc/{name}") for name in ("subuid", "subgid")}
    ranges = {name: subids.ranges(text, user=user, uid=probe.euid)
              for name, text in texts.items()}
    counts = {name: sum(count for _, count in found) for name, found in ranges.items()}
    lacking = [name for name, count in counts.items() if count < SUBID_COUNT]
    if lacking:
        first, last = subids.free_range([texts[name] for name in lacking])
        options = " ".join(f"--add-{name}s {first}-{last}" for name in lacking)
        fix = f"sudo usermod {options} {user}"
        if all(counts[name] == 0 for name in lacking):
            where = " and ".join(f"/etc/{name}" for name in lacking)
            return Check("subids", "fail", f"subids: {user} has no range in {where}", fix)
        have = ", ".join(f"{counts[name]} in /etc/{name}" for name in lacking)
        status: Status = "fail" if 0 in (counts[name] for name in lacking) else "warn"
        return Check("subids", status,
                     f"subids: {user} has too few subordinate ids ({have}; images need "
                     f"{SUBID_COUNT})", fix)
    shown = ", ".join(f"{name} {start}-{start + count - 1}"
                      for name in ranges for start, count in ranges[name])
    return Check("subids", "ok", f"subids: {user} has {shown}")


def check_uidmap(probe: Probe) -> Check | None:
    """Rootless: newuidmap/newgidmap exist and may map ids (setuid root or file caps)."""
    if probe.euid == 0:
        return None
    paths = {tool: probe.which(tool) for tool in ("newuidmap", "newgidmap")}
    absent = [tool for tool, path in paths.items() if path is None]
    if absent:
        return Check("uidmap", "fail", f"uidmap: {' and '.join(absent)} not found",
                     "sudo apt-get install uidmap")
    how = set()
    for path in paths.values():
        info = probe.file(str(path))
        if info is None:
            return Check("uidmap", "fail", f"uidmap: {path} cannot be read",
                         "sudo apt-get install --reinstall uidmap")
        if info.mode & stat.S_ISUID and info.uid == 0:
            how.add("setuid root")
        elif info.caps:
            how.add("file capabilities")
        else:
            return Check("uidmap", "fail",
                         f"uidmap: {path} is neither setuid root nor has file capabilities",
                         "sudo apt-get install --reinstall uidmap  (or: sudo chmod u+s "
                         f"{paths['newuidmap']} {paths['newgidmap']})")
    return Check("uidmap", "ok",
                 f"uidmap: {paths['newuidmap']} and {paths['newgidmap']}"
                 f" ({', '.join(sorted(how))})")


def check_runtime_dir(probe: Probe) -> Check | None:
    """Rootless: XDG_RUNTIME_DIR is set and is this user's (not root's after `su`)."""
    if probe.euid == 0:
        return None
    user, uid = probe.username, probe.euid
    value = probe.environ.get("XDG_RUNTIME_DIR")
    lingering = f"sudo loginctl enable-linger {user}, then export XDG_RUNTIME_DIR=/run/user/{uid}"
    if not value:
        return Check("xdg-runtime-dir", "warn",
                     "XDG_RUNTIME_DIR is not set: buildah and podman fall back to /tmp, and "
                     "podman may refuse to run",
                     f"log in as {user} (ssh, or `machinectl shell {user}@`), or: {lingering}")
    info = probe.file(value)
    if info is None or not info.is_dir:
        return Check("xdg-runtime-dir", "fail", f"XDG_RUNTIME_DIR={value} is not a directory",
                     f"{lingering}  (or: sudo install -d -m 700 -o {user} {value})")
    if info.uid != uid:
        return Check("xdg-runtime-dir", "fail",
                     f"XDG_RUNTIME_DIR={value} belongs to uid {info.uid}, not {user} ({uid})",
                     lingering)
    return Check("xdg-runtime-dir", "ok", f"XDG_RUNTIME_DIR: {value}")


def check_userns(probe: Probe) -> Check | None:
    """Rootless: user namespaces are allowed and `buildah unshare` maps the subordinate ids."""
    if probe.euid == 0:
        return None
    for path, knob, on in (("/proc/sys/kernel/unprivileged_userns_clone",
                            "kernel.unprivileged_userns_clone", "1"),
                           ("/proc/sys/user/max_user_namespaces", "user.max_user_namespaces",
                            "15000")):
        if (probe.read_text(path) or "").strip() == "0":
            return Check("userns", "fail", f"user namespaces: disabled ({knob} = 0)",
                         f"sudo sysctl -w {knob}={on}  (and keep it in /etc/sysctl.d/)")
    if probe.which("buildah") is None:
        return Check("userns", "ok", "user namespaces: enabled (buildah missing: not tried)")
    result = _ask(probe, _buildah(probe, "unshare", "cat", "/proc/self/uid_map"))
    if result is None or not result.ok:
        why = _tail(result) if result else "buildah not found"
        return Check("userns", "fail", f"user namespaces: `buildah unshare` failed: {why}",
                     "fix the subids and uidmap checks above; then try `buildah unshare id`")
    mapped = sum(int(parts[2]) for parts in (line.split() for line in result.stdout.splitlines())
                 if len(parts) == 3 and parts[2].isdigit())
    if mapped < SUBID_COUNT:
        return Check("userns", "fail",
                     f"user namespaces: `buildah unshare` maps only {mapped} uid(s)",
                     "fix the subids check above; then run `podman system migrate` so "
                     "rootless storage picks up the new ranges")
    return Check("userns", "ok", f"user namespaces: `buildah unshare` maps {mapped} uids")


def check_mmdebstrap(probe: Probe) -> Check:
    """mmdebstrap makes `bootstrap:` bases (root mode as root, unshare mode rootless)."""
    result = _ask(probe, ["mmdebstrap", "--version"])
    if result is None or not result.ok:
        why = "not found" if result is None else f"`mmdebstrap --version` failed: {_tail(result)}"
        return Check("mmdebstrap", "warn",
                     f"mmdebstrap: {why} (needed only for `from: {{bootstrap: ...}}` bases)",
                     "sudo apt-get install mmdebstrap")
    mode = ("--mode=root" if probe.euid == 0 else
            "--mode=unshare: needs the user namespace checks above")
    return Check("mmdebstrap", "ok",
                 f"mmdebstrap {_version(result.stdout)} (for `bootstrap:` bases; {mode})")


def check_skopeo(probe: Probe) -> Check:
    """skopeo imports the images uvbuild assembles, keeping their digests (the image ID
    is then the config's digest in any image store)."""
    result = _ask(probe, ["skopeo", "--version"])
    if result is None or not result.ok:
        why = "not found" if result is None else f"`skopeo --version` failed: {_tail(result)}"
        return Check("skopeo", "fail", f"skopeo: {why} (it imports every image uvbuild "
                     "assembles)", "sudo apt-get install skopeo")
    return Check("skopeo", "ok", f"skopeo {_version(result.stdout)} (imports the assembled "
                 "images with their digests)")


def check_leftovers(probe: Probe) -> Check | None:
    """What a killed build leaves is found by locks, not pids (see liveness.py): say where
    they live; without setpriv, long commands outlive a killed build until the next sweep."""
    info = _buildah_info(probe)
    if info is None:
        return None  # the storage check says why
    store = info.get("store")
    run_root = store.get("RunRoot") if isinstance(store, dict) else None
    where = f"{run_root}/uvbuild" if run_root else "the store's runroot"
    if probe.which("setpriv") is None:
        return Check("leftovers", "warn",
                     "leftovers: setpriv not found: mmdebstrap and builder commands of a "
                     "killed build run on until the next build or `uvbuild cache prune`",
                     "sudo apt-get install util-linux")
    return Check("leftovers", "ok",
                 f"leftovers: running builds hold locks in {where}; what a killed one left "
                 "is removed by the next build or `uvbuild cache prune`")


def check_uv(probe: Probe) -> Check:
    """The uv binary of the `uv` package (handed to builders) exists and runs."""
    path = probe.uv_binary()
    reinstall = "reinstall uvbuild with its dependencies (`uv sync` in a checkout)"
    if path is None:
        return Check("uv", "fail", "uv: the `uv` package's binary was not found", reinstall)
    result = _ask(probe, [path, "--version"])
    if result is None or not result.ok:
        why = "does not exist" if result is None else f"--version failed: {_tail(result)}"
        return Check("uv", "fail", f"uv: {path} {why}", reinstall)
    return Check("uv", "ok", f"uv {_version(result.stdout)} ({path})")


def check_ca_bundle(probe: Probe) -> Check:
    """SSL_CERT_FILE, when set, names a PEM bundle (it is mounted into builder commands)."""
    value = probe.environ.get("SSL_CERT_FILE")
    if not value:
        return Check("ssl-cert-file", "ok",
                     "network: SSL_CERT_FILE not set: builder commands use the images' own "
                     "CA certificates")
    fix = ("point SSL_CERT_FILE at a PEM bundle (e.g. /etc/ssl/certs/ca-certificates.crt) "
           "or unset it")
    info = probe.file(value)
    if info is None:
        return Check("ssl-cert-file", "fail", f"network: SSL_CERT_FILE={value} does not exist", fix)
    if not info.is_file:
        return Check("ssl-cert-file", "fail", f"network: SSL_CERT_FILE={value} is not a file", fix)
    certificates = (probe.read_text(value) or "").count("-----BEGIN CERTIFICATE-----")
    if info.size == 0 or certificates == 0:
        what = "is empty" if info.size == 0 else "holds no PEM certificate"
        return Check("ssl-cert-file", "fail", f"network: SSL_CERT_FILE={value} {what}", fix)
    return Check("ssl-cert-file", "ok",
                 f"network: SSL_CERT_FILE={value} ({certificates} certificates; mounted "
                 "read-only into builder commands)")


def check_proxies(probe: Probe) -> Check:
    """Proxy variables, credentials masked; they reach builder commands, never the image."""
    shown = [f"{variant}={mask_credentials(probe.environ[variant])}"
             for name in PROXY_VARIABLES for variant in (name, name.lower())
             if probe.environ.get(variant)]
    if not shown:
        return Check("proxy", "ok", "proxy: none set")
    return Check("proxy", "ok", f"proxy: {', '.join(shown)} (passed to builder commands at "
                 "build time only, never stored in the image)")


CHECKS: tuple[Callable[[Probe], Check | None], ...] = (
    check_buildah, check_storage, check_isolation, check_podman, check_podman_runtime,
    check_rootless_mode, check_subids, check_uidmap, check_runtime_dir, check_userns,
    check_mmdebstrap, check_skopeo, check_leftovers, check_uv, check_ca_bundle, check_proxies,
)


def run_checks(probe: Probe) -> list[Check]:
    """Every check that applies to this host, in order."""
    checks = []
    for check in CHECKS:
        try:
            found = check(probe)
        except EngineError as exc:  # one broken probe must not hide the other checks
            found = Check(check.__name__.removeprefix("check_"), "fail", exc.message, exc.hint)
        if found is not None:
            checks.append(found)
    return checks


# -- output -----------------------------------------------------------------------------

LABELS = {"ok": "ok", "warn": "warn", "fail": "FAIL"}


def problems(checks: Sequence[Check]) -> int:
    """How many checks failed (the CLI exits non-zero when any did)."""
    return sum(c.status == "fail" for c in checks)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def render(checks: Sequence[Check]) -> list[str]:
    """One line per check, an indented fix under each that has one, then a summary."""
    lines = []
    for c in checks:
        lines.append(f"{LABELS[c.status]:<5}{c.detail}")
        if c.fix:
            first, *rest = c.fix.splitlines()
            lines.append(f"     fix: {first}")
            lines += [f"          {line}" for line in rest]
    warnings = sum(c.status == "warn" for c in checks)
    lines.append(f"{_plural(len(checks), 'check')}: {sum(c.status == 'ok' for c in checks)} ok, "
                 f"{_plural(warnings, 'warning')}, {_plural(problems(checks), 'problem')}")
    return lines


def report(checks: Sequence[Check], *, as_json: bool = False) -> str:
    """What `uvbuild doctor` prints: the rendered lines, or one JSON document."""
    if as_json:
        return json.dumps({"checks": [asdict(c) for c in checks], "problems": problems(checks)},
                          indent=2)
    return "\n".join(render(checks))
