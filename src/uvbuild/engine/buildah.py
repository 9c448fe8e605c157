"""The one module that knows buildah's command lines.

`Buildah` spells every `buildah from/run/copy/add/config/commit/rm/rmi/tag/push`
uvbuild uses. The executor talks to it only through these methods, so tests can
swap in a fake engine with the same surface.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from uvbuild.engine import cmd
from uvbuild.engine.diskfull import failed_for_space
from uvbuild.errors import EngineError

# Working containers are named so a leftover (e.g. after SIGKILL) is recognisable:
# uvbuild-<run id>-<n>-<purpose>; a sweep removes those whose run's lock is free
# (see liveness.py).
CONTAINER_PREFIX = "uvbuild-"
# What buildah passes on to every `buildah run` when its environment has them.
PROXY_ENV = tuple(name for base in ("http_proxy", "https_proxy", "ftp_proxy", "no_proxy",
                                    "all_proxy") for name in (base, base.upper()))


@dataclass(frozen=True, slots=True)
class Mount:
    """A host path bind-mounted into a builder command only (never into a layer)."""

    host: str
    target: str
    read_only: bool = True

    def spec(self) -> str:
        return f"{self.host}:{self.target}:{'ro' if self.read_only else 'rw'}"


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What uvbuild needs to know of an image in local storage."""

    id: str
    names: tuple[str, ...]
    labels: Mapping[str, str]
    env: tuple[str, ...]
    user: str
    layers: tuple[tuple[str, int], ...] = ()  # (digest, uncompressed size) base first
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    workdir: str = ""
    ports: tuple[str, ...] = ()  # "8000/tcp", sorted
    created: str | None = None  # RFC 3339, as the image config records it

    @property
    def size(self) -> int:
        return sum(size for _, size in self.layers)


@dataclass(frozen=True, slots=True)
class CommitOptions:
    """How a working container becomes an image."""

    timestamp: int
    labels: Mapping[str, str] = field(default_factory=dict)
    # The new history entry's created_by ("uvbuild: <step>"); buildah's default if empty.
    # The sweep knows uvbuild's own unnamed images by it (see made_by_uvbuild).
    created_by: str = ""


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """The runtime image's config, as `buildah config` sets it."""

    user: str | None = None
    workdir: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    ports: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    stop_signal: str | None = None
    created_by: str | None = None  # the next commit's history entry (buildah config)


def made_by_uvbuild(history: Sequence[Mapping[str, object]] | None) -> bool:
    """Whether an image with this history is one uvbuild committed: its last entry is a
    step's ("uvbuild: <step>", CommitOptions.created_by), or it is a bootstrapped base, one
    entry from scratch. An image built on top by another tool ends with that tool's."""
    if not history:
        return False
    return str(history[-1].get("created_by", "")).startswith("uvbuild: ") or len(history) == 1


STORAGE_DRIVER = "UVBUILD_STORAGE_DRIVER"  # overrides the store's storage driver


def buildah_argv(*args: str, storage_driver: str | None) -> list[str]:
    """A buildah command line: every one uvbuild runs (doctor's too) is spelled here."""
    return ["buildah", *(["--storage-driver", storage_driver] if storage_driver else []), *args]


# The archives `--output` writes (push to TRANSPORT:PATH[:REFERENCE]).
ARCHIVE_TRANSPORTS = ("oci-archive", "docker-archive")


