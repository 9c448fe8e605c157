"""Time uvbuild against `buildah bud` on the uv docs' multi-stage Containerfile.

    .venv/bin/python bench/run.py [--runs N] [--keep] [--phases compare,second-runner]

Both tools build the same copy of recipes/fastapi, from the same bootstrapped base,
on this machine, in the same run, in five phases: a first build (warm uv cache, no
cached layers or steps of that tool), an unchanged rebuild, a rebuild after a
one-line code change, one after a lock change (one more dependency) and one after a
runtime-base refresh (the same Python, one more file in the runtime's base); then a
"second runner": a cold build exporting its steps to a loopback registry, and a fresh
store with an empty uv cache building the same inputs from that registry cache. The
script prints the median times, their ratio against the issue's targets, the bytes of the layers each tool made new for the code change and
the image sizes, and writes the figures to bench/results/latest.json.

Everything runs in a private containers storage under the temporary folder (the
bootstrapped base is copied into it), so pruning a tool's cache never touches an
image this script did not make, and other builds on the host do not contend for
the storage lock. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import uvbuild as uvbuild_package

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "recipes" / "fastapi"
RECIPE = REPO / "recipes" / "fastapi.yaml"
CONTAINERFILE = REPO / "bench" / "Containerfile.uv-docs"
RESULTS = REPO / "bench" / "results" / "latest.json"

UVBUILD_IMAGE = "localhost/bench-uvbuild:latest"
# The runtime stage's base for both tools: the recipe's runtime base plus a file that
# the runtime-base refresh phase changes (same Python, new image ID).
RUNTIME_BASE_IMAGE = "localhost/bench-runtime-base:latest"
REFRESH_FILE = "/etc/bench-base-refresh"
# The lock change adds one small pure-Python dependency per run (resolved from the
# index with `uv add`, not timed), a different one each run.
LOCK_PACKAGES = ("six", "idna", "iniconfig", "tomli", "pyparsing", "colorama", "wrapt")
BUD_IMAGE = "localhost/bench-bud:latest"
CACHE_REPO = "localhost/uvbuild-cache/"  # uvbuild's step cache (src/uvbuild/plan/planner.py)
BASE_REPO = "localhost/uvbuild-base/"  # uvbuild's bootstrapped bases
CA_TARGET = "/etc/ssl/certs/uvbuild-ca.crt"  # where bud's RUN commands see the CA bundle
EDITED_MODULE = Path("src/restapipy/app.py")
IGNORED = ".venv\n__pycache__\n# the uv binary is mounted from the context, never added\nuv\n"

# phase → (label, target ratio uvbuild/bud): the owned-image issue's targets.
PHASES = {
    "first": ("first build", 0.70),
    "unchanged": ("unchanged rebuild", 0.15),
    "change": ("one-line code change", 0.45),
    "lock": ("lock change", 0.80),
    "base": ("runtime-base refresh", 0.30),
}
LAYER_BYTES_TARGET = 0.01  # uvbuild's new-layer bytes ≤ 1/100 of bud's
# What --phases chooses from: the five phases against bud, and the second runner.
PHASE_GROUPS = ("compare", "second-runner")


class BenchError(Exception):
    """The benchmark cannot go on; the message says why and what to do."""


# -- host commands --------------------------------------------------------------


@dataclass
class Shell:
    """Runs every host command, logging its output; in the private storage unless asked."""

    logs: Path
    private_env: dict[str, str] | None = None  # set once the private storage exists
    serial: int = 0

    def run(self, argv: list[str], *, what: str, cwd: Path | None = None,
            host_store: bool = False) -> str:
        """Run `argv`; return stdout. Output goes to a numbered log; failure raises.

        `host_store` commands (read-only questions) see the host's storage; every other
        command needs the private one, so nothing here can prune the host's images.
        """
        if host_store:
            env = dict(os.environ)
        elif self.private_env is None:
            raise BenchError(f"{what}: the private storage is not set up yet")
        else:
            env = self.private_env
        self.serial += 1
        log = self.logs / f"{self.serial:03d}-{re.sub(r'[^A-Za-z0-9.]+', '-', what)}.log"
        try:
            proc = subprocess.run(argv, check=False, cwd=cwd, env=env, capture_output=True,
                                  text=True)
        except FileNotFoundError as exc:
            raise BenchError(f"{what}: {argv[0]} not found ({exc})") from None
        log.write_text(f"$ {shlex.join(argv)}\n--- stdout\n{proc.stdout}\n--- stderr\n"
                       f"{proc.stderr}\n--- exit {proc.returncode}\n")
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
            raise BenchError(f"{what} failed (exit {proc.returncode}); log: {log}\n{tail}")
        return proc.stdout

    def timed(self, argv: list[str], *, what: str, cwd: Path | None = None) -> tuple[float, str]:
        """Wall-clock seconds of one command (time.monotonic around the child) and stdout."""
        started = time.monotonic()
        out = self.run(argv, what=what, cwd=cwd)
        return time.monotonic() - started, out


# -- images in the private storage ----------------------------------------------


@dataclass(frozen=True)
class Layers:
    """An image's layers as (digest, uncompressed size), base first."""

    image_id: str
    layers: tuple[tuple[str, int], ...]

    @property
    def size(self) -> int:
        return sum(size for _, size in self.layers)

    def new_bytes(self, before: Layers) -> int:
        """Bytes of the layers in this image that `before` did not have."""
        old = {digest for digest, _ in before.layers}
        return sum(size for digest, size in self.layers if digest not in old)


