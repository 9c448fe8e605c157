"""Subordinate id ranges (/etc/subuid, /etc/subgid): the ids a rootless build maps the
image's owners onto. Read here only, for the check a rootless build makes before it
starts (pipeline) and for `uvbuild doctor`'s.
"""

from __future__ import annotations

from collections.abc import Sequence

# Images routinely own files up to uid 65534 (nobody): a smaller range cannot unpack them.
COUNT = 65536
FIRST = 100000  # where useradd starts handing out ranges


def _entries(text: str | None) -> list[tuple[str, int, int]]:
    """(owner, first, count) of every well-formed line of /etc/subuid-style `text`."""
    entries = []
    for line in (text or "").splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            entries.append((parts[0], int(parts[1]), int(parts[2])))
    return entries


def ranges(text: str | None, *, user: str, uid: int) -> list[tuple[int, int]]:
    """(first, count) of every range in /etc/subuid-style `text` for this user (named by
    its name or its uid, as shadow-utils allows)."""
    return [(first, count) for owner, first, count in _entries(text)
            if owner in (user, str(uid))]


def free_range(texts: Sequence[str | None]) -> tuple[int, int]:
    """A block of COUNT ids from FIRST up that no line of `texts` overlaps (as useradd
    picks them), the same in each file so uids and gids line up: (first, last)."""
    taken = [(first, first + count) for text in texts for _, first, count in _entries(text)]
    first = FIRST
    while any(start < first + COUNT and first < end for start, end in taken):
        first += COUNT
    return first, first + COUNT - 1
