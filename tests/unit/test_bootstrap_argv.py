"""mmdebstrap's command line for a bootstrapped base: standard as it always was, slim
with the Essential set, dpkg path filters and the purge hook (uvbuild.slimroot)."""

from __future__ import annotations

from uvbuild.build.bootstrap import mmdebstrap_argv
from uvbuild.plan import slimroot
from uvbuild.recipe.model import BootstrapBase


def hooks(argv: list[str]) -> list[str]:
    return [a.removeprefix("--customize-hook=") for a in argv
            if a.startswith("--customize-hook=")]


def test_standard_argv_is_unchanged() -> None:
    argv = mmdebstrap_argv(BootstrapBase(packages=("python3",)), "/t/root.tar", rootful=True)

    assert argv[:6] == ["mmdebstrap", "--variant=apt", "--format=tar", "--quiet", "--mode=root",
                        "--include=python3"]
    assert not [a for a in argv if a.startswith("--dpkgopt")]
    assert argv[-3:] == ["bookworm", "/t/root.tar", "http://deb.debian.org/debian"]
    assert not any("dpkg --purge" in h for h in hooks(argv))


def test_slim_argv() -> None:
    base = BootstrapBase(packages=("python3", "libpq5"), variant="slim")
    argv = mmdebstrap_argv(base, "/t/root.tar", rootful=False)

    assert argv[:5] == ["mmdebstrap", "--variant=essential", "--format=tar", "--quiet",
                        "--mode=unshare"]
    assert "--include=ca-certificates,libpq5,python3,tzdata,usr-is-merged" in argv
    filters = [a.removeprefix("--dpkgopt=") for a in argv if a.startswith("--dpkgopt=")]
    assert filters == list(slimroot.PATH_FILTERS)
    # The copyright files come back after the docs are excluded (the last match wins).
    assert filters.index("path-include=/usr/share/doc/*/copyright") > filters.index(
        "path-exclude=/usr/share/doc/*")
    # The purge runs first: the hooks after it remove the dpkg log it writes.
    assert hooks(argv)[0] == slimroot.purge_hook()
    assert argv[-3:] == ["bookworm", "/t/root.tar", "http://deb.debian.org/debian"]


def test_the_purge_hook_purges_through_dpkg_in_rounds() -> None:
    hook = slimroot.purge_hook()
    purges = [line for line in hook.splitlines() if "dpkg --purge" in line]

    assert len(purges) == len(slimroot.PURGE_ROUNDS) == 3
    assert all("--force-remove-essential --force-depends" in line for line in purges)
    assert "installed debconf" in hook
    assert "'perl-modules-*'" in hook and "perl-base" in hook
    # perl goes last: debconf's removal scripts are perl.
    assert hook.index("installed debconf") < hook.index("perl-base")
    assert hook.splitlines()[-1] == ('rm -rf "$root/var/cache/debconf" '
                                     '"$root/etc/apt/apt.conf.d/70debconf" '
                                     '"$root/usr/share/info/dir"')