def image_layers(sh: Shell, ref: str) -> Layers:
    data = json.loads(sh.run(["buildah", "inspect", "--type", "image", ref],
                             what=f"inspect {ref}"))
    manifest = json.loads(data.get("Manifest") or "{}")
    return Layers(image_id=data["FromImageID"],
                  layers=tuple((layer["digest"], int(layer.get("size", 0)))
                               for layer in manifest.get("layers") or ()))


def image_names(sh: Shell, *, host_store: bool = False) -> dict[str, str]:
    """Every image name in a storage → image ID."""
    out = sh.run(["buildah", "images", "--json", "--no-trunc"], what="list images",
                 host_store=host_store)
    return {name: entry["id"] for entry in json.loads(out or "null") or ()
            for name in entry.get("names") or ()}


def private_cache_home(root: Path) -> Path:
    """uvbuild's cache home for this run: its own layer cache (forgotten with its step
    cache), the host's uv cache (warm, as the phases say)."""
    home = root / "xdg"
    (home / "uvbuild").mkdir(parents=True, exist_ok=True)
    host = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "uvbuild" / "uv"
    host.mkdir(parents=True, exist_ok=True)
    (home / "uvbuild" / "uv").symlink_to(host)
    return home


def forget_uvbuild(sh: Shell) -> None:
    """Remove uvbuild's cached steps and the bench image; keep the bootstrapped base.

    By name, never by ID: a step that changes nothing (prepare-builder without
    packages) is the base image under a second name, and must stay the base.
    """
    names = [n for n in image_names(sh) if n.startswith(CACHE_REPO) or n == UVBUILD_IMAGE]
    if names:
        sh.run(["buildah", "rmi", *names], what="forget uvbuild cache")
    # And its layer cache (the runtime image's layer tars) and its cache of the
    # dependencies' .pyc files, private to this run (uv's own cache stays warm).
    assert sh.private_env is not None
    for folder in ("layers", "bytecode"):
        shutil.rmtree(Path(sh.private_env["XDG_CACHE_HOME"]) / "uvbuild" / folder,
                      ignore_errors=True)


def forget_bud(sh: Shell) -> None:
    """Remove bud's image and its unnamed intermediate layer images; keep the base."""
    if BUD_IMAGE in image_names(sh):
        sh.run(["buildah", "rmi", BUD_IMAGE], what="forget bud image")
    sh.run(["buildah", "rmi", "--prune"], what="prune bud layers")


# -- the workspace ----------------------------------------------------------------


@dataclass(frozen=True)
class Workspace:
    """The temporary folder: project copy (bud's build context too), recipe, storage."""

    root: Path

    @property
    def project(self) -> Path:
        return self.root / "fastapi"

    @property
    def recipe(self) -> Path:
        return self.root / "fastapi.yaml"

    @property
    def storage_conf(self) -> Path:
        return self.root / "storage.conf"


def host_storage(sh: Shell) -> dict[str, str]:
    """The host's storage driver, graph root and run root (`buildah info`)."""
    store = json.loads(sh.run(["buildah", "info"], what="buildah info", host_store=True))["store"]
    return {"driver": store["GraphDriverName"], "graphroot": store["GraphRoot"],
            "runroot": store["RunRoot"]}


def make_workspace(root: Path, uv: Path, store: dict[str, str]) -> Workspace:
    """Copy the sample project and recipe; add the uv binary and an ignore file."""
    ws = Workspace(root)
    shutil.copytree(SAMPLE, ws.project, ignore=shutil.ignore_patterns(".venv", "__pycache__"))
    shutil.copy2(uv, ws.project / "uv")
    # The same ignore file serves both tools: bud's ADD and uvbuild's source list.
    (ws.project / ".dockerignore").write_text(IGNORED)
    recipe = RECIPE.read_text()
    recipe = _replace_key(recipe, "project", ws.project.name)
    recipe = _replace_key(recipe, "image", UVBUILD_IMAGE)
    ws.recipe.write_text(recipe)
    ws.storage_conf.write_text(
        "[storage]\n"
        f'driver = "{store["driver"]}"\n'
        f'graphroot = "{root / "storage"}"\n'
        f'runroot = "{root / "run"}"\n')
    return ws


def _replace_key(text: str, key: str, value: str) -> str:
    """Set a top-level `key: value` line of the recipe; the recipe must have it."""
    lines = text.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if line.startswith(f"{key}:"):
            lines[index] = f"{key}: {value}\n"
            return "".join(lines)
    raise BenchError(f"{RECIPE}: no top-level `{key}:` line to point at the bench copy")


def _replace_runtime_from(text: str, ref: str) -> str:
    """Point the recipe's `runtime.from` (a one-line value or an indented block) at `ref`."""
    lines = text.splitlines(keepends=True)
    try:
        runtime = lines.index("runtime:\n")
        start = next(i for i in range(runtime + 1, len(lines))
                     if lines[i].startswith("  from:"))
    except (ValueError, StopIteration):
        raise BenchError(f"{RECIPE}: no `runtime:` with a `from:` line to point at the "
                         "bench's runtime base") from None
    end = start + 1
    while end < len(lines) and lines[end].startswith("    "):
        end += 1
    lines[start:end] = [f"  from: {ref}\n"]
    return "".join(lines)


