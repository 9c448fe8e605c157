"""A helper the hello member needs."""


def shout(text: str) -> str:
    return text.upper() + "!"
