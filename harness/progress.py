"""One line per step with the elapsed time, so long work (builds, cluster start) never looks hung.

    progress = Progress()
    progress("etcd ready")                 # [ 3.1s] etcd ready
    with progress.step("kube-apiserver"):  # [ 4.0s] kube-apiserver ...
        ...                                # [ 9.2s] kube-apiserver ready (5.2s)

A ``Progress`` is also a plain ``Callable[[str], None]``, which is the type the other modules take
(``images.ensure_all(progress=...)``), so ``print`` and a ``Progress`` are interchangeable.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import TextIO

__all__ = ["Progress", "ProgressFn", "quiet"]

ProgressFn = Callable[[str], None]


def quiet(_message: str) -> None:
    """A progress sink that drops everything (for callers that want silence)."""


class Progress:
    """Prints ``[ elapsed] message`` lines to a stream (stderr by default), flushing each one.

    ``prefix`` is put before every message (``"local: "``) so interleaved output of several
    components stays readable.
    """

    def __init__(self, stream: TextIO | None = None, prefix: str = "", start: float | None = None) -> None:
        self._stream = stream
        self.prefix = prefix
        self.start = time.monotonic() if start is None else start

    @property
    def elapsed(self) -> float:
        """Seconds since this progress was created."""
        return time.monotonic() - self.start

    def __call__(self, message: str) -> None:
        stream = self._stream or sys.stderr
        for line in str(message).splitlines() or [""]:
            stream.write(f"[{self.elapsed:5.1f}s] {self.prefix}{line}\n")
        stream.flush()

    def child(self, prefix: str) -> Progress:
        """A progress sharing this clock, with an extra prefix."""
        return Progress(self._stream, self.prefix + prefix, self.start)

    @contextlib.contextmanager
    def step(self, what: str, done: str = "ready") -> Iterator[None]:
        """Report the start and the end of a step with its own duration; a failure is reported too."""
        t0 = time.monotonic()
        self(f"{what} ...")
        try:
            yield
        except BaseException:
            self(f"{what} FAILED after {time.monotonic() - t0:.1f}s")
            raise
        self(f"{what} {done} ({time.monotonic() - t0:.1f}s)")