class Buildah:
    """buildah, driven through its CLI. Rootful or rootless, chroot isolation by default."""

    def __init__(self, *, isolation: str | None = None, storage_driver: str | None = None) -> None:
        # chroot isolation works rootful and rootless, in nested containers and on
        # hybrid-cgroup hosts where the default OCI runtime (crun) fails.
        self.isolation = isolation or os.environ.get("BUILDAH_ISOLATION") or "chroot"
        self.storage_driver = storage_driver or os.environ.get(STORAGE_DRIVER)
        # Set by the build (liveness.Claim.owner_env): goes into every command's
        # environment, so a command left running by a killed uvbuild (buildah run
        # dies with it, the command's own children do not) is found and stopped.
        self.owner_env: dict[str, str] = {}
        self._run_root: Future[Path] | None = None  # asked once (see prefetch)
        self._run_root_lock = threading.Lock()
        # (the store's generation then, image_names()), listed early (see prefetch)
        self._listed: Future[tuple[str, dict[str, tuple[str, ...]]]] | None = None
        self._containers_early: Future[list[dict[str, str]]] | None = None  # (prefetch)

    # -- plumbing -----------------------------------------------------------------

    def _argv(self, *args: str) -> list[str]:
        return buildah_argv(*args, storage_driver=self.storage_driver)

    def _quick(self, *args: str) -> cmd.Result:
        """A bookkeeping command: never interrupted part-way (see cmd.run's `shielded`)."""
        return cmd.run(self._argv(*args), shielded=True)

    def _call(self, *args: str, what: str) -> str:
        result = self._quick(*args)
        if not result.ok:
            _check_space(result, what)
            raise EngineError(f"{what}: {cmd.describe_failure(result)}")
        return result.stdout

    def graphroot(self) -> str | None:
        """The image store's folder (buildah's graphroot), or None if buildah cannot say."""
        try:
            result = self._quick("info")
            return str(json.loads(result.stdout)["store"]["GraphRoot"]) if result.ok else None
        except (EngineError, ValueError, KeyError, TypeError):
            return None  # no buildah, or an answer of another shape: the store goes unnamed

    # -- images -------------------------------------------------------------------

    def image(self, ref: str) -> ImageInfo | None:
        """The local image `ref` (name or ID), or None when storage has no such image."""
        result = self._quick("inspect", "--type", "image", ref)
        if not result.ok:
            return None
        data = json.loads(result.stdout)
        config = (data.get("OCIv1") or {}).get("config") or {}
        manifest = json.loads(data.get("Manifest") or "{}")
        return ImageInfo(
            id=data["FromImageID"],
            names=_names(data),
            labels=config.get("Labels") or {},
            env=tuple(config.get("Env") or ()),
            user=config.get("User") or "",
            layers=tuple((layer["digest"], int(layer.get("size", 0)))
                         for layer in manifest.get("layers") or ()),
            entrypoint=tuple(config.get("Entrypoint") or ()),
            cmd=tuple(config.get("Cmd") or ()),
            workdir=config.get("WorkingDir") or "",
            ports=tuple(sorted(config.get("ExposedPorts") or {})),
            created=(data.get("OCIv1") or {}).get("created"),
        )

    def image_size(self, ref: str) -> int:
        """Bytes of an image's layers, uncompressed (0 if there is no such image)."""
        info = self.image(ref)
        return info.size if info else 0

    def images_named(self, prefix: str) -> dict[str, str]:
        """Map every local image name starting with `prefix` to its image ID (one call)."""
        found: dict[str, str] = {}
        for entry in self.image_list():
            for name in entry.get("names") or ():  # type: ignore[attr-defined]
                if name.startswith(prefix):
                    found[name] = _bare_id(str(entry["id"]))
        return found

    def image_names(self) -> dict[str, tuple[str, ...]]:
        """Every listed image's ID and its names (() for an unnamed one), in one call.

        `buildah images` leaves out only unnamed images that have children, so every
        dangling image is among the unnamed ones here."""
        listed: dict[str, tuple[str, ...]] = {}
        for entry in self.image_list():
            names = entry.get("names") or ()
            listed[_bare_id(str(entry["id"]))] = tuple(map(str, names))  # type: ignore[call-overload]
        return listed

    def image_list(self) -> list[dict[str, object]]:
        """`buildah images --json` as data."""
        out = self._call("images", "--json", "--no-trunc", what="listing images")
        return list(json.loads(out or "null") or [])

    def dangling_images(self, label: str) -> list[str]:
        """IDs of the unnamed images that carry the label `label`.

        A label is inherited: an image another tool built on a uvbuild base or image
        (`FROM` it) carries it too, and may be unnamed (a `buildah bud --layers` cache
        image, an old build). Which are uvbuild's own, `made_by_uvbuild` says.
        """
        out = self._call("images", "--json", "--no-trunc", "--filter", "dangling=true",
                         "--filter", f"label={label}", what="listing unnamed images")
        return [_bare_id(str(entry["id"])) for entry in json.loads(out or "null") or ()]

    def made_by_uvbuild(self, image: str) -> bool | None:
        """Whether uvbuild committed `image` (see made_by_uvbuild); None if it is gone or
        unreadable."""
        result = self._quick("inspect", "--type", "image", image)
        if not result.ok:
            return None
        history = (json.loads(result.stdout).get("OCIv1") or {}).get("history")
        return made_by_uvbuild(list(history) if isinstance(history, list) else None)

    def run_root(self) -> Path:
        """The image store's run root: shared by every process that uses the store.

        Asked once (`buildah info`), or taken from `prefetch`."""
        with self._run_root_lock:
            asked, mine = self._run_root, self._run_root is None
            if asked is None:
                asked = self._run_root = Future()
        if mine:
            try:
                asked.set_result(self._ask_run_root())
            except BaseException as exc:
                asked.set_exception(exc)
        return asked.result()

    def prefetch(self, *, generation: Callable[[Path], str] | None = None) -> None:
        """Start asking for the run root (`run_root`) in a thread of its own: a build
        needs it first, and its `buildah info` (about 0.1 s) then runs while the rest
        of uvbuild is imported, not after.

        With `generation` (the store's generation, read from its run root), the store's
        images are listed next (`image_names`), for `prefetched_names`."""
        if generation is not None:
            self._listed = Future()
            # And the working containers (the sweep's first question), at the same time.
            early: Future[list[dict[str, str]]] = Future()
            self._containers_early = early

            def list_containers() -> None:
                try:
                    early.set_result(self.containers())
                except BaseException as exc:
                    early.set_exception(exc)

            threading.Thread(target=list_containers, name="uvbuild-containers",
                             daemon=True).start()
        threading.Thread(target=self._prefetched, args=(generation,), name="uvbuild-info",
                         daemon=True).start()

    def _prefetched(self, generation: Callable[[Path], str] | None) -> None:
        try:
            root = self.run_root()
        except BaseException:
            root = None  # run_root raises it to its caller
        listed = self._listed
        if listed is None:
            return
        try:
            if root is None:
                raise EngineError("no run root")
            assert generation is not None
            then = generation(root)
            listed.set_result((then, self.image_names()))
        except BaseException as exc:
            listed.set_exception(exc)

    def image_id(self, ref: str) -> str | None:
        """The ID of the local image `ref` (None: not there): from the listing `prefetch`
        made when it names `ref` exactly (a bootstrapped base, a fully qualified
        reference), else asked (`buildah inspect`, which also resolves short names)."""
        _, names = self._early_listing() or ("", {})
        found = next((image for image, given in names.items() if ref in given), None)
        if found is not None:
            return found
        info = self.image(ref)
        return info.id if info else None

    def prefetched_names(self, generation: str) -> dict[str, tuple[str, ...]] | None:
        """The listing `prefetch` made (as image_names gives it), if the store's
        generation was `generation` when it was made; else None (list again)."""
        then, names = self._early_listing() or (None, None)
        return names if then == generation else None

    def prefetched_containers(self) -> list[dict[str, str]] | None:
        """The working containers as `prefetch` listed them (as `containers` gives them),
        once; None if it did not, or could not (list again)."""
        early, self._containers_early = self._containers_early, None
        if early is None:
            return None
        try:
            return early.result()
        except BaseException:
            return None

    def _early_listing(self) -> tuple[str, dict[str, tuple[str, ...]]] | None:
        """(the store's generation, image_names()) as `prefetch` listed them; None if
        it did not, or could not."""
        if self._listed is None:
            return None
        try:
            return self._listed.result()
        except BaseException:
            return None

    def _ask_run_root(self) -> Path:
        out = self._call("info", what="reading buildah's storage settings")
        return Path(json.loads(out)["store"]["RunRoot"])

    def pull(self, ref: str, access: RegistryAccess | None = None) -> str:
        """Pull `ref` (a registry name or an archive transport) and return its image ID."""
        with (access or RegistryAccess()).args(registry_of(ref)) as extra:
            result = cmd.run(self._argv("pull", "--quiet", *extra, ref))
        if not result.ok:
            raise EngineError(
                f"base image {ref!r} is not in local storage and could not be pulled: "
                f"{cmd.describe_failure(result)}",
                hint=registry_hint(result.stderr + result.stdout) or
                "check the name, load it locally (`buildah pull oci-archive:FILE`), "
                "or use the recipe's `from: {bootstrap: debian}` form",
            )
        return _bare_id(result.stdout.strip().splitlines()[-1])

    def tag(self, image: str, *names: str) -> None:
        """Give `image` one or more names (one `buildah tag` call for all of them)."""
        self._call("tag", image, *names, what=f"tagging {', '.join(names)}")

    def rmi(self, image: str) -> bool:
        """Remove an image; False (and nothing raised) when it is still in use or named."""
        return self._quick("rmi", image).ok

    def push(self, image: str, dest: str, *, tls_verify: bool | None, creds: str | None,
             authfile: str | None, digestfile: str | None = None,
             private: Path | None = None) -> None:
        """Push `image` to `dest`; with `digestfile`, buildah writes the pushed manifest's
        digest there. Credentials as RegistryAccess passes them: never on argv (an auth
        file in `private`, a run's folder that a sweep removes after a kill)."""
        args = ["push", "--quiet"]
        if digestfile:
            args += ["--digestfile", digestfile]
        access = RegistryAccess(tls_verify=tls_verify, creds=creds, authfile=authfile)
        with access.args(registry_of(dest), private) as extra:
            result = self._quick(*args, *extra, image, dest)
        if not result.ok:
            _check_space(result, f"pushing to {dest}")
            raise EngineError(f"pushing to {dest} failed: {cmd.describe_failure(result)}",
                              hint=push_hint(result.stdout + result.stderr, dest))

    # -- working containers -------------------------------------------------------

    def from_image(self, image: str, name: str) -> str:
        """Make a working container from a local image; return its ID."""
        out = self._call("from", "--pull=never", "--quiet", "--name", name, image,
                         what=f"creating a working container from {image}")
        return out.strip().splitlines()[-1]

    def from_scratch(self, name: str) -> str:
        out = self._call("from", "--quiet", "--name", name, "scratch", what="creating scratch")
        return out.strip().splitlines()[-1]

    def rm(self, *containers: str) -> None:
        """Remove working containers (one call); quiet about any already gone."""
        self._quick("rm", *containers)

    def mount(self, container: str) -> Path | None:
        """Where a working container's root is on the host, mounted until the container
        is removed; None when this process cannot read it there (rootless: the mount
        lives in buildah's user namespace) or the mount failed: callers then do
        without (it only saves work)."""
        if os.geteuid() != 0:
            return None
        result = self._quick("mount", container)
        mountpoint = result.stdout.strip().splitlines()[-1:] if result.ok else []
        return Path(mountpoint[0]) if mountpoint and mountpoint[0].startswith("/") else None

    def overlapping_runs(self) -> bool:
        """Whether a second `buildah run` of a container may start while one runs (and
        then see what that one wrote): as root, where both use the one mount of its
        root. Rootless, each run mounts it again in a user namespace of its own."""
        return os.geteuid() == 0

    def containers(self) -> list[dict[str, str]]:
        """Every working container buildah knows of (id, name)."""
        out = self._call("containers", "--json", what="listing containers")
        # With no containers, buildah 1.28 prints `null`, not `[]`.
        return [{"id": c["id"], "name": c["containername"]}
                for c in json.loads(out or "null") or ()]

    def run(
        self,
        container: str,
        argv: Sequence[str],
        *,
        mounts: Sequence[Mount] = (),
        workdir: str | None = None,
        user: str | None = None,
        network: bool = True,
        stream: bool = True,
        gate: cmd.Gate | None = None,
    ) -> cmd.Result:
        """Run a command in a working container; return its Result (callers judge it).

        `mounts` exist for this command only: buildah stores none. There is no `env`: a
        value on buildah's command line is readable by every local user, stays in the run
        bundle after a kill, and over 128 kB fails the exec; environments travel in job
        files (batch.write_job, Build.job). With a
        `gate`, the command starts now and waits for it (see cmd.Gate): files added to
        the container meanwhile are there when it goes on.
        """
        args = ["run", "--isolation", self.isolation]
        if self.isolation != "chroot":
            args += ["--runtime", os.environ.get("UVBUILD_OCI_RUNTIME", "runc")]
        for m in mounts:
            args += ["-v", m.spec()]
        # The run's mark (not a secret): children that outlive a killed buildah run are
        # found by it and stopped by the next sweep (liveness.py).
        for key, value in self.owner_env.items():
            args += ["-e", f"{key}={value}"]
        if workdir:
            args += ["--workingdir", workdir]
        if user:
            args += ["--user", user]
        if not network and self.isolation != "chroot":
            # chroot isolation always shares the host's network (buildah refuses "none").
            args += ["--network", "none"]
        # buildah copies the proxy variables of its own environment into the command's
        # (containers.conf's http_proxy, on by default): into its run bundle, and into
        # commands that must not get them. Builder commands get them from a job's file.
        # die_with_parent: a kill -9 of uvbuild stops the command too (buildah's own
        # chroot helpers die with buildah), instead of leaving it running for minutes.
        result = cmd.run(self._argv(*args, container, "--", *argv), stream=stream, gate=gate,
                         drop_env=PROXY_ENV, die_with_parent=True)
        if not result.ok:
            # Whatever the command was, a full disk is what to tell (not its step's hint).
            _check_space(result, f"running a command in {container}")
        return result

    def copy(self, container: str, source: str, dest: str, *,
             from_ref: str | None = None) -> None:
        """Copy a host path (or a path of `from_ref`, an image or a working container)."""
        args = ["copy", "--quiet"]
        if from_ref:
            args += ["--from", from_ref]
        self._call(*args, container, source, dest, what=f"copying {source} to {dest}")

    def add_archive(self, container: str, tarball: str, dest: str) -> None:
        """Unpack a local tar archive into the container at `dest`."""
        self._call("add", "--quiet", container, tarball, dest, what=f"adding {tarball}")

    def configure(self, container: str, config: ImageConfig) -> None:
        """Apply an ImageConfig with one `buildah config` call."""
        args = ["config"]
        if config.user is not None:
            args += ["--user", config.user]
        if config.workdir is not None:
            args += ["--workingdir", config.workdir]
        for key, value in config.env:
            args += ["--env", f"{key}={value}"]
        if config.entrypoint is not None:
            args += ["--entrypoint", json.dumps(list(config.entrypoint))]
        if config.cmd is not None:
            # An empty JSON list clears the base's CMD.
            args += ["--cmd", json.dumps(list(config.cmd)) if config.cmd else ""]
        for port in config.ports:
            args += ["--port", port]
        for key, value in config.labels:
            args += ["--label", f"{key}={value}"]
        if config.stop_signal:
            args += ["--stop-signal", config.stop_signal]
        if config.created_by:
            args += ["--created-by", config.created_by]
        if len(args) > 1:
            self._call(*args, container, what="configuring the image")

    def commit(self, container: str, options: CommitOptions) -> str:
        """Commit the container to a new, unnamed image and return its ID.

        The options' labels, if any, are set first (one `buildah config`).
        """
        self.configure(container, ImageConfig(labels=tuple(sorted(options.labels.items())),
                                              created_by=options.created_by or None))
        out = self._call("commit", "--quiet", "--timestamp", str(options.timestamp), container,
                         what="committing the image")
        return _bare_id(out.strip().splitlines()[-1])

    # -- assembled images (skopeo, which keeps a layout's digests) -------------------------

    def image_manifest(self, ref: str) -> tuple[bytes, bytes]:
        """A local image's manifest and config, as stored (to assemble on top of it)."""
        found: list[bytes] = []
        for extra in ((), ("--config",)):
            result = cmd.run(["skopeo", "inspect", *extra, "--raw", self._stored(ref)],
                             shielded=True)
            if not result.ok:
                # (A missing skopeo is cmd.run's own error, with its install hint.)
                raise EngineError(f"reading the manifest of {ref}: "
                                  f"{cmd.describe_failure(result)}",
                                  hint="if the image was removed meanwhile (`uvbuild cache "
                                  "prune`, `buildah rmi`), build again")
            found.append(result.stdout.encode("utf-8", "surrogateescape"))
        return found[0], found[1]

    def import_layout(self, layout: Path, name: str, *, background: bool = False) -> None:
        """Copy the OCI image layout `layout` into local storage as `name`, keeping its
        digests (so the image ID is its config's digest: `image(name)` says).
        `background`: at a lower CPU priority (nice), for an import off the way to the
        image that shares the CPU with the build's own commands."""
        niced = ["nice", "-n", "10"] if background else []
        result = cmd.run([*niced, "skopeo", "copy", "--quiet", "--preserve-digests",
                          f"oci:{layout}", self._stored(name)], shielded=True)
        if not result.ok:
            _check_space(result, f"importing {name}")
            raise EngineError(f"importing the assembled image {name}: "
                              f"{cmd.describe_failure(result)}",
                              hint="check the image store (`uvbuild doctor`) and "
                              "that skopeo is 1.6 or later (--preserve-digests)")

    def read_file(self, image: str, path: str, *, name: str) -> bytes | None:
        """A file's bytes from an image, without running anything in it (None if absent).

        As root the container is mounted directly; rootless, mounting needs buildah's
        user namespace (`buildah unshare`), which in turn fails as root on some hosts.
        """
        container = self.from_image(image, name)
        try:
            if os.geteuid() == 0:
                mountpoint = self._call("mount", container, what="mounting").strip()
                try:
                    return (Path(mountpoint) / path.lstrip("/")).read_bytes()
                except OSError:
                    return None
                finally:
                    self._quick("umount", container)
            script = ('mnt=$({b} mount "$1") && cat "$mnt$2"; rc=$?; '
                      '{b} umount "$1" >/dev/null; exit $rc').format(b=" ".join(self._argv()))
            result = self._quick("unshare", "--", "sh", "-c", script, "sh", container, path)
            return result.stdout.encode("utf-8", "surrogateescape") if result.ok else None
        finally:
            self.rm(container)

    # -- a registry as a step cache (skopeo: manifests, tags, layouts) -------------------
    #
    # Every call below goes to a registry through skopeo, which asks for a manifest or a
    # blob by name and never lists or pulls more than that. RegistryAccess reaches it as
    # it reaches buildah (TLS, credentials in a 0600 auth file, never on argv).

    def registry_manifest(self, ref: str, access: RegistryAccess) -> bytes | None:
        """The raw manifest of `ref` (REGISTRY/REPO:TAG or @sha256:...), with one manifest
        request; None when the registry has no such tag or repository. Any other failure
        (unreachable, refused, TLS) is an EngineError."""
        result = self._skopeo("inspect", "--raw", f"docker://{ref}", access=access,
                              registry=registry_of(ref))
        if result.ok:
            return result.stdout.encode("utf-8", "surrogateescape")
        if _MISSING.search(result.stderr):
            return None
        raise _registry_error(f"reading the manifest of {ref}", result)

    def registry_tags(self, repo: str, access: RegistryAccess) -> tuple[str, ...]:
        """Every tag of REGISTRY/REPO (none when the repository does not exist)."""
        result = self._skopeo("list-tags", f"docker://{repo}", access=access,
                              registry=registry_of(repo))
        if not result.ok:
            if _MISSING.search(result.stderr):
                return ()
            raise _registry_error(f"listing the tags of {repo}", result)
        return tuple(str(tag) for tag in json.loads(result.stdout).get("Tags") or ())

    def registry_delete(self, ref: str, access: RegistryAccess) -> None:
        """Delete the manifest REGISTRY/REPO@sha256:... (every tag on it goes with it; the
        registry's garbage collection frees the blobs no manifest uses)."""
        result = self._skopeo("delete", f"docker://{ref}", access=access,
                              registry=registry_of(ref))
        if not result.ok:
            raise _registry_error(f"deleting {ref}", result, hint=(
                "the registry must accept manifest deletes through its API (docker-registry: "
                "`storage: delete: enabled: true`); GHCR and Docker Hub do not: prune "
                "there with the service's own API"))

    def image_to_layout(self, image: str, layout: Path) -> None:
        """Copy the local image `image` into the OCI layout folder `layout`, its layers
        uncompressed, as the store holds them."""
        result = cmd.run(["skopeo", "copy", "--quiet", "--dest-oci-accept-uncompressed-layers",
                          self._stored(image), f"oci:{layout}"], shielded=True)
        if not result.ok:
            _check_space(result, f"copying {image} to {layout}")
            raise EngineError(f"copying {image} to {layout}: {cmd.describe_failure(result)}")

    def layout_to_registry(self, layout: Path, dest: str, access: RegistryAccess) -> None:
        """Push the OCI layout `layout` to REGISTRY/REPO:TAG `dest` byte for byte (the
        manifest's digest kept); a blob the repository has already is not uploaded."""
        result = self._skopeo_copy(f"oci:{layout}", f"docker://{dest}", access=access,
                                   registry=registry_of(dest), side="dest")
        if not result.ok:
            raise _registry_error(f"pushing to {dest}", result)

    def registry_to_layout(self, ref: str, layout: Path, access: RegistryAccess) -> None:
        """Fetch REGISTRY/REPO@sha256:... into the OCI layout folder `layout`, as stored."""
        result = self._skopeo_copy(f"docker://{ref}", f"oci:{layout}", access=access,
                                   registry=registry_of(ref), side="src")
        if not result.ok:
            _check_space(result, f"fetching {ref}")
            raise _registry_error(f"fetching {ref}", result)

    def registry_to_store(self, ref: str, name: str, access: RegistryAccess) -> str:
        """Pull REGISTRY/REPO@sha256:... into local storage as `name`, digests kept (so
        the image ID is its config's digest, as where it was exported); return the ID."""
        result = self._skopeo_copy(f"docker://{ref}", self._stored(name), access=access,
                                   registry=registry_of(ref), side="src")
        if not result.ok:
            _check_space(result, f"fetching {ref}")
            raise _registry_error(f"fetching {ref}", result)
        info = self.image(name)
        if info is None:
            raise EngineError(f"fetching {ref}: {name} is not in local storage after")
        return info.id

    def _stored(self, ref: str) -> str:
        """`ref` in skopeo's containers-storage transport, in the store buildah uses (with a
        storage driver set, named with the store's folders: skopeo has no such option)."""
        if not self.storage_driver:
            return f"containers-storage:{ref}"
        store = json.loads(self._call("info", what="reading buildah's storage settings"))["store"]
        return (f"containers-storage:[{self.storage_driver}@{store['GraphRoot']}"
                f"+{store['RunRoot']}]{ref}")

    def _skopeo(self, verb: str, *args: str, access: RegistryAccess,
                registry: str) -> cmd.Result:
        """`skopeo VERB [access options] ARGS`: one request or a few, given up after a
        minute, so a registry that does not answer costs a build a minute, not forever."""
        with access.args(registry) as extra:
            return cmd.run(["skopeo", "--command-timeout", "60s", verb, *extra, *args],
                           shielded=True)

    def _skopeo_copy(self, source: str, dest: str, *, access: RegistryAccess, registry: str,
                     side: str) -> cmd.Result:
        """`skopeo copy --preserve-digests`, the access options on the registry's `side`
        ("src" or "dest"): skopeo copy spells them --src-OPTION and --dest-OPTION."""
        with access.args(registry) as extra:
            sided = [f"--{side}-{arg[2:]}" if arg.startswith("--") else arg for arg in extra]
            return cmd.run(["skopeo", "copy", "--quiet", "--preserve-digests", *sided,
                            source, dest], shielded=True)


