"""The build, top to bottom: load → measure → plan → execute → output.

    recipe = load_recipe(path)              strict, typed (recipe/loader.py)
    project, inputs = gather(recipe, ...)   files, digests, base IDs (plan/inputs.py)
    plan = make_plan(recipe, inputs)        pure data with cache keys (plan/planner.py)
    Build(engine, plan, ...).run()          cached steps reused, the rest run (build/executor.py)
    push / write archives                   (engine/buildah.py)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from uvbuild import redact
from uvbuild.build import batch
from uvbuild.build.context import BuildSettings
from uvbuild.build.executor import Build, BuildResult
from uvbuild.build.layercache import LayerCache
from uvbuild.build.liveness import Claim, Places
from uvbuild.engine import subids
from uvbuild.engine.buildah import ARCHIVE_TRANSPORTS, Buildah, RegistryAccess
from uvbuild.engine.diskfull import Place, build_places, reported
from uvbuild.engine.netenv import host_environ, network_settings
from uvbuild.errors import EngineError, RecipeError
from uvbuild.output.progress import Reporter
from uvbuild.plan.inputs import gather, uv_binary
from uvbuild.plan.planner import CACHE_REPO, Plan, make_plan
from uvbuild.project import memo
from uvbuild.recipe.loader import load_recipe
from uvbuild.recipe.model import Recipe


@dataclass(frozen=True, kw_only=True, slots=True)
class Outputs:
    """Where the built image goes besides local storage."""

    push: bool = False
    archives: tuple[str, ...] = ()  # "oci-archive:PATH" or "docker-archive:PATH"
    tls_verify: bool | None = None
    creds: str | None = None
    authfile: str | None = None
    sbom: Path | None = None  # write the image's SBOM here too

    @property
    def access(self) -> RegistryAccess:
        """The registry settings, for base pulls as for the push."""
        return RegistryAccess(tls_verify=self.tls_verify, creds=self.creds,
                              authfile=self.authfile)


def cache_home() -> Path:
    """uvbuild's cache folder on the host (uv's download cache lives under it)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "uvbuild"


def memo_folder() -> Path:
    """Where project/memo.py keeps what it worked out from file contents (host-wide:
    it depends on no image store); `cache prune` empties it."""
    return cache_home() / "memo"


def bytecode_folder() -> Path:
    """Where the dependencies' .pyc files are kept by source and path
    (incontainer/bytecode.py; host-wide); `cache prune` empties it."""
    return cache_home() / "bytecode"


def check_host_folders() -> None:
    """The folders a build writes on the host: its cache (locks, layers, uv's cache)
    and TMPDIR (its scratch, and buildah's). Said before anything runs: a TMPDIR that
    is no folder makes buildah fail at every call (as if each image were missing), and
    Python's own temporary files fall back to /tmp without a word."""
    home = cache_home()
    try:
        home.mkdir(parents=True, exist_ok=True)
        usable = os.access(home, os.W_OK | os.X_OK)
    except OSError as exc:
        usable, why = False, exc.strerror or str(exc)
    else:
        why = "not writable"
    if not usable:
        variable = "XDG_CACHE_HOME" if os.environ.get("XDG_CACHE_HOME") else "HOME"
        raise EngineError(f"uvbuild's cache folder {home} cannot be used: {why}",
                          hint=f"set {variable} so that it names a writable folder")
    tmp = os.environ.get("TMPDIR")
    if tmp and not (os.path.isdir(tmp) and os.access(tmp, os.W_OK | os.X_OK)):
        raise EngineError(f"TMPDIR={tmp} is not a writable folder",
                          hint="set TMPDIR to a writable folder, or unset it (/tmp)")


def layer_cache(run_root: Path) -> LayerCache:
    """The layer cache (build/layercache.py) of the image store whose run root is
    `run_root`: one folder per store, so that `cache prune` of one store, which waits
    for that store's builds (its store lock), never takes layers from a build of another
    store on the same host."""
    store = hashlib.sha256(os.fsencode(os.path.abspath(run_root))).hexdigest()[:16]
    return LayerCache(cache_home() / "layers" / store)


def cached_names(engine: Buildah) -> dict[str, str]:
    """What Step.cached looks in: the step images' names and the layer cache's entries."""
    return {**engine.images_named(CACHE_REPO + "/"),
            **layer_cache(engine.run_root()).listing()}


def plan_recipe(path: Path, *, tag: str | None, engine: Buildah | None,
                pull: bool) -> tuple[Recipe, Plan]:
    """Load a recipe and plan its build."""
    recipe = load_recipe(path)
    memo.folder = memo_folder()
    _, inputs = gather(recipe, engine, tag=tag, pull=pull)
    return recipe, make_plan(recipe, inputs)


def check_builder_env(recipe: Recipe) -> None:
    """Refuse, before any work, a builder.env value no process could be given."""
    for name, value in recipe.builder.env:
        if batch.too_long(name, value):
            raise RecipeError(
                f"{recipe.path}: builder.env.{name}: its value is {len(value)} characters; "
                f"a variable reaches a command only up to {batch.VARIABLE_LIMIT // 1024} kB "
                "(the kernel's limit per variable)",
                hint="put large data in a file of the project and read it from there")


def host_secrets(recipe: Recipe) -> dict[str, str]:
    """builder.secrets values from the host environment; a missing one is an error."""
    env = host_environ()
    missing = [name for name in recipe.builder.secrets if name not in env]
    if missing:
        raise RecipeError(f"{recipe.path}: builder.secrets: {', '.join(missing)} not set in the "
                          "environment", hint="export the variable before running uvbuild")
    for name in recipe.builder.secrets:
        redact.add(env[name])  # from now on, printed nowhere
    return {name: env[name] for name in recipe.builder.secrets}


