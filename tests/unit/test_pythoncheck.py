"""incontainer/pythoncheck.py: builder.python held to the project's request."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from types import ModuleType

import pytest

DEBIAN_311 = {"implementation": "cpython", "version": "3.11.2", "free_threaded": False,
              "debug": False}


@pytest.fixture
def pythoncheck(incontainer_script: Callable[[str], ModuleType]) -> ModuleType:
    return incontainer_script("pythoncheck.py")


def wanted(versions: list[str], implementation: str | None = None,
           free_threaded: bool | None = None, debug: bool = False) -> dict[str, object]:
    return {"versions": versions, "implementation": implementation,
            "free_threaded": free_threaded, "debug": debug}


@pytest.mark.parametrize(("asked", "met"), [
    (wanted(["3.11"]), True),  # a 3.11 pin on 3.11.2: fine
    (wanted(["3.11.2"]), True),
    (wanted(["3.11.9"]), False),  # another patch release
    (wanted(["3.1"]), False),  # a prefix of whole numbers, not of text
    (wanted(["3.11"], implementation="pypy"), False),
    (wanted(["3.11"], implementation="cpython"), True),
    (wanted(["3.11"], free_threaded=True), False),  # 3.11t on a build with the GIL
    (wanted(["3.11"], free_threaded=False), True),
    (wanted(["3.11"], debug=True), False),
    (wanted([]), False),
])
def test_meets(pythoncheck: ModuleType, asked: dict[str, object], met: bool) -> None:
    assert pythoncheck.meets(asked, DEBIAN_311) is met


def test_reports_the_interpreter_and_exits_3_when_unmet(
        pythoncheck: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    here = ".".join(map(str, sys.version_info[:3]))
    assert pythoncheck.main(["-c", json.dumps(wanted([here]))]) == 0
    assert pythoncheck.main(["-c", json.dumps(wanted(["3.0.1"]))]) == 3
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.startswith("@@uvbuild value python-check {")
                                   for line in lines)
    facts = json.loads(lines[0].split(" ", 3)[3])
    assert facts["version"] == here and facts["implementation"] == sys.implementation.name
    assert set(facts) == {"implementation", "version", "free_threaded", "debug"}
