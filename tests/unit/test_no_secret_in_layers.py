"""A layer that would ship a secret's value is refused (layer_steps.no_secret_in)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from uvbuild import redact
from uvbuild.build.layer_steps import no_secret_in
from uvbuild.errors import StepFailed
from uvbuild.output.oci import Layer

TOKEN = "tok-3f9a0c1e77b2"


def layer_of(tmp_path: Path, files: dict[str, bytes]) -> Layer:
    path = tmp_path / "layer.tar"
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return Layer(path=path, digest="sha256:" + "0" * 64, size=path.stat().st_size,
                 created_by="test")


def build_with(secrets: dict[str, str]) -> Any:
    return cast(Any, SimpleNamespace(settings=SimpleNamespace(secrets=secrets)))


@pytest.fixture(autouse=True)
def clean_redact() -> None:
    redact.reset()


def test_a_secret_written_into_app_is_refused_naming_file_and_variable(tmp_path: Path) -> None:
    layer = layer_of(tmp_path, {"app/ok.txt": b"nothing here\n",
                                "app/token.txt": b"token=" + TOKEN.encode() + b"\n"})
    with pytest.raises(StepFailed) as raised:
        no_secret_in(build_with({"API_TOKEN": TOKEN}), layer, "the project layer")
    message = str(raised.value)
    assert "/app/token.txt" in message and "API_TOKEN" in message
    assert TOKEN not in message + raised.value.hint


def test_a_credential_uvbuild_masks_is_looked_for_too(tmp_path: Path) -> None:
    redact.add_url("https://ci:s3cr3t-password@index.example/simple")
    layer = layer_of(tmp_path, {"app/.netrc": b"password s3cr3t-password\n"})
    with pytest.raises(StepFailed) as raised:
        no_secret_in(build_with({}), layer, "the project layer")
    assert "/app/.netrc" in str(raised.value)


def test_a_secret_in_a_file_name_is_found(tmp_path: Path) -> None:
    layer = layer_of(tmp_path, {f"app/{TOKEN}.cache": b""})
    with pytest.raises(StepFailed):
        no_secret_in(build_with({"API_TOKEN": TOKEN}), layer, "the project layer")


def test_a_clean_layer_and_short_values_pass(tmp_path: Path) -> None:
    layer = layer_of(tmp_path, {"app/x.py": b"x = 'abc1234'\n"})
    no_secret_in(build_with({"API_TOKEN": TOKEN, "PIN": "abc1234"}), layer, "the layer")
    no_secret_in(build_with({}), layer_of(tmp_path, {}), "an empty layer")


CERT = ("-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ0xFQVJMWU5PVEFSRUFM\n"
        "-----END CERTIFICATE-----\n")


def test_a_multi_line_secret_is_looked_for_whole(tmp_path: Path) -> None:
    """Its lines are masked in output one by one, but a CA bundle in the venv holds
    `-----BEGIN CERTIFICATE-----` a hundred times: only the whole value is a leak."""
    redact.add(CERT)
    bundle = layer_of(tmp_path, {"app/.venv/certifi/cacert.pem":
                                 b"-----BEGIN CERTIFICATE-----\nMIIother\n"
                                 b"-----END CERTIFICATE-----\n" * 3})
    no_secret_in(build_with({"CLIENT_CERT": CERT}), bundle, "the dependencies layer")
    leaked = layer_of(tmp_path, {"app/client.pem": CERT.encode()})
    with pytest.raises(StepFailed, match="CLIENT_CERT"):
        no_secret_in(build_with({"CLIENT_CERT": CERT}), leaked, "the project layer")


def test_a_value_across_a_chunk_boundary_is_found(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from uvbuild.build import layer_steps

    monkeypatch.setattr(layer_steps, "_SCAN_CHUNK", 4096)
    padding = b"x" * (4096 * 3 - 520)  # the value straddles the third chunk's end
    layer = layer_of(tmp_path, {"app/big.bin": padding + TOKEN.encode() + b"y" * 9000})
    with pytest.raises(StepFailed, match="/app/big.bin"):
        no_secret_in(build_with({"API_TOKEN": TOKEN}), layer, "the project layer")