def bump_version(ws: Workspace, run: int) -> None:
    """The one-line code change: a new module-level constant, different each run."""
    with open(ws.project / EDITED_MODULE, "a") as module:
        module.write(f"VERSION_BUMP = {run}\n")


def add_dependency(sh: Shell, ws: Workspace, run: int) -> str:
    """The lock change: one more dependency in pyproject.toml and uv.lock (`uv add`)."""
    package = LOCK_PACKAGES[(run - 1) % len(LOCK_PACKAGES)]
    sh.run([str(ws.project / "uv"), "add", "--no-sync", package], what=f"uv add {package}",
           cwd=ws.project)
    return package


# -- the bases --------------------------------------------------------------------


def import_bases(sh: Shell, uvbuild: str, ws: Workspace, store: dict[str, str]) -> list[str]:
    """Copy the recipe's bootstrapped bases from the host storage into the private one.

    `uvbuild plan` names each base step's key; the base image's repository ends with a
    longer prefix of it (localhost/uvbuild-base/debian-bookworm-<key16>). A base not on
    the host is bootstrapped by the warm-up build instead.
    """
    plan = sh.run([uvbuild, "plan", "--no-engine", str(ws.recipe)], what="uvbuild plan")
    keys = {fields[1] for fields in (line.split() for line in plan.splitlines())
            if len(fields) > 1 and fields[0] in ("builder-base", "runtime-base")}
    found = sorted(name for name in image_names(sh, host_store=True)
                   if name.startswith(BASE_REPO)
                   and any(name.rpartition(":")[0].rpartition("-")[2].startswith(key)
                           for key in keys))
    source = f"containers-storage:[{store['driver']}@{store['graphroot']}+{store['runroot']}]"
    for name in found:
        sh.run(["buildah", "pull", "--quiet", source + name], what="import base")
    return found


def stage_base(sh: Shell, uvbuild: str, recipe: Path, step: str) -> str:
    """The bootstrapped base of one stage (`builder-base` or `runtime-base`) in the
    private storage, found by the key `uvbuild plan` gives that step."""
    plan = sh.run([uvbuild, "plan", "--no-engine", str(recipe)], what="uvbuild plan")
    keys = [fields[1] for fields in (line.split() for line in plan.splitlines())
            if len(fields) > 1 and fields[0] == step]
    bases = sorted(n for n in image_names(sh) if n.startswith(BASE_REPO) and keys
                   and n.rpartition(":")[0].rpartition("-")[2].startswith(keys[0]))
    if len(bases) != 1:
        raise BenchError(f"expected one bootstrapped {step} in the bench storage, found {bases}")
    return bases[0]


def refresh_runtime_base(sh: Shell, source: str, run: int) -> None:
    """(Re)make RUNTIME_BASE_IMAGE: `source` plus REFRESH_FILE saying `run`: a new image
    ID with the same Python, as a base image's security refresh gives."""
    stamp = sh.logs.parent / "refresh"
    stamp.write_text(f"{run}\n")
    container = sh.run(["buildah", "from", "--pull=never", "--quiet", source],
                       what="refresh base: from").strip().splitlines()[-1]
    try:
        sh.run(["buildah", "copy", "--quiet", container, str(stamp), REFRESH_FILE],
               what="refresh base: copy")
        sh.run(["buildah", "commit", "--quiet", "--timestamp", "315532800", container,
                RUNTIME_BASE_IMAGE], what="refresh base: commit")
    finally:
        sh.run(["buildah", "rm", container], what="refresh base: rm")


# -- the two tools ----------------------------------------------------------------


@dataclass
class Tools:
    uvbuild: str
    ws: Workspace
    base: str = ""  # the builder's bootstrapped base (bud's BASE)
    runtime_source: str = ""  # the runtime's bootstrapped base, RUNTIME_BASE_IMAGE's source

    def uvbuild_argv(self) -> list[str]:
        return [self.uvbuild, "build", "--json", str(self.ws.recipe)]

    def bud_argv(self) -> list[str]:
        argv = ["buildah", "bud", "--layers", "--isolation", "chroot",
                "-f", str(CONTAINERFILE), "-t", BUD_IMAGE, "--build-arg", f"BASE={self.base}",
                "--build-arg", f"RUNTIME_BASE={RUNTIME_BASE_IMAGE}"]
        bundle = os.environ.get("SSL_CERT_FILE")
        if bundle and Path(bundle).is_file():
            argv += ["--volume", f"{Path(bundle).resolve()}:{CA_TARGET}:ro",
                     "--build-arg", f"SSL_CERT_FILE={CA_TARGET}"]
        return argv + [str(self.ws.project)]


@dataclass
class Measure:
    """One timed build: wall seconds, and uvbuild's own report (steps that ran → s)."""

    seconds: float
    steps: dict[str, float] = field(default_factory=dict)
    reported: float | None = None


def build_uvbuild(sh: Shell, tools: Tools, what: str) -> Measure:
    seconds, out = sh.timed(tools.uvbuild_argv(), what=what, cwd=tools.ws.root)
    report = json.loads(out.strip().splitlines()[-1])
    ran = {str(s["step"]): float(s["seconds"]) for s in report.get("steps", ())
           if not s.get("cached")}
    return Measure(seconds, steps=ran, reported=report.get("seconds"))


