"""Image references are checked before any work, with the rules registries apply."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from uvbuild import cli as cli_module
from uvbuild.recipe.imageref import reference_problem, tag_from_version

GOOD = [
    "myapp", "myapp:1.0", "localhost/myapp:1.0", "localhost:5000/team/my_app-x:1.0-rc.1",
    "registry.example.com/a/b/c:latest", "127.0.0.1:5000/x",
    "REGISTRY.Example.COM:5000/a/b:c",  # buildah takes an upper-case host
    "docker.io/library/python:3.13-slim", "a__b/c.d:" + "t" * 128,
]
BAD = {
    "localhost/Bad Name:1": "spaces",
    "localhost/BadName:1": "uppercase",
    "x:-dev": "invalid tag '-dev'",
    "x:" + "t" * 129: "the tag is 129 characters long; a tag has at most 128",
    "x:" + "t" * 200: "the tag is 200 characters long",
    "x:a+b": "invalid tag 'a+b'",
    "x@sha256:" + "0" * 64: "by digest",
    "-x": "invalid name component '-x'",
    "a//b": "invalid name component ''",
    "x/": "invalid name component ''",
    "bad_host.example.com/x": "invalid registry host",
    "localhost:port/x": "invalid",
    "x" * 256: "longer than 255",
    "a\x00b": "control characters",
    "": "empty",
    "[::1]:5000/x:y": "IPv6 address ([::1]:5000)",  # buildah 1.28 fails at tag time
}


@pytest.mark.parametrize("ref", GOOD)
def test_good_references(ref: str) -> None:
    assert reference_problem(ref) is None


@pytest.mark.parametrize("ref, problem", BAD.items(), ids=[repr(r)[:30] for r in BAD])
def test_bad_references(ref: str, problem: str) -> None:
    found = reference_problem(ref)
    assert found is not None and problem in found


def test_a_digest_is_fine_where_it_only_names_content() -> None:
    assert reference_problem("x@sha256:" + "0" * 64, output=False) is None
    assert "invalid digest" in str(reference_problem("x@sha256:00", output=False))


@pytest.mark.parametrize("version, tag", [
    ("1.0", "1.0"), ("1.0+local.2", "1.0_local.2"), ("2!1.0", "2_1.0"), ("v" * 200, "v" * 128),
])
def test_a_version_becomes_a_tag(version: str, tag: str) -> None:
    assert tag_from_version(version) == tag
    assert reference_problem(f"localhost/x:{tag}") is None


@pytest.mark.parametrize("command", [["build"], ["plan", "--no-engine"]])
def test_a_bad_tag_is_a_usage_error_before_any_work(command: list[str]) -> None:
    # The recipe does not exist: the tag is refused before anything reads it.
    result = CliRunner().invoke(cli_module.cli, [*command, "no-such-recipe.yaml",
                                                 "-t", "localhost/Bad Name:1"])
    assert result.exit_code == 2
    assert "cannot contain spaces" in result.output
