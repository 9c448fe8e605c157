"""Progress that tells the story: one line per step, then the image, its ID, size and time.

Each step is `cached` (found in local storage or the layer cache), `pulled` (from a
registry cache, `--cache-from`) or `built`; its record says which (`status`) and how long
it took. `quiet` prints only the image ID; `json` prints one JSON document at the end for
CI. Warnings (a registry cache that cannot be used) go to stderr in every style.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, TextIO

from uvbuild.errors import Interrupted

if TYPE_CHECKING:  # the CLI imports this module first: the planner loads with the build
    from uvbuild.plan.planner import Step


class Reporter:
    """Collects per-step records and prints them in the chosen style."""

    def __init__(self, style: str = "human", stream: TextIO | None = None) -> None:
        self.style = style
        self.stream = stream or sys.stderr
        self.records: list[dict[str, object]] = []
        self.warnings: list[str] = []
        self._lock = threading.Lock()  # steps run in several threads: whole lines only

    def _line(self, text: str) -> None:
        if self.style == "human":
            with self._lock:
                self.stream.write(text + "\n")
                self.stream.flush()

    def note(self, text: str) -> None:
        """A line of its own (e.g. what uvbuild is about to build)."""
        self._line(text)

    def warn(self, text: str) -> None:
        """A warning: one line on stderr whatever the style (and in --json's document)."""
        with self._lock:
            self.warnings.append(text)
            self.stream.write(f"uvbuild: warning: {text}\n")
            self.stream.flush()

    def _record(self, step: Step, status: str, seconds: float) -> None:
        # `cached` (not run) is kept beside `status` for the readers of older documents.
        with self._lock:
            self.records.append({"step": step.name, "status": status,
                                 "cached": status != "built", "seconds": round(seconds, 2)})

    def cached(self, step: Step) -> None:
        self._record(step, "cached", 0.0)
        self._line(f"  {step.name:<18} cached     {step.describe()}")

    def pulled(self, step: Step, seconds: float) -> None:
        """`step`'s result came from a registry cache, in `seconds`."""
        self._record(step, "pulled", seconds)
        self._line(f"  {step.name:<18} pulled     {step.describe()} ({seconds:.1f}s)")

    @contextlib.contextmanager
    def running(self, step: Step) -> Iterator[None]:
        self._line(f"  {step.name:<18} ...        {step.describe()}")
        started = time.monotonic()
        try:
            yield
        except Interrupted:
            self._line(f"  {step.name:<18} stopped after {time.monotonic() - started:.1f}s")
            raise
        except BaseException:
            self._line(f"  {step.name:<18} FAILED after {time.monotonic() - started:.1f}s")
            raise
        seconds = time.monotonic() - started
        self._record(step, "built", seconds)
        self._line(f"  {step.name:<18} {seconds:6.1f}s")

    def done(self, *, image: str, image_id: str, size: int, seconds: float,
             out: TextIO | None = None, pushed: dict[str, str] | None = None) -> None:
        """The final line (human), the ID (quiet) or the JSON document (json); with
        `pushed`, where the image went and its digest too."""
        out = out or sys.stdout
        if self.style == "json":
            document: dict[str, object] = {"image": image, "id": image_id, "size": size,
                                           "seconds": round(seconds, 2), "steps": self.records}
            if pushed is not None:
                document["pushed"] = pushed
            if self.warnings:
                document["warnings"] = self.warnings
            print(json.dumps(document), file=out)
            return
        if pushed is not None:
            # stderr, with the progress: stdout stays the final line (or the ID with -q).
            self._line(f"pushed {pushed['reference']}@{pushed['digest'] or '(digest unknown)'}")
        if self.style == "quiet":
            print(image_id, file=out)
        else:
            print(f"{image}  {image_id[:12]}  {human_size(size)}  built in {seconds:.1f}s",
                  file=out)


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"
