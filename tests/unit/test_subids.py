"""subids: the one reading of /etc/subuid and /etc/subgid (the build's check and doctor's)."""

from __future__ import annotations

from uvbuild.engine import subids

TEXT = "alice:100000:65536\n1001:300000:1000\nbob:165536:65536\nbroken:x:1\nhalf:5\n"


def test_a_user_s_ranges_are_found_by_name_or_by_uid() -> None:
    assert subids.ranges(TEXT, user="alice", uid=1001) == [(100000, 65536), (300000, 1000)]
    assert subids.ranges(TEXT, user="carol", uid=2000) == []
    assert subids.ranges(None, user="alice", uid=1001) == []


def test_a_malformed_line_gives_no_range() -> None:
    assert subids.ranges(TEXT, user="broken", uid=0) == []
    assert subids.ranges(TEXT, user="half", uid=0) == []


def test_a_free_range_overlaps_no_line_of_either_file() -> None:
    assert subids.free_range([None]) == (100000, 165535)
    assert subids.free_range([TEXT, "dave:231072:10\n"]) == (362144, 427679)
