"""What an image can be trusted for (issue 4): same inputs give the same image, nothing
secret or host-specific ships, /app is root's, the SBOM is there, and interrupted,
killed or concurrent builds leave nothing behind and never move a tag wrongly.

Every build is of a copy of recipes/fastapi in a temp folder, tagged
localhost/itest-trust-<random>-<purpose>:1 (untagged at the end). Working containers
are judged by the pid of the uvbuild process that made them, so builds other people
run on this host at the same time are never looked at or touched.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
RECIPES = REPO_ROOT / "recipes"
UV = REPO_ROOT / ".venv" / "bin" / "uv"
RUN_ID = secrets.token_hex(4)
SECRET_VALUE = f"s3ntinel-{secrets.token_hex(8)}"
PROXY_HOST = f"proxy-sentinel-{secrets.token_hex(8)}.invalid"
PROXY_URL = f"http://{PROXY_HOST}:3128"
SBOM_PATH = "/app/sbom.cdx.json"


# --------------------------------------------------------------------------- helpers


def tag_for(purpose: str) -> str:
    return f"localhost/itest-trust-{RUN_ID}-{purpose}:1"


def make_variant(root: Path, image: str, *, builder: dict[str, object] | None = None,
                 code_change: str | None = None) -> Path:
    """Copy recipes/fastapi and its recipe under `root`; return the recipe's path."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(RECIPES / "fastapi", root / "proj",
                    ignore=shutil.ignore_patterns(".venv", "__pycache__", "*.pyc"))
    if code_change is not None:
        with open(root / "proj" / "src" / "restapipy" / "app.py", "a") as fh:
            fh.write(f"\nITEST_MARK = {code_change!r}\n")
    recipe = yaml.safe_load((RECIPES / "fastapi.yaml").read_text())
    recipe["project"] = "proj"
    recipe["image"] = image
    recipe["builder"].update(builder or {})
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def buildah(*args: str, env: dict[str, str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["buildah", *args], capture_output=True, text=True, check=False,
                          env=env, timeout=600)
    if check:
        assert proc.returncode == 0, f"buildah {' '.join(args)} failed: {proc.stderr}"
    return proc


def image_id(ref: str, env: dict[str, str] | None = None) -> str | None:
    proc = buildah("inspect", "--type", "image", "--format", "{{.FromImageID}}", ref, env=env,
                   check=False)
    return proc.stdout.strip().removeprefix("sha256:") if proc.returncode == 0 else None


def describe_image(ref: str, env: dict[str, str] | None = None) -> str:
    """Layers and history of an image: what to compare when two IDs differ."""
    data = json.loads(buildah("inspect", "--type", "image", ref, env=env).stdout)
    manifest = json.loads(data["Manifest"])
    config = json.loads(data["Config"])
    layers = [f"{layer['digest']} {layer['size']}" for layer in manifest["layers"]]
    return json.dumps({"layers": layers, "history": config.get("history"),
                       "labels": config.get("config", {}).get("Labels")}, indent=1)


def buildah_container_names() -> list[str]:
    """Every working container in storage, whoever made it."""
    listed = json.loads(buildah("containers", "--json").stdout or "null") or []
    return [c["containername"] for c in listed]


def containers_of(pid: int) -> list[str]:
    """Working containers named after that uvbuild process (buildah prints null for none)."""
    listed = json.loads(buildah("containers", "--json").stdout or "null") or []
    return [c["containername"] for c in listed
            if c["containername"].startswith(f"uvbuild-{pid}-")]


def _sigint_as_from_a_terminal() -> None:
    # A suite started in the background (`cmd &` in a script) inherits an ignored SIGINT,
    # and uvbuild rightly keeps ignoring it then: its Ctrl-C cases need the default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class LiveBuild:
    """A uvbuild process whose stderr is followed line by line while it runs."""

    def __init__(self, argv: list[str], *, env: dict[str, str] | None = None,
                 new_session: bool = False) -> None:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env,
                                     start_new_session=new_session,
                                     preexec_fn=_sigint_as_from_a_terminal)
        self.pid = self.proc.pid
        self._lines: list[str] = []
        self._stdout = ""
        self._cond = threading.Condition()
        self._threads = [threading.Thread(target=self._follow, daemon=True),
                         threading.Thread(target=self._drain, daemon=True)]
        for t in self._threads:
            t.start()

    def _follow(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._cond:
                self._lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        self._stdout = self.proc.stdout.read()

    @property
    def stderr(self) -> str:
        with self._cond:
            return "".join(self._lines)

    def wait_for_step(self, step: str, timeout: float = 300) -> bool:
        """Until `step` is reported running (True), or the process ended (False)."""
        pattern = re.compile(rf"^\s+{re.escape(step)}\s+\.\.\.\s")
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if any(pattern.match(line) for line in self._lines):
                    return True
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    return False
                self._cond.wait(0.05)

    def signal(self, signum: int, *, group: bool = False) -> None:
        if group:
            os.killpg(self.pid, signum)
        else:
            self.proc.send_signal(signum)

    def finish(self, timeout: float = 300) -> int:
        rc = self.proc.wait(timeout=timeout)
        for t in self._threads:
            t.join(timeout=10)
        return rc

    def __str__(self) -> str:
        return (f"[pid {self.pid}, exit {self.proc.returncode}, "
                f"{time.monotonic() - self.started:.1f}s]\n--- stdout ---\n{self._stdout}"
                f"--- stderr ---\n{self.stderr}")


@dataclass
class Built:
    recipe: Path
    tag: str
    id: str


@dataclass
class Module:
    root: Path
    uvbuild: list[str]
    tags: list[str] = field(default_factory=list)

    def build(self, recipe: Path, tag: str, *extra: str, env: dict[str, str] | None = None,
              ) -> subprocess.CompletedProcess[str]:
        self.tags.append(tag)
        started = time.monotonic()
        proc = subprocess.run([*self.uvbuild, recipe, "--tag", tag, *extra], text=True,
                              capture_output=True, env={**os.environ, **(env or {})},
                              timeout=900, check=False)
        print(f"$ uvbuild {recipe.parent.name} --tag {tag} {' '.join(extra)}  "
              f"[exit {proc.returncode}, {time.monotonic() - started:.1f}s]\n{proc.stderr}")
        assert proc.returncode == 0, f"build failed\n{proc.stdout}\n{proc.stderr}"
        return proc


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def mod(tmp_path_factory: pytest.TempPathFactory, uvbuild_cli: list[str],
        containers_conf: Path) -> Iterator[Module]:
    state = Module(root=tmp_path_factory.mktemp("trust"), uvbuild=uvbuild_cli)
    yield state
    for tag in dict.fromkeys(state.tags):
        subprocess.run(["buildah", "rmi", tag], capture_output=True, check=False)


@pytest.fixture(scope="module")
def fresh(mod: Module) -> Built:
    """The copy built with --no-cache: every step ran in this session."""
    recipe = make_variant(mod.root / "plain", tag_for("a"))
    tag = tag_for("a")
    mod.build(recipe, tag, "--no-cache")
    found = image_id(tag)
    assert found
    return Built(recipe=recipe, tag=tag, id=found)


class MountedImage:
    """`buildah from` + `mount` of an image (as root); the container is removed after."""

    def __init__(self, ref: str, purpose: str) -> None:
        self.ref, self.name = ref, f"itest-trust-{RUN_ID}-{purpose}-{os.getpid()}"

    def __enter__(self) -> Path:
        buildah("from", "--pull=never", "--quiet", "--name", self.name, self.ref)
        return Path(buildah("mount", self.name).stdout.strip())

    def __exit__(self, *exc: object) -> None:
        buildah("umount", self.name, check=False)
        buildah("rm", self.name, check=False)


# --------------------------------------------------------------------------- reproducible


def test_reproducible_without_cache_and_in_an_empty_store(
        mod: Module, fresh: Built, tmp_path: Path) -> None:
    again = tag_for("b")
    mod.build(fresh.recipe, again, "--no-cache")
    second = image_id(again)

    store = tmp_path / "store"
    store.mkdir()
    conf = tmp_path / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "overlay"\nrunroot = "{store}/run"\n'
                    f'graphroot = "{store}/graph"\n')
    env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(conf)}
    info = json.loads(buildah("info", env=env).stdout)["store"]
    assert info["GraphRoot"] == f"{store}/graph", info  # buildah 1.28 reads the variable
    assert json.loads(buildah("images", "--json", env=env).stdout or "null") in (None, []), (
        "the new store is not empty")
    try:
        started = time.monotonic()
        mod.build(fresh.recipe, tag_for("c"), "--no-cache",
                  env={"CONTAINERS_STORAGE_CONF": str(conf)})
        print(f"empty-store build (base bootstrapped again): {time.monotonic() - started:.1f}s")
        third = image_id(tag_for("c"), env=env)
        third_described = describe_image(tag_for("c"), env=env)
    finally:
        buildah("rmi", "--all", "--force", env=env, check=False)
        shutil.rmtree(store, ignore_errors=True)

    print(f"image IDs: --no-cache #1 {fresh.id}\n"
          f"           --no-cache #2 {second}\n"
          f"           empty store  {third}")
    assert second == fresh.id, (
        f"two --no-cache builds differ\n{describe_image(fresh.tag)}\n{describe_image(again)}")
    assert third == fresh.id, (
        f"the build in an empty store differs\nthis store:\n{describe_image(fresh.tag)}\n"
        f"empty store:\n{third_described}")


