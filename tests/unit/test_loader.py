"""Recipe loader: RECIPE.md's examples load; broken recipes say where, what and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from uvbuild.errors import RecipeError
from uvbuild.recipe.loader import load_recipe, load_recipe_text
from uvbuild.recipe.model import BootstrapBase, CopyEntry, ImageBase, SyncOptions

# The full example of RECIPE.md, verbatim.
FULL_EXAMPLE = """\
version: 1                       # required; the only version today
project: .                       # folder holding pyproject.toml and uv.lock (default ".")
image: localhost/restapipy:0.1   # default output name; `--tag` on the command line wins
                                 # default: localhost/<project name>:<project version>

builder:                         # where the virtualenv is made; never shipped
  from: docker.io/library/python:3.13-slim   # any reference buildah can pull or find locally
  packages: [build-essential]    # OS packages for building (apt-get, apk, dnf or microdnf: detected)
  env: {PIP_NO_COLOR: "1"}       # environment of builder commands only
  secrets: [UV_INDEX_CORP_PASSWORD]  # host variables handed to builder commands; never stored
  python: /usr/bin/python3       # interpreter the venv is made from (default: `python3` on the builder's PATH)
  sync:                          # how `uv sync` runs
    groups: []                   # dependency groups to add (the dev group is left out unless listed)
    extras: []                   # optional-dependency extras to add; `all-extras: true` for every one
    compile-bytecode: true       # default true
  run:                           # shell commands run after the project is installed,
    - generate_openapi_json      # in the project's source folder, with the venv's bin/ first on PATH

runtime:                         # the image that ships
  from: docker.io/library/python:3.13-slim
  packages: [libpq5]             # OS packages the app needs at run time (no compilers here)
  copy:                          # more from the builder, after /app; `from` is a builder path
    - {from: /src/openapi.json, to: /app/openapi.json}
  user: app                      # made if missing; the image's User is numeric uid:gid. "root" opts out
  workdir: /app
  env: {LOG_LEVEL: info}
  entrypoint: [python, -m, restapipy]
  cmd: []
  expose: [9876]
  labels: {org.opencontainers.image.title: restapipy}
  stop-signal: SIGINT
  test:                          # run in the finished runtime root, as its user, before the image is
    - python -Ic "import restapipy"   # tagged; a failing command fails the build and tags nothing
"""

MINIMAL = """\
version: 1
builder:
  from: python:3.13-slim
runtime:
  from: python:3.13-slim
"""


def write(tmp_path: Path, text: str, name: str = "uvbuild.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_full_example_loads(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, FULL_EXAMPLE))

    assert recipe.path == tmp_path / "uvbuild.yaml"
    assert recipe.version == 1
    assert recipe.project == tmp_path.resolve()
    assert recipe.image == "localhost/restapipy:0.1"

    builder = recipe.builder
    assert builder.base == ImageBase(ref="docker.io/library/python:3.13-slim")
    assert builder.packages == ("build-essential",)
    assert builder.env == (("PIP_NO_COLOR", "1"),)
    assert builder.secrets == ("UV_INDEX_CORP_PASSWORD",)
    assert builder.python == "/usr/bin/python3"
    assert builder.sync == SyncOptions(
        groups=(), extras=(), all_extras=False, compile_bytecode=True
    )
    assert builder.run == ("generate_openapi_json",)

    runtime = recipe.runtime
    assert runtime.base == ImageBase(ref="docker.io/library/python:3.13-slim")
    assert runtime.packages == ("libpq5",)
    assert runtime.copy == (CopyEntry(source="/src/openapi.json", dest="/app/openapi.json"),)
    assert runtime.user == "app"
    assert runtime.workdir == "/app"
    assert runtime.env == (("LOG_LEVEL", "info"),)
    assert runtime.entrypoint == ("python", "-m", "restapipy")
    assert runtime.cmd == ()
    assert runtime.expose == ("9876",)
    assert runtime.labels == (("org.opencontainers.image.title", "restapipy"),)
    assert runtime.stop_signal == "SIGINT"
    assert runtime.test == ('python -Ic "import restapipy"',)


def test_bootstrap_base(tmp_path: Path) -> None:
    recipe = load_recipe(
        write(
            tmp_path,
            """\
version: 1
builder:
  from:
    bootstrap: debian            # the only distribution required today
    suite: trixie
    packages: [python3, python3-venv]
    snapshot: 20250520T000000Z
