"""Hostile input stays small, through the real CLI (issue 10, items 3, 4 and 6).

- A recipe whose aliases expand to gigabytes is refused at once, naming the line.
- An ignore pattern with a dozen `**` on a deep folder is matched at once.
- A 300 MiB project file is hashed and copied in chunks: uvbuild's peak memory stays
  far below the file's size, and the image holds the whole file.

Times are CPU seconds of the uvbuild process (resource usage of the waited child), so a
busy CI machine does not make them flaky, and each is compared with an ordinary plan of
the same project: about 0.5-0.8 s of it is Python starting and importing uvbuild. Before
the fix these took minutes and gigabytes. Each project is a copy of recipes/flask (an
unpackaged project), so the bases are the ones the recipe tests already made.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
FLASK = REPO_ROOT / "recipes" / "flask"
FLASK_RECIPE = REPO_ROOT / "recipes" / "flask.yaml"
RECIPE_ERROR, PROJECT_ERROR = 3, 4


def copy_flask(root: Path) -> Path:
    """A copy of recipes/flask and its recipe under `root`; returns the recipe's path."""
    shutil.copytree(FLASK, root / "flask", ignore=shutil.ignore_patterns(".venv", "__pycache__"))
    recipe = root / "recipe.yaml"
    text = FLASK_RECIPE.read_text()
    assert "\nproject: flask\n" in text, "recipes/flask.yaml changed: update this test"
    recipe.write_text(text)
    return recipe


def timed(run: Callable[[], subprocess.CompletedProcess[str]]
          ) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """(result, CPU seconds of the child, wall seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    result = run()
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"cpu {cpu:.2f}s, wall {wall:.2f}s")
    return result, cpu, wall


def assert_planned_at_once(cpu: float, control: float) -> None:
    """Under a second, and no more than an ordinary plan's work plus a little."""
    assert cpu < 1.0 or cpu - control < 0.3, (cpu, control)
    assert cpu < 2.0, (cpu, control)


