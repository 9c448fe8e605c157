"""redact: every registered secret value is masked in everything uvbuild prints."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from uvbuild import redact
from uvbuild.redact import RedactingWriter

SECRET = "S3NT1NEL-tok'en\"\\x"


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    redact.reset()
    yield
    redact.reset()


def test_a_registered_value_is_masked_in_any_spelling() -> None:
    redact.add(SECRET)
    assert redact.redact(f"token={SECRET}.") == "token=***."
    # As JSON and a Python repr would print it (--json, error messages).
    assert SECRET not in redact.redact(json.dumps({"v": SECRET}))
    assert redact.redact(json.dumps({"v": SECRET})) == '{"v": "***"}'
    assert redact.redact(repr(SECRET)) in ("'***'", '"***"')


def test_a_secret_that_holds_another_is_masked_whole() -> None:
    redact.add("abc")
    redact.add("xxabcxx")
    assert redact.redact("[xxabcxx] [abc]") == "[***] [***]"


def test_the_credentials_of_a_proxy_url_are_masked_and_the_host_is_kept() -> None:
    redact.add_url("http://user:p%40ss@proxy.example:3128")
    text = "HTTPS_PROXY=http://user:p%40ss@proxy.example:3128 password p@ss"
    assert redact.redact(text) == "HTTPS_PROXY=http://***@proxy.example:3128 password ***"
    redact.add_url("http://proxy.example:3128")  # no credentials: nothing to mask
    assert redact.redact("proxy.example") == "proxy.example"


def test_each_line_of_a_multi_line_secret_is_masked() -> None:
    redact.add("-----KEY-----\nAAAABBBB\n-----END-----")
    assert "AAAABBBB" not in redact.redact("line: AAAABBBB\n")


def test_the_writer_masks_values_split_across_writes() -> None:
    redact.add(SECRET)
    out = io.StringIO()
    writer = RedactingWriter(out)
    writer.write("a " + SECRET[:5])
    writer.flush()  # a partial line goes out, but not what may start a secret
    writer.write(SECRET[5:] + " b\nrest")
    writer.finish()
    assert out.getvalue() == "a *** b\nrest"


def test_the_writer_passes_whole_lines_at_once() -> None:
    out = io.StringIO()
    writer = RedactingWriter(out)
    writer.write("one\ntw")
    assert out.getvalue() == "one\n"
    writer.flush()
    assert out.getvalue() == "one\ntw"


def test_the_cli_masks_proxy_credentials_in_what_it_prints(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    from uvbuild.cli import main

    monkeypatch.setenv("HTTPS_PROXY", "http://itest:pr0xyPW@127.0.0.1:9")
    with pytest.raises(SystemExit) as raised:
        main(["build", f"{tmp_path}/missing-pr0xyPW.yaml"])  # the message names the path

    err = capsys.readouterr().err
    assert raised.value.code == 3
    assert "missing-***.yaml" in err and "pr0xyPW" not in err
    assert not isinstance(sys.stderr, RedactingWriter)  # put back after


def test_push_credentials_go_in_a_private_auth_file_on_top_of_the_users(tmp_path: Path) -> None:
    import base64

    from uvbuild.engine.buildah import registry_of, write_authfile

    assert registry_of("docker://localhost:5000/app:1") == "localhost:5000"
    assert registry_of("docker://ghcr.io/me/app:1") == "ghcr.io"
    assert registry_of("docker://me/app:1") == "docker.io"
    base = tmp_path / "mine.json"
    base.write_text(json.dumps({"auths": {"other.io": {"auth": "eA=="}}}))
    path = write_authfile(tmp_path / "auth.json", "ghcr.io", "me:S3NT1NEL", base=str(base))
    data = json.loads(Path(path).read_text())
    assert data["auths"]["other.io"] == {"auth": "eA=="}
    assert base64.b64decode(data["auths"]["ghcr.io"]["auth"]) == b"me:S3NT1NEL"
    assert Path(path).stat().st_mode & 0o777 == 0o600


def test_a_very_short_secret_is_masked_where_it_stands_alone_and_output_stays_readable() -> None:
    redact.add("ab")  # a proxy password of two letters
    assert redact.redact("about tab: ab, cab http://u:ab@proxy") == \
        "about tab: ***, cab http://u:***@proxy"


def test_overlapping_secrets_leave_no_part_of_either() -> None:
    redact.add("abcdef")
    redact.add("defghi")
    assert redact.redact("x abcdefghi y") == "x *** y"
    assert redact.redact("aaaaaa") == "aaaaaa"
    redact.add("aaaa")
    assert redact.redact("<aaaaaa>") == "<***>"


def test_a_secret_with_regex_and_shell_characters_is_masked_literally() -> None:
    redact.add("a.b*c$(x)[")
    assert redact.redact("echo a.b*c$(x)[ axbxc$(x)[") == "echo *** axbxc$(x)["


def test_a_non_utf8_secret_is_masked_as_captured_and_as_streamed() -> None:
    value = b"tok\xff3n-value".decode("utf-8", "surrogateescape")  # as os.environ has it
    redact.add(value)
    captured = b"T=tok\xff3n-value\n".decode("utf-8", "surrogateescape")
    streamed = b"T=tok\xff3n-value\n".decode("utf-8", "replace")
    assert redact.redact(captured) == redact.redact(streamed) == "T=***\n"


def test_short_lines_of_a_multi_line_secret_do_not_break_json_output() -> None:
    key = '{\n  "private_key": "MIIEvQIBADANBgkqhkiG9w0B"\n}'
    redact.add(key)
    document = json.dumps({"ok": False, "error": "x"})
    assert redact.redact(document) == document
    assert redact.redact('  "private_key": "MIIEvQIBADANBgkqhkiG9w0B",\n') == "  ***,\n"


def test_a_blank_secret_masks_nothing() -> None:
    redact.add(" ")
    redact.add("\n")
    assert redact.redact("a b\nc : d\n") == "a b\nc : d\n"
