"""add-project: the runtime image, assembled by uvbuild from the base and its layer tars.

No buildah commit: the runtime base's manifest and config, the layers the layer steps
keep (runtime packages, user, dependencies, project) and the config the recipe asks
for become an OCI layout (output/oci.py) holding only the new layers, which the engine
imports keeping its digests. The image ID is then the config's digest: the same in
every kind of image store. `runtime.test` runs in a container of the imported image,
which is removed if a test fails (nothing tagged; the output name untouched).

The import names the image UNTESTED_REPO/...: only once its tests pass does it get its
cache name (which later builds take as "made and tested"), given by the build with the
output name in one call (TestedImage). A build killed meanwhile
leaves that name alone, which the next build's import takes over and `cache prune`
removes.

When the dependencies layer is new (a first build, a lock change), the layers below the
project's are imported while the project installs (`stage`), so the final import only
writes the project layer into the store.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

from uvbuild.build.context import Inputs, StepContext
from uvbuild.build.labels import KEY_LABEL, PYTHON_LABEL, STEP_LABEL, USER_LABEL
from uvbuild.build.results import LayerSet, TestedImage
from uvbuild.build.runtime_steps import (
    STARTED,
    check_python,
    final_config,
    judge_tests,
    run_tests,
)
from uvbuild.engine.buildah import ImageConfig
from uvbuild.errors import EngineError, StepFailed
from uvbuild.output import oci
from uvbuild.plan.planner import AddProject

UNTESTED_REPO = "localhost/uvbuild-untested"
# The layer steps whose layers go on the runtime base, in this order.
LAYERS_FROM = ("prepare-runtime", "dependencies-layer", "project-layer")


def untested_ref(step: AddProject) -> str:
    """The name an assembled image has until its tests pass."""
    return f"{UNTESTED_REPO}/{step.name}-{step.key[:32]}:latest"


def read_base(build: StepContext, step: AddProject, base_ref: str) -> oci.BaseImage:
    """The runtime base's manifest and config (to assemble on top of it)."""
    return oci.base_image(*build.engine.image_manifest(base_ref))


def open_base(build: StepContext, step: AddProject, inputs: Inputs) -> oci.BaseImage:
    """read_base as soon as the base is resolved (StepKind.opens): two skopeo calls off
    the way to the image, while the layers are made."""
    return read_base(build, step, inputs.ref("runtime-base"))


@dataclasses.dataclass(frozen=True, slots=True)
class Staged:
    """The runtime base with the runtime's and the dependencies' layers, imported while
    the project installs (`stage`): its name, which the build removes at its end."""

    name: str


def staged_ref(step: AddProject) -> str:
    """The name the staged import has until the build ends."""
    return f"{UNTESTED_REPO}/{step.name}-{step.key[:32]}-staged:latest"


def stage(build: StepContext, step: AddProject, inputs: Inputs) -> Staged | None:
    """Import the base's new layers up to the dependencies (runtime packages, user,
    /app/.venv) while install-project runs (StepKind.opens, once dependencies-layer was
    made this run: a first build or a lock change).

    An image store keeps a layer on top of its parent: a new dependencies layer on a
    base is written into the store when an image holding it is imported, about half a
    second for a venv of 18 MB here. Imported now, beside the install, it is there when
    add-project imports the whole image, which then writes only the project layer.
    The staged image is only a holder of those layers: named `staged_ref`, removed when
    the build ends (its layers stay, under the final image). A failure here costs only
    the time: add-project's import writes what is missing.
    """
    base = inputs.opened(oci.BaseImage)
    layers = [layer for name in LAYERS_FROM[:2]
              for layer in _present(inputs.of(name, LayerSet)).layers]
    if base is None or not layers:
        return None
    layout = build.scratch_dir("staged-layout")
    oci.write_layout(layout, base, layers, ImageConfig(labels=((STEP_LABEL, step.name),)),
                     timestamp=build.plan.timestamp)
    name = staged_ref(step)
    try:
        # After the install's `buildah run` starts; not at all if no install runs (a
        # dependencies layer rewritten from its cached image) or the build failed.
        with build.background_import(beside_install=True) as worth_it:
            if not worth_it:
                return None
            build.drop_at_end(name)
            build.engine.import_layout(layout, name, background=True)
    except EngineError:
        return None
    return Staged(name)