# --------------------------------------------------------------------------- what never ships


def test_uv_honours_no_proxy_star(tmp_path: Path) -> None:
    """The premise of the next test: with NO_PROXY='*', uv ignores the sentinel proxy."""
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "probe"\nversion = "0"\nrequires-python = ">=3.11"\n'
        'dependencies = ["six"]\n')
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1",
           "HTTPS_PROXY": PROXY_URL}
    argv = [str(UV), "lock", "--no-cache", "--python", "3.11"]
    blocked = subprocess.run(argv, cwd=tmp_path, env={**env, "UV_HTTP_RETRIES": "0"},
                             capture_output=True, text=True, timeout=300, check=False)
    assert blocked.returncode != 0, "uv reached the index through a proxy that does not exist"
    through = subprocess.run(argv, cwd=tmp_path, env={**env, "NO_PROXY": "*"},
                             capture_output=True, text=True, timeout=300, check=False)
    assert through.returncode == 0, f"uv did not honour NO_PROXY='*':\n{through.stderr}"


PUBLIC_CAS = Path("/usr/share/ca-certificates")  # Debian's ca-certificates package


def _first_lines(text: str) -> list[str]:
    """The first base64 line of each certificate in a PEM text."""
    return re.findall(r"-----BEGIN CERTIFICATE-----\s*\n([A-Za-z0-9+/=]{40,})", text)


