"""The `io.uvbuild.*` image labels: what uvbuild records on the images it commits.

They are read back by later builds (the interpreter facts, the installed project, the
runtime user) and by the sweep of what killed builds left (OWNED_LABELS), so
they are spelled here only.
"""

from __future__ import annotations

STEP_LABEL = "io.uvbuild.step"  # the plan step that committed the image
BOOTSTRAP_LABEL = "io.uvbuild.bootstrap"  # a bootstrapped base: "debian/<suite>[/slim]"
KEY_LABEL = "io.uvbuild.key"  # the final image's step key
PYTHON_LABEL = "io.uvbuild.python"  # the venv's interpreter facts (JSON)
INSTALLED_LABEL = "io.uvbuild.installed"  # the project's installed distributions (JSON)
USER_LABEL = "io.uvbuild.user"  # the runtime user

# Every image uvbuild commits carries one of these: an unnamed one is a build's leftover.
OWNED_LABELS = (STEP_LABEL, BOOTSTRAP_LABEL)