# skopeo's words for a tag or repository that the registry does not have.
_MISSING = re.compile(r"manifest unknown|name unknown|\b404\b", re.IGNORECASE)


def _registry_error(what: str, result: cmd.Result, hint: str | None = None) -> EngineError:
    """A failed registry call, with what to do about its cause."""
    output = result.stderr + result.stdout
    if registry_cause(output) == "unreachable":
        hint = "the registry cannot be reached: check its address and that it is running"
    return EngineError(f"{what}: {cmd.describe_failure(result)}",
                       hint=registry_hint(output) or hint)


# What buildah (containers/image) says, by cause of a refused pull or push.
_AUTH = re.compile(r"\b40[13]\b|unauthorized|authentication required|access.* denied"
                   r"|forbidden|requested access to the resource is denied", re.IGNORECASE)
_PLAIN_HTTP = re.compile(r"HTTP response to HTTPS client|first record does not look like a "
                         r"TLS handshake", re.IGNORECASE)
_TLS = re.compile(r"x509|certificate|tls:", re.IGNORECASE)
_UNREACHABLE = re.compile(r"connection refused|no such host|dial tcp|i/o timeout"
                          r"|network is unreachable|no route to host|connection reset"
                          r"|server misbehaving|temporary failure in name resolution",
                          re.IGNORECASE)


