"""Issue 10, items 7, 8 and 11: a kill at any moment leaves nothing the next build or
`cache prune` does not remove; prune never breaks a running build, whatever its view of
pids; one base definition is bootstrapped once.

Every build here runs in a fresh image store made for this module (its own graphroot and
runroot, through CONTAINERS_STORAGE_CONF) and with a private $TMPDIR, so what is counted
as left behind is this module's only, and other builds on the host are never touched.
The store's one bootstrap (about 40 s) is shared by all tests: the first test kills two
builds a few seconds into the store's first mmdebstrap, the second makes the base for good.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
RECIPES = REPO_ROOT / "recipes"
RUN_ID = secrets.token_hex(3)
# What the killed build's builder command runs: a sleep no other process on this host runs.
SLEEP = f"60.{secrets.randbelow(10**6):06d}"


@dataclass
class Place:
    """The module's fresh store and $TMPDIR, and how to run uvbuild and buildah in them."""

    root: Path
    tmp: Path
    env: dict[str, str]
    uvbuild: list[str]

    def start(self, *args: str) -> Live:
        return Live([*self.uvbuild, *args], env=self.env)

    def run(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*self.uvbuild, *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout, check=False)
        print(f"$ uvbuild {' '.join(args)}  [exit {proc.returncode}]\n{proc.stdout}"
              f"{proc.stderr}")
        return proc

    def buildah(self, *args: str) -> str:
        proc = subprocess.run(["buildah", *args], env=self.env, capture_output=True,
                              text=True, timeout=300, check=False)
        assert proc.returncode == 0, f"buildah {' '.join(args)}: {proc.stderr}"
        return proc.stdout

    def containers(self) -> list[str]:
        return [c["containername"]
                for c in json.loads(self.buildah("containers", "--json") or "null") or ()]

    def folders(self) -> list[str]:
        return sorted(p.name for p in self.tmp.iterdir() if "uvbuild-" in p.name)

    def dangling(self) -> list[str]:
        return [i["id"] for label in ("io.uvbuild.step", "io.uvbuild.bootstrap")
                for i in json.loads(self.buildah("images", "--json", "--filter",
                                                 "dangling=true", "--filter",
                                                 f"label={label}") or "null") or ()]

    def processes(self) -> list[str]:
        """Live processes whose command line or environment names this $TMPDIR, and the
        builder command `sleep SLEEP`: what a build started (mmdebstrap and its children,
        buildah run and the command it runs) and might leave running."""
        return [f"{pid}: {line[:200]}" for pid, line in self.commands()]

    def commands(self) -> list[tuple[int, str]]:
        """(pid, whole command line) of each such process."""
        found = []
        needle = str(self.tmp).encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                cmdline = (entry / "cmdline").read_bytes()
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            ours = (needle in cmdline or b"UVBUILD_OWNER=" + needle in environ
                    or cmdline == f"sleep\0{SLEEP}\0".encode())
            if state != "Z" and ours:
                found.append((int(entry.name),
                              cmdline.replace(b"\0", b" ").decode(errors="replace")))
        return found

    def settled(self, probe: str, timeout: float = 10) -> list[str]:
        """`probe`'s list once it is empty (SIGKILLs take a moment), or its last value."""
        deadline = time.monotonic() + timeout
        while True:
            found = getattr(self, probe)()
            if not found or time.monotonic() > deadline:
                return list(found)
            time.sleep(0.2)

    def nothing_left(self) -> None:
        left = {"containers": self.containers(), "folders": self.folders(),
                "processes": self.settled("processes"), "dangling images": self.dangling()}
        assert left == {"containers": [], "folders": [], "processes": [],
                        "dangling images": []}, left