def build_bud(sh: Shell, tools: Tools, what: str) -> Measure:
    seconds, _ = sh.timed(tools.bud_argv(), what=what, cwd=tools.ws.root)
    return Measure(seconds)


# -- one run ------------------------------------------------------------------------


@dataclass
class RunResult:
    uvbuild: dict[str, Measure]
    bud: dict[str, Measure]
    new_bytes: dict[str, int]
    sizes: dict[str, int]
    layer_counts: dict[str, int]
    loadavg: list[float]  # at the start of the run: the machine is shared


def one_run(sh: Shell, tools: Tools, n: int) -> RunResult:
    """First build and unchanged rebuild per tool, then the code change, the lock change
    and the runtime-base refresh for both."""
    load = loadavg()
    uv: dict[str, Measure] = {}
    bud: dict[str, Measure] = {}
    forget_uvbuild(sh)
    uv["first"] = build_uvbuild(sh, tools, f"run{n} uvbuild first")
    uv["unchanged"] = build_uvbuild(sh, tools, f"run{n} uvbuild unchanged")
    forget_bud(sh)
    bud["first"] = build_bud(sh, tools, f"run{n} bud first")
    bud["unchanged"] = build_bud(sh, tools, f"run{n} bud unchanged")

    before = {"uvbuild": image_layers(sh, UVBUILD_IMAGE), "bud": image_layers(sh, BUD_IMAGE)}
    bump_version(tools.ws, n)
    uv["change"] = build_uvbuild(sh, tools, f"run{n} uvbuild change")
    bud["change"] = build_bud(sh, tools, f"run{n} bud change")
    after = {"uvbuild": image_layers(sh, UVBUILD_IMAGE), "bud": image_layers(sh, BUD_IMAGE)}
    _changed(before, after, "the code change")

    package = add_dependency(sh, tools.ws, n)
    uv["lock"] = build_uvbuild(sh, tools, f"run{n} uvbuild lock change")
    bud["lock"] = build_bud(sh, tools, f"run{n} bud lock change")
    locked = {"uvbuild": image_layers(sh, UVBUILD_IMAGE), "bud": image_layers(sh, BUD_IMAGE)}
    _changed(after, locked, f"adding {package}")

    refresh_runtime_base(sh, tools.runtime_source, n)
    uv["base"] = build_uvbuild(sh, tools, f"run{n} uvbuild base refresh")
    bud["base"] = build_bud(sh, tools, f"run{n} bud base refresh")
    refreshed = {"uvbuild": image_layers(sh, UVBUILD_IMAGE), "bud": image_layers(sh, BUD_IMAGE)}
    _changed(locked, refreshed, "the runtime-base refresh")
    return RunResult(
        uvbuild=uv, bud=bud,
        new_bytes={tool: after[tool].new_bytes(before[tool]) for tool in after},
        sizes={tool: after[tool].size for tool in after},
        layer_counts={tool: len(after[tool].layers) for tool in after}, loadavg=load)


def _changed(before: dict[str, Layers], after: dict[str, Layers], what: str) -> None:
    for tool, image in after.items():
        if image.image_id == before[tool].image_id:
            raise BenchError(f"{tool}: {what} produced the same image; it did not reach "
                             "the build")


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages: how busy the (shared) machine was."""
    return [round(x, 2) for x in os.getloadavg()]


# -- the second runner (issue 14) -----------------------------------------------------

SECOND_RUNNER_TARGET = 0.35  # the second runner's build ≤ 0.35 × the cold runner's
# Steps whose work is a command in the builder (packages, uv sync, the project's
# install and builder.run): the second runner must run none of them.
BUILDER_STEPS = ("prepare-builder", "sync-dependencies", "install-project")
# What a code edit must re-make: the project's install, its layer and the image.
PROJECT_STEPS = ("install-project", "project-layer", "add-project")
REGISTRY_CONFIG = """\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
  secret: uvbuild-bench-registry
