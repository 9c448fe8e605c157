"""Prints a greeting with the util member's help."""

import sys

from util import shout


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "world"
    print(shout(f"hello, {name}"))