def check_rootless_ready() -> None:
    """A rootless build needs subordinate uid and gid ranges: say so before anything runs."""
    if os.geteuid() == 0:
        return
    import pwd

    user = pwd.getpwuid(os.geteuid()).pw_name
    for path in ("/etc/subuid", "/etc/subgid"):
        try:
            text = Path(path).read_text()
        except OSError:
            text = ""
        if not subids.ranges(text, user=user, uid=os.geteuid()):
            raise EngineError(
                f"rootless build: user {user!r} has no range in {path}",
                hint=f"sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 "
                     f"{user}  (then run `uvbuild doctor`)")


@contextlib.contextmanager
def build_lock(image: str, run_root: Path) -> Iterator[None]:
    """Builds of the same image name in the same image store (its run root) run one at a
    time (flock). A build in another store (another CI job's, a benchmark's private one)
    names another image: it does not wait for this one, nor this one for it."""
    locks = cache_home() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    store = os.path.abspath(run_root)
    path = locks / (hashlib.sha256(f"{store}\0{image}".encode()).hexdigest()[:24] + ".lock")
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _places() -> list[Place]:
    """Where a build writes, for the message of a full disk met outside Build.run."""
    return build_places(Buildah().graphroot(), cache_home() / "uv")


@reported(_places)
def build(path: Path, *, tag: str | None, reporter: Reporter, outputs: Outputs,
          no_cache: bool = False, verbose: bool = False, cache_from: tuple[str, ...] = (),
          cache_to: str | None = None,
          engine: Buildah | None = None) -> BuildResult:
    """Build the recipe at `path` into a tagged image; push or export it if asked. Steps
    are looked up in the registry caches `cache_from` and exported to `cache_to`
    (build/remote.py), reached with the same settings as base pulls and the push."""
    recipe = load_recipe(path)
    engine = engine or Buildah()
    check_host_folders()
    memo.folder = memo_folder()
    check_rootless_ready()
    secrets = host_secrets(recipe)
    check_builder_env(recipe)
    for _, value in recipe.builder.env:
        # An index URL with user:password@ in builder.env belongs in builder.secrets, but
        # its password is printed nowhere either way.
        for word in value.split():
            if "://" in word:
                redact.add_url(word)
    # The store's run root (a `buildah info`, unless the caller has asked already:
    # Buildah.prefetch) is asked while the project is read and digested: neither waits
    # for the other. The project's tars are written only by a step that unpacks them
    # (archive.ProjectTar): an unchanged rebuild writes none.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="uvbuild-info") as pool:
        asked = pool.submit(engine.run_root)
        _, inputs = gather(recipe, engine, tag=tag, access=outputs.access)
        run_root = asked.result()
    # This run's id and locks (liveness.py): its containers and folders are known as its
    # own, and swept by the next build or `cache prune` if it is killed.
    claim = Claim(Places.of(run_root))
    try:
        plan = make_plan(recipe, inputs)
        net_env, net_mounts = network_settings(host_environ())
        settings = BuildSettings(uv_binary=uv_binary(), uv_cache=cache_home() / "uv",
                                 network_env=net_env, network_mounts=net_mounts,
                                 secrets=secrets, no_cache=no_cache, verbose=verbose,
                                 layer_cache=layer_cache(run_root).root,
                                 bytecode_cache=bytecode_folder(),
                                 cache_from=cache_from, cache_to=cache_to,
                                 registry=outputs.access)
        reporter.note(f"building {plan.image} from {path}")
        with build_lock(plan.image, run_root):
            result = Build(engine, plan, settings, reporter, claim).run()
        result.pushed = deliver(engine, result, outputs, claim)
    finally:
        claim.close()
    return result


def deliver(engine: Buildah, result: BuildResult, outputs: Outputs, claim: Claim,
            ) -> dict[str, str] | None:
    """Write the SBOM, push the image and write archives, as asked; return what was
    pushed ({"reference", "digest"}), if anything."""
    if outputs.sbom:
        from uvbuild.output.sbom import SBOM_PATH

        document = engine.read_file(result.image_id, SBOM_PATH,
                                    name=claim.container_name("sbom"))
        if document is None:
            raise EngineError(f"{result.image} has no SBOM at {SBOM_PATH}")
        try:
            outputs.sbom.write_bytes(document)
        except OSError as exc:  # (checked before the build: changed since)
            raise EngineError(f"writing the SBOM to {outputs.sbom}: {exc.strerror or exc}",
                              hint=f"the image is built and tagged as {result.image}; "
                              f"`uvbuild inspect {result.image}` shows its SBOM") from None
    for archive in outputs.archives:
        transport, _, target = archive.partition(":")
        if transport not in ARCHIVE_TRANSPORTS or not target:
            raise EngineError(f"--output {archive!r}: expected oci-archive:PATH or "
                              "docker-archive:PATH")
        dest = f"{transport}:{target}"
        if ":" not in target:
            dest += f":{result.image}"
        engine.push(result.image_id, dest, tls_verify=None, creds=None, authfile=None)
    if not outputs.push:
        return None
    # The run's own folder (not a plain temporary one): after a kill -9 during the push,
    # the next sweep removes it and the auth file with the password in it.
    folder = claim.folder("push")
    try:
        digestfile = folder / "digest"
        engine.push(result.image_id, f"docker://{result.image}", tls_verify=outputs.tls_verify,
                    creds=outputs.creds, authfile=outputs.authfile, digestfile=str(digestfile),
                    private=folder)
        digest = digestfile.read_text().strip() if digestfile.exists() else ""
    finally:
        claim.release(folder)
    return {"reference": result.image, "digest": digest}
