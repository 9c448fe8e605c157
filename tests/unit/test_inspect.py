"""`uvbuild inspect`: facts read back from an image, rendered as text or JSON, with no buildah."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from uvbuild import cli as cli_module
from uvbuild.commands.inspect import ImageSource, image_facts, masked_env, render
from uvbuild.engine import buildah as engine
from uvbuild.engine import cmd
from uvbuild.engine.buildah import Buildah, ImageInfo
from uvbuild.errors import EngineError
from uvbuild.output.sbom import SBOM_PATH, make_sbom
from uvbuild.project.model import LockedPackage, Project

IMAGE_ID = "4f3c2b1a" * 8


def describe_image(engine: ImageSource, ref: str) -> str:
    """What `uvbuild inspect REF` prints: the text form of the image's facts."""
    return render(image_facts(engine, ref))


BASE_LAYER = "sha256:" + "a" * 64
APP_LAYER = "sha256:" + "b" * 64


def sbom_bytes() -> bytes:
    project = Project(root=Path("/nonexistent"), name="my-app", normalized_name="my-app",
                      version="0.2.0", is_package=True, scripts=(), requires_python=None,
                      workspace_members=(), manifest_files=())
    packages = (
        LockedPackage(name="anyio", version="4.4.0", source="registry+https://pypi.org/simple",
                      hashes=("sha256:" + "1" * 64,)),
        LockedPackage(name="idna", version="3.7", source="registry+https://pypi.org/simple",
                      hashes=("sha256:" + "2" * 64,)),
    )
    return make_sbom(project, packages, {"anyio": "4.4.0", "idna": "3.7"}, timestamp=0)


INFO = ImageInfo(
    id=IMAGE_ID,
    names=("localhost/my-app:latest",),
    labels={"org.opencontainers.image.version": "0.2.0", "org.opencontainers.image.title": "app"},
    env=("PATH=/app/.venv/bin:/usr/bin", "API_TOKEN=abc123", "db_password=hunter2",
         "AWS_SECRET_ACCESS_KEY=xyz", "LANG=C.UTF-8"),
    user="app",
    layers=((BASE_LAYER, 78_200_000), (APP_LAYER, 1_234_567)),
    entrypoint=("/app/.venv/bin/my-app",),
    cmd=("serve", "--port", "8000"),
    workdir="/app",
    ports=("8000/tcp",),
    created="2023-11-14T22:13:20Z",
)


class FakeEngine:
    """The two methods inspecting uses; records what was read."""

    def __init__(self, images: dict[str, ImageInfo], files: dict[tuple[str, str], bytes]):
        self.images = images
        self.files = files
        self.reads: list[tuple[str, str, str]] = []
        self.root = Path("/nonexistent")

    def image(self, ref: str) -> ImageInfo | None:
        return self.images.get(ref)

    def read_file(self, image: str, path: str, *, name: str) -> bytes | None:
        self.reads.append((image, path, name))
        return self.files.get((image, path))

    def run_root(self) -> Path:  # where `uvbuild inspect` keeps its run lock
        return self.root


@pytest.fixture
def fake(tmp_path: Path) -> FakeEngine:
    engine = FakeEngine({"my-app": INFO, IMAGE_ID: INFO}, {(IMAGE_ID, SBOM_PATH): sbom_bytes()})
    engine.root = tmp_path / "runroot"
    return engine


def test_describe_image(fake: FakeEngine) -> None:
    assert describe_image(fake, "my-app") == f"""\
Image       my-app
ID          {IMAGE_ID}
Names       localhost/my-app:latest
Created     2023-11-14T22:13:20Z
User        app
Entrypoint  ["/app/.venv/bin/my-app"]
Cmd         ["serve", "--port", "8000"]
Workdir     /app
Env         PATH=/app/.venv/bin:/usr/bin
            API_TOKEN=****
            db_password=****
            AWS_SECRET_ACCESS_KEY=****
            LANG=C.UTF-8
Ports       8000/tcp
Labels      org.opencontainers.image.title=app
            org.opencontainers.image.version=0.2.0
Layers       1  sha256:aaaaaaaaaaaa    78.2 MB
             2  sha256:bbbbbbbbbbbb     1.2 MB
            total                      79.4 MB
SBOM        /app/sbom.cdx.json
            CycloneDX 1.5, 2 Python packages for my-app 0.2.0: anyio 4.4.0, idna 3.7"""