def add_project(build: StepContext, step: AddProject, inputs: Inputs) -> TestedImage:
    """Assemble, import and test the final image (named by the build: TestedImage)."""
    build.nothing_to_wait_for()  # every builder step is over
    sets = {name: _present(inputs.of(name, LayerSet)) for name in LAYERS_FROM}
    runtime, deps = sets["prepare-runtime"].facts, sets["dependencies-layer"].facts
    check_python(_python(deps.get("python")), _python(runtime.get("python")))
    base = inputs.opened(oci.BaseImage) or read_base(build, step, inputs.ref("runtime-base"))
    base_env = tuple(json.loads(base.config).get("config", {}).get("Env") or ())
    user = str(runtime.get("user") or "")
    labels = {STEP_LABEL: step.name, KEY_LABEL: step.key, USER_LABEL: user,
              PYTHON_LABEL: json.dumps(_python(runtime.get("python")))}
    settings = final_config(step, base_env, labels)
    # The step's own labels win over the recipe's (as a commit's labels did).
    settings = dataclasses.replace(settings, user=user or None, labels=tuple(
        sorted({**dict(settings.labels), **labels}.items())))
    layers = [layer for name in LAYERS_FROM for layer in sets[name].layers]
    layout = build.scratch_dir("layout")
    assembled = oci.write_layout(layout, base, layers, settings, timestamp=build.plan.timestamp)
    untested = untested_ref(step)
    staged = inputs.opened(Staged)  # the base's new layers below the project's
    unstaged: list[Future[None]] = []
    tidied = threading.Lock()

    def tidy() -> None:
        """The retired containers' and the staged name's removal may go on: once the
        test's batch has begun (or the test container could not be made), as the test
        container's `buildah from` and `buildah run` set-up would wait for their store
        locks. Once; from any thread."""
        with tidied:
            if unstaged:
                return
            build.imported()
            unstaged.append(build.submit(
                lambda: build.discard_image(staged.name) if staged is not None else None,
                name="uvbuild-unstage"))  # (the image holds the staged layers now)

    # Whatever stops the build from here (a Ctrl-C as the import ends), the name goes
    # at its end; once the image is named, the build takes it off (TestedImage).
    build.drop_at_end(untested)
    try:
        build.engine.import_layout(layout, untested)
    except BaseException:
        build.imported()
        raise
    image_id = assembled.image_id
    # That the store keeps the config's digest as the image ID (skopeo's
    # --preserve-digests) is checked while the test container is made from that ID.
    stored = build.submit(lambda: _check_stored(build, untested, image_id),
                          name="uvbuild-imported")
    try:
        if step.test:
            try:
                # Removed at the build's end, beside the naming, unless a test fails.
                ctr = build.open_container(image_id, f"{step.name}-test")
            except EngineError:
                tidy()
                stored.result()  # the reason, if it is that one
                raise
            except BaseException:
                tidy()
                raise
            started = build.scratch_dir("test-started")
            over = threading.Event()
            build.submit(lambda: _when_made(started / STARTED, over, tidy),
                         name="uvbuild-test-started")
            try:
                ran = run_tests(build, step, ctr, user, started=started)
                if not ran.ok and not (started / STARTED).exists():
                    # buildah's own set-up failed before the batch began, and no test ran
                    # (seen here: "Close_Fd sealing memfd copy: Device or resource
                    # busy"): once more, as the install does (builder_steps).
                    ran = run_tests(build, step, ctr, user, started=started)
                over.set()
                tidy()
                judge_tests(build, step, ran)
            except BaseException:
                over.set()
                tidy()
                build.close_container(ctr)  # before the image can go
                raise
        tidy()
        stored.result()
        for future in unstaged:
            future.result()
    except BaseException:
        build.discard_image(untested)
        raise
    return TestedImage(image_id, untested=untested)


def _when_made(marker: Path, over: threading.Event, then: Callable[[], None]) -> None:
    """`then()` once the file `marker` exists, or `over` is set."""
    while not over.wait(0.02) and not marker.exists():
        pass
    then()


def _check_stored(build: StepContext, untested: str, image_id: str) -> None:
    info = build.engine.image(untested)
    if info is None or info.id != image_id:
        raise EngineError(f"the assembled image was stored as "
                          f"{info.id[:12] if info else 'nothing'}, not as its config's "
                          f"digest {image_id[:12]}",
                          hint="check that skopeo supports --preserve-digests (skopeo 1.6+)")


def _present(found: LayerSet) -> LayerSet:
    """`found`, whose tars must still be in the layer cache (`cache prune` may have run
    since the step found them)."""
    if any(not layer.path.is_file() for layer in found.layers):
        raise StepFailed(f"{found.step}: its layers left the layer cache during the build",
                         hint="run the build again (`uvbuild cache prune` ran meanwhile?)")
    return found


def _python(facts: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in facts.items()} if isinstance(facts, dict) else {}