runtime:
  from: {bootstrap: debian}
""",
        )
    )
    assert recipe.builder.base == BootstrapBase(
        distribution="debian",
        suite="trixie",
        packages=("python3", "python3-venv"),
        snapshot="20250520T000000Z",
    )
    assert recipe.runtime.base == BootstrapBase(
        distribution="debian", suite="bookworm", packages=(), snapshot=None
    )


SLIM = """\
version: 1
builder:
  from: {bootstrap: debian, packages: [python3]}
  packages: [libpq-dev]
runtime:
  from:
    bootstrap: debian
    packages: [python3]
    variant: slim
  packages: [libpq5]
"""


def test_bootstrap_variant(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, SLIM))

    assert recipe.builder.base == BootstrapBase(packages=("python3",), variant="standard")
    assert recipe.runtime.base == BootstrapBase(packages=("python3",), variant="slim")
    assert recipe.runtime.packages == ("libpq5",)  # joined to the bootstrap by the planner


def test_standard_variant_is_the_default(tmp_path: Path) -> None:
    text = SLIM.replace("    variant: slim\n", "    variant: standard\n")
    assert load_recipe(write(tmp_path, text)).runtime.base == BootstrapBase(
        packages=("python3",))


@pytest.mark.parametrize(("variant", "expected"), [
    ("slimm", "unknown variant 'slimm'; did you mean 'slim'?"),
    ("minimal", "unknown variant 'minimal'"),
    ("Slim", "unknown variant 'Slim'; did you mean 'slim'?"),
    ("[slim]", "expected a variant: standard or slim, found a list"),
    ("''", "expected a variant: standard or slim, found an empty string"),
])
def test_unknown_variant_names_the_choices(tmp_path: Path, variant: str, expected: str) -> None:
    path = write(tmp_path, SLIM.replace("variant: slim", f"variant: {variant}"))
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)

    assert caught.value.message == f"{path}:9: runtime.from.variant: {expected}"
    if "unknown" in expected:
        assert caught.value.hint == ("choose standard or slim: slim has no apt, no perl, "
                                     "no docs or locales")


def test_a_slim_builder_with_packages_is_refused(tmp_path: Path) -> None:
    text = SLIM.replace("  from: {bootstrap: debian, packages: [python3]}\n",
                        "  from: {bootstrap: debian, packages: [python3], variant: slim}\n")
    path = write(tmp_path, text)
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)

    assert caught.value.message == (f"{path}:4: builder.packages: a slim builder base has no "
                                 "package manager to install these")
    assert caught.value.hint == ("use `variant: standard` for the builder (the runtime can "
                                 "stay slim), or list them in builder.from.packages")


def test_a_slim_builder_without_packages_loads(tmp_path: Path) -> None:
    text = SLIM.replace(
        "  from: {bootstrap: debian, packages: [python3]}\n  packages: [libpq-dev]\n",
        "  from: {bootstrap: debian, packages: [python3, libpq-dev], variant: slim}\n")
    recipe = load_recipe(write(tmp_path, text))

    assert recipe.builder.base == BootstrapBase(packages=("python3", "libpq-dev"),
                                                variant="slim")


def test_defaults(tmp_path: Path) -> None:
    recipe = load_recipe(write(tmp_path, MINIMAL))

    assert recipe.project == tmp_path.resolve()
    assert recipe.image is None
    assert recipe.builder.packages == ()
    assert recipe.builder.env == ()
    assert recipe.builder.secrets == ()
    assert recipe.builder.python is None
    assert recipe.builder.sync == SyncOptions(
        groups=(), extras=(), all_extras=False, compile_bytecode=True
    )
    assert recipe.builder.run == ()
    runtime = recipe.runtime
    assert (runtime.user, runtime.workdir) == ("app", "/app")
    assert runtime.copy == ()
    assert runtime.expose == runtime.test == ()
    assert runtime.env == runtime.labels == ()
    assert runtime.entrypoint is None
    assert runtime.cmd is None
    assert runtime.stop_signal is None


def test_values_are_converted(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    recipe = load_recipe(
        write(
            tmp_path,
            """\
version: 1
project: ../app
image: registry.example.com:5000/team/my_app-x:1.0-rc.1
builder:
  from: python:3.13-slim
  python: python3.13
  sync: {groups: [docs], all-extras: yes, compile-bytecode: false}
