"""The extras and dependency groups `builder.sync` names, checked against the project.

uv refuses `uv sync --extra X` for an extra the package does not define and `--group G`
for a group neither the package nor (for a workspace member) its workspace root
defines. Met in the builder, that is a failed step after containers have started (and
told as a build failure); the pyproject.toml files say it before any container, so
`uvbuild plan` refuses the recipe too. Only what uv refuses is refused: names compare
as uv compares them (PEP 503 normalized), and dynamic extras are not judged.
"""

from __future__ import annotations

from collections.abc import Sequence

from uvbuild.errors import ProjectError
from uvbuild.project.model import Project
from uvbuild.project.pep508 import normalize_name
from uvbuild.recipe.model import Recipe


def check_sync(recipe: Recipe, project: Project) -> None:
    """Raise ProjectError naming the recipe's key, the unknown names and those that
    exist if builder.sync asks for an extra or a group the project does not have."""
    sync = recipe.builder.sync
    pyproject = project.root / "pyproject.toml"
    problems: list[str] = []
    if project.extras is not None:
        unknown = _unknown(sync.extras, project.extras)
        if unknown:
            problems.append(
                f"{recipe.path}: builder.sync.extras: {project.name} has no "
                f"{_plural('extra', unknown)} {_names(unknown)} "
                f"([project.optional-dependencies] in {pyproject}); "
                f"its extras: {_names(project.extras, quoted=False)}")
    if project.groups is not None:
        unknown = _unknown(sync.groups, project.groups)
        if unknown:
            where = f"[dependency-groups] in {pyproject}"
            if project.workspace_root is not None:
                where += f" or {project.workspace_root / 'pyproject.toml'}"
            problems.append(
                f"{recipe.path}: builder.sync.groups: {project.name} has no dependency "
                f"{_plural('group', unknown)} {_names(unknown)} ({where}); its groups: "
                f"{_names(project.groups, quoted=False)}")
    if problems:
        raise ProjectError(
            "\n".join(problems),
            hint="uv sync would refuse it in the builder: name one the project has, or "
            "add it to pyproject.toml and run `uv lock`")


def _unknown(asked: Sequence[str], known: Sequence[str]) -> list[str]:
    have = {normalize_name(name) for name in known}
    return [name for name in asked if normalize_name(name) not in have]


def _plural(noun: str, names: Sequence[str]) -> str:
    return noun if len(names) == 1 else noun + "s"


def _names(names: Sequence[str], *, quoted: bool = True) -> str:
    if not names:
        return "none"
    return ", ".join(repr(name) if quoted else name for name in names)