def push_hint(output: str, dest: str) -> str:
    """What to do about a failed push, by its cause; the image is tagged locally anyway."""
    transport, _, name = dest.partition(":")
    name = name.removeprefix("//")
    kept = f"the image is built and tagged locally as {name}: only the push failed"
    if transport != "docker":
        return f"{kept}; check that the folder of the archive exists and is writable"
    registry = name.split("/", 1)[0] if "/" in name else "docker.io"
    cause = registry_cause(output)
    if cause == "auth":
        why = (f"the registry refused the credentials: `podman login {registry}` (or "
               "`buildah login`), or pass --creds USER:PASSWORD or --authfile FILE")
    elif cause in ("plain-http", "tls"):
        why = (f"TLS with {registry} failed: for a registry that speaks plain HTTP, pass "
               f"--no-tls-verify; for a private CA, put its certificate in "
               f"/etc/containers/certs.d/{registry}/ca.crt")
    elif cause == "unreachable":
        why = (f"{registry} cannot be reached: check the registry address (host and port "
               "in the image name) and that the registry is running")
    else:
        why = "check the image name's registry, your access to it, and the message above"
    return f"{kept}; {why}"


def _check_space(result: cmd.Result, what: str) -> None:
    """Raise an EngineError that tells of a full disk if the failed `result` says so."""
    # Not the whole command line: the lines that tell of the full disk say enough.
    full = failed_for_space(result.stdout + "\n" + result.stderr,
                            f"{what} failed with exit code {result.returncode}:")
    if full is not None:
        raise full


