"""Real resource usage on request: CPU burnt and memory held, so load drives what the kubelet measures.

Why it exists: a ``Resource``/``ContainerResource`` HPA scales on the container's CPU or memory as
cAdvisor sees it. ``GET /burn?ms=20`` spends exactly 20 ms of *CPU time* (``time.thread_time``, not
wall time, so a busy node does not shrink the work) in a bounded thread pool; at R requests/s the
container uses ``R * ms / 1000`` cores, a number a test can compute from the load it sent.
``POST /hold?mb=64&seconds=30`` keeps 64 MiB resident (every page written) for 30 s, bounded in total.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

PAGE = 4096


def burn_cpu(ms: float) -> float:
    """Spend ``ms`` milliseconds of this thread's CPU time; returns the CPU seconds spent."""
    start = time.thread_time()
    end = start + ms / 1000
    x = 0
    while time.thread_time() < end:
        for i in range(2000):  # a few microseconds between clock reads
            x ^= i
    return time.thread_time() - start


class HoldRefused(Exception):
    """The hold would exceed the process's bound on held memory."""


@dataclass
class MemoryHold:
    """Buffers kept resident until their expiry; ``held_bytes`` never exceeds ``max_bytes``."""

    max_bytes: int
    clock: Callable[[], float] = time.monotonic
    _buffers: list[tuple[float, bytearray]] = field(default_factory=list)

    def expire(self) -> None:
        now = self.clock()
        self._buffers = [(t, b) for t, b in self._buffers if t > now]

    @property
    def held_bytes(self) -> int:
        self.expire()
        return sum(len(b) for _, b in self._buffers)

    def hold(self, mb: float, seconds: float) -> int:
        """Allocate ``mb`` MiB, write every page (so it is resident, not a lazy zero mapping), and keep
        it for ``seconds``; returns the bytes now held. Raises ``HoldRefused`` above the bound."""
        size = int(mb * 1024 * 1024)
        if self.held_bytes + size > self.max_bytes:
            raise HoldRefused(f"holding {size} more bytes would exceed --max-hold-mb "
                              f"({self.max_bytes // (1024 * 1024)} MiB; {self.held_bytes} held now)")
        buf = bytearray(size)
        pages = len(range(0, size, PAGE))
        buf[::PAGE] = b"\x01" * pages
        self._buffers.append((self.clock() + seconds, buf))
        return self.held_bytes

    def release(self) -> None:
        self._buffers.clear()