runtime:
  from: oci-archive:/tmp/base.tar
  env: {WORKERS: 4, DEBUG: false, RATIO: 0.5, NAME: "x y"}
  entrypoint: exec my-app --serve
  expose: ["8080", 53/udp, 9000/tcp]
  user: 1000
  stop-signal: 15
""",
            name="sub/uvbuild.yaml",
        )
    )
    assert recipe.project == (tmp_path / "app").resolve()
    assert recipe.image == "registry.example.com:5000/team/my_app-x:1.0-rc.1"
    assert recipe.builder.python == "python3.13"
    assert recipe.builder.sync == SyncOptions(
        groups=("docs",), all_extras=True, compile_bytecode=False
    )
    assert recipe.runtime.base == ImageBase(ref="oci-archive:/tmp/base.tar")
    assert recipe.runtime.env == (
        ("DEBUG", "false"),
        ("NAME", "x y"),
        ("RATIO", "0.5"),
        ("WORKERS", "4"),
    )
    assert recipe.runtime.entrypoint == ("/bin/sh", "-c", "exec my-app --serve")
    assert recipe.runtime.expose == ("8080", "53/udp", "9000/tcp")
    assert recipe.runtime.user == "1000"
    assert recipe.runtime.stop_signal == "15"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    assert caught.value.message == f"{path}: recipe file not found"


def test_load_recipe_text_names_the_given_path() -> None:
    with pytest.raises(RecipeError) as caught:
        load_recipe_text("version: 1\nbuilder: {}\n", Path("recipes/app.yaml"))
    assert caught.value.message == "recipes/app.yaml:2: builder.from: required key is missing"
    assert caught.value.hint is not None and "bootstrap: debian" in caught.value.hint


# (recipe text, exact message with {file} for the recipe's path)
BROKEN = {
    "unknown top-level key": (
        "version: 1\nprojet: .\n",
        "{file}:2: projet: unknown key; did you mean 'project'?",
    ),
    "unknown nested key": (
        MINIMAL + "  entrypont: [app]\n",
        "{file}:6: runtime.entrypont: unknown key; did you mean 'entrypoint'?",
    ),
    "unknown sync key with underscore": (
        "version: 1\nbuilder:\n  from: x\n  sync:\n    compile_bytecode: true\n",
        "{file}:5: builder.sync.compile_bytecode: unknown key; did you mean 'compile-bytecode'?",
    ),
    "string for a list": (
        "version: 1\nbuilder:\n  from: x\n  packages: gcc\n",
        "{file}:4: builder.packages: expected a list of strings, found the string 'gcc'",
    ),
    "number in a list of strings": (
        "version: 1\nbuilder:\n  from: x\n  packages:\n    - gcc\n    - 3.11\n",
        "{file}:6: builder.packages[1]: expected a non-empty string, found the number 3.11",
    ),
    "unclosed bracket": (
        "version: 1\nbuilder:\n  from: x\n  packages: [gcc\nruntime:\n  from: x\n",
        (
            "{file}:5:8: invalid YAML: expected ',' or ']', but got ':'"
            " (while parsing a flow sequence at line 4)"
        ),
    ),
    "version 2": (
        "version: 2\nbuilder: {from: x}\nruntime: {from: x}\n",
        "{file}:1: version: unsupported recipe version 2; this uvbuild reads version 1",
    ),
    "version as a string": (
        'version: "1"\n',
        "{file}:1: version: expected the integer 1, found the string '1'",
    ),
    "missing version": (
        "builder: {from: x}\nruntime: {from: x}\n",
        "{file}:1: version: required key is missing",
    ),
    "missing builder.from": (
        "version: 1\nbuilder:\n  packages: [gcc]\nruntime: {from: x}\n",
        "{file}:3: builder.from: required key is missing",
    ),
    "missing runtime": (
        "version: 1\nbuilder: {from: x}\n",
        "{file}:1: runtime: required key is missing",
    ),
    "empty from": (
        "version: 1\nbuilder: {from: ''}\n",
        (
            "{file}:2: builder.from: expected an image reference or {{bootstrap: debian}},"
            " found an empty string"
        ),
    ),
    "bootstrap alpine": (
        "version: 1\nbuilder:\n  from:\n    bootstrap: alpine\n",
        "{file}:4: builder.from.bootstrap: unsupported distribution 'alpine'; supported: debian",
    ),
    "bad snapshot": (
        "version: 1\nbuilder:\n  from: {bootstrap: debian, snapshot: 2025-05-20}\n",
        (
            "{file}:3: builder.from.snapshot: expected a snapshot time YYYYMMDDTHHMMSSZ,"
            " found the date 2025-05-20"
        ),
    ),
    "bad snapshot string": (
        "version: 1\nbuilder:\n  from: {bootstrap: debian, snapshot: '20250520'}\n",
        (
            "{file}:3: builder.from.snapshot: expected a snapshot time YYYYMMDDTHHMMSSZ,"
            " found '20250520'"
        ),
    ),
    "relative copy path": (
        MINIMAL
        + "  copy:\n    - {from: /src/a.json, to: /app/a.json}\n    - {from: out/b, to: /b}\n",
        (
            "{file}:8: runtime.copy[1].from: expected an absolute path (starting with /),"
            " found 'out/b'"
        ),
    ),
    "copy without to": (
        MINIMAL + "  copy:\n    - from: /src/a.json\n",
        "{file}:7: runtime.copy[0].to: required key is missing",
    ),
    "bad env name": (
        "version: 1\nbuilder:\n  from: x\n  env:\n    OK: '1'\n    1BAD: x\n",
        "{file}:6: builder.env.1BAD: expected an environment variable name, found '1BAD'",
    ),
    "env value is a list": (
        "version: 1\nbuilder:\n  from: x\n  env:\n    PATHS: [a, b]\n",
        "{file}:5: builder.env.PATHS: expected a string, number or boolean, found a list",
    ),
    "env value is null": (
        "version: 1\nbuilder:\n  from: x\n  env:\n    EMPTY:\n",
        "{file}:5: builder.env.EMPTY: expected a string, number or boolean, found nothing (null)",
    ),
    "bad secret name": (
        "version: 1\nbuilder:\n  from: x\n  secrets: [UV-TOKEN]\n",
        "{file}:4: builder.secrets[0]: expected an environment variable name, found 'UV-TOKEN'",
    ),
    "duplicate key": (
        "version: 1\nbuilder:\n  from: x\n  packages: [a]\n  packages: [b]\n",
        "{file}:5: builder.packages: duplicate key (first at line 4)",
    ),
    "duplicate top-level key": (
        "version: 1\nversion: 1\n",
        "{file}:2: version: duplicate key (first at line 1)",
    ),
    "empty file": ("", "{file}:1: the recipe is empty"),
    "only comments": ("# nothing yet\n", "{file}:1: the recipe is empty"),
    "top level is a list": (
        "- version: 1\n",
        (
            "{file}:1: expected a mapping of keys (version, builder, runtime...) at the top,"
            " found a list"
        ),
    ),
    "compile-bytecode as the string yes": (
        'version: 1\nbuilder:\n  from: x\n  sync:\n    compile-bytecode: "yes"\n',
        "{file}:5: builder.sync.compile-bytecode: expected true or false, found the string 'yes'",
    ),
    "extras with all-extras": (
        "version: 1\nbuilder:\n  from: x\n  sync: {extras: [pg], all-extras: true}\n",
        (
            "{file}:4: builder.sync.extras: cannot be combined with all-extras: true"
            " (uv refuses both)"
        ),
    ),
    "relative python": (
        "version: 1\nbuilder:\n  from: x\n  python: bin/python3\n",
        (
            "{file}:4: builder.python: expected an absolute path or a command name,"
            " found 'bin/python3'"
        ),
    ),
    "expose port too big": (
        MINIMAL + "  expose: [8080, 70000]\n",
        (
            "{file}:6: runtime.expose[1]: expected a port 1-65535, optionally with /tcp, /udp or"
            " /sctp, found '70000'"
        ),
    ),
    "expose port zero": (
        MINIMAL + "  expose: [0/tcp]\n",
        (
            "{file}:6: runtime.expose[0]: expected a port 1-65535, optionally with /tcp, /udp or"
            " /sctp, found '0/tcp'"
        ),
    ),
    "expose bad protocol": (
        MINIMAL + "  expose: [53/icmp]\n",
        (
            "{file}:6: runtime.expose[0]: expected a port 1-65535, optionally with /tcp, /udp or"
            " /sctp, found '53/icmp'"
        ),
    ),
    "uppercase image": (
        "version: 1\nimage: localhost/RestApi\n",
        "{file}:2: image: uppercase letters are not allowed in image names: 'localhost/RestApi'",
    ),
    "image with a space": (
        "version: 1\nimage: my app\n",
        "{file}:2: image: an image reference cannot contain spaces: 'my app'",
    ),
    "image with a bad tag": (
        "version: 1\nimage: localhost:5000/app:-dev\n",
        "{file}:2: image: invalid tag '-dev' in image reference: 'localhost:5000/app:-dev'",
    ),
    "label key with =": (
        MINIMAL + "  labels: {a=b: c}\n",
        "{file}:6: runtime.labels.a=b: a label name cannot contain '=', spaces or control "
        "characters: 'a=b'",
    ),
    "label key with a space": (
        MINIMAL + "  labels: {'a b': c}\n",
        "{file}:6: runtime.labels.a b: a label name cannot contain '=', spaces or control "
        "characters: 'a b'",
    ),
    "label key with a tab": (
        MINIMAL + "  labels: {\"a\\tb\": c}\n",
        "{file}:6: runtime.labels.a\tb: a label name cannot contain '=', spaces or control "
        "characters: 'a\\tb'",
    ),
    "empty label key": (
        MINIMAL + "  labels: {'': c}\n",
        "{file}:6: runtime.labels: expected a string key, found the string ''",
    ),
    "relative workdir": (
        MINIMAL + "  workdir: app\n",
        "{file}:6: runtime.workdir: expected an absolute path (starting with /), found 'app'",
    ),
    "bad user": (
        MINIMAL + "  user: App User\n",
        "{file}:6: runtime.user: expected a user name or a numeric uid, found 'App User'",
    ),
    "unknown stop signal": (
        MINIMAL + "  stop-signal: SIGSTERM\n",
        "{file}:6: runtime.stop-signal: unknown signal 'SIGSTERM'",
    ),
    "empty entrypoint": (
        MINIMAL + "  entrypoint: []\n",
        "{file}:6: runtime.entrypoint: expected a command, found an empty list",
    ),
    "labels value is a mapping": (
        MINIMAL + "  labels:\n    a: {b: c}\n",
        "{file}:7: runtime.labels.a: expected a string, number or boolean, found a mapping",
    ),
    "non-string key": (
        MINIMAL + "  labels: {1: x}\n",
        "{file}:6: runtime.labels: expected a string key, found the integer 1",
    ),
    "merge key": (
        "version: 1\nbuilder:\n  <<: {from: x}\n",
        (
            "{file}:3: builder: expected a string key, found a YAML merge key (<<),"
            " which recipes do not support"
        ),
    ),
    "builder is a string": (
        "version: 1\nbuilder: python:3.13\n",
        "{file}:2: builder: expected a mapping, found the string 'python:3.13'",
    ),
    "null section": (
        "version: 1\nbuilder:\nruntime: {from: x}\n",
        "{file}:2: builder: expected a mapping, found nothing (null)",
    ),
    "two documents": (
        "version: 1\n---\nversion: 1\n",
        (
            "{file}:2:1: invalid YAML: but found another document"
            " (expected a single document in the stream at line 1)"
        ),
    ),
}


@pytest.mark.parametrize(("text", "expected"), list(BROKEN.values()), ids=list(BROKEN))
def test_broken_recipe(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    assert caught.value.message == expected.format(file=path)


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("version: 1\nbuilder:\n  from: x\n  packages: gcc\n", "write a list: [gcc]"),
        (
            "version: 1\nbuilder:\n  from: x\n  sync: {all-extras: 'true'}\n",
            "write true or false, without quotes",
        ),
        ("version: 1\nbuilder:\n  from: x\n  python: 3.11\n", 'quote it: "3.11"'),
        (
            "version: 1\nimage: localhost/App\n",
            "write [registry[:port]/]name[:tag] (lower-case name; a tag of at most 128 "
            "letters, digits, '_', '.', '-'), e.g. localhost/myapp:1.0",
        ),
        (
            "version: 1\nbuilder:\n  from: x\n  runn: []\n",
            "known keys in builder: from, packages, env, secrets, python, sync, run",
        ),
        (
            "version: 1\nbuilder: {}\n",
            "e.g. `from: docker.io/library/python:3.13-slim` or `from: {bootstrap: debian}`",
        ),
    ],
)
def test_hints(tmp_path: Path, text: str, hint: str) -> None:
    with pytest.raises(RecipeError) as caught:
        load_recipe(write(tmp_path, text))
    assert caught.value.hint == hint
    assert str(caught.value).endswith(f"\n  hint: {hint}")


def test_version_is_checked_before_unknown_keys(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 2\nfuture-key: true\n")
    with pytest.raises(RecipeError, match="unsupported recipe version 2"):
        load_recipe(path)


# --------------------------------------------------------------------------- input bounds


def alias_recipe(size: int, aliases: int) -> str:
    """One `size`-character value under builder.env and `aliases` aliases of it."""
    lines = ["version: 1", "builder:", "  from: python:3.13-slim", "  env:",
             f"    BIG: &big {'x' * size}"]
    lines += [f"    V{n}: *big" for n in range(aliases)]
    return "\n".join([*lines, "runtime:", "  from: python:3.13-slim"]) + "\n"


def test_aliases_are_counted_as_expanded(tmp_path: Path) -> None:
    from uvbuild.recipe.loader import MAX_EXPANDED_CHARS

    text = alias_recipe(200_000, 3000)  # 1.2 GB of memory before the bound
    with pytest.raises(RecipeError) as caught:
        load_recipe(write(tmp_path, text))
    # The sixth alias is the first past 1 MiB: 6 x 200,000 + the keys.
    line = text.splitlines().index("    V4: *big") + 1
    message = str(caught.value)
    assert f"uvbuild.yaml:{line}: the recipe is too large with its aliases expanded" in message
    assert f"alias *big takes it past the limit of {MAX_EXPANDED_CHARS:,} characters" in message
    assert caught.value.exit_code == 3
    # A few aliases of a small value are what anchors are for.
    assert len(load_recipe(write(tmp_path, alias_recipe(100, 50))).builder.env) == 51


def test_nested_aliases_are_counted_without_expanding_them(tmp_path: Path) -> None:
    """A billion laughs: each level ten aliases of the one before, in a list."""
    levels = ["  - &l0 [a, a, a, a, a, a, a, a, a, a]"]
    levels += [f"  - &l{n} [{', '.join([f'*l{n - 1}'] * 10)}]" for n in range(1, 9)]
    text = MINIMAL.replace("  from: python:3.13-slim\nruntime",
                           "  from: python:3.13-slim\n  packages:\n" + "\n".join(levels)
                           + "\nruntime", 1)
    expected = r"uvbuild.yaml:9: .* alias \*l3 takes it past the limit of 100,000 keys"
    with pytest.raises(RecipeError, match=expected):
        load_recipe(write(tmp_path, text))


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    text = MINIMAL + "image: &loop [*loop]\n"
    with pytest.raises(RecipeError, match=r"uvbuild.yaml:6: alias \*loop refers to a node that "
                                          r"contains it"):
        load_recipe(write(tmp_path, text))


@pytest.mark.parametrize("nested", ["[" * 3000 + "]" * 3000, "{a: " * 3000 + "1" + "}" * 3000])
def test_deeply_nested_yaml_is_a_recipe_error_not_a_recursion_error(
        tmp_path: Path, nested: str) -> None:
    text = MINIMAL + f"image: {nested}\n"
    with pytest.raises(RecipeError, match=r"uvbuild.yaml:6: lists and mappings are nested more "
                                          r"than 64 deep"):
        load_recipe(write(tmp_path, text))


@pytest.mark.parametrize("value", ["checked-hash", "CHECKED", "1"])
def test_a_pyc_invalidation_mode_that_names_no_mode_is_refused(
        tmp_path: Path, value: str) -> None:
    text = MINIMAL.replace("builder:\n", f"builder:\n  env:\n    PYC_INVALIDATION_MODE: '{value}'\n")
    with pytest.raises(RecipeError) as caught:
        load_recipe(write(tmp_path, text))
    assert (f"uvbuild.yaml:4: builder.env.PYC_INVALIDATION_MODE: {value!r} is not a mode of "
            ".pyc files; it may be TIMESTAMP, CHECKED_HASH, UNCHECKED_HASH") in str(caught.value)
    fine = MINIMAL.replace("builder:\n", "builder:\n  env:\n    PYC_INVALIDATION_MODE: "
                           "UNCHECKED_HASH\n")
    assert load_recipe(write(tmp_path, fine)).builder.env == (
        ("PYC_INVALIDATION_MODE", "UNCHECKED_HASH"),)


LONG = "v" * 40_000  # past MAX_ARGUMENT_BYTES (32 KiB) as one argument


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        (f"  labels: {{big: {LONG}}}", "runtime.labels.big"),
        (f"  env: {{BIG: {LONG}}}", "runtime.env.BIG"),
        (f"  entrypoint: [python, {LONG}]", "runtime.entrypoint"),
        (f"  cmd: {LONG}", "runtime.cmd"),
        (f"  workdir: /{LONG}", "runtime.workdir"),
        (f"  user: {'u' * 40_000}", "runtime.user"),
        (f"  packages: [{LONG}]", "runtime.packages[0]"),
        (f"  copy: [{{from: /{LONG}, to: /x}}]", "runtime.copy[0].from"),
        (f"image: localhost/{LONG}", "image"),
    ],
    ids=["label", "env", "entrypoint", "cmd", "workdir", "user", "package", "copy", "image"],
)
def test_a_value_too_long_for_argv_is_refused(tmp_path: Path, setting: str, key: str) -> None:
    path = write(tmp_path, MINIMAL + setting + "\n")
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    message = str(caught.value)
    assert f"uvbuild.yaml:6: {key}: too long: " in message
    assert "the limit is 32,768 bytes per value" in message
    assert caught.value.exit_code == 3


def test_bootstrap_packages_are_one_argument_together(tmp_path: Path) -> None:
    names = ", ".join(f"package-number-{n:05d}" for n in range(2000))  # 20-odd bytes each
    text = MINIMAL.replace("runtime:\n  from: python:3.13-slim",
                           f"runtime:\n  from:\n    bootstrap: debian\n    packages: [{names}]")
    with pytest.raises(RecipeError, match=r"uvbuild.yaml:7: runtime.from.packages: too long: "):
        load_recipe(write(tmp_path, text))


def test_image_settings_are_bounded_in_total(tmp_path: Path) -> None:
    from uvbuild.recipe.loader import MAX_CONFIG_BYTES

    labels = [f"    l{n}: {'v' * 30_000}" for n in range(10)]  # each fits, together they do not
    text = MINIMAL + "  labels:\n" + "\n".join(labels) + "\n"
    with pytest.raises(RecipeError) as caught:
        load_recipe(write(tmp_path, text))
    assert "uvbuild.yaml:15: runtime.labels.l8: too long: " in str(caught.value)
    assert f"more than {MAX_CONFIG_BYTES:,} bytes in all" in str(caught.value)
    fits = MINIMAL + "  labels:\n" + "\n".join(labels[:8]) + "\n"
    assert len(load_recipe(write(tmp_path, fits)).runtime.labels) == 8


def test_builder_env_may_hold_a_long_value(tmp_path: Path) -> None:
    """builder.env reaches commands through a file, not argv: only the total bounds it."""
    text = MINIMAL.replace("  from: python:3.13-slim\nruntime",
                           f"  from: python:3.13-slim\n  env: {{CERT: {LONG * 5}}}\nruntime", 1)
    assert load_recipe(write(tmp_path, text)).builder.env[0][1] == LONG * 5


@pytest.mark.parametrize("ref, said", [
    ("Bad Ref!!", "cannot contain spaces"),
    ("docker.io/Library/python:3.13", "uppercase"),
    ("python:3.13 slim", "cannot contain spaces"),
    ("oci-archive:", "names no path"),
    ("docker://", "cannot be empty"),
    ("python@sha256:abc", "invalid digest"),
])
def test_a_bad_base_reference_is_refused_with_its_line(tmp_path: Path, ref: str,
                                                       said: str) -> None:
    text = MINIMAL.replace("runtime:\n  from: python:3.13-slim",
                           f"runtime:\n  from: {ref!r}")
    with pytest.raises(RecipeError) as raised:
        load_recipe(write(tmp_path, text))
    message = str(raised.value)
    assert said in message and ":5:" in message and "runtime.from" in message


@pytest.mark.parametrize("ref", [
    "python:3.13-slim", "localhost/mybase:1", "oci-archive:/path/image.tar",
    "docker-archive:/path/image.tar:localhost/x:1", "docker://quay.io/org/img:2",
    "containers-storage:localhost/x:1", "python@sha256:" + "a" * 64, "0f596ceee538",
])
def test_base_references_buildah_takes_are_read(tmp_path: Path, ref: str) -> None:
    text = MINIMAL.replace("runtime:\n  from: python:3.13-slim", f"runtime:\n  from: {ref!r}")
    recipe = load_recipe(write(tmp_path, text))
    assert recipe.runtime.base == ImageBase(ref=ref)
