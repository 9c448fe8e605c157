"""The working containers of one build: named, tracked, and all removed when it ends.

Every container a build makes is recorded here before `buildah from` runs, so whatever
way the build ends (a failure, Ctrl-C between two calls, SIGTERM) `remove_live` finds it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

from uvbuild.build.threads import signals_held
from uvbuild.engine.protocol import Engine


class Containers:
    """The live working containers of one build (see the module docstring)."""

    def __init__(self, engine: Engine, name: Callable[[str], str]) -> None:
        self.engine = engine
        self._name = name  # purpose → a unique name (liveness.Claim.container_name)
        self._lock = threading.Lock()
        self._live: set[str] = set()  # working containers to remove on any exit
        # What must end before a container goes (a run held at its gate): name → stops.
        self._before: dict[str, list[Callable[[], None]]] = {}

    def name(self, purpose: str) -> str:
        """A recognisable, unique working-container name: uvbuild-<run id>-<n>-<purpose>."""
        return self._name(purpose)

    def open(self, image: str, purpose: str) -> str:
        """A working container from `image`, removed when the build ends, however it ends."""
        name = self.name(purpose)
        with self._lock:
            self._live.add(name)
        self.engine.from_image(image, name)
        return name  # what every later command (and _live) knows it by

    @contextlib.contextmanager
    def scoped(self, image: str, purpose: str) -> Iterator[str]:
        """A working container from `image`, removed on any exit (Ctrl-C included)."""
        name = self.name(purpose)
        with self._lock:
            self._live.add(name)
        try:
            yield self.engine.from_image(image, name)
        finally:
            self.close(name)

    @contextlib.contextmanager
    def tracked(self, purpose: str) -> Iterator[str]:
        """A name for a container made by someone else (e.g. from scratch, by
        build_bootstrap_base, which removes it): still removed at the end if the block
        fails, as a Ctrl-C just after `buildah from` or during its `buildah rm` leaves it."""
        name = self.name(purpose)
        with self._lock:
            self._live.add(name)
        yield name
        with self._lock:
            self._live.discard(name)

    def before_removal(self, name: str, stop: Callable[[], None]) -> None:
        """Call `stop` (which returns once what runs in container `name` has ended: a run
        started early, held at its gate) before the container is removed."""
        with self._lock:
            self._before.setdefault(name, []).append(stop)

    def _stop_runs(self, names: list[str]) -> None:
        with self._lock:
            stops = [stop for name in names for stop in self._before.pop(name, ())]
        for stop in stops:
            stop()

    def close(self, name: str) -> None:
        """Remove the container `name` (open or scoped) now, out of Ctrl-C's reach."""
        with signals_held():
            self._stop_runs([name])
            self.engine.rm(name)
            with self._lock:
                self._live.discard(name)

    def remove_live(self, keep: tuple[str, ...] = ()) -> None:
        """Remove whatever working container is left (but `keep`): a deferred step's, or
        an interrupted one's."""
        first: BaseException | None = None
        with signals_held():
            with self._lock:
                names = sorted(self._live.difference(keep))
            if names:
                self._stop_runs(names)
                for _attempt in range(2):  # one more try if the first was cut short
                    try:
                        self.engine.rm(*names)
                        break
                    except BaseException as exc:
                        first = first or exc
            with self._lock:
                self._live.difference_update(names)
        if first is not None:
            raise first