def _private_cert_lines(bundle: Path) -> dict[str, bytes]:
    """The certificates of `bundle` that are not public CAs (the host's own, such as a
    TLS-inspecting proxy's), by their first base64 line.

    A runtime root may ship Debian's ca-certificates (a slim root does): the public CAs
    in it are in the host's bundle too, and are no leak.
    """
    public = {line for path in PUBLIC_CAS.rglob("*.crt")
              for line in _first_lines(path.read_text(errors="replace"))}
    bodies = _first_lines(bundle.read_text())
    assert bodies, f"no certificate in {bundle}"
    return {f"CA bundle (certificate {n})": body.encode()
            for n, body in enumerate(bodies) if body not in public}


def _own_ca(folder: Path, host_bundle: Path) -> tuple[Path, str]:
    """A bundle of the host's certificates plus one made here, and that one's first line:
    a certificate no image can hold unless uvbuild leaked the bundle."""
    key, cert = folder / "ca.key", folder / "ca.crt"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                           "-keyout", str(key), "-out", str(cert), "-days", "1",
                           "-subj", f"/CN=uvbuild-itest-{secrets.token_hex(4)}"],
                          capture_output=True, text=True, check=False)
    assert made.returncode == 0, f"openssl could not make a test CA: {made.stderr}"
    bundle = folder / "bundle.crt"
    bundle.write_text(host_bundle.read_text() + "\n" + cert.read_text())
    return bundle, _first_lines(cert.read_text())[0]


def _blobs(archive: Path) -> Iterator[tuple[str, bytes]]:
    """Every file of an OCI archive, layers decompressed."""
    with tarfile.open(archive) as tar:
        for member in tar:
            if not member.isfile():
                continue
            handle = tar.extractfile(member)
            assert handle is not None
            data = handle.read()
            if data[:2] == b"\x1f\x8b":
                data = gzip.decompress(data)
            assert data[:4] != b"\x28\xb5\x2f\xfd", f"{member.name}: zstd layer, cannot scan"
            yield member.name, data


