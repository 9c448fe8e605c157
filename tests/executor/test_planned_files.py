"""The builder steps unpack the tars written when the build was planned: what ships is
what the keys cover, whatever changes in the project meanwhile."""

from __future__ import annotations

from pathlib import Path

from fake_engine import FakeEngine
from test_executor import build, engine, plan_of, project  # noqa: F401, F811

from uvbuild.build.builder_steps import FILES_IN
from uvbuild.plan.planner import InstallProject, SyncDependencies


def test_the_builder_unpacks_the_planned_tars(engine: FakeEngine, project: Path,  # noqa: F811
                                              tmp_path: Path) -> None:
    plan = plan_of(project)
    sync, install = plan.step("sync-dependencies"), plan.step("install-project")
    assert isinstance(sync, SyncDependencies) and isinstance(install, InstallProject)
    # A file made after the plan is in neither tar, nor in the keys.
    (project / "src" / "app" / "late.py").write_text("made during the build\n")

    build(engine, plan, tmp_path)

    read_from = {m.host for call in engine.called("run") for m in call.kwargs["mounts"]
                 if m.target == FILES_IN}
    assert read_from == {str(Path(sync.manifests_tar).parent),
                         str(Path(install.sources_tar).parent)}
    unpacked = {name for archive in engine.archives for name in archive.names}
    assert "src/app/late.py" not in unpacked
    assert "src/app/__init__.py" in unpacked
