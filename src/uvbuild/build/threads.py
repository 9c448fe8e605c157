"""The threads of one build: started, failed together, and all waited for.

Every thread a build starts comes from `Threads.spawn`. The first failure anywhere
(`fail`) is remembered, shuts the gates of commands started early (cmd.Gate) and
interrupts the commands running now; `join` then waits for every thread, so that
containers are removed only once nothing uses them.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import Future
from typing import Generic, TypeVar

from uvbuild.engine import cmd

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


class Once(Generic[K, T]):
    """Each key's value made once, by the first caller whatever its thread; the others
    wait for its value (or its exception)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._made: dict[K, Future[T]] = {}

    def __call__(self, key: K, make: Callable[[], T]) -> T:
        with self._lock:
            future = self._made.get(key)
            mine = future is None
            if future is None:
                future = self._made[key] = Future()
        if not mine:
            return future.result()
        try:
            made = make()
        except BaseException as exc:
            future.set_exception(exc)
            raise
        future.set_result(made)
        return made

    def get(self, key: K) -> T:
        """The value of a key already asked for (waits for it; raises its exception)."""
        with self._lock:
            future = self._made[key]
        return future.result()

    def values(self) -> dict[K, T]:
        """Every value made so far (not one still being made, nor a failure)."""
        with self._lock:
            futures = dict(self._made)
        return {key: future.result() for key, future in futures.items()
                if future.done() and future.exception() is None}


class Threads:
    """One build's threads, failure state and gates (see the module docstring)."""

    def __init__(self) -> None:
        self.failed = threading.Event()  # set by the first failure
        self.first_error: BaseException | None = None
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._gates: list[cmd.Gate] = []  # commands held at their start: shut on failure

    def spawn(self, work: Callable[[], T], *, name: str) -> Future[T]:
        """Run `work` in a thread of its own; its result (or exception) in a Future. A
        failure fails the build (`fail`) before anyone waiting hears of it."""
        done: Future[T] = Future()

        def run() -> None:
            try:
                done.set_result(work())
            except BaseException as exc:  # handed to whoever waits for the result
                self.fail(exc)
                done.set_exception(exc)

        thread = threading.Thread(target=run, name=name, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()
        return done

    def all(self, works: list[Callable[[], object]]) -> None:
        """Run `works` at the same time (the first in this thread); raise the first
        failure once all have stopped."""
        others = [self.spawn(work, name="uvbuild-run-all") for work in works[1:]]
        first: BaseException | None = None
        try:
            if works:
                works[0]()
        except BaseException as exc:
            first = exc
        for other in others:
            first = first or other.exception()  # waits for it
        if first is not None:
            raise first

    def gate(self) -> cmd.Gate:
        """A gate for a command started early (see cmd.Gate); shut if the build fails."""
        gate = cmd.Gate()
        with self._lock:
            self._gates.append(gate)
            failed = self.failed.is_set()
        if failed:
            gate.shut()
        return gate

    def shut_gates(self) -> None:
        """Nothing may wait at a gate for ever."""
        with self._lock:
            gates = list(self._gates)
        for gate in gates:
            gate.shut()

    def fail(self, exc: BaseException) -> None:
        """Something failed: start no other step, and stop the commands running now."""
        with self._lock:
            if self.failed.is_set():
                return
            self.first_error = exc
            self.failed.set()
        self.shut_gates()
        cmd.interrupt_children()

    def join(self) -> None:
        """Wait for every thread (their commands were interrupted if the build failed)."""
        if self.failed.is_set():
            cmd.interrupt_children()
        with signals_held():  # their containers are removed only after they stop
            while True:
                with self._lock:
                    running = [t for t in self._threads if t.is_alive()]
                if not running:
                    return
                for thread in running:
                    thread.join()


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Clean-up must finish: a second Ctrl-C or SIGTERM waits until it has."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {sig: signal.signal(sig, lambda s, f: pending.append(s))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if pending:
            signal.raise_signal(pending[0])