def test_secrets_proxies_and_trust_never_ship(mod: Module, tmp_path: Path) -> None:
    bundle = Path(os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"))
    assert bundle.is_file(), "SSL_CERT_FILE names no file: nothing to check the CA with"
    recipe = make_variant(tmp_path / "secret", tag_for("secret"), builder={
        "secrets": ["UVBUILD_SENTINEL_SECRET"],
        "run": [
            f'test "$UVBUILD_SENTINEL_SECRET" = "{SECRET_VALUE}"',
            f'test "$HTTPS_PROXY" = "{PROXY_URL}"',
            'test -f "$SSL_CERT_FILE"',
            "restapipy-openapi openapi.json",
        ],
    })
    archive = tmp_path / "img.tar"
    own_bundle, own_line = _own_ca(tmp_path, bundle)
    # --no-cache: builder.run must see this session's values (they are not in any key).
    mod.build(recipe, tag_for("secret"), "--no-cache", "--output", f"oci-archive:{archive}",
              env={"UVBUILD_SENTINEL_SECRET": SECRET_VALUE, "HTTPS_PROXY": PROXY_URL,
                   "NO_PROXY": "*", "SSL_CERT_FILE": str(own_bundle)})

    needles = {"secret value": SECRET_VALUE.encode(), "proxy": PROXY_HOST.encode(),
               "/run/uvbuild": b"/run/uvbuild", "CA bundle (made for this test)":
               own_line.encode(), **_private_cert_lines(bundle)}
    found: dict[str, list[str]] = {}
    names = []
    for name, data in _blobs(archive):
        names.append(f"{name} ({len(data)} bytes)")
        for label, needle in needles.items():
            if needle in data:
                found.setdefault(label, []).append(name)
    print("scanned:\n  " + "\n  ".join(names))
    assert len(names) >= 6, "the archive holds fewer blobs than 4 layers + config + manifest"
    assert found == {}, f"found in the image archive: {found}"

    inspected = buildah("inspect", "--type", "image", tag_for("secret")).stdout
    for label in ("secret value", "proxy", "/run/uvbuild"):
        assert needles[label].decode() not in inspected, f"{label} in buildah inspect"
    with MountedImage(tag_for("secret"), "secret") as root:
        assert (root / "app" / "openapi.json").is_file(), "builder.run's output did not ship"


# ------------------------------------------------------- nothing secret printed or on argv
# (issue 10, items 1, 2 and 5) A tiny unpackaged project with no dependencies: no network,
# a few seconds a build once the bases are there (the same bases as the fastapi copies).

LEAK_PASSWORD = f"pr0xyPASS-{secrets.token_hex(6)}"
# A proxy that would fail every request; NO_PROXY=* keeps uv off it (nothing is fetched).
LEAK_PROXY = f"http://itest:{LEAK_PASSWORD}@127.0.0.1:9"
LEAK_ENV = {"UVBUILD_SENTINEL_SECRET": SECRET_VALUE, "HTTPS_PROXY": LEAK_PROXY, "NO_PROXY": "*"}
TINY_PYPROJECT = """\
[project]
name = "tiny"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = []

[tool.uv]
package = false
"""
BOOKWORM = {"bootstrap": "debian", "suite": "bookworm", "packages": ["python3"]}


@pytest.fixture(scope="module")
def tiny(mod: Module) -> Path:
    """A project of one file, locked: the folder that holds it (as `proj`)."""
    root = mod.root / "tiny"
    (root / "proj").mkdir(parents=True)
    (root / "proj" / "pyproject.toml").write_text(TINY_PYPROJECT)
    (root / "proj" / "main.py").write_text('print("tiny ok")\n')
    subprocess.run([str(UV), "lock", "--offline", "--directory", str(root / "proj")],
                   check=True, capture_output=True, timeout=120)
    return root


def tiny_recipe(root: Path, name: str, *, run: list[str], test: list[str] | None = None,
                env: dict[str, str] | None = None) -> Path:
    builder: dict[str, object] = {"from": BOOKWORM, "python": "/usr/bin/python3",
                                  "secrets": ["UVBUILD_SENTINEL_SECRET"], "run": run}
    if env:
        builder["env"] = env
    recipe = {"version": 1, "project": "proj", "image": tag_for(f"tiny-{name}"),
              "builder": builder, "runtime": {"from": BOOKWORM, "test": test or ["true"]}}
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def _leaks(text: str) -> list[str]:
    return [label for label, value in (("secret", SECRET_VALUE), ("proxy password",
                                                                   LEAK_PASSWORD))
            if value in text]


@pytest.mark.parametrize("flags", [[], ["-v"], ["--debug"], ["--json"]],
                         ids=["plain", "verbose", "debug", "json"])
def test_a_failing_builder_command_that_prints_secrets_shows_them_masked(
        mod: Module, tiny: Path, uvbuild_cli: list[str], flags: list[str]) -> None:
    # (The pause lets buildah relay the output before the command ends: on a loaded
    # machine, buildah 1.28 with chroot isolation was seen to drop the tail of it.)
    recipe = tiny_recipe(tiny, "leak", run=[
        'echo "secret=$UVBUILD_SENTINEL_SECRET proxy=$HTTPS_PROXY"',
        'echo "again $UVBUILD_SENTINEL_SECRET $HTTPS_PROXY" >&2; sleep 1; exit 7'])
    debug = ["--debug"] if "--debug" in flags else []
    proc = subprocess.run([*uvbuild_cli, *debug, recipe, *[f for f in flags if f != "--debug"]],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, **LEAK_ENV})
    output = proc.stdout + proc.stderr
    print(output)

    assert proc.returncode == 6, output  # the step failed, as it should
    assert "builder.run[1]" in output
    assert _leaks(output) == []
    # What the command printed is shown (the error, or -v's stream), masked.
    assert "again ***" in output
    if "-v" in flags:
        assert "secret=***" in output  # stdout too, as it streamed
    assert "Traceback" not in output or debug