def test_the_sbom_is_read_from_the_image_by_id_in_a_named_container(fake: FakeEngine) -> None:
    describe_image(fake, "my-app")
    [(image, path, name)] = fake.reads
    assert (image, path) == (IMAGE_ID, "/app/sbom.cdx.json")
    assert name.startswith("uvbuild-") and name.endswith("-inspect")


def test_an_image_without_sbom_or_config(fake: FakeEngine) -> None:
    bare = ImageInfo(id="c0ffee" * 10 + "abcd", names=(), labels={}, env=(), user="")
    fake.images["bare"] = bare
    text = describe_image(fake, "bare")
    assert text.splitlines()[0] == "Image       bare"
    assert text.splitlines()[2:] == [
        "Names       (none)",
        "Created     (unknown)",
        "User        (none: root)",
        "Entrypoint  (none)",
        "Cmd         (none)",
        "Workdir     (none)",
        "Env         (none)",
        "Ports       (none)",
        "Labels      (none)",
        "Layers      total                          0 B",
        "SBOM        no SBOM at /app/sbom.cdx.json",
    ]
    assert image_facts(fake, "bare")["sbom"] is None


def test_a_file_at_the_sbom_path_that_is_not_cyclonedx(fake: FakeEngine) -> None:
    fake.files[(IMAGE_ID, SBOM_PATH)] = b"garbage"
    assert describe_image(fake, "my-app").endswith(
        "SBOM        /app/sbom.cdx.json\n            not a CycloneDX JSON document")
    assert image_facts(fake, "my-app")["sbom"] == {
        "path": SBOM_PATH, "spec_version": None, "packages": [],
        "summary": "not a CycloneDX JSON document"}


def test_a_missing_image_is_an_engine_error(fake: FakeEngine) -> None:
    with pytest.raises(EngineError) as caught:
        describe_image(fake, "nope:1")
    assert str(caught.value) == (
        "no image 'nope:1' in local storage\n  hint: build it first or check `buildah images`")
    assert fake.reads == []


@pytest.mark.parametrize(("entry", "shown"), [
    ("GITHUB_TOKEN=ghp_x", "GITHUB_TOKEN=****"),
    ("api_key=1", "api_key=****"),
    ("MY_SECRET=", "MY_SECRET=****"),
    ("PGPASSWORD=pw", "PGPASSWORD=****"),
    ("HOME=/app", "HOME=/app"),
    ("NOVALUE", "NOVALUE"),
])
def test_secret_looking_env_values_are_masked(entry: str, shown: str) -> None:
    assert masked_env(entry) == shown


def test_facts_as_json(fake: FakeEngine) -> None:
    facts = image_facts(fake, "my-app")
    assert json.loads(json.dumps(facts)) == facts
    assert facts["layers"] == [{"digest": BASE_LAYER, "size": 78_200_000},
                               {"digest": APP_LAYER, "size": 1_234_567}]
    assert facts["size"] == 79_434_567
    assert "API_TOKEN=****" in facts["env"] and "abc123" not in json.dumps(facts)
    assert facts["entrypoint"] == ["/app/.venv/bin/my-app"]
    assert facts["ports"] == ["8000/tcp"]
    assert facts["sbom"]["packages"] == [{"name": "anyio", "version": "4.4.0"},
                                         {"name": "idna", "version": "3.7"}]
    assert facts["sbom"]["spec_version"] == "1.5"


