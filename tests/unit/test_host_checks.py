"""What a build writes on the host is checked before any work: archive and SBOM paths
(usage errors, exit 2), uvbuild's cache folder and TMPDIR (one message, exit 5)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from uvbuild import cli as cli_module
from uvbuild import pipeline
from uvbuild.errors import EngineError


@pytest.mark.parametrize("option, value, said", [
    ("--output", "tar:{tmp}/x.tar", "expected oci-archive:PATH or docker-archive:PATH"),
    ("--output", "oci-archive:", "no path"),
    ("--output", "oci-archive:{tmp}/missing/x.tar", "does not exist"),
    ("--output", "docker-archive:{tmp}", "is a folder"),
    ("--output", "docker-archive:{tmp}/file/x.tar", "does not exist"),
    ("--sbom", "{tmp}/missing/sbom.json", "does not exist"),
    ("--sbom", "{tmp}", "is a folder"),
])
def test_an_unwritable_output_is_a_usage_error_before_any_work(
        tmp_path: Path, option: str, value: str, said: str) -> None:
    (tmp_path / "file").write_text("")
    # The recipe does not exist: the option is refused before anything reads it.
    result = CliRunner().invoke(cli_module.cli, [
        "build", "no-such-recipe.yaml", option, value.format(tmp=tmp_path)])
    assert result.exit_code == 2, result.output
    assert said in result.output and option in result.output


def test_a_writable_output_path_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, object] = {}

    def fake_build(path: Path, **kwargs: object) -> object:
        seen.update(kwargs)
        raise EngineError("stop here")

    monkeypatch.setattr(pipeline, "build", fake_build)
    result = CliRunner().invoke(cli_module.cli, [
        "build", "r.yaml", "--output", f"oci-archive:{tmp_path}/x.tar:localhost/x:1",
        "--sbom", str(tmp_path / "sbom.json")])
    assert isinstance(result.exception, EngineError)  # (the build was reached)
    assert seen["outputs"].archives == (f"oci-archive:{tmp_path}/x.tar:localhost/x:1",)  # type: ignore[attr-defined]


def test_an_unusable_cache_folder_is_one_message(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a-file"))
    with pytest.raises(EngineError) as raised:
        pipeline.check_host_folders()
    assert "cannot be used" in str(raised.value) and "XDG_CACHE_HOME" in raised.value.hint

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    pipeline.check_host_folders()  # made if missing
    assert (tmp_path / "cache" / "uvbuild").is_dir()


def test_a_tmpdir_that_is_no_folder_is_one_message(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("TMPDIR", str(tmp_path / "a-file"))
    with pytest.raises(EngineError) as raised:
        pipeline.check_host_folders()
    assert "TMPDIR" in str(raised.value)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    pipeline.check_host_folders()


def test_a_failed_build_with_json_prints_one_json_document(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    with pytest.raises(SystemExit) as raised:
        cli_module.main(["build", "--json", str(tmp_path / "missing.yaml")])
    out, err = capsys.readouterr()
    document = json.loads(out)
    assert document["error"]["exit_code"] == raised.value.code != 0
    assert "missing.yaml" in document["error"]["message"]
    assert "missing.yaml" in err  # (the human line too, on stderr)