"""


@dataclass
class Registry:
    """The loopback docker-registry (plain HTTP) that holds the runners' shared cache."""

    address: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _registry_answers(address: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://{address}/v2/", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def start_registry(root: Path) -> Registry:
    """docker-registry on 127.0.0.1 (a free port), its blobs under `root`/registry."""
    binary = shutil.which("docker-registry")
    if binary is None:
        raise BenchError("docker-registry not found (the second-runner phase needs a "
                         "registry): apt-get install docker-registry, or leave the phase "
                         "out with --phases compare")
    folder = root / "registry"
    (folder / "blobs").mkdir(parents=True)
    for _attempt in range(5):  # a port found free can be taken before the registry binds it
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        config = folder / "config.yml"
        config.write_text(REGISTRY_CONFIG.format(root=folder / "blobs", port=port))
        with open(folder / "registry.log", "ab") as log:
            process = subprocess.Popen([binary, "serve", str(config)], stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        address = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and process.poll() is None:
            if _registry_answers(address):
                return Registry(address, process)
            time.sleep(0.05)
        Registry(address, process).stop()
    raise BenchError(f"docker-registry did not start; log: {folder / 'registry.log'}")


def without_proxy_for_loopback(env: dict[str, str]) -> dict[str, str]:
    """`env` with 127.0.0.1 in NO_PROXY: the registry is never reached through a proxy."""
    env = dict(env)
    for var in ("no_proxy", "NO_PROXY"):
        current = env.get(var, "")
        if "127.0.0.1" not in current:
            env[var] = ",".join(part for part in (current, "127.0.0.1,localhost") if part)
    return env


def step_statuses(report: dict[str, object]) -> dict[str, str]:
    """Step → `cached`, `pulled` or `built`, from a `--json` report."""
    steps = report.get("steps") or ()
    assert isinstance(steps, (list, tuple))
    return {str(s["step"]): str(s.get("status") or ("cached" if s.get("cached") else "built"))
            for s in steps}


@dataclass
class RunnerBuild:
    """One runner's timed build: wall seconds, the image ID and each step's status."""

    seconds: float
    image_id: str
    statuses: dict[str, str]
    step_seconds: dict[str, float]

    def with_status(self, status: str) -> list[str]:
        return [step for step, got in self.statuses.items() if got == status]


def runner_build(sh: Shell, tools: Tools, what: str, flags: list[str]) -> RunnerBuild:
    argv = [tools.uvbuild, "build", "--json", *flags, str(tools.ws.recipe)]
    seconds, out = sh.timed(argv, what=what, cwd=tools.ws.root)
    report = json.loads(out.strip().splitlines()[-1])
    return RunnerBuild(seconds, str(report["id"]).removeprefix("sha256:"), step_statuses(report),
                       {str(s["step"]): float(s["seconds"]) for s in report.get("steps", ())})


@dataclass
class SecondRunner:
    cold: RunnerBuild  # runner 1: cold, exporting with --cache-to
    bases_seconds: float  # runner 2: copying the runtime base in (skopeo), not in the ratio
    second: RunnerBuild  # runner 2: the same inputs, --cache-from
    edit: RunnerBuild  # runner 2 after a one-line code edit, --cache-from

    @property
    def ratio(self) -> float:
        return self.second.seconds / self.cold.seconds

    @property
    def builder_steps_built(self) -> list[str]:
        return [step for step in self.second.with_status("built") if step in BUILDER_STEPS]

    @property
    def edit_outside_project(self) -> list[str]:
        return [step for step in self.edit.with_status("built") if step not in PROJECT_STEPS]


def second_runner(sh: Shell, tools: Tools, registry: Registry, store: dict[str, str],
                  n: int) -> SecondRunner:
    """Runner 1 (the bench's store, cold) exports to a fresh cache repository; runner 2
    (a fresh store, an empty uv cache and layer cache) builds the same inputs from it,
    then a one-line code edit."""
    assert sh.private_env is not None
    repo = f"{registry.address}/bench/uvbuild-cache-{n}"  # this run's entries only
    access = ["--no-tls-verify"]  # the loopback registry speaks plain HTTP
    work = tools.ws.root / f"runners-{n}"
    # Runner 1, cold: no cached step, an empty uv cache and layer cache (a cache home of
    # its own), the bases present, as a CI runner that pulled them has them.
    forget_uvbuild(sh)
    env = without_proxy_for_loopback(
        {k: v for k, v in sh.private_env.items() if k != "UV_CACHE_DIR"})
    one = Shell(logs=sh.logs, serial=1000 * n,
                private_env={**env, "XDG_CACHE_HOME": str(work / "runner1-cache")})
    cold = runner_build(one, tools, f"run{n} runner1 cold --cache-to",
                        [*access, "--cache-to", repo])

    # Runner 2: its own store, run root, uv cache and layer cache.
    two_root = work / "runner2"
    (two_root / "cache").mkdir(parents=True)
    conf = two_root / "storage.conf"
    conf.write_text("[storage]\n"
                    f'driver = "{store["driver"]}"\n'
                    f'graphroot = "{two_root / "storage"}"\n'
                    f'runroot = "{two_root / "run"}"\n')
    two = Shell(logs=sh.logs, serial=1000 * n + 500, private_env={
        **env, "CONTAINERS_STORAGE_CONF": str(conf), "XDG_CACHE_HOME": str(two_root / "cache")})
    try:
        # The runtime base is named by reference (RUNTIME_BASE_IMAGE), so it reaches
        # runner 2 as a CI runner pulls such a base from its registry: copied from runner
        # 1's store (same image ID), timed apart (it is not the build). The bootstrapped
        # builder base is not copied: runner 2 gets it from the registry cache, if it
        # needs it at all.
        source = (f"containers-storage:[{store['driver']}@{tools.ws.root / 'storage'}"
                  f"+{tools.ws.root / 'run'}]")
        started = time.monotonic()
        two.run(["skopeo", "copy", "--quiet", source + RUNTIME_BASE_IMAGE,
                 f"containers-storage:{RUNTIME_BASE_IMAGE}"], what=f"run{n} runner2 copy base")
        bases_seconds = time.monotonic() - started
        second = runner_build(two, tools, f"run{n} runner2 --cache-from",
                              [*access, "--cache-from", repo])
        with open(tools.ws.project / EDITED_MODULE, "a") as module:
            module.write(f"SECOND_RUNNER_EDIT = {n}\n")
        edit = runner_build(two, tools, f"run{n} runner2 code edit --cache-from",
                            [*access, "--cache-from", repo])
    finally:
        for argv in (["buildah", "rm", "--all"], ["buildah", "rmi", "--all", "--force"]):
            try:
                two.run(argv, what="runner2 clean up")
            except BenchError as exc:
                print(f"bench: warning: {exc}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
    return SecondRunner(cold=cold, bases_seconds=bases_seconds, second=second, edit=edit)


def summarize_second_runner(runs: list[SecondRunner]) -> dict[str, object]:
    """The phase's figures: medians, every run's, and each check per run."""
    cold = [r.cold.seconds for r in runs]
    second = [r.second.seconds for r in runs]
    ratio = statistics.median(second) / statistics.median(cold)
    return {
        "label": "second runner (registry cache)",
        "cold_runner_seconds": round(statistics.median(cold), 2),
        "second_runner_seconds": round(statistics.median(second), 2),
        "ratio": round(ratio, 3), "target_ratio": SECOND_RUNNER_TARGET,
        "met": ratio <= SECOND_RUNNER_TARGET,
        "bases_copy_seconds": round(statistics.median(r.bases_seconds for r in runs), 2),
        "ratio_with_bases_copy": round(
            statistics.median(r.second.seconds + r.bases_seconds for r in runs)
            / statistics.median(cold), 3),
        "code_edit_seconds": round(statistics.median(r.edit.seconds for r in runs), 2),
        "cold_runs": [round(s, 2) for s in cold],
        "second_runs": [round(s, 2) for s in second],
        "ratio_runs": [round(r.ratio, 3) for r in runs],
        "no_builder_command": all(not r.builder_steps_built for r in runs),
        "builder_steps_built_runs": [r.builder_steps_built for r in runs],
        "same_image_id": all(r.cold.image_id == r.second.image_id for r in runs),
        "image_ids_runs": [[r.cold.image_id, r.second.image_id] for r in runs],
        "code_edit_only_project_steps": all(not r.edit_outside_project for r in runs),
        "code_edit_built_outside_project_runs": [r.edit_outside_project for r in runs],
        "statuses_runs": [{"cold": r.cold.statuses, "second": r.second.statuses,
                           "code_edit": r.edit.statuses} for r in runs],
        "step_seconds_runs": [{"cold": r.cold.step_seconds, "second": r.second.step_seconds,
                               "code_edit": r.edit.step_seconds} for r in runs],
    }


def print_second_runner(phase: dict[str, object]) -> None:
    runs = phase["statuses_runs"]
    assert isinstance(runs, list)
    print(f"\nsecond runner (a fresh store, empty uv and layer caches, --cache-from the first "
          f"runner's --cache-to), median of {len(runs)} run(s):")
    print(f"  cold runner (exporting) {phase['cold_runner_seconds']:.2f}s, second runner "
          f"{phase['second_runner_seconds']:.2f}s: ratio {phase['ratio']:.2f}  "
          f"<= {SECOND_RUNNER_TARGET}  {verdict(bool(phase['met']))}")
    print(f"  copying the runtime base into the second store: {phase['bases_copy_seconds']:.2f}s "
          f"(not in the ratio; with it: {phase['ratio_with_bases_copy']:.2f})")
    print(f"  second runner ran no builder command: {verdict(bool(phase['no_builder_command']))}"
          f" (builder steps built per run: {phase['builder_steps_built_runs']})")
    print(f"  same image ID on both runners: {verdict(bool(phase['same_image_id']))}")
    print(f"  code edit on the second runner ({phase['code_edit_seconds']:.2f}s) ran only the "
          f"project steps: {verdict(bool(phase['code_edit_only_project_steps']))}")
    times = phase["step_seconds_runs"]
    assert isinstance(times, list)
    for n, (statuses, seconds) in enumerate(zip(runs, times, strict=True), 1):
        for build in ("second", "code_edit"):
            line = ", ".join(f"{step} {status} {seconds[build][step]:.2f}s"
                             for step, status in statuses[build].items())
            print(f"    run {n} {build}: {line}")


# -- report -----------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def human(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(size) < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size} B"


def median_steps(measures: list[Measure]) -> dict[str, float]:
    """uvbuild's median seconds per step that ran in some run (0 where it was cached)."""
    names = sorted({name for m in measures for name in m.steps})
    return {name: round(statistics.median(m.steps.get(name, 0.0) for m in measures), 2)
            for name in names}


def summarize(runs: list[RunResult], context: dict[str, object]) -> dict[str, object]:
    phases: dict[str, object] = {}
    for phase, (label, target) in PHASES.items():
        uv = [r.uvbuild[phase].seconds for r in runs]
        bud = [r.bud[phase].seconds for r in runs]
        uv_med, bud_med = statistics.median(uv), statistics.median(bud)
        ratio = uv_med / bud_med
        reported = [r.uvbuild[phase].reported for r in runs]
        phases[phase] = {
            "label": label, "uvbuild_seconds": round(uv_med, 2), "bud_seconds": round(bud_med, 2),
            "ratio": round(ratio, 3), "target_ratio": target, "met": ratio <= target,
            "uvbuild_runs": [round(s, 2) for s in uv], "bud_runs": [round(s, 2) for s in bud],
            "ratio_runs": [round(a / b, 3) for a, b in zip(uv, bud)],
            "uvbuild_reported_seconds": [None if s is None else round(s, 2) for s in reported],
            "uvbuild_steps_median": median_steps([r.uvbuild[phase] for r in runs]),
            # Each run's own step durations: an outlier run can be told apart.
            "uvbuild_steps_runs": [r.uvbuild[phase].steps for r in runs],
            # For information: the median of the per-run ratios (each run times both tools
            # back to back). The verdict ("met") stays the ratio of the medians.
            "ratio_of_pairs_median": round(statistics.median(a / b for a, b in zip(uv, bud)), 3),
        }
    new = {tool: int(statistics.median(r.new_bytes[tool] for r in runs))
           for tool in ("uvbuild", "bud")}
    layer_ratio = new["uvbuild"] / new["bud"] if new["bud"] else float("inf")
    last = runs[-1]
    return {
        **context,
        "phases": phases,
        "code_change_new_layer_bytes": {
            **new, "ratio": round(layer_ratio, 6), "target_ratio": LAYER_BYTES_TARGET,
            "met": layer_ratio <= LAYER_BYTES_TARGET,
            "runs": {tool: [r.new_bytes[tool] for r in runs] for tool in ("uvbuild", "bud")}},
        "loadavg_per_run": [r.loadavg for r in runs],
        "image_bytes": last.sizes,
        "image_layers": last.layer_counts,
    }


def print_report(summary: dict[str, object]) -> None:
    phases = summary["phases"]
    assert isinstance(phases, dict)
    print(f"\nmedian of {summary['runs']} run(s); ratio = uvbuild / bud\n")
    print(f"{'phase':<22} {'uvbuild s':>9} {'bud s':>7} {'ratio':>6}  {'target':<8} result"
          f"   (per-run ratios; their median)")
    for phase in PHASES:
        p = phases[phase]
        pairs = " ".join(f"{r:.2f}" for r in p["ratio_runs"])
        print(f"{p['label']:<22} {p['uvbuild_seconds']:>9.2f} {p['bud_seconds']:>7.2f} "
              f"{p['ratio']:>6.2f}  <= {p['target_ratio']:<5} {verdict(p['met'])}"
              f"     ({pairs}; {p['ratio_of_pairs_median']:.2f})")
    new = summary["code_change_new_layer_bytes"]
    assert isinstance(new, dict)
    print(f"\nnew layers after the code change: uvbuild {human(new['uvbuild'])} "
          f"({new['uvbuild']} B), bud {human(new['bud'])} ({new['bud']} B), "
          f"ratio {new['ratio']:.4f}  <= {LAYER_BYTES_TARGET}  {verdict(new['met'])}")
    sizes, counts = summary["image_bytes"], summary["image_layers"]
    assert isinstance(sizes, dict) and isinstance(counts, dict)
    for tool in ("uvbuild", "bud"):
        print(f"image size {tool:<8} {human(sizes[tool]):>9} ({sizes[tool]} B, "
              f"{counts[tool]} layers)")
    print("\nuvbuild steps that ran (median s):")
    for phase in PHASES:
        steps = phases[phase]["uvbuild_steps_median"]
        ran = ", ".join(f"{k} {v:.2f}" for k, v in steps.items() if v) or "none"
        print(f"  {phases[phase]['label']:<22} {ran}")


# -- main ---------------------------------------------------------------------------


def find_uvbuild() -> str:
    beside = Path(sys.executable).parent / "uvbuild"
    found = str(beside) if beside.is_file() else shutil.which("uvbuild")
    if not found:
        raise BenchError("uvbuild not found: run this with the project's venv "
                         "(.venv/bin/python bench/run.py) or put uvbuild on PATH")
    return found


def tool_versions(sh: Shell, uvbuild: str, uv: Path) -> dict[str, str]:
    """The versions measured, including the uvbuild commit and whether src/ had edits."""
    versions = {
        "buildah": sh.run(["buildah", "--version"], what="buildah version").strip(),
        "uvbuild": sh.run([uvbuild, "--version"], what="uvbuild version").strip(),
        "uv": sh.run([str(uv), "--version"], what="uv version").strip(),
    }
    if shutil.which("git") and (REPO / ".git").exists():
        commit = sh.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], what="git head")
        dirty = sh.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"],
                       what="git status")
        versions["uvbuild_commit"] = commit.strip() + (" + uncommitted src/ edits" if dirty.strip()
                                                       else "")
    return versions


