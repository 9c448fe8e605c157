"""Broken inputs, each through the real CLI: the documented exit code, one clear message.

Every case starts from a copy of recipes/fastapi (recipe and project) in a temp
folder and breaks one thing. For each: the exit code is the one errors.py
documents (3 recipe, 4 project, 5 engine, 6 step failed), stderr holds exactly
one ``uvbuild: ...`` message naming the file, key or command at fault and no
traceback, the run left no working container, and its tag was not made.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

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