class Live:
    """A uvbuild process whose stderr is followed while it runs."""

    def __init__(self, argv: list[str], *, env: dict[str, str]) -> None:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.pid = self.proc.pid
        self.lines: list[str] = []
        self._out = ""
        self._threads = [threading.Thread(target=self._follow, daemon=True),
                         threading.Thread(target=self._drain, daemon=True)]
        for thread in self._threads:
            thread.start()

    def _follow(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        self._out = self.proc.stdout.read()

    def wait_for(self, pattern: str, timeout: float = 300) -> bool:
        """Until a stderr line matches `pattern` (True) or the process ended (False)."""
        found = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(found.search(line) for line in list(self.lines)):
                return True
            if self.proc.poll() is not None:
                return any(found.search(line) for line in list(self.lines))
            time.sleep(0.05)
        return False

    def kill(self) -> None:
        self.proc.kill()
        self.finish()

    def finish(self, timeout: float = 900) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        for thread in self._threads:
            thread.join(timeout=10)
        return rc

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def __str__(self) -> str:
        return (f"[pid {self.pid}, exit {self.proc.returncode}, "
                f"{time.monotonic() - self.started:.1f}s]\n{self._out}{self.stderr}")


def make_recipe(root: Path, name: str, *, run: list[str] | None = None,
                code_change: str | None = None) -> Path:
    """A copy of recipes/fastapi whose builder and runtime share one bootstrap definition
    (the builder's standard root: the sample's own runtime is slim), so one mmdebstrap
    makes both bases."""
    folder = root / name
    shutil.copytree(RECIPES / "fastapi", folder / "proj",
                    ignore=shutil.ignore_patterns(".venv", "__pycache__", "*.pyc"))
    if code_change is not None:
        with open(folder / "proj" / "src" / "restapipy" / "app.py", "a") as fh:
            fh.write(f"\nITEST_MARK = {code_change!r}\n")
    recipe = yaml.safe_load((RECIPES / "fastapi.yaml").read_text())
    recipe["runtime"]["from"] = recipe["builder"]["from"]
    recipe["project"] = "proj"
    recipe["image"] = f"localhost/itest-left-{RUN_ID}-{name}:1"
    recipe["builder"]["run"] = [*recipe["builder"].get("run", []), *(run or [])]
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory, uvbuild_cli: list[str],
          containers_conf: Path) -> Iterator[Place]:
    root = tmp_path_factory.mktemp("leftovers")
    store, tmp = root / "store", root / "tmp"
    tmp.mkdir()
    conf = root / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "overlay"\nrunroot = "{store}/run"\n'
                    f'graphroot = "{store}/graph"\n')
    env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(conf), "TMPDIR": str(tmp)}
    state = Place(root=root, tmp=tmp, env=env, uvbuild=uvbuild_cli)
    info = json.loads(state.buildah("info"))["store"]
    assert info["GraphRoot"] == f"{store}/graph", info
    assert json.loads(state.buildah("images", "--json") or "null") in (None, [])
    try:
        yield state
    finally:
        subprocess.run(["buildah", "rm", "--all"], env=env, capture_output=True, check=False)
        subprocess.run(["buildah", "rmi", "--all", "--force"], env=env, capture_output=True,
                       check=False)
        shutil.rmtree(store, ignore_errors=True)


def mmdebstrap_tarballs(place: Place) -> set[str]:
    """The tarball each running mmdebstrap of this module writes (one per bootstrap)."""
    return {found for _, line in place.commands() if "mmdebstrap" in line
            for found in re.findall(r"\S*/uvbuild-bootstrap-[^/\s]+/root\.tar", line)}


def test_kill_during_bootstrap_then_prune_leaves_nothing(place: Place) -> None:
    """Items 7 and 11: two builds of one base definition start in the empty store (the
    second waits for the first's mmdebstrap); both are killed -9 a few seconds in."""
    first = place.start("--debug", str(make_recipe(place.root, "killed-bootstrap")))
    second: Live | None = None
    try:
        assert first.wait_for(r"\+ mmdebstrap "), f"no bootstrap started\n{first}"
        second = place.start("--debug", str(make_recipe(place.root, "killed-waiting")))
        assert second.wait_for(r"^\s+(builder|runtime)-base\s+\.\.\."), str(second)
        time.sleep(4)
        running = mmdebstrap_tarballs(place)
        processes = place.processes()
        folders = place.folders()
        assert first.proc.poll() is None, f"the build ended early\n{first}"
    finally:
        first.kill()
        if second is not None:
            second.kill()
    print(f"before the kill: {len(processes)} process(es), writing {running}; "
          f"folders {folders}\n{first}\n{second}")
    # Builder and runtime share the definition, and so do the two builds: one mmdebstrap.
    assert len(running) == 1, processes
    assert len(re.findall(r"\+ mmdebstrap ", first.stderr)) == 1, first.stderr
    assert second is not None and not re.search(r"\+ mmdebstrap ", second.stderr), second
    assert any(f.startswith(f"uvbuild-bootstrap-{first.pid}-") for f in folders), folders

    pruned = place.run("cache", "prune")
    assert pruned.returncode == 0
    place.nothing_left()


@pytest.fixture(scope="module")
def cold(place: Place) -> Live:
    """The module's one complete bootstrap: a cold build (kept for the tests after it)."""
    build = place.start("--debug", str(make_recipe(place.root, "cold")))
    rc = build.finish()
    print(build)
    assert rc == 0, str(build)
    return build


def test_a_cold_build_runs_mmdebstrap_once_for_builder_and_runtime(cold: Live) -> None:
    """Item 11: both bases are the same definition; the --debug echo shows each command."""
    assert len(re.findall(r"^\s*[\d.]+ \+ mmdebstrap ", cold.stderr, re.M)) == 1, cold.stderr