def _files_holding(needles: list[str], folder: Path) -> dict[str, list[str]]:
    """The files under `folder` that hold one of the needles."""
    found: dict[str, list[str]] = {}
    for path in folder.rglob("*"):
        data = _read(path) if path.is_file() and not path.is_symlink() else b""
        for needle in needles:
            if needle.encode() in data:
                found.setdefault(needle, []).append(str(path))
    return found


def test_no_secret_in_any_command_line_or_file_and_no_size_limit_on_commands(
        mod: Module, tiny: Path, uvbuild_cli: list[str], tmp_path: Path) -> None:
    big = "x" * 200_000  # over the kernel's 128 kB per argument
    tag = tag_for("tiny-argv")
    mod.tags.append(tag)
    recipe = tiny_recipe(tiny, "argv", run=["sleep 8", f": {big} {RUN_ID}; echo big-run-ok"],
                         test=[f": {big}", "python3 /app/main.py"])
    scratch = tmp_path / "tmp"  # the build's TMPDIR: buildah's run bundles are there too
    scratch.mkdir()
    build = LiveBuild([*uvbuild_cli, str(recipe), "-v", "--tag", tag],
                      env={**os.environ, **LEAK_ENV, "TMPDIR": str(scratch)})
    needles = [SECRET_VALUE, LEAK_PASSWORD]
    found: dict[str, list[str]] = {}
    in_bundles: dict[str, list[str]] = {}
    saw_sleep = False
    while build.proc.poll() is None:
        for path in Path("/proc").glob("[0-9]*/cmdline"):
            data = _read(path)
            found.update({n: [*found.get(n, ()), f"{path}: {data[:300]!r}"]
                          for n in needles if n.encode() in data})
            if data == b"sleep\x008\x00" and not saw_sleep:
                saw_sleep = True
                # While the builder command runs: its run bundle holds no value either.
                for bundle in scratch.glob("buildah*"):
                    in_bundles.update(_files_holding(needles, bundle))
        time.sleep(0.05)
    rc = build.finish()
    print(build)

    assert rc == 0, str(build)
    assert saw_sleep, "never saw the builder command run: nothing was checked"
    assert found == {}, f"secret values in process command lines: {found}"
    assert in_bundles == {}, f"secret values in buildah's run bundle: {in_bundles}"
    assert "big-run-ok" in build.stderr and "tiny ok" in build.stderr
    # The build's scratch folders (with the job files) are gone: no secret is left.
    assert list(scratch.glob("uvbuild-*")) == []
    assert _files_holding(needles, scratch) == {}


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


