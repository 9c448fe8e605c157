"""An in-memory stand-in for `uvbuild.engine.buildah.Buildah`, for executor tests.

It has the methods the executor calls, records every call, keeps an image store
(name → ID, ID → labels/env/user/layers) and the set of live working containers,
and behaves like buildah where the executor relies on it: a commit inherits the
config of the image its container came from, `from` refuses an unknown image or a
name in use, `rmi` refuses an image a container uses or a name points at.

Commands "run" in a container are answered by a few rules that know uvbuild's
in-container scripts (batch.sh, venvdelta.py, mkuser.py); anything else succeeds with
no output unless a test asks for a failure (`fail_run`, `lack_package_manager`) or an
interrupt (`interrupt`).
A batch (a job folder, see batch.write_job) is read when its run starts, as the real
one reads it (the folder is gone after the run), and answered command by command, with
batch.sh's markers; the call records the job (`job`) and its environment (`env`).

Builds run their steps in threads, so the global order of calls varies from run to
run. Tests that need one order hold a call until another has been made (`on_call`
with events); tests that pick a call name it by what it is (`call_key`, `interrupt(...,
where=...)`), not by its place in the global order.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import re
import shlex
import tarfile
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uvbuild.build.batch import GATE, GATE_SHUT, JOB, NEXT, RUN, VALUE, together_parts
from uvbuild.build.builder_steps import NO_PACKAGE_MANAGER
from uvbuild.build.labels import STEP_LABEL
from uvbuild.engine.buildah import CommitOptions, ImageConfig, ImageInfo, Mount, RegistryAccess
from uvbuild.engine.cmd import Gate, Result
from uvbuild.engine.protocol import Engine
from uvbuild.errors import EngineError
from uvbuild.incontainer import script

MKUSER = script("mkuser.py")
VENVDELTA = script("venvdelta.py")
UNPACK = script("unpack.py")
PACKAGES = script("packages.sh")
LAYERTAR = script("layertar.py")
PYTHONCHECK = script("pythoncheck.py")
# pythoncheck.py's own judgement, so the fake answers the check as the builder would.
_PYTHONCHECK_SCRIPT: dict[str, Any] = {"__name__": "pythoncheck"}
exec(compile(PYTHONCHECK, "pythoncheck.py", "exec"), _PYTHONCHECK_SCRIPT)
RUNTIME_UID = 10001


@dataclass(frozen=True, slots=True)
class JobSeen:
    """What a batch job's folder held when its run started (it is gone after the run)."""

    commands: tuple[str, ...]
    env: dict[str, str] | None  # None: the job has no environment file
    gated: bool
    modes: dict[str, int]  # file name → permission bits, "." for the folder
    started: str | None = None  # the file run.sh makes as it begins (write_job's started)


def read_job(argv: Sequence[str], mounts: Sequence[Mount]) -> JobSeen | None:
    """The job a `run` was asked to run (see batch.write_job), or None if not a batch."""
    mount = next((m for m in mounts if m.target == JOB), None)
    if tuple(argv) != ("/bin/sh", RUN) or mount is None:
        return None
    folder, at = Path(mount.host), JOB
    run_sh = (folder / "run.sh").read_text()
    gated = run_sh.startswith(GATE)
    if run_sh == f"{GATE}exec /bin/sh {JOB}/{NEXT}/run.sh\n":  # batch.write_launcher's
        folder, at = folder / NEXT, f"{JOB}/{NEXT}"
        run_sh = (folder / "run.sh").read_text()  # (written before its gate opened)
    count = int(re.search(r"^n=(\d+)$", run_sh, re.M).group(1))  # type: ignore[union-attr]
    commands = tuple((folder / f"{i}.sh").read_text().removesuffix("\n") for i in range(count))
    env = None
    if (folder / "env").exists():
        assert f". {at}/env " in run_sh, "an environment file run.sh does not read"
        words = shlex.split((folder / "env").read_text())
        env = dict(w.split("=", 1) for w in words if w != "export")
    modes = {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()}
    modes["."] = folder.stat().st_mode & 0o777
    started = re.search(r"^: > (.+)$", run_sh, re.M)  # (batch.write_job's `started`)
    return JobSeen(commands=commands, env=env, gated=gated, modes=modes,
                   started=shlex.split(started.group(1))[0] if started else None)


def _make_started(path: str, mounts: Sequence[Mount]) -> None:
    """Make the file a job's run.sh makes as it starts, in the host folder mounted there."""
    for mount in mounts:
        if path.startswith(mount.target.rstrip("/") + "/") and not mount.read_only:
            (Path(mount.host) / path[len(mount.target.rstrip("/")) + 1:]).touch()
            return
    raise AssertionError(f"a job's start marker {path} is in no writable mount")


def words_of(command: str) -> tuple[str, ...]:
    """A batch's command split into words; packages.sh (given its packages with `set --`)
    as `/bin/sh -c SCRIPT packages PKG...`."""
    first, _, rest = command.partition("\n")
    if rest == PACKAGES and first.startswith("set -- "):
        return ("/bin/sh", "-c", PACKAGES, "packages", *shlex.split(first)[2:])
    return tuple(shlex.split(command))


