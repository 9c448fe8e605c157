"""The builder steps unpack the tars planned with the build, written when they run: what
ships is what the keys cover, and an unchanged rebuild writes none."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_engine import FakeEngine
from test_executor import build, engine, plan_of, project  # noqa: F401, F811

from uvbuild.build.builder_steps import FILES_IN
from uvbuild.errors import ProjectError
from uvbuild.plan.planner import InstallProject, SyncDependencies


@pytest.mark.parametrize("overlapping", [True, False], ids=["root", "rootless"])
def test_the_builder_unpacks_the_planned_tars(engine: FakeEngine, project: Path,  # noqa: F811
                                              tmp_path: Path, overlapping: bool) -> None:
    engine.overlapping = overlapping
    plan = plan_of(project)
    sync, install = plan.step("sync-dependencies"), plan.step("install-project")
    assert isinstance(sync, SyncDependencies) and isinstance(install, InstallProject)
    # A file made after the plan is in neither tar, nor in the keys.
    (project / "src" / "app" / "late.py").write_text("made during the build\n")

    build(engine, plan, tmp_path)

    read_from = {Path(m.host).name for call in engine.called("run")
                 for m in call.kwargs["mounts"] if m.target == FILES_IN}
    # The sources go into the folder of the install's run started early (as root: see
    # builder_steps._start_follow_up), else into one of their own.
    assert read_from == {"files-manifests",
                         "follow-up-files" if overlapping else "files-sources"}
    unpacked = {name for archive in engine.archives for name in archive.names}
    assert "src/app/late.py" not in unpacked
    assert "src/app/__init__.py" in unpacked


def test_a_file_edited_before_its_step_runs_fails_the_build(engine: FakeEngine,  # noqa: F811
                                                            project: Path,
                                                            tmp_path: Path) -> None:
    """The sources are written when install-project runs: an edit made since the plan
    would ship content its key does not cover, so the build stops, naming the cause,
    and leaves no container behind."""
    plan = plan_of(project)
    (project / "src" / "app" / "__init__.py").write_text("edited = True\n")

    with pytest.raises(ProjectError) as raised:
        build(engine, plan, tmp_path)

    assert raised.value.message == (f"the project's files in {project} changed while uvbuild "
                                    "was building (its sources differ from what the build "
                                    "planned)")
    assert engine.live == {}