@pytest.mark.parametrize("key", ["builder.env", "runtime.env"])
def test_a_value_too_long_for_a_command_line_is_one_clear_message(
        mod: Module, tiny: Path, uvbuild_cli: list[str], key: str) -> None:
    big = {"BIG": "v" * 150_000}
    recipe = tiny_recipe(tiny, f"big-{key}", run=["true"],
                         env=big if key == "builder.env" else None)
    if key == "runtime.env":
        data = yaml.safe_load(recipe.read_text())
        data["runtime"]["env"] = big
        recipe.write_text(yaml.safe_dump(data, sort_keys=False))
    proc = subprocess.run([*uvbuild_cli, str(recipe)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, **LEAK_ENV})

    assert "Traceback" not in proc.stderr, proc.stderr
    message = [line for line in proc.stderr.splitlines() if line.startswith("uvbuild:")]
    assert len(message) == 1, proc.stderr
    if key == "builder.env":
        # Refused before any work (by the loader's size limits, or before the build).
        assert proc.returncode == 3 and "BIG" in message[0], proc.stderr
    else:
        # buildah config gets it on its command line: refused by the loader's size
        # limits, or else by the system, as a clear engine error.
        assert proc.returncode in (3, 5), proc.stderr

# --------------------------------------------------------------------------- /app and SBOM


def test_app_is_owned_by_root_and_read_only_for_the_user(fresh: Built) -> None:
    config = json.loads(buildah("inspect", "--type", "image", fresh.tag).stdout)["OCIv1"]
    user = config["config"]["User"]
    assert re.fullmatch(r"[1-9]\d*:\d+", user), f"User is {user!r}"
    gid = int(user.split(":")[1])
    bad: list[str] = []
    with MountedImage(fresh.tag, "own") as root:
        app = root / "app"
        paths = [app]
        for top, dirs, files in os.walk(app):
            paths += [Path(top) / name for name in [*dirs, *files]]
        for path in paths:
            st = os.lstat(path)
            rel = "/" + str(path.relative_to(root))
            if st.st_uid != 0:
                bad.append(f"{rel}: owner {st.st_uid}:{st.st_gid}")
            elif not os.path.islink(path) and (
                    st.st_mode & 0o002 or (st.st_mode & 0o020 and st.st_gid == gid)):
                bad.append(f"{rel}: mode {oct(st.st_mode)}, owner {st.st_uid}:{st.st_gid}")
    count = len(paths)
    assert count > 1000, f"only {count} entries under /app"
    assert bad == [], f"{len(bad)} paths under /app are not root's read-only files:\n" + \
        "\n".join(bad[:30])


def test_sbom_in_image_on_disk_and_in_inspect(mod: Module, fresh: Built, tmp_path: Path,
                                              uvbuild_cli: list[str]) -> None:
    with MountedImage(fresh.tag, "sbom") as root:
        in_image = (root / SBOM_PATH.lstrip("/")).read_bytes()
        st = os.lstat(root / SBOM_PATH.lstrip("/"))
    assert st.st_uid == 0
    doc = json.loads(in_image)
    assert doc["bomFormat"] == "CycloneDX"
    assert str(doc["specVersion"]).startswith("1.")
    by_name = {c["name"]: c for c in doc.get("components", [])}
    assert "fastapi" in by_name, sorted(by_name)
    fastapi = by_name["fastapi"]
    assert fastapi.get("version") == "0.165.0"
    sha256 = [h["content"] for h in fastapi.get("hashes", []) if h.get("alg") == "SHA-256"]
    assert sha256 and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in sha256), fastapi

    beside = tmp_path / "sbom.cdx.json"
    mod.build(fresh.recipe, fresh.tag, "--sbom", str(beside))
    assert beside.read_bytes() == in_image

    shown = subprocess.run([*uvbuild_cli, "inspect", fresh.tag], capture_output=True,
                           text=True, timeout=300, check=False)
    print(shown.stdout, shown.stderr)
    assert shown.returncode == 0, shown.stderr
    assert "SBOM" in shown.stdout and "CycloneDX" in shown.stdout
    assert "fastapi 0.165.0" in shown.stdout


# --------------------------------------------------------------------------- interruptions


@pytest.fixture(scope="module")
def interrupt_target(mod: Module) -> Built:
    """A tag already holding a (different) image, which interrupted builds must not move."""
    tag = tag_for("intr")
    recipe = make_variant(mod.root / "intr-prev", tag, code_change=f"previous {RUN_ID}")
    mod.build(recipe, tag)
    previous = image_id(tag)
    assert previous
    return Built(recipe=recipe, tag=tag, id=previous)


