"""The one module that knows buildah's command lines.

`Buildah` spells every `buildah from/run/copy/add/config/commit/rm/rmi/tag/push`
uvbuild uses. The executor talks to it only through these methods, so tests can
swap in a fake engine with the same surface.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from . import cmd
from .errors import EngineError

# Working containers are named so a leftover (e.g. after SIGKILL) is recognisable:
# uvbuild-<pid>-<step>; `uvbuild cache prune` removes those whose pid is gone.
CONTAINER_PREFIX = "uvbuild-"


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


class Buildah:
    """buildah, driven through its CLI. Rootful or rootless, chroot isolation by default."""

    def __init__(self, *, isolation: str | None = None, storage_driver: str | None = None) -> None:
        # chroot isolation works rootful and rootless, in nested containers and on
        # hybrid-cgroup hosts where the default OCI runtime (crun) fails.
        self.isolation = isolation or os.environ.get("BUILDAH_ISOLATION") or "chroot"
        self.storage_driver = storage_driver or os.environ.get("UVBUILD_STORAGE_DRIVER")

    # -- plumbing -----------------------------------------------------------------

    def _argv(self, *args: str) -> list[str]:
        argv = ["buildah"]
        if self.storage_driver:
            argv += ["--storage-driver", self.storage_driver]
        return argv + list(args)

    def _quick(self, *args: str) -> cmd.Result:
        """A bookkeeping command: never interrupted part-way (see cmd.run's `shielded`)."""
        return cmd.run(self._argv(*args), shielded=True)

    def _call(self, *args: str, what: str) -> str:
        result = self._quick(*args)
        if not result.ok:
            raise EngineError(f"{what}: {cmd.describe_failure(result)}")
        return result.stdout

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

    def image_list(self) -> list[dict[str, object]]:
        """`buildah images --json` as data."""
        out = self._call("images", "--json", "--no-trunc", what="listing images")
        return list(json.loads(out or "null") or [])

    def pull(self, ref: str, access: RegistryAccess | None = None) -> str:
        """Pull `ref` (a registry name or an archive transport) and return its image ID."""
        result = cmd.run(self._argv("pull", "--quiet", *(access or RegistryAccess()).args(),
                                    ref))
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
             authfile: str | None, digestfile: str | None = None) -> None:
        """Push `image` to `dest`; with `digestfile`, buildah writes the pushed
        manifest's digest there."""
        args = ["push", "--quiet"]
        if digestfile:
            args += ["--digestfile", digestfile]
        if tls_verify is not None:
            args.append(f"--tls-verify={'true' if tls_verify else 'false'}")
        if creds:
            cmd.mask(creds)
            args += ["--creds", creds]
        if authfile:
            args += ["--authfile", authfile]
        self._call(*args, image, dest, what=f"pushing to {dest}")

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
        env: Mapping[str, str] | None = None,
        mounts: Sequence[Mount] = (),
        workdir: str | None = None,
        user: str | None = None,
        network: bool = True,
        stream: bool = True,
        gate: cmd.Gate | None = None,
    ) -> cmd.Result:
        """Run a command in a working container; return its Result (callers judge it).

        `env` and `mounts` exist for this command only: buildah stores neither. With a
        `gate`, the command starts now and waits for it (see cmd.Gate): files added to
        the container meanwhile are there when it goes on.
        """
        args = ["run", "--isolation", self.isolation]
        if self.isolation != "chroot":
            args += ["--runtime", os.environ.get("UVBUILD_OCI_RUNTIME", "runc")]
        for m in mounts:
            args += ["-v", m.spec()]
        for key, value in (env or {}).items():
            args += ["-e", f"{key}={value}"]
        if workdir:
            args += ["--workingdir", workdir]
        if user:
            args += ["--user", user]
        if not network and self.isolation != "chroot":
            # chroot isolation always shares the host's network (buildah refuses "none").
            args += ["--network", "none"]
        return cmd.run(self._argv(*args, container, "--", *argv), stream=stream, gate=gate)

    def copy(self, container: str, source: str, dest: str, *, from_ref: str | None = None,
             chown: str | None = None) -> None:
        """Copy a host path (or a path of `from_ref`, an image or a working container)."""
        args = ["copy", "--quiet"]
        if from_ref:
            args += ["--from", from_ref]
        if chown:
            args += ["--chown", chown]
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
        if len(args) > 1:
            self._call(*args, container, what="configuring the image")

    def commit(self, container: str, options: CommitOptions) -> str:
        """Commit the container to a new, unnamed image and return its ID.

        The options' labels, if any, are set first (one `buildah config`).
        """
        self.configure(container, ImageConfig(labels=tuple(sorted(options.labels.items()))))
        out = self._call("commit", "--quiet", "--timestamp", str(options.timestamp), container,
                         what="committing the image")
        return _bare_id(out.strip().splitlines()[-1])

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

    def unshare_ok(self) -> bool:
        """Whether `buildah unshare` works (rootless readiness)."""
        return cmd.run(self._argv("unshare", "true")).ok


@dataclass(frozen=True, kw_only=True, slots=True)
class RegistryAccess:
    """How every registry call (base pulls, push) reaches a registry. Unset: buildah's
    defaults (TLS verified; the containers auth file; registries.conf)."""

    tls_verify: bool | None = None
    creds: str | None = None  # USER[:PASSWORD], never printed
    authfile: str | None = None

    def args(self) -> list[str]:
        args = []
        if self.tls_verify is not None:
            args.append(f"--tls-verify={'true' if self.tls_verify else 'false'}")
        if self.creds:
            cmd.mask(self.creds)
            args += ["--creds", self.creds]
        if self.authfile:
            args += ["--authfile", self.authfile]
        return args


def registry_hint(output: str) -> str | None:
    """What to do about a registry's refusal, from buildah's words; None if not one."""
    text = output.lower()
    if "unauthorized" in text or " 401" in text or "authentication required" in text:
        return ("the registry wants credentials: pass --creds USER:PASSWORD or --authfile "
                "FILE, or log in first (`podman login REGISTRY`)")
    if "http response to https client" in text:
        return ("the registry speaks plain HTTP: pass --no-tls-verify, or mark it "
                "`insecure = true` in registries.conf")
    if "x509" in text or "certificate" in text or "tls:" in text:
        return ("the registry's TLS certificate is not trusted: add its CA to the system's "
                "trust store (or SSL_CERT_FILE), or pass --no-tls-verify for a test registry")
    return None


def _bare_id(image_id: str) -> str:
    """Image IDs without the `sha256:` some buildah commands put in front."""
    return image_id.removeprefix("sha256:")


def _names(data: Mapping[str, object]) -> tuple[str, ...]:
    names = data.get("FromImage")
    return (str(names),) if names else ()