def test_the_inspect_command(fake: FakeEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "Buildah", lambda: fake)
    runner = CliRunner()
    text = runner.invoke(cli_module.cli, ["inspect", "my-app"])
    assert text.exit_code == 0, text.output
    assert text.output == describe_image(fake, "my-app") + "\n"
    as_json = runner.invoke(cli_module.cli, ["inspect", "--json", "my-app"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output) == image_facts(fake, "my-app")


def test_the_inspect_command_on_a_missing_image(
        fake: FakeEngine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(engine, "Buildah", lambda: fake)
    monkeypatch.setattr(cli_module.signal, "signal", lambda *args: None)  # main's SIGTERM hook
    with pytest.raises(SystemExit) as exited:
        cli_module.main(["inspect", "gone"])
    assert exited.value.code == EngineError.exit_code
    assert capsys.readouterr().err == (
        "uvbuild: engine error: no image 'gone' in local storage\n"
        "  hint: build it first or check `buildah images`\n")


def test_buildah_reads_the_config_fields_inspect_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    # Trimmed from `buildah inspect --type image` (buildah 1.28) of a uvbuild image.
    output = {
        "FromImage": "localhost/my-app:latest",
        "FromImageID": IMAGE_ID,
        "Manifest": json.dumps({"layers": [{"digest": BASE_LAYER, "size": 5}]}),
        "OCIv1": {
            "created": "2023-11-14T22:13:20Z",
            "config": {
                "User": "app", "Env": ["A=1"], "Labels": {"k": "v"},
                "Entrypoint": ["/app/.venv/bin/my-app"], "Cmd": ["serve"],
                "WorkingDir": "/app", "ExposedPorts": {"9000/udp": {}, "8000/tcp": {}},
            },
        },
    }
    seen: list[list[str]] = []

    def run(argv: list[str], **kwargs: object) -> cmd.Result:
        seen.append(list(argv))
        return cmd.Result(tuple(argv), 0, json.dumps(output), "")

    monkeypatch.setattr(cmd, "run", run)
    info = Buildah(storage_driver="vfs").image("my-app")
    assert seen == [["buildah", "--storage-driver", "vfs", "inspect", "--type", "image",
                     "my-app"]]
    assert info == ImageInfo(
        id=IMAGE_ID, names=("localhost/my-app:latest",), labels={"k": "v"}, env=("A=1",),
        user="app", layers=((BASE_LAYER, 5),), entrypoint=("/app/.venv/bin/my-app",),
        cmd=("serve",), workdir="/app", ports=("8000/tcp", "9000/udp"),
        created="2023-11-14T22:13:20Z")


def test_buildah_defaults_when_the_config_has_none_of_them(
        monkeypatch: pytest.MonkeyPatch) -> None:
    output = {"FromImageID": IMAGE_ID, "OCIv1": {"config": {"Entrypoint": None, "Cmd": None}}}
    monkeypatch.setattr(cmd, "run",
                        lambda argv, **kw: cmd.Result(tuple(argv), 0, json.dumps(output), ""))
    info = Buildah().image(IMAGE_ID)
    assert info is not None
    assert (info.entrypoint, info.cmd, info.workdir, info.ports, info.created) == (
        (), (), "", (), None)


def test_inspect_names_the_image_asked_about_before_cache_names(fake: FakeEngine) -> None:
    cached = "localhost/uvbuild-cache/add-project-0123:latest"
    fake.images["localhost/my-app:latest"] = ImageInfo(
        id=IMAGE_ID, names=(cached, "localhost/my-app:latest"), labels={}, env=(), user="")
    facts = image_facts(fake, "localhost/my-app:latest")
    assert facts["image"] == "localhost/my-app:latest"
    assert facts["names"] == ["localhost/my-app:latest", cached]


def test_the_run_root_is_asked_once_and_can_be_asked_ahead(monkeypatch) -> None:
    """A build needs the run root first: the CLI asks for it (Buildah.prefetch) while the
    build's modules load, and the build's own question then starts no second buildah."""
    import threading

    seen: list[list[str]] = []
    answered = threading.Event()

    def run(argv: list[str], **kwargs: object) -> cmd.Result:
        seen.append(list(argv))
        answered.wait(5)  # still running when run_root is called below
        return cmd.Result(tuple(argv), 0, json.dumps({"store": {"RunRoot": "/run/x"}}), "")

    monkeypatch.setattr(cmd, "run", run)
    store = Buildah(storage_driver="vfs")
    store.prefetch()
    threading.Timer(0.05, answered.set).start()
    assert store.run_root() == Path("/run/x")
    assert store.run_root() == Path("/run/x")
    assert seen == [["buildah", "--storage-driver", "vfs", "info"]]