INTERRUPTIONS = [
    # (signal, step to wait for (None: from the start), seconds after it, whole group?)
    pytest.param(signal.SIGINT, None, 0.5, False, id="SIGINT-0.5s"),
    pytest.param(signal.SIGINT, "sync-dependencies", 1.5, False, id="SIGINT-sync-dependencies"),
    pytest.param(signal.SIGINT, "prepare-runtime", 0.3, False, id="SIGINT-prepare-runtime"),
    pytest.param(signal.SIGINT, "add-project", 0.5, True, id="Ctrl-C-add-project"),
    pytest.param(signal.SIGTERM, "install-project", 1.0, False, id="SIGTERM-install-project"),
]


@pytest.mark.parametrize(("signum", "step", "delay", "group"), INTERRUPTIONS)
def test_interrupted_build_leaves_nothing(
        mod: Module, fresh: Built, interrupt_target: Built, signum: int, step: str | None,
        delay: float, group: bool) -> None:
    before = set(buildah_container_names())
    build = LiveBuild([*mod.uvbuild, str(fresh.recipe), "--no-cache", "--tag",
                       interrupt_target.tag], new_session=group)
    try:
        if step is not None:
            assert build.wait_for_step(step), f"{step} never ran\n{build}"
        time.sleep(delay)
        assert build.proc.poll() is None, f"the build ended before the signal\n{build}"
        build.signal(signum, group=group)
        rc = build.finish()
    finally:
        if build.proc.poll() is None:
            build.proc.kill()
            build.finish()
    running = re.findall(r"^\s+(\S+)\s+(?:\.\.\.|FAILED)", build.stderr, re.M)
    during = running[-1] if running else "planning (before any step)"
    print(f"{signal.Signals(signum).name}{' to the group' if group else ''} during {during}"
          f"\n{build}")
    assert rc == 130, f"exit {rc}, expected 130\n{build}"
    assert containers_of(build.pid) == [], f"working containers left\n{build}"
    # Nor buildah's own: `copy --from IMAGE` works in a temporary container, left
    # behind when the copy is killed part-way.
    new = sorted(set(buildah_container_names()) - before)
    assert new == [], f"containers left: {new}\n{build}"
    assert image_id(interrupt_target.tag) == interrupt_target.id, "the tag moved"


def test_sigkill_leftovers_are_removed_by_the_next_build(mod: Module, fresh: Built) -> None:
    tag = tag_for("kill")
    mod.tags.append(tag)
    build = LiveBuild([*mod.uvbuild, str(fresh.recipe), "--no-cache", "--tag", tag])
    try:
        assert build.wait_for_step("sync-dependencies"), f"sync never ran\n{build}"
        time.sleep(1.0)
        build.proc.kill()
        build.finish()
    finally:
        if build.proc.poll() is None:
            build.proc.kill()
            build.finish()
    print(build)
    left = containers_of(build.pid)
    print(f"left by the killed build {build.pid}: {left}")
    assert left, "kill -9 during sync-dependencies left no working container named after it"
    # uvbuild-<run id>-<n>-<purpose>, the run id being <pid>-<8 letters>.
    named = rf"uvbuild-{build.pid}-[a-z]{{8}}-\d+-[a-z-]+"
    assert all(re.fullmatch(named, n) for n in left), left

    after = LiveBuild([*mod.uvbuild, str(fresh.recipe), "--tag", tag])
    rc = after.finish()
    print(after)
    assert rc == 0, str(after)
    assert containers_of(build.pid) == [], "the next build did not remove the leftovers"
    assert containers_of(after.pid) == []
    assert image_id(tag), f"{tag} was not tagged"


def test_concurrent_builds_of_one_tag(mod: Module, tmp_path: Path, uvbuild_popen) -> None:
    tag = tag_for("conc")
    mod.tags.append(tag)
    recipe = make_variant(tmp_path, tag, code_change=f"concurrent {RUN_ID}")
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda _: uvbuild_popen([recipe, "--quiet"]), range(2)))
    for run in runs:
        print(run)
        assert run.returncode == 0, str(run)
    ids = {run.stdout.strip() for run in runs}
    assert ids == {image_id(tag)}, ids
    for run in runs:
        assert containers_of(run.pid) == [], str(run)
    probe = subprocess.run(["podman", "run", "--rm", "--network", "none", "--entrypoint",
                            "python", tag, "-c", "import restapipy, fastapi"],
                           capture_output=True, text=True, timeout=300, check=False)
    assert probe.returncode == 0, f"the image does not run: {probe.stderr}"
