"""Integration tier: real buildah/podman/skopeo, a local registry, a rootless user.

Every test under tests/integration gets the ``integration`` marker; those that
use ``rootless_user`` also get ``rootless``. Missing prerequisites FAIL the
tests (never skip them): run ``scripts/host-setup`` (``scripts/test`` does).

Fixtures (all session-scoped):

- ``containers_conf`` -> Path  (from tests/conftest.py; sets $CONTAINERS_CONF)
- ``uvbuild_cli`` -> list[str]: argv prefix that runs the uvbuild CLI
- ``run_uvbuild(args, *, env=None, cwd=None, check=True, timeout=900)``
      -> subprocess.CompletedProcess[str]
- ``registry`` -> "127.0.0.1:PORT" of a plain-HTTP docker-registry
- ``registry_log`` -> Path of its log, with one access-log line per request
- ``rootless_user`` -> RootlessUser (see its docstring)
- ``uvbuild_popen(args, *, env=None, cwd=None, timeout=900)`` -> UvbuildRun
      (pid, exit code, output; ``leftover_containers()``, ``error_messages()``)
- ``recipe_build(name)`` -> RecipeBuild: recipes/<name>.yaml built once per session
- ``image_id_of(ref)`` -> str | None: a local image's ID
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
INTEGRATION_DIR = Path(__file__).resolve().parent

ROOTLESS_USER = "uvbuild-ci"
ROOTLESS_HOME = Path("/home") / ROOTLESS_USER
SUBID_COUNT = 65536
SUBID_FIRST = 200000
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SETUP_HINT = "run scripts/host-setup (scripts/test does) to install the system packages"

# Variables handed through to the rootless user's clean environment.
PASSTHROUGH_ENV = (
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "PIP_INDEX_URL",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # This hook sees every collected item, not only this directory's.
    for item in items:
        if INTEGRATION_DIR in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.integration)
            if "rootless_user" in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.rootless)


# --------------------------------------------------------------------------- helpers


def _need_tool(name: str, package: str | None = None) -> str:
    path = shutil.which(name) or shutil.which(name, path=SYSTEM_PATH)
    if path is None:
        pytest.fail(f"{name} not found (Debian package {package or name}); {SETUP_HINT}")
    return path


def _tail(text: str | bytes | None, limit: int = 6000) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return text if len(text) <= limit else "[...]\n" + text[-limit:]


def _run_logged(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | os.PathLike[str] | None,
    check: bool,
    timeout: float,
    label: str,
    quiet: bool = False,
) -> subprocess.CompletedProcess[str]:
    """subprocess.run with text output; prints everything on failure/timeout."""
    argv = [os.fspath(a) for a in argv]
    try:
        proc = subprocess.run(
            argv,
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        print(f"$ {label}{' '.join(argv)}\n[timed out after {timeout}s]")
        print(f"--- stdout ---\n{_tail(exc.stdout)}\n--- stderr ---\n{_tail(exc.stderr)}")
        raise AssertionError(f"{label}{argv[0]} timed out after {timeout}s") from exc
    if proc.returncode != 0 and not (quiet and not check):
        print(f"$ {label}{' '.join(argv)}\n[exit {proc.returncode}]")
        print(f"--- stdout ---\n{_tail(proc.stdout)}\n--- stderr ---\n{_tail(proc.stderr)}")
        if check:
            raise AssertionError(
                f"{label}{' '.join(argv)} exited {proc.returncode}\n"
                f"--- stderr ---\n{_tail(proc.stderr, 3000)}"
            )
    return proc


def _merged_env(overrides: Mapping[str, str | None] | None) -> dict[str, str]:
    env = dict(os.environ)
    for key, value in (overrides or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# --------------------------------------------------------------------------- uvbuild CLI


@pytest.fixture(scope="session")
def uvbuild_cli() -> list[str]:
    """Argv prefix running the uvbuild CLI: the venv's entry point if present,
    else ``python -m uvbuild`` with the interpreter running the tests."""
    for candidate in (Path(sys.executable).parent / "uvbuild", REPO_ROOT / ".venv/bin/uvbuild"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return [str(candidate)]
    return [sys.executable, "-m", "uvbuild"]


@pytest.fixture(scope="session")
def run_uvbuild(
    uvbuild_cli: list[str], containers_conf: Path
) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_uvbuild(args, *, env=None, cwd=None, check=True, timeout=900)``.

    Runs ``uvbuild *args`` as the current user (root in CI). ``env`` holds
    overrides applied on top of os.environ (a value of None removes the
    variable). Output is text; it is printed when the command fails, and with
    check=True a non-zero exit raises AssertionError.
    """

    def run_uvbuild(
        args: Sequence[str | os.PathLike[str]],
        *,
        env: Mapping[str, str | None] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        check: bool = True,
        timeout: float = 900,
    ) -> subprocess.CompletedProcess[str]:
        return _run_logged(
            [*uvbuild_cli, *args],
            env=_merged_env(env),
            cwd=cwd,
            check=check,
            timeout=timeout,
            label="",
        )

    return run_uvbuild


