"""greetlib: the workspace member that makes greetings for the `greet` app."""

import humanize


def greeting(names: list[str]) -> str:
    """Greet everyone in one sentence: ["Alice", "Bob"] -> "Hello, Alice and Bob!"."""
    return f"Hello, {humanize.natural_list(names or ['World'])}!"