def compile_uvbuild(sh: Shell) -> None:
    """Byte-compile uvbuild and its venv's packages, as an installed tool would have them.

    pip compiles at install time, and Python writes .pyc files on a tool's first run,
    but not when PYTHONDONTWRITEBYTECODE is set (as on the machine these figures come
    from) or for an editable install's sources: every uvbuild command would then
    recompile ~60 modules (0.14 s) and the bench would time that, not the build.
    """
    targets = [str(Path(uvbuild_package.__file__).parent),
               sysconfig.get_paths()["purelib"]]
    sh.run([sys.executable, "-m", "compileall", "-q", *targets], what="compileall",
           host_store=True)


def prepare(sh: Shell, root: Path, uvbuild: str, uv: Path, *, bud: bool = True) -> Tools:
    """Workspace, private storage with the base, and one untimed build per tool.

    The warm-up fills both uv caches (uvbuild's on the host, bud's cache mount) and
    checks that both builds work before anything is timed.
    """
    compile_uvbuild(sh)
    store = host_storage(sh)
    ws = make_workspace(root, uv, store)
    sh.private_env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(ws.storage_conf),
                      "XDG_CACHE_HOME": str(private_cache_home(root))}
    print(f"bench: working in {root} (private storage {root / 'storage'})", flush=True)
    imported = import_bases(sh, uvbuild, ws, store)
    copied = ", ".join(imported) or "none; the warm-up build bootstraps one (minutes)"
    print(f"bench: base(s) copied from the host storage: {copied}", flush=True)
    tools = Tools(uvbuild=uvbuild, ws=ws)
    # The first warm-up bootstraps what the host storage did not have; then the runtime
    # stage moves to a refreshable copy of its base, and uvbuild warms up on that.
    build_uvbuild(sh, tools, "warm-up uvbuild (bases)")
    tools.base = stage_base(sh, uvbuild, ws.recipe, "builder-base")
    tools.runtime_source = stage_base(sh, uvbuild, ws.recipe, "runtime-base")
    refresh_runtime_base(sh, tools.runtime_source, 0)
    ws.recipe.write_text(_replace_runtime_from(ws.recipe.read_text(), RUNTIME_BASE_IMAGE))
    build_uvbuild(sh, tools, "warm-up uvbuild")
    if bud:
        build_bud(sh, tools, "warm-up bud")
    return tools