# --------------------------------------------------------------------------- registry


REGISTRY_CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: uvbuild-test-registry
"""


_REGISTRY_LOGS: dict[str, Path] = {}  # address → the log of the registry serving it


def _registry_answers(address: str) -> bool:
    try:
        with _NO_PROXY_OPENER.open(f"http://{address}/v2/", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway docker-registry (Debian's distribution 2.8) on plain HTTP.

    Yields "127.0.0.1:PORT". Not TLS: clients need ``--tls-verify=false``
    (buildah/podman/skopeo) for it. Images live in a temp dir for this session.
    The package's systemd service is not used (nor needed).
    """
    binary = _need_tool("docker-registry")
    workdir = tmp_path_factory.mktemp("registry")
    root = workdir / "storage"
    root.mkdir()
    log_path = workdir / "registry.log"

    # A port picked this way can be taken before the registry binds it: retry.
    for _attempt in range(5):
        port = _free_port()
        config = workdir / "config.yml"
        config.write_text(REGISTRY_CONFIG.format(root=root, port=port))
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [binary, "serve", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                start_new_session=True,
            )
        address = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and proc.poll() is None:
            if _registry_answers(address):
                break
            time.sleep(0.05)
        if proc.poll() is None and _registry_answers(address):
            break
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()
    else:
        pytest.fail(f"docker-registry did not start; log:\n{_tail(log_path.read_text())}")

    # Keep proxies (if any are configured) away from the local registry.
    if any(os.environ.get(v) for v in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")):
        for var in ("no_proxy", "NO_PROXY"):
            current = os.environ.get(var, "")
            if "127.0.0.1" not in current:
                os.environ[var] = ",".join(p for p in (current, "127.0.0.1,localhost") if p)

    _REGISTRY_LOGS[address] = log_path
    try:
        yield address
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def registry_log(registry: str) -> Path:
    """The `registry`'s log: an access-log line per request (`"POST /v2/NAME/blobs/uploads/
    HTTP/1.1" 202`), so a test can tell what a client uploaded."""
    return _REGISTRY_LOGS[registry]


# --------------------------------------------------------------------------- rootless user


@contextlib.contextmanager
def _setup_lock() -> Iterator[None]:
    """Serialise user/subid setup between concurrent pytest sessions."""
    lock_dir = Path("/run/lock") if Path("/run/lock").is_dir() else Path(tempfile.gettempdir())
    with open(lock_dir / "uvbuild-ci-setup.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _ensure_subids(path: Path, name: str, uid: int) -> None:
    lines = path.read_text().splitlines() if path.exists() else []
    end = SUBID_FIRST
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) != 3 or line.lstrip().startswith("#"):
            continue
        if parts[0] in (name, str(uid)):
            return
        with contextlib.suppress(ValueError):
            end = max(end, int(parts[1]) + int(parts[2]))
    with open(path, "a") as fh:
        if lines and not path.read_text().endswith("\n"):
            fh.write("\n")
        fh.write(f"{name}:{end}:{SUBID_COUNT}\n")
    path.chmod(0o644)


def _ensure_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(ROOTLESS_USER)
    except KeyError:
        pass
    useradd = _need_tool("useradd", "passwd")
    proc = subprocess.run(
        [
            useradd,
            "--system",
            "--user-group",
            "--create-home",
            "--home-dir",
            str(ROOTLESS_HOME),
            "--shell",
            "/bin/bash",
            ROOTLESS_USER,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        return pwd.getpwnam(ROOTLESS_USER)
    except KeyError:
        pytest.fail(f"useradd {ROOTLESS_USER} failed ({proc.returncode}): {proc.stderr}")


def _chown_tree(top: Path, uid: int, gid: int) -> None:
    os.chown(top, uid, gid, follow_symlinks=False)
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)


def _project_files(root: Path) -> list[str]:
    """Files of the checkout: tracked plus untracked-but-not-ignored (so work
    in progress is tested too). Falls back to a filtered walk outside git."""
    try:
        out = subprocess.run(
            [
                "git",
                "-C",
                str(root),
                "ls-files",
                "-z",
                "--cached",
                "--others",
                "--exclude-standard",
            ],
            capture_output=True,
            check=True,
        ).stdout
        return sorted({p for p in out.decode().split("\0") if p})
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "__pycache__", ".pytest_cache", "build", "dist"}
        files = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if d not in skip]
            files += [os.path.relpath(os.path.join(dirpath, f), root) for f in filenames]
        return sorted(files)