def test_alias_amplification_is_refused_at_once(
    tmp_path: Path, run_uvbuild: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    """200 kB under builder.env and 3,000 aliases of it: 600 MB expanded (1.2 GB of
    memory and counting before the bound)."""
    recipe = copy_flask(tmp_path)
    _, control, _ = timed(lambda: run_uvbuild(["plan", "--no-engine", recipe]))
    text = recipe.read_text()
    anchor = "  python: /usr/bin/python3\n"
    aliases = "".join(f"    V{n}: *big\n" for n in range(3000))
    recipe.write_text(text.replace(anchor, f"{anchor}  env:\n    BIG: &big {'x' * 200_000}\n"
                                           + aliases, 1))
    line = recipe.read_text().splitlines().index("    V4: *big") + 1  # 6 x 200 kB > 1 MiB

    result, cpu, _ = timed(lambda: run_uvbuild(["plan", "--no-engine", recipe], check=False))

    assert result.returncode == RECIPE_ERROR, result.stderr
    assert result.stderr.startswith(
        f"uvbuild: recipe error: {recipe}:{line}: the recipe is too large with its aliases "
        "expanded: this alias *big takes it past the limit of 1,048,576 characters")
    assert "Traceback" not in result.stderr
    assert_planned_at_once(cpu, control)


def test_a_dozen_double_stars_on_a_deep_folder_plan_at_once(
    tmp_path: Path, run_uvbuild: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    """`**/` x 12 then `x`, against a 22-deep folder: the old regex never finished."""
    recipe = copy_flask(tmp_path)
    _, control, _ = timed(lambda: run_uvbuild(["plan", "--no-engine", recipe]))
    deep = tmp_path / "flask" / Path(*["d"] * 22)
    deep.mkdir(parents=True)
    (deep / "file.txt").write_text("kept\n")
    (deep / "x").write_text("ignored\n")
    ignore = tmp_path / "flask" / ".containerignore"
    ignore.write_text(ignore.read_text() + "/".join(["**"] * 12) + "/x\n")

    result, cpu, _ = timed(lambda: run_uvbuild(["plan", "--no-engine", recipe]))

    assert result.returncode == 0
    assert_planned_at_once(cpu, control)


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [("  labels:\n", "  labels:\n    big: %s\n", "runtime.labels.big"),
     ('  env: {PORT: "8080"}\n', '  env: {PORT: "8080", BIG: %s}\n', "runtime.env.BIG"),
     ("  expose: [8080]\n", "  expose: [8080]\n  cmd: [%s]\n", "runtime.cmd")],
    ids=["label", "env", "cmd"],
)
def test_a_value_too_long_for_argv_is_a_recipe_error(
    tmp_path: Path, run_uvbuild: Callable[..., subprocess.CompletedProcess[str]],
    old: str, new: str, key: str,
) -> None:
    """128 kB went to `buildah config` and died with `Argument list too long`."""
    recipe = copy_flask(tmp_path)
    text = recipe.read_text()
    assert old in text, "recipes/flask.yaml changed: update this test"
    recipe.write_text(text.replace(old, new % ("v" * 131_072), 1))
    line = next(n for n, text in enumerate(recipe.read_text().splitlines(), 1) if "vvv" in text)

    result = run_uvbuild(["plan", "--no-engine", recipe], check=False)

    assert result.returncode == RECIPE_ERROR
    assert result.stderr.startswith(f"uvbuild: recipe error: {recipe}:{line}: {key}: too long: ")
    assert "the limit is 32,768 bytes per value" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_sparse_file_is_refused_with_its_sizes(
    tmp_path: Path, run_uvbuild: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    """A 1 GiB file of holes: 83 s and 1.08 GB of memory, then shipped dense."""
    recipe = copy_flask(tmp_path)
    with (tmp_path / "flask" / "disk.img").open("wb") as stream:
        stream.truncate(1 << 30)

    result, cpu, _ = timed(lambda: run_uvbuild(["plan", "--no-engine", recipe], check=False))

    assert result.returncode == PROJECT_ERROR
    assert result.stderr.startswith(f"uvbuild: project error: {tmp_path}/flask/disk.img is a "
                                    "sparse file: 1 GiB long, of which 1 GiB are holes")
    assert "exclude it in .containerignore" in result.stderr
    assert cpu < 2.0


# Runs the CLI in-process and records this process's own peak RSS when it exits: the
# figure for uvbuild itself, not for buildah or the builder's Python.
PEAK_RSS_WRAPPER = """\
import atexit, resource, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(
    str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)))
from uvbuild.cli import main
sys.argv[0] = "uvbuild"
main()
"""
BIG_FILE = 300 << 20


def test_a_300_mib_file_builds_in_flat_memory(tmp_path: Path, containers_conf: Path) -> None:
    recipe = copy_flask(tmp_path)
    data = tmp_path / "flask" / "data"
    data.mkdir()
    chunk = os.urandom(1 << 20)  # dense: every block written
    with (data / "blob.bin").open("wb") as stream:
        for _ in range(BIG_FILE >> 20):
            stream.write(chunk)
    image = "localhost/uvbuild-itest/bigfile:latest"
    peak_file = tmp_path / "peak-rss-kib"

    result, cpu, wall = timed(lambda: subprocess.run(
        [sys.executable, "-c", PEAK_RSS_WRAPPER, str(peak_file), "build", str(recipe),
         "-t", image],
        capture_output=True, text=True, timeout=900, check=False))
    (data / "blob.bin").unlink()  # 300 MiB of disk back before the checks

    assert result.returncode == 0, result.stderr
    peak_kib = int(peak_file.read_text())
    print(f"uvbuild peak RSS {peak_kib / 1024:.0f} MiB (cpu {cpu:.1f}s, wall {wall:.1f}s)")
    assert peak_kib < 200 * 1024
    try:
        container = subprocess.run(["buildah", "from", "--pull-never", image], check=True,
                                   capture_output=True, text=True).stdout.strip()
        try:
            mount = subprocess.run(["buildah", "mount", container], check=True,
                                   capture_output=True, text=True).stdout.strip()
            assert (Path(mount) / "app/data/blob.bin").stat().st_size == BIG_FILE
        finally:
            subprocess.run(["buildah", "rm", container], check=True, capture_output=True)
    finally:
        subprocess.run(["buildah", "rmi", image], check=False, capture_output=True)