def benchmark(runs: int, keep: bool, phases: tuple[str, ...] = PHASE_GROUPS
              ) -> dict[str, object]:
    """Set up, run the chosen phases `runs` times, summarize; always clean up the storage
    (and stop the registry)."""
    if not shutil.which("buildah"):
        raise BenchError("buildah not found: install it (Debian/Ubuntu: apt-get install "
                         "buildah) and run again")
    uvbuild = find_uvbuild()
    uv = Path(uvbuild).parent / "uv"
    if not uv.is_file():
        raise BenchError(f"no uv binary beside {uvbuild}: reinstall the venv (uv is a dependency)")
    root = Path(tempfile.mkdtemp(prefix="uvbuild-bench-"))
    (root / "logs").mkdir()
    sh = Shell(logs=root / "logs")
    ok = False
    registry: Registry | None = None
    try:
        tools = prepare(sh, root, uvbuild, uv, bud="compare" in phases)
        host: dict[str, object] = {"machine": platform.machine(), "cpus": os.cpu_count(),
                                   "kernel": platform.release(),
                                   "loadavg_start": loadavg()}
        context: dict[str, object] = {
            "runs": runs, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": host,
            "versions": tool_versions(sh, uvbuild, uv), "base": tools.base,
            "bud_command": shlex.join(tools.bud_argv()),
            "uvbuild_command": shlex.join(tools.uvbuild_argv()),
        }
        if "second-runner" in phases:
            registry = start_registry(root)
            context["registry"] = registry.address
        results = []
        seconds: list[SecondRunner] = []
        for n in range(1, runs + 1):
            if "compare" in phases:
                r = one_run(sh, tools, n)
                results.append(r)
                print(f"bench: run {n}/{runs} (load {r.loadavg[0]:.1f}): " + "; ".join(
                    f"{PHASES[p][0]} uvbuild {r.uvbuild[p].seconds:.2f}s "
                    f"bud {r.bud[p].seconds:.2f}s" for p in PHASES), flush=True)
            if registry is not None:
                two = second_runner(sh, tools, registry, host_storage(sh), n)
                seconds.append(two)
                print(f"bench: run {n}/{runs} second runner: cold {two.cold.seconds:.2f}s, "
                      f"second {two.second.seconds:.2f}s, code edit {two.edit.seconds:.2f}s",
                      flush=True)
        host["loadavg_end"] = loadavg()
        ok = True
        summary = summarize(results, context) if results else {**context}
        if seconds:
            summary["second_runner"] = summarize_second_runner(seconds)
        return summary
    finally:
        if registry is not None:
            registry.stop()
        if keep:
            print(f"bench: kept {root}; look at its storage with "
                  f"CONTAINERS_STORAGE_CONF={root / 'storage.conf'} buildah images")
        else:
            clean_up(sh, root, logs_too=ok)


