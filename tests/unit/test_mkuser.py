"""incontainer/mkuser.py: the runtime user, made in the runtime root if missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from uvbuild.incontainer import mkuser

PASSWD = "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(PASSWD)
    (tmp_path / "etc" / "group").write_text(GROUP)
    (tmp_path / "etc" / "shadow").write_text("root:*:::::::\n")
    monkeypatch.setattr(mkuser.os, "chown", lambda *args: None)  # (tests need not be root)
    return tmp_path


def test_a_name_is_made_with_the_first_free_id(root: Path) -> None:
    assert mkuser.ensure_user("app", str(root)) == (10001, 10001)
    assert "app:x:10001:10001::/home/app:/bin/false" in (root / "etc/passwd").read_text()
    assert "app:x:10001:" in (root / "etc/group").read_text()
    assert "app:!:::::::" in (root / "etc/shadow").read_text()
    assert (root / "home/app").is_dir()
    assert mkuser.ensure_user("app", str(root)) == (10001, 10001)  # found, not made again
    assert (root / "etc/passwd").read_text().count("\napp:") == 1


def test_a_number_the_base_does_not_know_gets_an_entry(root: Path) -> None:
    """So `id -un`, getpass and HOME work for a runtime user given by number."""
    assert mkuser.ensure_user("1234", str(root)) == (1234, 1234)
    assert "app:x:1234:1234::/home/app:/bin/false" in (root / "etc/passwd").read_text()
    assert "app:x:1234:" in (root / "etc/group").read_text()


def test_a_number_the_base_knows_keeps_its_entry(root: Path) -> None:
    assert mkuser.ensure_user("65534", str(root)) == (65534, 65534)
    assert (root / "etc/passwd").read_text() == PASSWD


def test_a_number_beside_a_base_user_named_app_gets_another_name(root: Path) -> None:
    (root / "etc/passwd").write_text(PASSWD + "app:x:999:999::/app:/bin/false\n")
    (root / "etc/group").write_text(GROUP + "app:x:999:\nstaff:x:1234:\n")
    assert mkuser.ensure_user("1234", str(root)) == (1234, 1234)
    assert "user1234:x:1234:1234:" in (root / "etc/passwd").read_text()
    assert "user1234" not in (root / "etc/group").read_text()  # gid 1234 is staff's


def test_root_is_root(root: Path) -> None:
    assert mkuser.ensure_user("root", str(root)) == (0, 0)
    assert (root / "etc/passwd").read_text() == PASSWD
