"""incontainer/bytecode.py on a folder of the host (it starts compiling processes of the
running Python): the dependencies' .pyc files, compiled as uv's --compile-bytecode
compiles them, and reused from a cache by source, path and interpreter."""

from __future__ import annotations

import importlib.util
import json
import marshal
import os
import py_compile
import shutil
import stat
import warnings
from collections.abc import Callable
from pathlib import Path
from types import CodeType, ModuleType

import pytest

CHECKED = py_compile.PycInvalidationMode.CHECKED_HASH


@pytest.fixture
def bytecode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             incontainer_script: Callable[[str], ModuleType]) -> ModuleType:
    module = incontainer_script("bytecode.py")
    site = tmp_path / "site-packages"
    monkeypatch.setattr(module.sysconfig, "get_path", lambda name: str(site))
    # As in the builder: hash-checked .pyc files (py_compile's default with it).
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    monkeypatch.delenv("PYC_INVALIDATION_MODE", raising=False)
    return module


def make_tree(site: Path, extra: int = 0) -> None:
    (site / "pkg" / "sub").mkdir(parents=True)
    (site / "pkg" / "__init__.py").write_text("VALUE = 1\n")
    (site / "pkg" / "sub" / "deep.py").write_text(
        "PORTS = {':80', ':443'}\n\ndef f(x):\n    return x in {':80', ':443'}\n")
    (site / "pkg" / "bad.py").write_text("print 'python 2'\n")  # does not compile
    (site / "pkg" / "link.py").symlink_to(site / "pkg" / "__init__.py")  # uv skips links
    (site / "pkg" / "__pycache__").mkdir()
    (site / "pkg" / "__pycache__" / "stray.py").write_text("X = 1\n")  # not walked
    os.chmod(site / "pkg" / "sub" / "deep.py", 0o444)
    for n in range(extra):
        (site / f"mod{n:02}.py").write_text(f"N = {n}\n")


def compilable(site: Path) -> list[Path]:
    """The files uv would compile (and that compile)."""
    return [p for p in sorted(site.rglob("*.py")) if not p.is_symlink()
            and "__pycache__" not in p.parts and p.name != "bad.py"]


def same_code_as_py_compile(site: Path, made: dict[str, bytes], tmp_path: Path) -> None:
    """Each .pyc holds the code py_compile makes of its source (marshal may mark shared
    objects differently: the bytes are the compiling process's), with its header."""
    assert sorted(made) == [str(p) for p in compilable(site)]
    for source in compilable(site):
        target = tmp_path / "expected.pyc"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            py_compile.compile(str(source), cfile=str(target), doraise=True,
                               invalidation_mode=CHECKED)
        want = target.read_bytes()
        got = made[str(source)]
        assert got[:16] == want[:16], source
        code = marshal.loads(got[16:])
        assert isinstance(code, CodeType) and code == marshal.loads(want[16:]), source
        assert code.co_filename == str(source)


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


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("extra", [0, 45], ids=["one-worker", "two-workers"])
def test_compiles_what_uv_compiles_then_reuses_the_same_bytes(
        bytecode: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, extra: int) -> None:
    site, cache = tmp_path / "site-packages", tmp_path / "cache"
    make_tree(site, extra)
    monkeypatch.setattr(bytecode.os, "cpu_count", lambda: 2)  # (two workers for 45)

    bytecode.main(str(cache))
    fresh = pycs(site)
    same_code_as_py_compile(site, fresh, tmp_path)
    assert counts(capsys.readouterr().out) == {"compiled": len(fresh) + 1, "reused": 0}
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in site.rglob("__pycache__/*.pyc")}
    # As py_compile makes them: the source's mode, writable by its owner.
    deep = site / "pkg" / "sub" / "__pycache__" / Path(
        importlib.util.cache_from_source("deep.py")).name
    assert modes[deep] == 0o644 & ~current_umask()

    clear(site)
    bytecode.main(str(cache))
    assert pycs(site) == fresh
    assert counts(capsys.readouterr().out) == {"compiled": 1, "reused": len(fresh)}
    assert {p: stat.S_IMODE(p.stat().st_mode)
            for p in site.rglob("__pycache__/*.pyc")} == modes