def clean_up(sh: Shell, root: Path, *, logs_too: bool) -> None:
    """Remove every container and image of the private storage, then the folder."""
    if sh.private_env is not None:  # only ever the private storage
        for argv in (["buildah", "rm", "--all"], ["buildah", "rmi", "--all", "--force"]):
            try:
                sh.run(argv, what="clean up")
            except BenchError as exc:
                print(f"bench: warning: {exc}", file=sys.stderr)
    for path in (root / "storage", root / "run", root / "fastapi"):
        shutil.rmtree(path, ignore_errors=True)
    if logs_too:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"bench: logs kept in {root / 'logs'}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per phase (median; default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--phases", default=",".join(PHASE_GROUPS),
                        help="comma-separated: compare (the five phases against bud), "
                        "second-runner (the registry cache); default both")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    phases = tuple(dict.fromkeys(p.strip() for p in args.phases.split(",") if p.strip()))
    unknown = [p for p in phases if p not in PHASE_GROUPS]
    if unknown or not phases:
        parser.error(f"--phases: choose from {', '.join(PHASE_GROUPS)} (got {args.phases!r})")
    try:
        summary = benchmark(args.runs, args.keep, phases)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    if "phases" in summary:
        print_report(summary)
    if "second_runner" in summary:
        second = summary["second_runner"]
        assert isinstance(second, dict)
        print_second_runner(second)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nbench: wrote {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
