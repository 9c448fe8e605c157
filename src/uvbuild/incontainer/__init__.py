"""Scripts that run inside build containers, shipped as package data.

They are handed to containers as command arguments (never copied into a layer),
and must run on any Python 3.8+ or POSIX sh the base image has.
"""

from __future__ import annotations

from pathlib import Path


def script(name: str) -> str:
    """The text of one of the scripts beside this module (installed as files: a wheel
    of uvbuild is never imported from a zip, so no importlib.resources, whose import
    is a hundredth of an unchanged rebuild)."""
    return Path(__file__).with_name(name).read_text(encoding="utf-8")
