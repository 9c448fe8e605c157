"""What of a git remote may become the image's org.opencontainers.image.source label."""

from __future__ import annotations

import pytest

from uvbuild.inputs import shareable_source


@pytest.mark.parametrize("url", [
    "https://github.com/example/app.git", "ssh://git.example.com/app.git",
    "http://git.corp.example:8080/team/app",
])
def test_a_url_others_can_reach_is_kept(url: str) -> None:
    assert shareable_source(url)


@pytest.mark.parametrize("url", [
    "https://user:token@github.com/example/app.git",  # credentials
    "https://token@github.com/example/app.git",
    "/work/main", "../app", "file:///srv/git/app.git",  # paths of the building machine
])
def test_credentials_and_local_paths_are_left_out(url: str) -> None:
    assert not shareable_source(url)
