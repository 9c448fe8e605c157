"""The host's trust and proxy settings, handed to builder commands at build time only.

Corporate networks and TLS-inspecting proxies need the host's CA bundle and proxy
variables inside the builder for uv (and apt) to reach their indexes. They are
passed for each command only (the CA bundle as a mount, the variables in the private
environment file of batch.py, never on a command line), so no layer, config or
history ever holds them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from uvbuild import redact
from uvbuild.engine.buildah import Mount

CA_TARGET = "/run/uvbuild/ca-certificates.crt"
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY")


def network_settings(environ: Mapping[str, str]) -> tuple[dict[str, str], tuple[Mount, ...]]:
    """(environment, mounts) that carry the host's CA bundle and proxies into a builder."""
    env: dict[str, str] = {}
    mounts: list[Mount] = []
    bundle = environ.get("SSL_CERT_FILE")
    if bundle and Path(bundle).is_file():
        mounts.append(Mount(str(Path(bundle).resolve()), CA_TARGET, read_only=True))
        env["SSL_CERT_FILE"] = CA_TARGET
    for name in PROXY_VARIABLES:
        for variant in (name, name.lower()):
            if environ.get(variant):
                env[variant] = environ[variant]
                redact.add_url(environ[variant])  # user:pass@ is printed nowhere
    return env, tuple(mounts)


def host_environ() -> Mapping[str, str]:
    """The process environment (a seam for tests)."""
    return os.environ