@dataclass
class RootlessUser:
    """An unprivileged user with subuid/subgid ranges, for rootless builds.

    ``run(argv, env=None, cwd=None, timeout=600, *, check=True, quiet=False)``
    runs a command as the user (setpriv, no PAM) with a clean environment: HOME, USER,
    LOGNAME, PATH, LANG, XDG_RUNTIME_DIR=/run/user/<uid>, CONTAINERS_CONF (a
    copy the user can read), SSL_CERT_FILE and proxy settings passed through,
    then ``env`` on top. cwd defaults to the user's home; it must be
    accessible to the user (/root is not).

    ``checkout()`` copies the repo (tracked + untracked-unignored files) to a
    /tmp dir owned by the user and gives it its own ``.venv`` synced from
    uv.lock; cached for the session, removed at the end.
    ``uvbuild(args, ...)`` runs that checkout's uvbuild CLI as the user.
    ``timings`` records how long setup steps took (seconds).
    """

    name: str
    uid: int
    gid: int
    home: Path
    runtime_dir: Path
    containers_conf: Path
    _setpriv: str
    _tmp_root: Path
    timings: dict[str, float] = field(default_factory=dict)
    _checkout: Path | None = None

    def env(self, extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
        env = {
            "HOME": str(self.home),
            "USER": self.name,
            "LOGNAME": self.name,
            "PATH": SYSTEM_PATH,
            "LANG": "C.UTF-8",
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "CONTAINERS_CONF": str(self.containers_conf),
        }
        for var in PASSTHROUGH_ENV:
            if os.environ.get(var):
                env[var] = os.environ[var]
        for key, value in (extra or {}).items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def run(
        self,
        argv: Sequence[str | os.PathLike[str]],
        env: Mapping[str, str | None] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        timeout: float = 600,
        *,
        check: bool = True,
        quiet: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        wrapper = [
            self._setpriv,
            f"--reuid={self.uid}",
            f"--regid={self.gid}",
            "--init-groups",
            "--",
        ]
        return _run_logged(
            [*wrapper, *argv],
            env=self.env(env),
            cwd=cwd if cwd is not None else self.home,
            check=check,
            timeout=timeout,
            label=f"[as {self.name}] ",
            quiet=quiet,
        )

    def checkout(self) -> Path:
        if self._checkout is not None:
            return self._checkout
        started = time.monotonic()
        dest = Path(tempfile.mkdtemp(prefix="checkout-", dir=self._tmp_root))
        for rel in _project_files(REPO_ROOT):
            src = REPO_ROOT / rel
            if not src.exists() and not src.is_symlink():
                continue  # deleted in the work tree
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if src.is_symlink():
                os.symlink(os.readlink(src), target)
            elif src.is_file():
                shutil.copy2(src, target)
        # Bootstrap with the locked uv binary the tests themselves run with.
        uv_src = _find_uv()
        tools = dest / ".bootstrap"
        tools.mkdir()
        shutil.copy2(uv_src, tools / "uv")
        _chown_tree(dest, self.uid, self.gid)
        self.timings["copy"] = time.monotonic() - started

        started = time.monotonic()
        python = self._python()
        self.run(
            [tools / "uv", "sync", "--locked", "--python", python],
            env={"UV_PYTHON_DOWNLOADS": "never", "UV_LINK_MODE": "copy", "UV_NO_PROGRESS": "1"},
            cwd=dest,
            timeout=900,
        )
        self.timings["venv"] = time.monotonic() - started
        self._checkout = dest
        return dest

    def uvbuild(
        self,
        args: Sequence[str | os.PathLike[str]],
        *,
        env: Mapping[str, str | None] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        check: bool = True,
        timeout: float = 900,
    ) -> subprocess.CompletedProcess[str]:
        checkout = self.checkout()
        return self.run(
            [checkout / ".venv/bin/uvbuild", *args],
            env=env,
            cwd=cwd if cwd is not None else checkout,
            timeout=timeout,
            check=check,
        )

    def _python(self) -> str:
        """An interpreter >= 3.10 that the user can run (pyenv under /root is not)."""
        candidates = [
            os.path.realpath(os.path.join(sys.base_prefix, "bin", "python3")),
            "/usr/bin/python3",
            shutil.which("python3", path=SYSTEM_PATH),
        ]
        tried = []
        for candidate in dict.fromkeys(c for c in candidates if c):
            proc = self.run(
                [candidate, "-c", _PYTHON_PROBE, candidate],
                check=False,
                quiet=True,
                timeout=60,
            )
            if proc.returncode == 0:
                return candidate
            tried.append(candidate)
        pytest.fail(f"no Python >= 3.10 runnable by {self.name}; tried {tried}")


# The user must be able to resolve the interpreter's whole path (uv
# canonicalises it): seen here, exec of pyenv's python under /root (mode 0700)
# "worked" for the user but loaded Debian's libpython, and uv then failed.
_PYTHON_PROBE = """\
import os, sys
ok = sys.version_info >= (3, 10) and os.access(os.path.dirname(sys.argv[1]), os.R_OK | os.X_OK)
raise SystemExit(0 if ok else 1)
"""


def _find_uv() -> Path:
    try:
        from uv import find_uv_bin

        return Path(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found is None:
            pytest.fail("uv not found in the test venv; " + SETUP_HINT)
        return Path(found)


@pytest.fixture(scope="session")
def rootless_user(containers_conf: Path) -> Iterator[RootlessUser]:
    """The unprivileged user ``uvbuild-ci`` (created if missing; needs root)."""
    if os.geteuid() != 0:
        pytest.fail("the rootless_user fixture needs root (it creates the user uvbuild-ci)")
    setpriv = _need_tool("setpriv", "util-linux")
    _need_tool("newuidmap", "uidmap")
    _need_tool("buildah")

    with _setup_lock():
        pw = _ensure_user()
        uid, gid = pw.pw_uid, pw.pw_gid
        home = Path(pw.pw_dir)
        if not home.is_dir():
            home.mkdir(parents=True)
            os.chown(home, uid, gid)
        _ensure_subids(Path("/etc/subuid"), ROOTLESS_USER, uid)
        _ensure_subids(Path("/etc/subgid"), ROOTLESS_USER, uid)

        runtime_dir = Path("/run/user") / str(uid)
        runtime_dir.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        runtime_dir.mkdir(mode=0o700, exist_ok=True)
        os.chown(runtime_dir, uid, gid)
        runtime_dir.chmod(0o700)

        conf_dir = home / ".config" / "uvbuild"
        conf_dir.mkdir(parents=True, exist_ok=True)
        conf = conf_dir / "containers.conf"
        shutil.copyfile(containers_conf, conf)
        for path in (home / ".config", conf_dir, conf):
            os.chown(path, uid, gid)
        conf.chmod(0o644)

    tmp_root = Path(tempfile.mkdtemp(prefix="uvbuild-rootless-", dir="/tmp"))
    tmp_root.chmod(0o755)
    user = RootlessUser(
        name=ROOTLESS_USER,
        uid=uid,
        gid=gid,
        home=home,
        runtime_dir=runtime_dir,
        containers_conf=conf,
        _setpriv=setpriv,
        _tmp_root=tmp_root,
    )
    try:
        yield user
    finally:
        if user.timings:
            print(f"\nrootless_user timings: {json.dumps(user.timings)}")
        shutil.rmtree(tmp_root, ignore_errors=True)


# --------------------------------------------------------------------------- builds


def buildah_container_names() -> list[str]:
    """Names of every buildah working container in the current user's storage."""
    proc = _run_logged(
        ["buildah", "containers", "--json"],
        env=os.environ,
        cwd=None,
        check=True,
        timeout=120,
        label="",
    )
    return [str(c["containername"]) for c in json.loads(proc.stdout or "null") or []]


def local_image_id(ref: str) -> str | None:
    """The ID of the local image `ref` (name or ID), or None if storage has none."""
    proc = subprocess.run(
        ["buildah", "inspect", "--type", "image", "--format", "{{.FromImageID}}", ref],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return None
    return proc.stdout.strip().removeprefix("sha256:")


@dataclass(frozen=True)
class UvbuildRun:
    """One finished ``uvbuild`` process: its pid, exit code and output.

    Its working containers start with its pid (``uvbuild-<pid>-<letters>-<n>-<purpose>``), so
    ``leftover_containers()`` finds what this run (and no other) left behind.
    """

    argv: tuple[str, ...]
    pid: int
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def __str__(self) -> str:
        return (
            f"$ {' '.join(self.argv)}\n[pid {self.pid}, exit {self.returncode}, "
            f"{self.seconds:.1f}s]\n--- stdout ---\n{_tail(self.stdout)}\n"
            f"--- stderr ---\n{_tail(self.stderr)}"
        )

    def leftover_containers(self) -> list[str]:
        prefix = f"uvbuild-{self.pid}-"
        return [name for name in buildah_container_names() if name.startswith(prefix)]

    def error_messages(self) -> list[str]:
        """The `uvbuild: ...` lines on stderr (the CLI prints exactly one per failure)."""
        return [line for line in self.stderr.splitlines() if line.startswith("uvbuild:")]

    def error_text(self) -> str:
        """stderr from the first `uvbuild:` line on: the message with its detail and hint."""
        start = self.stderr.find("uvbuild:")
        return "" if start < 0 else self.stderr[start:]


@pytest.fixture(scope="session")
def uvbuild_popen(
    uvbuild_cli: list[str], containers_conf: Path
) -> Callable[..., UvbuildRun]:
    """``uvbuild_popen(args, *, env=None, cwd=None, timeout=900) -> UvbuildRun``.

    Like ``run_uvbuild`` but through Popen, so the result carries the uvbuild
    process's pid; never raises for a non-zero exit (the test judges it). On a
    timeout the build gets SIGTERM (uvbuild then removes its containers) and
    the test fails with its output.
    """

    def uvbuild_popen(
        args: Sequence[str | os.PathLike[str]],
        *,
        env: Mapping[str, str | None] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        timeout: float = 900,
    ) -> UvbuildRun:
        argv = tuple(os.fspath(a) for a in [*uvbuild_cli, *args])
        started = time.monotonic()
        proc = subprocess.Popen(
            argv,
            env=_merged_env(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                stdout, stderr = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                stdout, stderr = proc.communicate()
            run = UvbuildRun(argv, proc.pid, proc.returncode, stdout, stderr, timeout)
            raise AssertionError(f"uvbuild timed out after {timeout}s\n{run}") from None
        return UvbuildRun(
            argv, proc.pid, proc.returncode, stdout, stderr, time.monotonic() - started
        )

    return uvbuild_popen


RECIPES_DIR = REPO_ROOT / "recipes"


@dataclass(frozen=True)
class RecipeBuild:
    """The session's build of ``recipes/<name>.yaml`` (tagged ``image``, not the recipe's)."""

    name: str
    recipe: Path
    image: str
    run: UvbuildRun
    image_id: str | None


@pytest.fixture(scope="session")
def recipe_build(uvbuild_popen: Callable[..., UvbuildRun]) -> Callable[[str], RecipeBuild]:
    """``recipe_build(name) -> RecipeBuild``: build ``recipes/<name>.yaml`` once per session.

    The image is tagged ``localhost/uvbuild-itest/<name>:latest`` so the tests do
    not move the recipe's own name. A failed build is returned too (and not retried):
    the test that looks at ``run.returncode`` reports it.
    """
    builds: dict[str, RecipeBuild] = {}

    def recipe_build(name: str) -> RecipeBuild:
        if name not in builds:
            recipe = RECIPES_DIR / f"{name}.yaml"
            image = f"localhost/uvbuild-itest/{name}:latest"
            run = uvbuild_popen([recipe, "--tag", image], cwd=REPO_ROOT)
            image_id = local_image_id(image) if run.returncode == 0 else None
            builds[name] = RecipeBuild(name, recipe, image, run, image_id)
        return builds[name]

    return recipe_build


@pytest.fixture(scope="session")
def image_id_of() -> Callable[[str], str | None]:
    """``image_id_of(ref)``: the local image's ID (no ``sha256:``), or None."""
    return local_image_id