def test_kill_during_builder_commands_then_rebuild_leaves_nothing(
        place: Place, cold: Live) -> None:
    """Item 7: kill -9 while builder.run sleeps; a killed commit's image is faked."""
    sleepy = make_recipe(place.root, "sleepy", run=[f"sleep {SLEEP}"])
    build = place.start(str(sleepy))
    try:
        assert build.wait_for(r"^\s+install-project\s+\.\.\."), f"never installed\n{build}"
        deadline = time.monotonic() + 300
        while not any(p.endswith(f"sleep {SLEEP} ") for p in place.processes()):
            assert time.monotonic() < deadline and build.proc.poll() is None, str(build)
            time.sleep(0.2)
    finally:
        build.kill()
    left = {"containers": place.containers(), "folders": place.folders()}
    print(f"left by the killed build {build.pid}: {left}\n{build}")
    assert any(c.startswith(f"uvbuild-{build.pid}-") for c in left["containers"]), left
    assert any(f.startswith(f"uvbuild-build-{build.pid}-") for f in left["folders"]), left
    # What `buildah commit` leaves when uvbuild is killed as it ends: an unnamed image
    # with uvbuild's step label that nobody will tag.
    ctr = place.buildah("from", "--quiet", "scratch").strip()
    place.buildah("config", "--label", "io.uvbuild.step=install-project",
                  "--created-by", "uvbuild: install-project", ctr)
    place.buildah("commit", "--quiet", ctr)
    place.buildah("rm", ctr)
    assert place.dangling()
    # An unnamed image another tool built on a uvbuild image (a `buildah bud --layers`
    # cache image): it inherits the label, and is not uvbuild's to remove.
    ctr = place.buildah("from", "--quiet", "scratch").strip()
    place.buildah("config", "--label", "io.uvbuild.bootstrap=debian/bookworm", ctr)
    place.buildah("commit", "--quiet", ctr, "localhost/itest-leftovers-theirs:base")
    place.buildah("rm", ctr)
    ctr = place.buildah("from", "--quiet", "localhost/itest-leftovers-theirs:base").strip()
    place.buildah("config", "--env", "THEIRS=1", ctr)
    theirs = place.buildah("commit", "--quiet", ctr).strip()
    place.buildah("rm", ctr)

    again = place.run(str(make_recipe(place.root, "after-kill")))
    assert again.returncode == 0
    assert theirs[:12] in place.dangling(), "the sweep removed another tool's image"
    place.buildah("rmi", theirs, "localhost/itest-leftovers-theirs:base")
    place.nothing_left()


def test_prune_in_a_loop_during_builds_fails_none_from_any_pid_namespace(
        place: Place, cold: Live) -> None:
    """Item 8: `cache prune` over and over, and once from another PID namespace (where
    every pid of the builds is unknown), while two builds that need cache images run."""
    builds = [place.start(str(make_recipe(place.root, "during-a", code_change="a",
                                          run=["sleep 4"]))),
              place.start(str(make_recipe(place.root, "during-b", code_change="b")))]
    stop = threading.Event()
    prunes: list[subprocess.CompletedProcess[str]] = []

    def loop() -> None:
        while not stop.is_set():
            prunes.append(subprocess.run([*place.uvbuild, "cache", "prune"], env=place.env,
                                         capture_output=True, text=True, timeout=120,
                                         check=False))

    pruner = threading.Thread(target=loop, daemon=True)
    pruner.start()
    try:
        first = builds[0]
        assert first.wait_for(r"^\s+install-project\s+\.\.\."), str(first)
        # install-project's container lives until the build ends (builder.run sleeps):
        # one of the sync's image ("project"), or the sync's own when a prune removed
        # that image before this build found it ("deps": the install goes on in it).
        named = re.compile(rf"uvbuild-{first.pid}-[a-z]{{8}}-\d+-(?:project|deps)")
        deadline = time.monotonic() + 120
        while not (mine := [c for c in place.containers() if named.fullmatch(c)]):
            assert time.monotonic() < deadline and first.proc.poll() is None, str(first)
            time.sleep(0.1)
        other_ns = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc",
                                   *place.uvbuild, "cache", "prune"], env=place.env,
                                  capture_output=True, text=True, timeout=120, check=False)
        print(f"prune from another PID namespace: exit {other_ns.returncode}\n"
              f"{other_ns.stdout}{other_ns.stderr}")
        assert other_ns.returncode == 0
        still = place.containers()
        assert mine and set(mine) <= set(still), (mine, still)
        results = [b.finish() for b in builds]
    finally:
        stop.set()
        pruner.join(timeout=150)
        for b in builds:
            if b.proc.poll() is None:
                b.kill()
    for b in builds:
        print(b)
    print(f"{len(prunes)} prunes during the builds; the last said:\n"
          f"{prunes[-1].stdout if prunes else ''}{prunes[-1].stderr if prunes else ''}")
    assert results == [0, 0], [str(b) for b in builds]
    assert prunes and all(p.returncode == 0 for p in prunes), [p.stderr for p in prunes]
    assert any("kept the cache images" in p.stderr for p in prunes)
    place.nothing_left()
