"""incontainer/bytecode.py on a folder of the host: the dependencies' .pyc files, as uv's
--compile-bytecode makes them, reused from a cache by source and path."""

from __future__ import annotations

import importlib.util
import json
import os
import py_compile
import shutil
import stat
import warnings
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).parents[2] / "src" / "uvbuild" / "incontainer" / "bytecode.py"


@pytest.fixture
def bytecode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bytecode_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    site = tmp_path / "site-packages"
    monkeypatch.setattr(module.sysconfig, "get_path", lambda name: str(site))
    return module


def make_tree(site: Path, extra: int = 0) -> None:
    (site / "pkg" / "sub").mkdir(parents=True)
    (site / "pkg" / "__init__.py").write_text("VALUE = 1\n")
    (site / "pkg" / "sub" / "deep.py").write_text("def f():\n    return 'deep'\n")
    (site / "pkg" / "bad.py").write_text("print 'python 2'\n")  # does not compile
    (site / "pkg" / "link.py").symlink_to(site / "pkg" / "__init__.py")  # uv skips links
    (site / "pkg" / "__pycache__").mkdir()
    (site / "pkg" / "__pycache__" / "stray.py").write_text("X = 1\n")  # not walked
    os.chmod(site / "pkg" / "sub" / "deep.py", 0o444)
    for n in range(extra):
        (site / f"mod{n:02}.py").write_text(f"N = {n}\n")


def expected(site: Path, tmp_path: Path) -> dict[str, bytes]:
    """What py_compile makes of each file uv would compile (as compileall calls it)."""
    made = {}
    for source in sorted(site.rglob("*.py")):
        if source.is_symlink() or "__pycache__" in source.parts or source.name == "bad.py":
            continue
        target = tmp_path / "expected.pyc"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            py_compile.compile(str(source), cfile=str(target), doraise=True,
                               invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
        made[str(source)] = target.read_bytes()
    return made


def pycs(site: Path) -> dict[str, bytes]:
    found = {}
    for pyc in site.rglob("__pycache__/*.pyc"):
        source = pyc.parent.parent / (pyc.name.split(".")[0] + ".py")
        found[str(source)] = pyc.read_bytes()
    return found


def counts(out: str) -> dict[str, int]:
    line = next(line for line in out.splitlines() if line.startswith("@@uvbuild value bytecode "))
    return dict(json.loads(line.split(" ", 3)[3]))


def clear(site: Path) -> None:
    for folder in list(site.rglob("__pycache__")):
        if folder != site / "pkg" / "__pycache__":
            shutil.rmtree(folder)
    for pyc in (site / "pkg" / "__pycache__").glob("*.pyc"):
        pyc.unlink()


@pytest.mark.parametrize("extra", [0, 45], ids=["one-process", "forked"])
def test_compiles_what_uv_compiles_then_reuses_it(
        bytecode: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        extra: int) -> None:
    site, cache = tmp_path / "site-packages", tmp_path / "cache"
    make_tree(site, extra)
    want = expected(site, tmp_path)

    bytecode.main(str(cache))
    assert pycs(site) == want
    assert counts(capsys.readouterr().out) == {"compiled": len(want) + 1, "reused": 0}
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in site.rglob("__pycache__/*.pyc")}
    # As py_compile makes them: the source's mode, writable by its owner.
    assert modes[site / "pkg" / "sub" / "__pycache__" / Path(
        importlib.util.cache_from_source("deep.py")).name] == 0o644 & ~current_umask()

    clear(site)
    bytecode.main(str(cache))
    assert pycs(site) == want
    assert counts(capsys.readouterr().out) == {"compiled": 1, "reused": len(want)}
    assert {p: stat.S_IMODE(p.stat().st_mode)
            for p in site.rglob("__pycache__/*.pyc")} == modes


def test_a_cache_entry_of_other_source_or_cut_short_is_not_used(
        bytecode: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site, cache = tmp_path / "site-packages", tmp_path / "cache"
    make_tree(site)
    bytecode.main(str(cache))
    entries = sorted(p for p in cache.rglob("*") if p.is_file())
    assert len(entries) == 2 and not [p for p in entries if p.name.endswith(".part")]
    entries[0].write_bytes(entries[0].read_bytes()[:12])
    entries[1].write_bytes(entries[1].read_bytes()[:8] + b"\0" * 8
                           + entries[1].read_bytes()[16:])
    clear(site)
    capsys.readouterr()
    bytecode.main(str(cache))
    assert counts(capsys.readouterr().out) == {"compiled": 3, "reused": 0}
    assert pycs(site) == expected(site, tmp_path)


def test_fresh_reads_no_cache_entry(bytecode: ModuleType, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    site, cache = tmp_path / "site-packages", tmp_path / "cache"
    make_tree(site)
    bytecode.main(str(cache))
    clear(site)
    capsys.readouterr()
    bytecode.main(str(cache), fresh=True)
    assert counts(capsys.readouterr().out) == {"compiled": 3, "reused": 0}
    assert pycs(site) == expected(site, tmp_path)


def test_warnings_are_neither_printed_nor_errors(
        bytecode: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site-packages"
    site.mkdir()
    (site / "old.py").write_text('PATTERN = "\\d+ \\w"\nCHECK = 1 is 1\n')
    monkeypatch.setenv("PYTHONWARNINGS", "error")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bytecode.main(str(tmp_path / "cache"))
    out = capsys.readouterr()
    assert counts(out.out) == {"compiled": 1, "reused": 0} and out.err == ""
    assert pycs(site) == expected(site, tmp_path)


def test_the_key_holds_the_path_the_code_names(bytecode: ModuleType) -> None:
    """The same source at another path compiles to other bytes (co_filename)."""
    assert bytecode.key_of("/a/x.py", b"X = 1\n") != bytecode.key_of("/b/x.py", b"X = 1\n")
    assert bytecode.key_of("/a/x.py", b"X = 1\n") != bytecode.key_of("/a/x.py", b"X = 2\n")


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
