"""`uvbuild RECIPE` is `uvbuild build RECIPE`, whatever order the options come in."""

from __future__ import annotations

import click
import pytest

from uvbuild import cli as cli_module


def routed(args: list[str], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The arguments the group goes on to parse, once DefaultBuild has seen them."""
    seen: list[str] = []

    def record(self: click.Group, ctx: click.Context, given: list[str]) -> list[str]:
        seen.extend(given)
        return []

    monkeypatch.setattr(click.Group, "parse_args", record)
    cli_module.cli.parse_args(click.Context(cli_module.cli), list(args))
    return seen


@pytest.mark.parametrize("args, expected", [
    (["r.yaml"], ["build", "r.yaml"]),
    (["-q", "r.yaml"], ["build", "-q", "r.yaml"]),
    (["--no-cache", "--json", "r.yaml"], ["build", "--no-cache", "--json", "r.yaml"]),
    (["--debug", "-t", "x:1", "r.yaml"], ["--debug", "build", "-t", "x:1", "r.yaml"]),
    (["r.yaml", "-q"], ["build", "r.yaml", "-q"]),
    (["--debug", "r.yaml"], ["--debug", "build", "r.yaml"]),
])
def test_a_recipe_without_a_command_is_built(args: list[str], expected: list[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    assert routed(args, monkeypatch) == expected


@pytest.mark.parametrize("args", [
    ["build", "r.yaml"], ["plan", "r.yaml"], ["cache", "ls"], ["--debug", "doctor"],
    ["--help"], ["--version"], ["-h"],
])
def test_commands_and_the_groups_own_questions_are_left_alone(
        args: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert routed(args, monkeypatch) == args


@pytest.mark.parametrize("args, expected", [
    ([], ["build"]), (["-q"], ["build", "-q"]), (["--debug"], ["--debug", "build"]),
])
def test_no_recipe_builds_uvbuild_yaml(args: list[str], expected: list[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    assert routed(args, monkeypatch) == expected
    assert cli_module.build.params[0].default == cli_module.DEFAULT_RECIPE == \
        cli_module.Path("uvbuild.yaml")
