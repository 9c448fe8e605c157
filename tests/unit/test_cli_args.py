"""`uvbuild RECIPE` is `uvbuild build RECIPE`, whatever order the options come in."""

from __future__ import annotations

from pathlib import Path

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


def test_registry_access_reaches_buildah_as_flags_with_the_password_in_a_file(
        tmp_path: Path) -> None:
    import base64
    import json
    import stat

    from uvbuild.engine.buildah import RegistryAccess

    with RegistryAccess().args("docker.io") as args:
        assert args == []
    access = RegistryAccess(tls_verify=False, creds="u:p4ss", authfile=None)
    with access.args("127.0.0.1:5000", tmp_path) as args:
        assert args == ["--tls-verify=false", "--authfile", str(tmp_path / "auth.json")]
        assert "p4ss" not in " ".join(args)
        auth = json.loads((tmp_path / "auth.json").read_text())
        assert base64.b64decode(auth["auths"]["127.0.0.1:5000"]["auth"]) == b"u:p4ss"
        assert stat.S_IMODE((tmp_path / "auth.json").stat().st_mode) == 0o600
    with RegistryAccess(creds="user").args("docker.io") as args:
        assert args == ["--creds", "user"]  # no password: buildah asks for it


@pytest.mark.parametrize("said, expected", [
    ("http: server gave HTTP response to HTTPS client", "--no-tls-verify"),
    ("reading manifest: unauthorized: authentication required", "--creds"),
    ("x509: certificate signed by unknown authority", "trust store"),
    ("manifest unknown", None),
])
def test_registry_refusals_get_hints(said: str, expected: str | None) -> None:
    from uvbuild.engine.buildah import registry_hint

    hint = registry_hint(said)
    assert (hint is None) if expected is None else (expected in str(hint))


def test_push_result_in_json_and_human_output() -> None:
    import io
    import json

    from uvbuild.output.progress import Reporter

    pushed = {"reference": "reg:5000/a:1", "digest": "sha256:abc"}
    out = io.StringIO()
    Reporter("json").done(image="reg:5000/a:1", image_id="f" * 64, size=1, seconds=1.0,
                          out=out, pushed=pushed)
    assert json.loads(out.getvalue())["pushed"] == pushed
    err, out = io.StringIO(), io.StringIO()
    Reporter("human", stream=err).done(image="reg:5000/a:1", image_id="f" * 64, size=1,
                                       seconds=1.0, out=out, pushed=pushed)
    assert "pushed reg:5000/a:1@sha256:abc" in err.getvalue()
