"""Scripts that run inside build containers, shipped as package data.

They are handed to containers as command arguments (never copied into a layer),
and must run on any Python 3.8+ or POSIX sh the base image has.
"""

from __future__ import annotations

from importlib import resources


def script(name: str) -> str:
    """The text of one of the scripts beside this module."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
