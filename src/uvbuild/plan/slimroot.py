"""What a slim bootstrapped root is (`variant: slim`): pure data, read by the planner
(for the base's cache key) and by `uvbuild.build.bootstrap` (for mmdebstrap's command line).

A slim root is Debian's Essential set plus the definition's packages, installed by
mmdebstrap with dpkg path excludes (no man pages, docs but copyright files, locales,
info, glibc gconv modules), then with apt's and perl's world purged through dpkg, so
/var/lib/dpkg/status still lists exactly the packages whose files are there (scanners
read it). No package manager front end is left in the image: packages are chosen
when the root is made. Everything here is part of the base's definition: change it
and every slim base is rebuilt (the key covers `definition()`).
"""

from __future__ import annotations

import shlex
from typing import Any

# Added to every slim root. usr-is-merged: init-system-helpers needs `usrmerge |
# usr-is-merged`, and without it apt picks usrmerge, which pulls in all of perl.
PACKAGES = ("ca-certificates", "tzdata", "usr-is-merged")

# dpkg path filters, in order (a later include wins over an earlier exclude), as Debian's
# own minimal images use them. Python's codecs are its own: glibc's gconv modules (8 MB)
# serve only iconv(3) for charsets beyond UTF-8/ASCII/Latin-1, which Python never calls.
# /usr/lib/locale (C.UTF-8, which Python's locale coercion uses) is kept.
PATH_FILTERS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/lintian/*",
    "path-exclude=/usr/share/linda/*",
    "path-exclude=/usr/lib/*/gconv/*",
)

# Packages purged after the install, as dpkg-query patterns, in rounds: a package's
# removal scripts may need what a later round removes (util-linux-extra's postrm calls
# update-rc.d, debconf's are perl). Only installed matches are purged, so a suite that
# lacks one (perl-modules-5.40 on trixie) is fine. `--force-remove-essential` and
# `--force-depends`: these are Essential (or needed by tzdata and ca-certificates only
# for their install-time questions), and nothing run in the image needs them.
PURGE_ROUNDS = (
    ("util-linux-extra", "util-linux", "login", "libpam*", "usrmerge", "*-perl"),
    ("debconf",),
    ("init-system-helpers", "perl", "perl-modules-*", "libperl*", "libgdbm-compat4",
     "perl-base"),
)

# Owned by no package: debconf's answers (left by its purge) and the info index
# (install-info's, made while info files were filtered out).
LEFTOVERS = ("/var/cache/debconf", "/etc/apt/apt.conf.d/70debconf", "/usr/share/info/dir")

# mmdebstrap's variant: Essential packages only (no apt), the definition's on top.
MMDEBSTRAP_VARIANT = "essential"


def definition() -> dict[str, Any]:
    """Everything that makes a slim root what it is, for the base's cache key."""
    return {"variant": MMDEBSTRAP_VARIANT, "packages": list(PACKAGES),
            "path_filters": list(PATH_FILTERS), "purge": [list(r) for r in PURGE_ROUNDS],
            "leftovers": list(LEFTOVERS)}


def purge_hook() -> str:
    """A customize hook (sh, root folder in "$1") that purges PURGE_ROUNDS through the
    root's own dpkg, so its status database matches the files that are left."""
    lines = [
        'set -e; root="$1"',
        # The installed packages among the patterns (dpkg-query also lists known but
        # removed ones, and fails when a pattern matches nothing).
        'installed() { chroot "$root" dpkg-query -W -f \'${db:Status-Abbrev} ${Package}\\n\''
        ' "$@" 2>/dev/null | awk \'$1 == "ii" {print $2}\'; }',
    ]
    for patterns in PURGE_ROUNDS:
        quoted = " ".join(shlex.quote(p) for p in patterns)
        lines.append(f"names=$(installed {quoted})")
        lines.append('[ -z "$names" ] || chroot "$root" dpkg --purge --force-remove-essential '
                     '--force-depends $names')
    lines.append("rm -rf " + " ".join(f'"$root{path}"' for path in LEFTOVERS))
    return "\n".join(lines)
