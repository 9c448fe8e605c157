"""Broken inputs, each through the real CLI: the documented exit code, one clear message.

Every case starts from a copy of recipes/fastapi (recipe and project) in a temp
folder and breaks one thing. For each: the exit code is the one errors.py
documents (3 recipe, 4 project, 5 engine, 6 step failed), stderr holds exactly
one ``uvbuild: ...`` message naming the file, key or command at fault and no
traceback, the run left no working container, and its tag was not made.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import local_image_id

REPO_ROOT = Path(__file__).resolve().parents[2]
FASTAPI = REPO_ROOT / "recipes" / "fastapi"
FASTAPI_RECIPE = REPO_ROOT / "recipes" / "fastapi.yaml"

RECIPE_ERROR, PROJECT_ERROR, ENGINE_ERROR, STEP_FAILED = 3, 4, 5, 6

BOOTSTRAP_BOOKWORM = (
    "  from:\n    bootstrap: debian\n    suite: bookworm\n    packages: [python3]\n"
)


@dataclass
class Workspace:
    """A copy of recipes/fastapi: ``root/recipe.yaml`` building ``root/fastapi``."""

    root: Path
    env: dict[str, str | None] = field(default_factory=dict)

    @property
    def recipe(self) -> Path:
        return self.root / "recipe.yaml"

    @property
    def project(self) -> Path:
        return self.root / "fastapi"

    def line_of(self, text: str) -> int:
        """The 1-based line of the recipe where `text` starts."""
        recipe = self.recipe.read_text()
        assert text in recipe, f"{text!r} is not in the recipe"
        return recipe[: recipe.index(text)].count("\n") + 1

    def edit_recipe(self, old: str, new: str, count: int = 1) -> None:
        text = self.recipe.read_text()
        assert old in text, f"{old!r} is not in the recipe any more: update this test"
        self.recipe.write_text(text.replace(old, new, count))


def copy_fastapi(root: Path) -> Workspace:
    shutil.copytree(
        FASTAPI,
        root / "fastapi",
        ignore=shutil.ignore_patterns(".venv", "__pycache__", "*.pyc"),
    )
    text = FASTAPI_RECIPE.read_text()
    assert "\nproject: fastapi\n" in text
    (root / "recipe.yaml").write_text(text)
    return Workspace(root)


@dataclass(frozen=True)
class Case:
    id: str
    exit_code: int
    # Breaks the copy; returns the strings the error message must contain.
    breaks: Callable[[Workspace], list[str]]


def unknown_key(ws: Workspace) -> list[str]:
    ws.edit_recipe("  python: /usr/bin/python3\n", "  pyhton: /usr/bin/python3\n")
    return [f"{ws.recipe}:{ws.line_of('  pyhton:')}:", "builder.pyhton", "unknown key", "'python'"]


def wrong_type(ws: Workspace) -> list[str]:
    ws.edit_recipe("  user: app\n", "  user: [app, admin]\n")
    return [f"{ws.recipe}:{ws.line_of('  user: [')}:", "runtime.user", "expected"]


def bad_yaml(ws: Workspace) -> list[str]:
    ws.edit_recipe("  expose: [9876]\n", "  expose: [9876\n")
    return [f"{ws.recipe}:", "invalid YAML", f"line {ws.line_of('  expose: [')}"]


def unsupported_version(ws: Workspace) -> list[str]:
    ws.edit_recipe("version: 1\n", "version: 2\n")
    return [f"{ws.recipe}:{ws.line_of('version: 2')}:", "version", "unsupported"]


def missing_lock(ws: Workspace) -> list[str]:
    (ws.project / "uv.lock").unlink()
    return ["uv.lock", "uv lock"]


def stale_lock(ws: Workspace) -> list[str]:
    pyproject = ws.project / "pyproject.toml"
    text = pyproject.read_text()
    old = '    "uvicorn==0.54.0",\n'
    assert old in text, "recipes/fastapi/pyproject.toml changed: update this test"
    pyproject.write_text(text.replace(old, old + '    "requests>=2.31",\n'))
    return ["uv.lock", "uv lock"]


def missing_base(ws: Workspace) -> list[str]:
    ws.edit_recipe(BOOTSTRAP_BOOKWORM, "  from: localhost/does-not-exist:1\n")
    return ["localhost/does-not-exist:1"]


def failing_builder_run(ws: Workspace) -> list[str]:
    ws.edit_recipe(
        "    - restapipy-openapi openapi.json\n",
        "    - restapipy-openapi openapi.json\n    - ls /no/such/dir\n",
    )
    return ["builder.run[1]", "ls /no/such/dir"]


def failing_runtime_test(ws: Workspace) -> list[str]:
    ws.edit_recipe("    - test -f /app/openapi.json\n", "    - test -f /app/no-such-file.json\n")
    return ["runtime.test[1]", "test -f /app/no-such-file.json"]


def buildah_not_on_path(ws: Workspace) -> list[str]:
    # A PATH with a Python and a shell but no buildah (nor podman, mmdebstrap).
    bin_dir = ws.root / "bin"
    bin_dir.mkdir()
    for tool, target in (("python3", sys.executable), ("sh", shutil.which("sh"))):
        assert target
        os.symlink(target, bin_dir / tool)
    ws.env["PATH"] = str(bin_dir)
    return ["buildah", "not found", "apt-get install buildah"]


def python_mismatch(ws: Workspace) -> list[str]:
    # trixie's python3 is 3.13; the builder's venv is made from bookworm's 3.11.
    runtime = ws.recipe.read_text().index("\nruntime:\n")
    text = ws.recipe.read_text()
    assert text.count("suite: bookworm") == 2
    ws.recipe.write_text(
        text[:runtime] + text[runtime:].replace("suite: bookworm", "suite: trixie", 1)
    )
    return ["3.11", "3.13"]


def label_key_with_equals(ws: Workspace) -> list[str]:
    ws.edit_recipe("  labels:\n", "  labels:\n    team=web: yes\n")
    return [f"{ws.recipe}:{ws.line_of('    team=web:')}:", "runtime.labels.team=web", "'='"]


def bad_image_in_recipe(ws: Workspace) -> list[str]:
    ws.edit_recipe("image: localhost/restapipy:0.1\n", "image: localhost/Bad Name:1\n")
    return [f"{ws.recipe}:{ws.line_of('image: ')}:", "image", "spaces"]


def pyproject_wrong_type(ws: Workspace) -> list[str]:
    pyproject = ws.project / "pyproject.toml"
    pyproject.write_text("tool = 5\n" + pyproject.read_text())
    return [f"{pyproject}: tool: expected a table, found int 5"]


def uv_lock_wrong_type(ws: Workspace) -> list[str]:
    lock = ws.project / "uv.lock"
    text = lock.read_text()
    assert text.startswith("version = 1\n"), "recipes/fastapi/uv.lock changed: update this test"
    lock.write_text('version = "1"\n' + text.removeprefix("version = 1\n"))
    return [f"{lock}: version: expected an integer", "uv lock"]


def project_is_a_dangling_symlink(ws: Workspace) -> list[str]:
    shutil.rmtree(ws.project)
    ws.project.symlink_to(ws.root / "gone")
    return [f"project folder {ws.root / 'gone'} not found"]


def builder_run_prints_to_both_streams(ws: Workspace) -> list[str]:
    ws.edit_recipe(
        "    - restapipy-openapi openapi.json\n",
        "    - restapipy-openapi openapi.json\n"
        "    - echo said-on-stdout; echo said-on-stderr >&2; exit 3\n",
    )
    return ["builder.run[1]", "exit code 3", "--- stdout:", "said-on-stdout", "--- stderr:",
            "said-on-stderr"]


def copy_source_missing_outside_app(ws: Workspace) -> list[str]:
    ws.edit_recipe("    - {from: /src/openapi.json, to: /app/openapi.json}\n",
                   "    - {from: /src/openapi.json, to: /app/openapi.json}\n"
                   "    - {from: /src/no-such.json, to: /srv/no-such.json}\n")
    return ["runtime.copy[1]: /src/no-such.json is not in the builder after builder.run",
            "make a builder.run command create it"]


CASES = [
    Case("unknown-key", RECIPE_ERROR, unknown_key),
    Case("wrong-type", RECIPE_ERROR, wrong_type),
    Case("bad-yaml", RECIPE_ERROR, bad_yaml),
    Case("unsupported-version", RECIPE_ERROR, unsupported_version),
    Case("missing-uv-lock", PROJECT_ERROR, missing_lock),
    Case("stale-uv-lock", PROJECT_ERROR, stale_lock),
    Case("missing-base-image", ENGINE_ERROR, missing_base),
    Case("failing-builder-run", STEP_FAILED, failing_builder_run),
    Case("failing-runtime-test", STEP_FAILED, failing_runtime_test),
    Case("buildah-not-on-path", ENGINE_ERROR, buildah_not_on_path),
    Case("python-mismatch", PROJECT_ERROR, python_mismatch),
    Case("label-key-with-equals", RECIPE_ERROR, label_key_with_equals),
    Case("bad-image-in-recipe", RECIPE_ERROR, bad_image_in_recipe),
    Case("pyproject-wrong-type", PROJECT_ERROR, pyproject_wrong_type),
    Case("uv-lock-wrong-type", PROJECT_ERROR, uv_lock_wrong_type),
    Case("project-dangling-symlink", PROJECT_ERROR, project_is_a_dangling_symlink),
    Case("builder-run-both-streams", STEP_FAILED, builder_run_prints_to_both_streams),
    Case("copy-missing-outside-app", STEP_FAILED, copy_source_missing_outside_app),
]


def assert_failed_cleanly(run, case: Case, needles: list[str]) -> None:
    assert run.returncode == case.exit_code, (
        f"expected exit {case.exit_code}, got {run.returncode}\n{run}"
    )
    for stream in (run.stdout, run.stderr):
        assert "Traceback" not in stream, f"a traceback was printed\n{run}"
    messages = run.error_messages()
    assert len(messages) == 1, f"expected one `uvbuild: ...` message, got {messages}\n{run}"
    text = run.error_text()
    print(text)  # shown with -rP: what a user sees
    missing = [n for n in needles if n not in text]
    assert missing == [], f"the message does not mention {missing}:\n{text}"
    assert run.leftover_containers() == [], f"working containers left behind\n{run}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, uvbuild_popen, image_id_of) -> None:
    ws = copy_fastapi(tmp_path)
    needles = case.breaks(ws)
    tag = f"localhost/uvbuild-itest/bad-{case.id}:{os.getpid()}"
    run = uvbuild_popen([ws.recipe, "--tag", tag], env=ws.env, cwd=tmp_path)
    assert_failed_cleanly(run, case, needles)
    assert image_id_of(tag) is None, f"{tag} was tagged by a failed build"


def test_failed_rebuild_keeps_the_previous_image(tmp_path: Path, uvbuild_popen, image_id_of):
    ws = copy_fastapi(tmp_path)
    tag = f"localhost/uvbuild-itest/keep-previous:{os.getpid()}"
    good = uvbuild_popen([ws.recipe, "--tag", tag], cwd=tmp_path)
    assert good.returncode == 0, f"the good build failed\n{good}"
    good_id = image_id_of(tag)
    assert good_id

    try:
        case = next(c for c in CASES if c.id == "failing-runtime-test")
        needles = case.breaks(ws)
        bad = uvbuild_popen([ws.recipe, "--tag", tag], cwd=tmp_path)
        assert_failed_cleanly(bad, case, needles)
        assert image_id_of(tag) == good_id, f"{tag} moved after a failed build"
        assert "nothing was tagged" in bad.error_text()
    finally:
        # Only the name goes: the image stays as uvbuild's cached final step.
        subprocess.run(["buildah", "rmi", tag], capture_output=True, check=False)


def test_a_bad_tag_is_refused_before_any_work(tmp_path: Path, uvbuild_cli) -> None:
    ws = copy_fastapi(tmp_path)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    run = subprocess.run([*uvbuild_cli, ws.recipe, "-t", "localhost/Bad Name:1"],
                         capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "TMPDIR": str(tmp_path)}, check=False)
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert run.returncode == 2, f"expected a usage error\n{run.stderr}"
    assert "Traceback" not in run.stderr
    assert "'localhost/Bad Name:1'" in run.stderr and "cannot contain spaces" in run.stderr
    print(f"refused in {seconds:.2f}s, {cpu:.2f}s of CPU")
    # CPU time, not wall time: on a busy CI runner the start of Python alone can take a
    # second of wall time; what matters is that no build work was done.
    assert cpu < 1.0, f"the tag was refused only after {cpu:.1f}s of CPU\n{run.stderr}"
    assert seconds < 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fastapi", "recipe.yaml"]


@contextlib.contextmanager
def small_filesystem(path: Path, *, size_mb: int = 2, fill: Path | None = None,
                     ) -> Iterator[Callable[[int], None]]:
    """A tmpfs at `path`; yields `leave(kb)`, which fills it (a file at `fill`) until only
    about `kb` KiB are free."""
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)],
                   check=True)

    def leave(kb: int) -> None:
        stats = os.statvfs(path)
        with open(fill or path / "filler", "wb") as handle:
            handle.write(b"\0" * max(0, stats.f_bavail * stats.f_frsize - kb * 1024))

    try:
        yield leave
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def small_image_store(ws: Workspace, small: Path, uvbuild_popen) -> dict[str, str]:
    """A fresh image store on `small` holding only the recipe's bootstrapped bases
    (copied from the test store, made there first if need be); its storage.conf as env."""
    from uvbuild.pipeline import plan_recipe

    _, plan = plan_recipe(ws.recipe, tag=None, engine=None, pull=False)
    bases = sorted({plan.step(n).cache_ref for n in ("builder-base", "runtime-base")})
    if any(local_image_id(ref) is None for ref in bases):
        made = uvbuild_popen([ws.recipe, "--tag", f"localhost/uvbuild-itest/bases:{os.getpid()}"],
                             cwd=ws.root)
        assert made.returncode == 0, f"the bases could not be made\n{made}"
    graph, run = small / "graph", ws.root / "run"
    conf = ws.root / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{graph}"\n'
                    f'runroot = "{run}"\n')
    for ref in bases:
        subprocess.run(["buildah", "push", "--quiet", ref,
                        f"containers-storage:[overlay@{graph}+{run}]{ref}"], check=True)
    return {"CONTAINERS_STORAGE_CONF": str(conf)}


@pytest.mark.parametrize("variable, place", [
    ("TMPDIR", "scratch space ($TMPDIR)"),  # uvbuild's own write on the host
    ("XDG_CACHE_HOME", "uv cache"),  # uv sync, in the builder, writing to its cache
    ("CONTAINERS_STORAGE_CONF", "image store"),  # uv sync writing the venv, in the store
])
def test_a_full_disk_names_the_folder_and_cache_prune(tmp_path: Path, uvbuild_popen,
                                                      image_id_of, variable: str,
                                                      place: str) -> None:
    ws = copy_fastapi(tmp_path)
    tag = f"localhost/uvbuild-itest/disk-full:{os.getpid()}"
    small = tmp_path / "small"
    store = variable == "CONTAINERS_STORAGE_CONF"
    with small_filesystem(small, size_mb=400 if store else 2, fill=small / "filler") as leave:
        env = small_image_store(ws, small, uvbuild_popen) if store else {variable: str(small)}
        leave(4096 if store else 8)
        # --no-cache: the dependencies are synced again (their uv cache is empty here).
        run = uvbuild_popen([ws.recipe, "--tag", tag, "--no-cache"], cwd=tmp_path, env=env)
        left = subprocess.run(["buildah", "containers", "--quiet"], capture_output=True,
                              text=True, env={**os.environ, **env}, check=True).stdout
    case = Case(f"disk-full-{variable}", ENGINE_ERROR, lambda ws: [])
    where = f"{place} {small / 'graph'}" if store else f"{place} {small}"
    assert_failed_cleanly(run, case, ["no space left on device", where, "uvbuild cache prune"])
    assert "goroutine" not in run.stderr
    assert left.strip() == "", f"working containers left in the small store: {left}"
    assert image_id_of(tag) is None


@pytest.mark.parametrize("where, hint", [
    ("registry", "pass --no-tls-verify"),  # plain HTTP, pushed to as if it spoke TLS
    ("closed-port", "check the registry address"),
])
def test_a_failed_push_says_why_and_keeps_the_image(tmp_path: Path, uvbuild_popen, image_id_of,
                                                    registry: str, where: str,
                                                    hint: str) -> None:
    ws = copy_fastapi(tmp_path)
    address = registry if where == "registry" else f"127.0.0.1:{closed_port()}"
    tag = f"{address}/uvbuild-itest/push-hint:{os.getpid()}"
    try:
        run = uvbuild_popen([ws.recipe, "--tag", tag, "--push"], cwd=tmp_path)
        case = Case(f"push-{where}", ENGINE_ERROR, lambda ws: [])
        assert_failed_cleanly(run, case, [f"pushing to docker://{tag} failed", hint,
                                          f"the image is built and tagged locally as {tag}"])
        assert image_id_of(tag) is not None, "the image should stay tagged after a failed push"
    finally:
        subprocess.run(["buildah", "rmi", tag], capture_output=True, check=False)


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