def commands_of(call: Call) -> list[tuple[str, ...]]:
    """The commands one `run` ran: a batch's, each split into words; else argv itself."""
    job = call.kwargs.get("job")
    if job is not None:
        # A batch.together command counts as its two commands.
        return [words_of(part) for command in job.commands
                for part in together_parts(command) or (command,)]
    return [tuple(call.args[1])]


@dataclass(frozen=True, slots=True)
class Python:
    """The interpreter an image holds: `link` is what `python3` resolves through."""

    link: str = "/usr/local/bin/python3"
    path: str = "/usr/local/bin/python3.13"
    version: str = "3.13"
    release: str = ""  # X.Y.Z ("": X.Y.0)
    implementation: str = "cpython"
    free_threaded: bool = False

    def check_facts(self) -> dict[str, object]:
        """What incontainer/pythoncheck.py reports of this interpreter."""
        return {"implementation": self.implementation,
                "version": self.release or f"{self.version}.0",
                "free_threaded": self.free_threaded, "debug": False}


PY313 = Python()
PY312 = Python(path="/usr/local/bin/python3.12", version="3.12")


@dataclass(frozen=True, slots=True)
class Call:
    """One method call on the engine, as the executor made it."""

    method: str
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    thread: str = field(default="", compare=False)  # the name of the thread that made it
    key: str = field(default="", compare=False)  # see call_key


# uvbuild-<pid>-<letters>-<n>-<purpose>: the run id and counter vary, the purpose does not.
_CONTAINER = re.compile(r"uvbuild-\d+-[a-z]{8}-\d+-")
_ID = re.compile(r"\b[0-9a-f]{64}\b")
_RUN_ID = re.compile(r"-\d+-[a-z]{8}\b")  # in the names of a run's host folders


def purpose(container: str) -> str:
    """A working container's purpose: its name without run id and counter."""
    return _CONTAINER.sub("", container)


def call_key(call: Call) -> str:
    """What a call is, the same in every run of a build whatever the threads' timing:
    its method and arguments, with containers (by name or ID) reduced to their purpose,
    image IDs (which the fake hands out in call order) to <id>, and the run's id out."""
    return call.key


def _key(method: str, args: tuple[Any, ...], names: Mapping[str, str]) -> str:
    args = tuple(purpose(names.get(a, a)) if isinstance(a, str) else a for a in args)
    if method == "rm":  # one call for many containers, named in counter order
        args = tuple(sorted(args))
    return _RUN_ID.sub("-<run>", _ID.sub("<id>", f"{method} {args!r}"))


@dataclass(slots=True)
class FakeImage:
    id: str
    labels: dict[str, str]
    env: tuple[str, ...]
    user: str
    layers: tuple[tuple[str, int], ...]
    python: Python | None


@dataclass(slots=True)
class FakeContainer:
    id: str
    name: str
    image: str | None  # image ID; None for scratch
    labels: dict[str, str]
    env: tuple[str, ...]
    user: str
    layers: list[tuple[str, int]]
    python: Python | None
    config: list[ImageConfig] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Archive:
    """What one `add_archive` call put where (the tarball itself is gone by then)."""

    container: str
    dest: str
    names: tuple[str, ...]


@dataclass(slots=True)
class _Failure:
    matches: Callable[[Sequence[str]], bool]
    returncode: int
    stdout: str
    stderr: str


@dataclass(slots=True)
class _Interrupt:
    method: str | None
    where: Callable[[Call], bool] | None
    nth: int
    after: bool  # raise after the call took effect (e.g. the container exists)
    seen: int = 0
    done: bool = False


@dataclass(slots=True)
class FakeRegistry:
    """One registry, in memory, for the registry cache's engine calls: tags, manifests
    and blobs, the blobs each push uploaded (those it lacked), and the fake images whose
    layouts were exported (an import gives them back)."""

    tags: dict[str, str] = field(default_factory=dict)  # "REPO:TAG" → manifest digest
    manifests: dict[str, bytes] = field(default_factory=dict)  # digest → manifest
    blobs: dict[str, bytes] = field(default_factory=dict)  # digest → bytes
    images: dict[str, FakeImage] = field(default_factory=dict)  # config hex → image
    uploaded: list[str] = field(default_factory=list)
    down: bool = False  # every call fails as an unreachable registry's would

    def digest_of(self, ref: str) -> str | None:
        """The manifest digest that REPO:TAG or REPO@DIGEST names (None: no such tag)."""
        _, at, digest = ref.partition("@")
        return digest if at else self.tags.get(ref)