def registry_of(ref: str) -> str:
    """The registry an image reference (or a `docker://NAME` destination) is on
    (docker.io for short names)."""
    name = ref.removeprefix("docker://")
    first, slash, _ = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def write_authfile(path: Path, registry: str, creds: str, *, base: str | None) -> str:
    """A containers auth file at `path` (0600) with `creds` (USER:PASSWORD) for
    `registry`, on top of the entries of the auth file `base`, if one is given."""
    data: dict[str, object] = {}
    if base:
        try:
            data = json.loads(Path(base).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise EngineError(f"--authfile {base}: cannot read it as an auth file: {exc}",
                              hint="give a containers auth.json, or --creds alone") from exc
    auths = dict(data.get("auths") or {})  # type: ignore[call-overload]
    auths[registry] = {"auth": base64.b64encode(creds.encode()).decode()}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "w", encoding="utf-8") as handle:
        json.dump({**data, "auths": auths}, handle)
    return str(path)


@dataclass(frozen=True, kw_only=True, slots=True)
class RegistryAccess:
    """How every registry call (base pulls, push) reaches a registry. Unset: buildah's
    defaults (TLS verified; the containers auth file; registries.conf)."""

    tls_verify: bool | None = None
    creds: str | None = None  # USER[:PASSWORD], never printed
    authfile: str | None = None

    @contextlib.contextmanager
    def args(self, registry: str, private: Path | None = None) -> Iterator[list[str]]:
        """buildah's options for a call to `registry`. A password in `creds` reaches
        buildah in an auth file (0600, in the private folder `private` or a temporary
        one, removed after), never on its command line, where every local user could
        read it."""
        args = []
        if self.tls_verify is not None:
            args.append(f"--tls-verify={'true' if self.tls_verify else 'false'}")
        with contextlib.ExitStack() as stack:
            authfile = self.authfile
            if self.creds and ":" in self.creds:
                cmd.mask(self.creds)
                cmd.mask(self.creds.partition(":")[2])  # the password alone
                folder = private or Path(stack.enter_context(tempfile.TemporaryDirectory(
                    prefix="uvbuild-auth-")))
                authfile = write_authfile(folder / "auth.json", registry, self.creds,
                                          base=authfile)
            elif self.creds:
                args += ["--creds", self.creds]  # a user name alone: buildah asks the password
            if authfile:
                args += ["--authfile", authfile]
            yield args


