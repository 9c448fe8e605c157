"""Container image references, checked the way registries and `buildah tag` check them.

An output name is `[host[:port]/]component[/component...][:tag]`: lower-case path
components, a tag of at most 128 word characters, dots and dashes. uvbuild checks it
before any work (the recipe's `image:` when the recipe is read, `-t` when the command
line is), so a bad name is refused at once instead of after a whole build, at tag time.
A digest (`@sha256:...`) names content, not a place to tag: a reference may carry
one, an output name may not.
"""

from __future__ import annotations

import re

# As in Docker and containers/image: a first component is a registry only with a dot or a
# port, or as localhost (or an IPv6 address in brackets).
_HOST = re.compile(
    r"(localhost|[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:]+\])(:[0-9]+)?")
_COMPONENT = re.compile(r"[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
_SHA256 = re.compile(r"sha256:[0-9a-f]{64}")
MAX_NAME = 255  # the repository name (host and path), as the distribution spec allows

EXAMPLE = ("write [registry[:port]/]name[:tag] (lower-case name; a tag of at most 128 "
           "letters, digits, '_', '.', '-'), e.g. localhost/myapp:1.0")


def _is_host(first: str) -> bool:
    return ("." in first or ":" in first or first == "localhost"
            or first.startswith("[")) and bool(_HOST.fullmatch(first))


def reference_problem(ref: str, *, output: bool = True) -> str | None:
    """What is wrong with image reference `ref`, or None; `output`: a name to tag
    (no digest allowed)."""
    if not ref:
        return "an image reference cannot be empty"
    if any(char.isspace() for char in ref):
        return "an image reference cannot contain spaces"
    if not ref.isprintable():
        return "an image reference cannot contain control characters"
    rest, at, digest = ref.partition("@")
    if at:
        if output:
            return "an output image cannot be named by digest"
        if not _DIGEST.fullmatch(digest) or (digest.startswith("sha256:")
                                             and not _SHA256.fullmatch(digest)):
            return f"invalid digest {digest!r} in image reference"
    first, slash, path = rest.partition("/")
    host = first if slash and ("." in first or ":" in first or first == "localhost"
                               or first.startswith("[")) else ""
    if host and not _is_host(host):
        return f"invalid registry host {host!r} in image reference"
    if host.startswith("["):
        # The grammar allows it, but buildah 1.28 (Debian 12) says "invalid reference
        # format" at tag time, after the whole build.
        return (f"buildah cannot use an IPv6 address ({host}) as a registry host; give the "
                "registry a host name (e.g. in /etc/hosts)")
    if not host:
        path = rest
    name, colon, tag = path.rpartition(":") if ":" in path else (path, "", "")
    if colon and len(tag) > 128:
        return f"the tag is {len(tag)} characters long; a tag has at most 128"
    if colon and not _TAG.fullmatch(tag):
        return f"invalid tag {tag!r} in image reference"
    for component in name.split("/"):
        if component != component.lower():
            return "uppercase letters are not allowed in image names"
        if not _COMPONENT.fullmatch(component):
            return f"invalid name component {component!r} in image reference"
    if len(f"{host}/{name}" if host else name) > MAX_NAME:
        return f"the image name is longer than {MAX_NAME} characters"
    return None


def tag_from_version(version: str) -> str:
    """A project version as an image tag: what a tag cannot hold ('+' of a local
    version, for one) becomes '_', and it is cut to 128 characters."""
    tag = re.sub(r"[^A-Za-z0-9_.-]", "_", version)[:128]
    return tag if _TAG.fullmatch(tag) else "latest"


# Transports a base may name besides a registry or local name (what `buildah from`
# takes): the rest is a path (an archive, a layout folder), or a reference.
PATH_TRANSPORTS = ("oci-archive:", "docker-archive:", "oci:", "dir:")
REFERENCE_TRANSPORTS = ("docker://", "containers-storage:")


def base_problem(ref: str) -> str | None:
    """What is wrong with a base's reference (`from:`), or None: checked when the
    recipe is read, so a typo is told with its line, not by a pull that retries."""
    for transport in PATH_TRANSPORTS:
        if ref.startswith(transport):
            return None if ref[len(transport):] else f"{transport} names no path"
    for transport in REFERENCE_TRANSPORTS:
        if ref.startswith(transport):
            ref = ref[len(transport):]
            break
    return reference_problem(ref, output=False)
