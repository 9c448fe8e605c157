"""The service: prints a greeting made by the shared library."""

import sys

from common import greeting


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "World"
    print(greeting(name))