def test_a_file_compiled_alone_gives_the_bytes_it_gives_among_others(
        bytecode: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A lock change compiles only its new files: their bytes must be what a first build
    compiling every file gives (the workers hold nothing else)."""
    site, cache = tmp_path / "site-packages", tmp_path / "cache"
    make_tree(site, 30)
    bytecode.main(str(cache))
    fresh = pycs(site)
    entries = sorted(p for p in cache.rglob("*") if p.is_file())
    for entry in entries[::3]:
        entry.unlink()
    clear(site)
    capsys.readouterr()
    bytecode.main(str(cache))
    assert counts(capsys.readouterr().out)["reused"] == len(entries) - len(entries[::3])
    assert pycs(site) == fresh


@pytest.mark.parametrize("damage", ["cut in the header", "cut in the code",
                                    "a byte of the code", "the digest"])
def test_a_damaged_cache_entry_is_not_used(
        bytecode: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        damage: str) -> None:
    site, cache = tmp_path / "site-packages", tmp_path / "cache"
    make_tree(site)
    bytecode.main(str(cache))
    fresh = pycs(site)
    entries = sorted(p for p in cache.rglob("*") if p.is_file())
    assert len(entries) == 2 and not [p for p in entries if p.name.endswith(".part")]
    for entry in entries:
        data = bytearray(entry.read_bytes())
        if damage == "cut in the header":
            data = data[:bytecode.DIGEST + 12]
        elif damage == "cut in the code":
            data = data[:bytecode.DIGEST + 20]
        elif damage == "a byte of the code":
            data[-1] ^= 0xFF
        else:
            data[0] ^= 0xFF
        entry.write_bytes(bytes(data))
    clear(site)
    capsys.readouterr()
    bytecode.main(str(cache))
    assert counts(capsys.readouterr().out) == {"compiled": 3, "reused": 0}
    assert pycs(site) == fresh


def test_a_cache_entry_of_another_source_is_not_used(
        bytecode: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An entry whose .pyc is whole but of other source (a collision, a hand-made file)
    is not used: the .pyc's source hash decides."""
    site, cache = tmp_path / "site-packages", tmp_path / "cache"
    make_tree(site)
    bytecode.main(str(cache))
    fresh = pycs(site)
    entries = sorted(p for p in cache.rglob("*") if p.is_file())
    entries[0].write_bytes(entries[1].read_bytes())
    clear(site)
    capsys.readouterr()
    bytecode.main(str(cache))
    assert counts(capsys.readouterr().out) == {"compiled": 2, "reused": 1}
    assert pycs(site) == fresh


def test_fresh_reads_no_cache_entry(bytecode: ModuleType, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    site, cache = tmp_path / "site-packages", tmp_path / "cache"
    make_tree(site)
    bytecode.main(str(cache))
    fresh = pycs(site)
    clear(site)
    capsys.readouterr()
    bytecode.main(str(cache), fresh=True)
    assert counts(capsys.readouterr().out) == {"compiled": 3, "reused": 0}
    assert pycs(site) == fresh


def test_platlib_that_is_purelib_by_a_link_is_compiled_once_under_purelib(
        bytecode: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Fedora-family Pythons: platlib is lib64/..., and the venv's lib64 links to lib."""
    site = tmp_path / "site-packages"
    make_tree(site)
    (tmp_path / "lib64").symlink_to(tmp_path)
    paths = {"purelib": str(site), "platlib": str(tmp_path / "lib64" / "site-packages")}
    monkeypatch.setattr(bytecode.sysconfig, "get_path", lambda name: paths[name])
    bytecode.main(str(tmp_path / "cache"))
    made = pycs(site)
    assert counts(capsys.readouterr().out) == {"compiled": len(made) + 1, "reused": 0}
    same_code_as_py_compile(site, made, tmp_path)  # (their code names the purelib path)


def test_no_site_packages_is_an_error(bytecode: ModuleType, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as raised:
        bytecode.main(str(tmp_path / "cache"))
    assert raised.value.code == 3
    assert "no site-packages folder" in capsys.readouterr().err


@pytest.mark.parametrize("named", ["UNCHECKED_HASH", "TIMESTAMP"])
def test_pyc_invalidation_mode_is_honoured_as_by_uv(
        bytecode: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, named: str) -> None:
    site, cache = tmp_path / "site-packages", tmp_path / "cache"
    make_tree(site)
    monkeypatch.setenv("PYC_INVALIDATION_MODE", named)
    bytecode.main(str(cache))
    flags = {"UNCHECKED_HASH": 1, "TIMESTAMP": 0}[named]
    assert {int.from_bytes(data[4:8], "little") for data in pycs(site).values()} == {flags}
    clear(site)
    capsys.readouterr()
    bytecode.main(str(cache))
    # A timestamp-based .pyc holds its source's time: never taken from the cache.
    reused = 0 if named == "TIMESTAMP" else 2
    assert counts(capsys.readouterr().out) == {"compiled": 3 - reused, "reused": reused}


def test_a_pyc_invalidation_mode_that_names_no_mode_is_an_error(
        bytecode: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    make_tree(tmp_path / "site-packages")
    monkeypatch.setenv("PYC_INVALIDATION_MODE", "checked-hash")
    with pytest.raises(SystemExit) as raised:
        bytecode.main(str(tmp_path / "cache"))
    assert raised.value.code == 1
    assert "may be TIMESTAMP, CHECKED_HASH, UNCHECKED_HASH" in capsys.readouterr().err


def test_warnings_are_neither_printed_nor_errors(
        bytecode: ModuleType, tmp_path: Path, capfd: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site-packages"
    site.mkdir()
    (site / "old.py").write_text('PATTERN = "\\d+ \\w"\nCHECK = 1 is 1\n')
    monkeypatch.setenv("PYTHONWARNINGS", "error")
    bytecode.main(str(tmp_path / "cache"))
    out = capfd.readouterr()
    assert counts(out.out) == {"compiled": 1, "reused": 0} and out.err == ""
    same_code_as_py_compile(site, pycs(site), tmp_path)


def test_the_key_holds_the_path_the_mode_and_the_worker(bytecode: ModuleType) -> None:
    """The same source at another path compiles to other bytes (co_filename)."""
    key = bytecode.key_of
    assert key("p", "/a/x.py", b"X = 1\n") != key("p", "/b/x.py", b"X = 1\n")
    assert key("p", "/a/x.py", b"X = 1\n") != key("p", "/a/x.py", b"X = 2\n")
    checked, unchecked = (bytecode.interpreter(mode) for mode in (
        CHECKED, py_compile.PycInvalidationMode.UNCHECKED_HASH))
    assert checked != unchecked
    assert bytecode.interpreter(CHECKED) == checked
    bytecode.WORKER += "\n"
    assert bytecode.interpreter(CHECKED) != checked
