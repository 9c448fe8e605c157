"""Bases without a registry: a Debian root from Debian's packages, made with mmdebstrap.

The root is imported as a local image named by its definition's key, so it is
built once and reused until the definition (suite, packages, snapshot, variant) changes.
A slim root (`variant: slim`, see `uvbuild.slimroot`) is made by the same command with
the Essential set, dpkg path filters and a purge hook instead of apt's variant.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from uvbuild.build.context import Inputs, StepContext
from uvbuild.build.labels import BOOTSTRAP_LABEL
from uvbuild.build.results import ImageResult
from uvbuild.engine import cmd
from uvbuild.engine.buildah import CommitOptions, ImageConfig
from uvbuild.engine.diskfull import failed_for_space
from uvbuild.engine.protocol import Engine
from uvbuild.errors import EngineError, StepFailed
from uvbuild.plan import slimroot
from uvbuild.plan.planner import STANDARD_PATH, ResolveBase
from uvbuild.recipe.model import BootstrapBase

DEBIAN_MIRROR = "http://deb.debian.org/debian"
SNAPSHOT_MIRROR = "http://snapshot.debian.org/archive/debian/{snapshot}"
# Seconds mmdebstrap has to stop after an interrupt before it is killed: it catches
# SIGINT and goes on writing its tarball (about a minute, seen here).
INTERRUPT_GRACE = 3.0

# mmdebstrap copies the host's /etc/resolv.conf and /etc/hostname into the root: replace
# them with fixed content so no host detail ships and two machines make the same base.
_HOOKS = (
    'printf "127.0.0.1\\tlocalhost\\n::1\\tlocalhost ip6-localhost ip6-loopback\\n"'
    ' > "$1/etc/hosts"',
    ': > "$1/etc/resolv.conf"',
    'echo localhost > "$1/etc/hostname"',
    'rm -f "$1/var/log/dpkg.log" "$1/var/log/alternatives.log" "$1/var/cache/ldconfig/aux-cache"',
    'rm -rf "$1/var/log/apt" "$1/var/lib/apt/lists"/*',
)


def mmdebstrap_argv(base: BootstrapBase, output: str, *, rootful: bool) -> list[str]:
    """The mmdebstrap command line that makes `base` as a tarball at `output`."""
    slim = base.variant == "slim"
    variant = slimroot.MMDEBSTRAP_VARIANT if slim else "apt"
    argv = ["mmdebstrap", f"--variant={variant}", "--format=tar", "--quiet",
            f"--mode={'root' if rootful else 'unshare'}"]
    packages = set(base.packages) | (set(slimroot.PACKAGES) if slim else set())
    if packages:
        argv.append("--include=" + ",".join(sorted(packages)))
    hooks: tuple[str, ...] = _HOOKS
    if slim:
        argv += [f"--dpkgopt={option}" for option in slimroot.PATH_FILTERS]
        # The purge goes first: its dpkg runs write the logs _HOOKS then remove.
        hooks = (slimroot.purge_hook(), *_HOOKS)
    for hook in hooks:
        argv.append(f"--customize-hook={hook}")
    mirror = DEBIAN_MIRROR
    if base.snapshot:
        mirror = SNAPSHOT_MIRROR.format(snapshot=base.snapshot)
        argv.append('--aptopt=Acquire::Check-Valid-Until "false"')
    return argv + [base.suite, output, mirror]


def base_ref(step: ResolveBase) -> str:
    """What a base is made once per build by: builder and runtime with the same base share
    one making (one mmdebstrap, one pull)."""
    return step.cache_ref if isinstance(step.base, BootstrapBase) else step.base.ref


def found_base(ctx: StepContext, step: ResolveBase) -> ImageResult | None:
    """The base's image if local storage has it (the step is then `cached`: nothing was
    pulled or bootstrapped), else None. (Asked when the build's listing of the store had
    no image by the base's name: ResolveBase.cached.)"""
    info = ctx.engine.image(base_ref(step))
    return ImageResult(info.id) if info else None


def resolve_base(ctx: StepContext, step: ResolveBase, inputs: Inputs) -> ImageResult:
    """The base's image, pulled or bootstrapped: the runner asked local storage first
    (found_base, the step kind's `kept`) and runs this only when it had none."""
    engine = ctx.engine
    if not isinstance(step.base, BootstrapBase):
        return ImageResult(engine.pull(step.base.ref))
    # One build at a time bootstraps a base in a store: one that waited finds it made.
    with ctx.base_lock(step.cache_ref):
        info = engine.image(step.cache_ref)
        if info:
            return ImageResult(info.id)
        # build_bootstrap_base removes its scratch container, but a Ctrl-C just after
        # `buildah from` or during its `buildah rm` would leave it: it is tracked.
        with ctx.host_folder("bootstrap") as (folder, mark), \
                ctx.tracked_container("bootstrap") as name:
            return ImageResult(build_bootstrap_base(
                engine, step.base, step.cache_ref, timestamp=ctx.plan.timestamp,
                container_name=name, folder=folder, mark=mark))


def host_python_variables() -> tuple[str, ...]:
    """The PYTHON* variables of uvbuild's environment (kept out of a bootstrap)."""
    return tuple(sorted(name for name in os.environ if name.startswith("PYTHON")))


def build_bootstrap_base(engine: Engine, base: BootstrapBase, ref: str, *,
                         timestamp: int, container_name: str, folder: Path,
                         mark: Mapping[str, str]) -> str:
    """Make the base image `ref` with mmdebstrap; return its image ID.

    The root tarball is written in `folder` (a host folder the caller owns and removes);
    `mark` goes into mmdebstrap's environment, which its children inherit, so they can
    be found and stopped if uvbuild is killed (see liveness.py).
    """
    if base.distribution != "debian":
        raise EngineError(f"cannot bootstrap {base.distribution!r}: only debian is supported")
    tarball = str(folder / "root.tar")
    argv = mmdebstrap_argv(base, tarball, rootful=os.geteuid() == 0)
    # mmdebstrap makes file times and package state reproducible from SOURCE_DATE_EPOCH.
    # It dies with uvbuild (die_with_parent); the children it leaves are swept by mark.
    # On an interrupt it has a few seconds, not the minute it takes to finish its tarball.
    # The packages' maintainer scripts run with mmdebstrap's environment, and Python's
    # variables change what they write: with PYTHONDONTWRITEBYTECODE set on the host
    # (common on developer machines), py3compile's bytecode is missing from the root,
    # which then has another image ID than a CI runner's. None of them reaches it.
    result = cmd.run(argv, env={"SOURCE_DATE_EPOCH": str(timestamp), **mark},
                     drop_env=host_python_variables(), die_with_parent=True,
                     interrupt_grace=INTERRUPT_GRACE)
    if not result.ok:
        full = failed_for_space(result.stdout + result.stderr, f"bootstrapping debian "
                                f"{base.suite} failed with exit code {result.returncode}:")
        if full is not None:  # mmdebstrap's tarball filled $TMPDIR: not a package problem
            raise full
        hint = ("check the suite and package names (apt-cache policy NAME), and that "
                "the Debian mirror is reachable")
        # apt's own reason ("E: Unable to locate package x") is far up mmdebstrap's
        # output, above its long command line and clean-up: told first, as a step's is.
        said = list(dict.fromkeys(line.strip() for line in
                                  (result.stdout + result.stderr).splitlines()
                                  if line.strip().startswith("E: ")))
        if said:
            raise StepFailed(f"bootstrapping debian {base.suite} with "
                             f"{' '.join(base.packages) or 'its packages'} failed: "
                             + "; ".join(said[:5]), hint=hint)
        raise EngineError(
            f"bootstrapping debian {base.suite} failed: {cmd.describe_failure(result)}",
            hint=hint)
    container = engine.from_scratch(container_name)
    try:
        engine.add_archive(container, tarball, "/")
        engine.configure(container, ImageConfig(env=(("PATH", STANDARD_PATH),),
                                                cmd=("/bin/bash",)))
        # A standard root's label is as it always was, so its image ID is too.
        what = f"debian/{base.suite}" + ("/slim" if base.variant == "slim" else "")
        image = engine.commit(container, CommitOptions(
            timestamp=timestamp, labels={BOOTSTRAP_LABEL: what}))
    finally:
        engine.rm(container)
    engine.tag(image, ref)
    return image
