"""Shared code: the greeting every service uses."""

import six

GREETING = "Hello"


def greeting(name: str) -> str:
    return six.ensure_str(f"{GREETING}, {name}! (from common)")