def registry_cause(output: str) -> str | None:
    """Why a registry refused buildah, from its words: "auth", "plain-http", "tls",
    "unreachable", or None. One reading for pulls (registry_hint) and pushes (push_hint)."""
    for cause, pattern in (("auth", _AUTH), ("plain-http", _PLAIN_HTTP), ("tls", _TLS),
                           ("unreachable", _UNREACHABLE)):
        if pattern.search(output):
            return cause
    return None


def registry_hint(output: str) -> str | None:
    """What to do about a registry's refusal of a pull; None if it is not one that a
    setting fixes (the caller's own hint then says what else to check)."""
    return {
        "auth": "the registry wants credentials: pass --creds USER:PASSWORD or --authfile "
                "FILE, or log in first (`podman login REGISTRY`)",
        "plain-http": "the registry speaks plain HTTP: pass --no-tls-verify, or mark it "
                      "`insecure = true` in registries.conf",
        "tls": "the registry's TLS certificate is not trusted: add its CA to the system's "
               "trust store (or SSL_CERT_FILE), or pass --no-tls-verify for a test registry",
    }.get(registry_cause(output) or "")


def _bare_id(image_id: str) -> str:
    """Image IDs without the `sha256:` some buildah commands put in front."""
    return image_id.removeprefix("sha256:")


def _names(data: Mapping[str, object]) -> tuple[str, ...]:
    names = data.get("FromImage")
    return (str(names),) if names else ()