class FakeEngine:
    """Buildah's surface, in memory. See the module docstring."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.names: dict[str, str] = {}  # image name → image ID
        self.store: dict[str, FakeImage] = {}  # image ID → image
        self.live: dict[str, FakeContainer] = {}  # container name → container
        self.archives: list[Archive] = []
        self.committed_steps: list[str] = []  # the io.uvbuild.step label of each commit
        self.remote: dict[str, Python | None] = {}  # refs `pull` can fetch
        self.scratch_python: Python | None = None  # what a root unpacked from scratch holds
        self._ids = itertools.count(1)
        self._failures: list[_Failure] = []
        # Called with each call as it starts, from the calling thread (tests that need
        # to see two steps at work at once hold one of them here).
        self.on_call: Callable[[Call], None] | None = None
        self._interrupt: _Interrupt | None = None
        self._lock = threading.Lock()  # steps call from several threads
        self.graph_root: str | None = "/var/lib/containers/storage"  # what `graphroot` says
        self.run_root_dir: Path | None = None  # see run_root
        self.owner_env: dict[str, str] = {}  # set by the build, as on Buildah
        self.registry = FakeRegistry()  # share one between engines: two runners, one cache
        self.config_of: dict[str, dict[str, Any]] = {}  # image ID → an imported config
        self.config_bytes: dict[str, bytes] = {}  # image ID → an imported config, as bytes
        self.rewritten: set[str] = set()  # images image_to_layout gives a rewritten config
        self.imported: list[str] = []  # the IDs import_layout made, in order
        self.imported_layers: list[tuple[str, list[str]]] = []  # (name, its layer digests)
        self.mount_root: Path | None = None  # what `mount` gives (a folder as a root)
        self.overlapping = True  # what overlapping_runs says (False: rootless)
        self.held: list[str] = []  # the container of each gated run, as it starts waiting
        self.held_run_fails = False  # a gated run fails as its gate opens, before its job
        # A run of a container whose name ends with one of these fails in buildah's own
        # set-up, before its job starts (each entry once).
        self.setup_fails: list[str] = []
        # Files layertar adds to a layer tar of that name ("layer.tar": the project's).
        self.layer_files: dict[str, dict[str, bytes]] = {}

    # -- set-up and inspection helpers (not part of Buildah's surface) ------------------

    def add_image(self, name: str | None, *, python: Python | None = PY313,
                  labels: Mapping[str, str] | None = None,
                  env: Sequence[str] = ("PATH=/usr/local/bin:/usr/bin:/bin",)) -> str:
        """Put an image in local storage (as if pulled earlier); return its ID."""
        image_id = self._new_id("image")
        self.store[image_id] = FakeImage(id=image_id, labels=dict(labels or {}), env=tuple(env),
                                         user="", layers=((f"sha256:{image_id}", 1000),),
                                         python=python)
        if name:
            self.names[name] = image_id
        return image_id

    def fail_run(self, command: str | Callable[[Sequence[str]], bool], *, returncode: int = 1,
                 stdout: str = "", stderr: str = "") -> None:
        """Make `run` of a matching command return a failed Result.

        A string matches the `/bin/sh -c STRING` form and any argv containing it whole.
        """
        matches: Callable[[Sequence[str]], bool]
        if isinstance(command, str):
            text = command

            def contains(argv: Sequence[str]) -> bool:
                return text in argv
            matches = contains
        else:
            matches = command
        self._failures.append(_Failure(matches, returncode, stdout, stderr))

    def lack_package_manager(self, command: str | Callable[[Sequence[str]], bool]) -> None:
        """Make packages.sh, when `command` matches it (as in fail_run), answer as in an
        image with no package manager it knows: its value line, its message, and an exit
        status that says nothing by itself (test_packages_script.py runs the script)."""
        self.fail_run(command, returncode=1, stdout=f"{VALUE}{NO_PACKAGE_MANAGER} true\n",
                      stderr="uvbuild: this image has no package manager uvbuild knows "
                      "(apt-get, apk, dnf, microdnf)\n")

    def interrupt(self, nth: int, *, method: str | None = None,
                  where: Callable[[Call], bool] | None = None, after: bool = False) -> None:
        """Raise KeyboardInterrupt at the `nth` call (of `method`, or of any method, that
        `where` accepts if given), once, in the thread that makes it.

        Calls from several threads come in varying order: name the call by `where` (e.g.
        `call_key(call) == key`) when it must be the same call in every run.
        """
        self._interrupt = _Interrupt(method=method, where=where, nth=nth, after=after)

    def called(self, *methods: str) -> list[Call]:
        """The calls of the given methods, in order."""
        return [c for c in self.calls if c.method in methods]

    def commits(self) -> list[str]:
        """The `io.uvbuild.step` label of every commit, in order."""
        return list(self.committed_steps)

    def tags(self) -> list[str]:
        """Every name `tag` was asked to set, in order."""
        return [name for c in self.called("tag") for name in c.args[1:]]

    def runs(self) -> list[tuple[str, ...]]:
        """The argv of every command run, in order; a batch gives each of its commands."""
        return [command for c in self.called("run") for command in commands_of(c)]

    def images_labelled(self, key: str, value: str) -> list[str]:
        return [i.id for i in list(self.store.values()) if i.labels.get(key) == value]

    # -- plumbing -------------------------------------------------------------------------

    def _new_id(self, kind: str) -> str:
        return hashlib.sha256(f"{kind}-{next(self._ids)}".encode()).hexdigest()

    def _record(self, method: str, *args: Any, **kwargs: Any) -> Callable[[], None]:
        """Log the call; raise a planned interrupt before it, or return a check for after."""
        names = {c.id: c.name for c in list(self.live.values())}
        call = Call(method, args, kwargs, thread=threading.current_thread().name,
                    key=_key(method, args, names))
        with self._lock:
            self.calls.append(call)
        if self.on_call is not None:
            self.on_call(call)
        planned = self._interrupt
        with self._lock:
            if planned is None or planned.done or planned.method not in (None, method) or (
                    planned.where is not None and not planned.where(call)):
                return lambda: None
            planned.seen += 1
            if planned.seen != planned.nth:
                return lambda: None
            planned.done = True
        if not planned.after:
            raise KeyboardInterrupt(f"at call {len(self.calls)}: {method}")

        def late() -> None:
            raise KeyboardInterrupt(f"after call {len(self.calls)}: {method}")

        return late

    def _resolve(self, ref: str) -> FakeImage | None:
        image_id = self.names.get(ref, ref.removeprefix("sha256:"))
        return self.store.get(image_id)

    def _container(self, ref: str) -> FakeContainer:
        for container in list(self.live.values()):
            if ref in (container.id, container.name):
                return container
        raise EngineError(f"no working container {ref!r}")

    def _info(self, image: FakeImage) -> ImageInfo:
        names = tuple(sorted(n for n, i in list(self.names.items()) if i == image.id))
        return ImageInfo(id=image.id, names=names, labels=dict(image.labels), env=image.env,
                         user=image.user, layers=image.layers)

    # -- images -----------------------------------------------------------------------------

    def image(self, ref: str) -> ImageInfo | None:
        after = self._record("image", ref)
        found = self._resolve(ref)
        after()
        return self._info(found) if found else None

    def graphroot(self) -> str | None:
        return self.graph_root

    def image_size(self, ref: str) -> int:
        after = self._record("image_size", ref)
        found = self._resolve(ref)
        after()
        return self._info(found).size if found else 0

    def images_named(self, prefix: str) -> dict[str, str]:
        after = self._record("images_named", prefix)
        found = {n: i for n, i in list(self.names.items()) if n.startswith(prefix)}
        after()
        return found

    def image_names(self) -> dict[str, tuple[str, ...]]:
        after = self._record("image_names")
        found = {i.id: self._info(i).names for i in list(self.store.values())}
        after()
        return found

    def prefetched_names(self, generation: str) -> dict[str, tuple[str, ...]] | None:
        return None  # the fake lists when asked (image_names)

    def image_list(self) -> list[dict[str, object]]:
        after = self._record("image_list")
        listed: list[dict[str, object]] = [
            {"id": i.id, "names": list(self._info(i).names), "size": self._info(i).size}
            for i in list(self.store.values())]
        after()
        return listed

    def dangling_images(self, label: str) -> list[str]:
        after = self._record("dangling_images", label)
        named = set(self.names.values())
        found = [i.id for i in list(self.store.values()) if i.id not in named
                 and label in i.labels]
        after()
        return found

    def made_by_uvbuild(self, image: str) -> bool | None:
        after = self._record("made_by_uvbuild", image)
        found = next((i for i in list(self.store.values()) if i.id == image), None)
        after()
        return None if found is None else not found.labels.get("foreign")

    def run_root(self) -> Path:
        """A private folder per fake store, as the store's runroot (locks go there)."""
        if self.run_root_dir is None:
            self.run_root_dir = Path(tempfile.mkdtemp(prefix="fake-runroot-"))
        return self.run_root_dir

    def pull(self, ref: str) -> str:
        after = self._record("pull", ref)
        if ref not in self.remote:
            raise EngineError(f"base image {ref!r} is not in local storage and could not be "
                              "pulled: not in the fake registry")
        image_id = self.add_image(ref, python=self.remote[ref])
        after()
        return image_id

    def tag(self, image: str, *names: str) -> None:
        after = self._record("tag", image, *names)
        found = self._resolve(image)
        if found is None:
            raise EngineError(f"tagging {', '.join(names)}: image {image!r} not known")
        for name in names:
            self.names[name] = found.id
        after()

    def rmi(self, image: str) -> bool:
        after = self._record("rmi", image)
        removed = self._remove(image)
        after()
        return removed

    def _remove(self, ref: str) -> bool:
        found = self._resolve(ref)
        if found is None or any(c.image == found.id for c in list(self.live.values())):
            return False
        if ref in self.names:
            del self.names[ref]  # by name: untag, and remove once no name is left
        elif found.id in self.names.values():
            return False  # by ID while named: buildah would take the names too; refuse
        if found.id not in self.names.values():
            del self.store[found.id]
        return True

    def push(self, image: str, dest: str, *, tls_verify: bool | None, creds: str | None,
             authfile: str | None) -> None:
        after = self._record("push", image, dest, tls_verify=tls_verify, creds=creds,
                             authfile=authfile)
        if self._resolve(image) is None:
            raise EngineError(f"pushing to {dest}: image {image!r} not known")
        after()

    # -- a registry as a step cache (regcache.py), in memory: see FakeRegistry -----------

    def _reach(self, method: str, *args: Any) -> Callable[[], None]:
        after = self._record(method, *args)
        if self.registry.down:
            raise EngineError(f"{method}: dial tcp 10.0.0.1:5000: connect: connection refused")
        return after

    def registry_manifest(self, ref: str, access: RegistryAccess) -> bytes | None:
        after = self._reach("registry_manifest", ref)
        digest = self.registry.digest_of(ref)
        after()
        return self.registry.manifests.get(digest) if digest else None

    def registry_tags(self, repo: str, access: RegistryAccess) -> tuple[str, ...]:
        after = self._reach("registry_tags", repo)
        after()
        return tuple(ref.rpartition(":")[2] for ref in self.registry.tags
                     if ref.rpartition(":")[0] == repo)

    def registry_delete(self, ref: str, access: RegistryAccess) -> None:
        after = self._reach("registry_delete", ref)
        digest = ref.partition("@")[2]
        if self.registry.manifests.pop(digest, None) is None:
            raise EngineError(f"deleting {ref}: manifest unknown")
        self.registry.tags = {t: d for t, d in self.registry.tags.items() if d != digest}
        after()

    def image_to_layout(self, image: str, layout: Path) -> None:
        """A layout of the image: a config naming it, and a small blob per layer (its
        digest is the fake's, not the bytes')."""
        after = self._record("image_to_layout", image, layout)
        found = self._resolve(image)
        if found is None:
            raise EngineError(f"copying {image} to {layout}: image not known")
        blobs = layout / "blobs" / "sha256"
        blobs.mkdir(parents=True, exist_ok=True)  # as skopeo, into a layout made ready
        # An imported image's config as it was imported, its ID its digest (unless a
        # test made the store's copy another tool's: `rewritten`); else one made up.
        config = self.config_bytes.get(found.id) if found.id not in self.rewritten else None
        config = config or json.dumps({"fake-image": found.id, "config": {
            "Labels": found.labels, "Env": list(found.env), "User": found.user}}).encode()
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        (blobs / config_digest[7:]).write_bytes(config)
        for digest, _ in found.layers:
            (blobs / digest[7:]).write_bytes(f"fake layer {digest}".encode())
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": digest, "size": size} for digest, size in found.layers],
        }).encode()
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        (blobs / digest[7:]).write_bytes(manifest)
        (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest,
             "size": len(manifest)}]}))
        self.registry.images[config_digest[7:]] = found
        self.registry.images[found.id] = found  # (a config put back: regcache.export_image)
        after()

    def layout_to_registry(self, layout: Path, dest: str, access: RegistryAccess) -> None:
        after = self._reach("layout_to_registry", layout, dest)
        blobs = layout / "blobs" / "sha256"
        digest = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]
        manifest = (blobs / digest[7:]).read_bytes()
        data = json.loads(manifest)
        for descriptor in (data["config"], *data["layers"]):
            if descriptor["digest"] not in self.registry.blobs:
                self.registry.blobs[descriptor["digest"]] = (
                    blobs / descriptor["digest"][7:]).read_bytes()
                self.registry.uploaded.append(descriptor["digest"])
        self.registry.manifests[digest] = manifest
        self.registry.tags[dest] = digest
        after()

    def registry_to_layout(self, ref: str, layout: Path, access: RegistryAccess) -> None:
        after = self._reach("registry_to_layout", ref, layout)
        manifest = self.registry.manifests[self.registry.digest_of(ref) or ""]
        data = json.loads(manifest)
        blobs = layout / "blobs" / "sha256"
        blobs.mkdir(parents=True)
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        (blobs / digest[7:]).write_bytes(manifest)
        for descriptor in (data["config"], *data["layers"]):
            (blobs / descriptor["digest"][7:]).write_bytes(
                self.registry.blobs[descriptor["digest"]])
        (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
            {"mediaType": data["mediaType"], "digest": digest, "size": len(manifest)}]}))
        after()

    def registry_to_store(self, ref: str, name: str, access: RegistryAccess) -> str:
        """The entry's image in local storage as `name`, by its config's digest (as a real
        store names it), with what the exported fake image held."""
        after = self._reach("registry_to_store", ref, name)
        manifest = json.loads(self.registry.manifests[self.registry.digest_of(ref) or ""])
        image_id = str(manifest["config"]["digest"])[7:]
        exported = self.registry.images[image_id]
        self.store[image_id] = FakeImage(
            id=image_id, labels=dict(exported.labels), env=exported.env, user=exported.user,
            layers=exported.layers, python=exported.python)
        self.names[name] = image_id
        after()
        return image_id

    # -- working containers -------------------------------------------------------------

    def from_image(self, image: str, name: str) -> str:
        after = self._record("from_image", image, name)
        found = self._resolve(image)
        if found is None:
            raise EngineError(f"creating a working container from {image}: image not known")
        self._new_container(name, found)
        after()
        return self.live[name].id

    def from_scratch(self, name: str) -> str:
        after = self._record("from_scratch", name)
        self._new_container(name, None)
        self.live[name].python = self.scratch_python
        after()
        return self.live[name].id

    def _new_container(self, name: str, image: FakeImage | None) -> None:
        if name in self.live:
            raise EngineError(f"the container name {name!r} is already in use")
        self.live[name] = FakeContainer(
            id=self._new_id("container"), name=name, image=image.id if image else None,
            labels=dict(image.labels) if image else {}, env=image.env if image else (),
            user=image.user if image else "", layers=list(image.layers) if image else [],
            python=image.python if image else None)

    def rm(self, *containers: str) -> None:
        after = self._record("rm", *containers)
        for name, live in list(self.live.items()):
            if live.id in containers or name in containers:
                del self.live[name]
        after()

    def overlapping_runs(self) -> bool:
        return self.overlapping

    def mount(self, container: str) -> Path | None:
        """`mount_root` as every container's root (None, the default: not readable from
        here, as rootless)."""
        after = self._record("mount", container)
        self._container(container)
        after()
        return self.mount_root

    def prefetched_containers(self) -> list[dict[str, str]] | None:
        return None  # the fake lists when asked (containers)

    def containers(self) -> list[dict[str, str]]:
        after = self._record("containers")
        listed = [{"id": c.id, "name": c.name} for c in list(self.live.values())]
        after()
        return listed

    def run(self, container: str, argv: Sequence[str], *, mounts: Sequence[Mount] = (),
            workdir: str | None = None, user: str | None = None, network: bool = True,
            stream: bool = True, gate: Gate | None = None) -> Result:
        self._container(container)  # a run of a container that does not exist fails now
        with self._lock:
            failing = next((end for end in self.setup_fails if container.endswith(end)), None)
            if failing is not None:
                self.setup_fails.remove(failing)
        if failing is not None:
            self._record("run", container, tuple(argv), env={}, job=None,
                         mounts=tuple(mounts), workdir=workdir, user=user, network=network,
                         stream=stream, gated=gate is not None)()
            return Result(tuple(argv), 1, "", "Close_Fd sealing memfd copy: "
                          "Device or resource busy\n")
        if gate is not None:
            # As the real command: started, it waits at its gate; what the container holds
            # (and the job its launcher goes on with) when the gate opens is what it sees.
            # It is logged when it goes on.
            with self._lock:
                self.held.append(container)
            opened = gate.wait(timeout=60)
            assert gate.settled, "a run was held at its gate for a minute: never opened or shut"
            if opened and self.held_run_fails:  # buildah's own set-up failed, late
                self._record("run", container, tuple(argv), env={}, job=None,
                             mounts=tuple(mounts), workdir=workdir, user=user,
                             network=network, stream=stream, gated=True)()
                return Result(tuple(argv), 125, "", "Error: Close_Fd sealing memfd copy: "
                              "Device or resource busy\n")
            if not opened:
                self._record("run", container, tuple(argv), env={}, job=None,
                             mounts=tuple(mounts), workdir=workdir, user=user,
                             network=network, stream=stream, gated=True)()
                return Result(tuple(argv), GATE_SHUT, "", "")
        job = read_job(argv, mounts)
        assert gate is None or (job is not None and job.gated), \
            "a gated run must be a gated batch"
        if job is not None and job.started is not None:
            _make_started(job.started, mounts)  # as run.sh does first, once running
        # `env`: what the command's environment file exported (a batch's), else nothing.
        after = self._record("run", container, tuple(argv),
                             env=dict(job.env or {}) if job else {}, job=job,
                             mounts=tuple(mounts), workdir=workdir, user=user, network=network,
                             stream=stream, gated=gate is not None)
        ctr = self._container(container)
        if job is not None:
            result = self._answer_batch(ctr, tuple(argv), job.commands, tuple(mounts))
        else:
            result = self._answer(ctr, tuple(argv), tuple(mounts))
        if stream:
            # As with the real engine, streamed output is echoed and also kept, merged
            # into stdout, so failures can still be explained and classified.
            result = Result(result.argv, result.returncode, result.stdout + result.stderr, "")
        after()
        return result

    def _answer(self, ctr: FakeContainer, argv: tuple[str, ...],
                mounts: tuple[Mount, ...] = ()) -> Result:
        failure = self._failure(argv)
        if failure:
            return Result(argv, failure.returncode, failure.stdout, failure.stderr)
        python = ctr.python
        if MKUSER in argv or PYTHONCHECK in argv:
            # A bare name resolves through the image's PATH, as `buildah run` does.
            if python is None or argv[0] not in (python.link, python.path,
                                                 python.link.rpartition("/")[2]):
                return Result(argv, 127, "", f"/bin/sh: 1: {argv[0]}: not found\n")
            if PYTHONCHECK in argv:
                have = python.check_facts()
                met = _PYTHONCHECK_SCRIPT["meets"](json.loads(argv[-1]), have)
                return Result(argv, 0 if met else 3,
                              f"@@uvbuild value python-check {json.dumps(have)}\n", "")
            uid = 0 if argv[-1] == "root" else RUNTIME_UID
            facts: dict[str, object] = {"uid": uid, "gid": uid, "python": python.path,
                                        "version": python.version}
            return Result(argv, 0, json.dumps(facts) + "\n", "")
        return Result(argv, 0, "", "")

    def _failure(self, *forms: Sequence[str]) -> _Failure | None:
        for failure in self._failures:
            if any(failure.matches(form) for form in forms):
                return failure
        return None

    def _answer_batch(self, ctr: FakeContainer, argv: tuple[str, ...],
                      commands: tuple[str, ...], mounts: tuple[Mount, ...]) -> Result:
        """Each command of a batch in turn, with batch.sh's markers; stop at a failure."""
        out: list[str] = []
        err: list[str] = []
        for index, text in enumerate(commands):
            out.append(f"@@uvbuild step {index}\n")
            err.append(f"@@uvbuild step {index}\n")
            # (A batch.together command: its two commands, each answered as one.)
            for command in together_parts(text) or (text,):
                words = words_of(command)
                failure = self._failure(("/bin/sh", "-c", command), words)
                if failure:
                    out.append(failure.stdout)
                    err.append(failure.stderr
                               + f"@@uvbuild failed {index} {failure.returncode}\n")
                    return Result(argv, failure.returncode, "".join(out), "".join(err))
                if VENVDELTA in words:
                    out.append(self._venvdelta(ctr, words, mounts))
                if LAYERTAR in words:
                    out.append(self._layertar(words, mounts))
                if MKUSER in words or PYTHONCHECK in words:
                    made = self._answer(ctr, words, mounts)
                    if not made.ok:
                        out.append(made.stdout)
                        err.append(made.stderr + f"@@uvbuild failed {index} {made.returncode}\n")
                        return Result(argv, made.returncode, "".join(out), "".join(err))
                    out.append(made.stdout)
                if UNPACK in words:
                    self._unpack(ctr, words, mounts)
        return Result(argv, 0, "".join(out), "".join(err))

    def _unpack(self, ctr: FakeContainer, words: tuple[str, ...],
                mounts: tuple[Mount, ...]) -> None:
        """unpack.py ARCHIVE DEST...: the archive, read from its mount, reaches each DEST."""
        archive, dests = words[words.index(UNPACK) + 1], words[words.index(UNPACK) + 2:]
        mount = next(m for m in mounts if archive.startswith(m.target + "/"))
        with tarfile.open(mount.host + archive[len(mount.target):]) as tar:
            names = tuple(tar.getnames())
        for dest in dests:
            self.archives.append(Archive(container=ctr.name, dest=dest, names=names))

    def _layertar(self, words: tuple[str, ...], mounts: tuple[Mount, ...]) -> str:
        """layertar.py [--as NAME] [delta] TAR ...: a small tar at TAR's host path (its
        entries name the arguments, plus `layer_files` for a TAR of that name),
        reported as layertar reports it."""
        args = list(words[words.index(LAYERTAR) + 1:])
        name = "layer"
        if args[:1] == ["--as"]:
            name, args = args[1], args[2:]
        if args[:1] == ["delta"]:
            args = args[1:]
        target = args[0]
        mount = next(m for m in mounts if target.startswith(m.target + "/"))
        path = mount.host + target[len(mount.target):]
        with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
            for arg in sorted({a.strip("/") for a in args[1:] if a.strip("/")}):
                info = tarfile.TarInfo(arg.replace(".", "_"))
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            for member, content in self.layer_files.get(Path(target).name, {}).items():
                info = tarfile.TarInfo(member)
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
        data = Path(path).read_bytes()
        facts = {"digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}
        return f"@@uvbuild value {name} {json.dumps(facts)}\n"

    @staticmethod
    def _venvdelta(ctr: FakeContainer, words: tuple[str, ...], mounts: tuple[Mount, ...]) -> str:
        if "snapshot" in words:
            python = ctr.python
            assert python is not None, "venvdelta ran in an image without Python"
            facts = {"python": python.path, "link": python.link, "version": python.version}
            return f"@@uvbuild value python {json.dumps(facts)}\n"
        if "--tar" in words:
            # The staged layer as a tar in the host folder mounted there: the project's
            # module and each --copy destination (relative to /app).
            target = words[words.index("--tar") + 1]
            mount = next(m for m in mounts if target.startswith(m.target + "/"))
            names = ["lib/app/__init__.py"] + [
                words[i + 3].removeprefix("/app").lstrip("/") or "copied"
                for i, word in enumerate(words) if word == "--copy"]
            with tarfile.open(mount.host + target[len(mount.target):], "w") as tar:
                for name in names:
                    tar.addfile(tarfile.TarInfo(name), io.BytesIO(b""))
        return f"@@uvbuild value installed {json.dumps({'app': '1.0'})}\n"

    def copy(self, container: str, source: str, dest: str, *,
             from_ref: str | None = None) -> None:
        after = self._record("copy", container, source, dest, from_ref=from_ref)
        ctr = self._container(container)
        if from_ref is not None and self._resolve(from_ref) is None and not any(
                from_ref in (c.id, c.name) for c in list(self.live.values())):
            raise EngineError(f"copying {source} to {dest}: {from_ref!r} not known")
        ctr.layers.append((f"copy:{source}", 100))
        after()

    def add_archive(self, container: str, tarball: str, dest: str) -> None:
        after = self._record("add_archive", container, tarball, dest)
        ctr = self._container(container)
        with tarfile.open(tarball) as tar:
            names = tuple(tar.getnames())
        self.archives.append(Archive(container=ctr.name, dest=dest, names=names))
        ctr.layers.append((f"add:{dest}", 100))
        after()

    def configure(self, container: str, config: ImageConfig) -> None:
        after = self._record("configure", container, config)
        ctr = self._container(container)
        ctr.config.append(config)
        if config.user is not None:
            ctr.user = config.user
        env = dict(item.split("=", 1) for item in ctr.env)
        env.update(dict(config.env))
        ctr.env = tuple(f"{k}={v}" for k, v in env.items())
        ctr.labels.update(dict(config.labels))
        after()

    def commit(self, container: str, options: CommitOptions) -> str:
        after = self._record("commit", container, options)
        ctr = self._container(container)
        image_id = self._new_id("image")
        labels = {**ctr.labels, **options.labels}
        self.store[image_id] = FakeImage(
            id=image_id, labels=labels, env=ctr.env, user=ctr.user,
            layers=(*ctr.layers, (f"sha256:{image_id}", 10)), python=ctr.python)
        self.committed_steps.append(labels.get(STEP_LABEL, "?"))
        after()
        return image_id

    # -- assembled images -------------------------------------------------------------------

    def image_manifest(self, ref: str) -> tuple[bytes, bytes]:
        after = self._record("image_manifest", ref)
        found = self._resolve(ref)
        if found is None:
            raise EngineError(f"reading the manifest of {ref}: image not known")
        if found.id in self.config_bytes:
            after()
            manifest = {"schemaVersion": 2, "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest,
                 "size": size} for digest, size in found.layers]}
            return json.dumps(manifest).encode(), self.config_bytes[found.id]
        manifest = {"schemaVersion": 2, "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest,
             "size": size} for digest, size in found.layers]}
        config = {"architecture": "amd64", "os": "linux",
                  "config": {"Env": list(found.env), "Labels": dict(found.labels),
                             **({"User": found.user} if found.user else {})},
                  "rootfs": {"type": "layers", "diff_ids": [d for d, _ in found.layers]},
                  "history": [{"created_by": "base"} for _ in found.layers]}
        after()
        return json.dumps(manifest).encode(), json.dumps(config).encode()

    def import_layout(self, layout: Path, name: str, *, background: bool = False) -> None:
        """The layout's image, by its config's digest, named `name`; it holds the
        layout's layers (the base's referenced, the new ones read from the layout)."""
        after = self._record("import_layout", layout, name)
        index = json.loads((layout / "index.json").read_text())
        blobs = layout / "blobs" / "sha256"
        manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_text())
        config_digest = manifest["config"]["digest"]
        config = json.loads((blobs / config_digest[7:]).read_text())
        for layer in manifest["layers"]:
            known = any(layer["digest"] in dict(i.layers) for i in list(self.store.values()))
            assert known or (blobs / layer["digest"][7:]).is_file(), "a layer is missing"
        run = config.get("config", {})
        image_id = str(config_digest)[7:]
        python = next((i.python for i in list(self.store.values())
                       if dict(i.layers).keys() & {manifest["layers"][0]["digest"]}), None)
        self.store[image_id] = FakeImage(
            id=image_id, labels=dict(run.get("Labels") or {}), env=tuple(run.get("Env") or ()),
            user=run.get("User") or "", python=python,
            layers=tuple((d["digest"], int(d["size"])) for d in manifest["layers"]))
        self.config_of[image_id] = config
        self.config_bytes[image_id] = (blobs / config_digest[7:]).read_bytes()
        self.names[name] = image_id
        self.imported.append(image_id)
        self.imported_layers.append((name, [str(d["digest"]) for d in manifest["layers"]]))
        after()


def as_engine(fake: FakeEngine) -> Engine:
    """Never called: mypy (run by scripts/test) holds FakeEngine to the Engine protocol here."""
    return fake
