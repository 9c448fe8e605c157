"""greeter-app: the workspace root; `greet NAME...` prints greetlib's greeting."""

import sys

from greetlib import greeting


def main() -> None:
    print(greeting(sys.argv[1:]))
