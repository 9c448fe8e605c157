"""The one error hierarchy. Raised anywhere; turned into a message and exit code only by the CLI.

Exit codes: 1 other, 2 command-line usage (click), 3 recipe, 4 project, 5 engine,
6 a build step failed, 130 interrupted.
"""

from __future__ import annotations


class UvbuildError(Exception):
    """Base of every error a user can cause or fix. `exit_code` differs by kind."""

    exit_code = 1
    kind = "error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message


class RecipeError(UvbuildError):
    """The recipe file is not valid YAML or breaks RECIPE.md."""

    exit_code = 3
    kind = "recipe error"


class ProjectError(UvbuildError):
    """The project (pyproject.toml, uv.lock, sources) cannot be built as it is."""

    exit_code = 4
    kind = "project error"


class EngineError(UvbuildError):
    """buildah/podman/mmdebstrap is missing, misconfigured or failed outside a user step."""

    exit_code = 5
    kind = "engine error"


class StepFailed(UvbuildError):
    """A build step the user controls (uv sync, builder.run, runtime.test...) failed."""

    exit_code = 6
    kind = "step failed"


class Interrupted(UvbuildError):
    """The build was interrupted (SIGINT/SIGTERM); everything it made was removed."""

    exit_code = 130
    kind = "interrupted"
