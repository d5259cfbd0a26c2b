"""A fixed pool of workers with a bounded wait queue, modelled on a PHP-FPM pool.

Why it exists: the ``pm_status{state="active processes"}`` metric must reflect *real* in-flight work so that
an HPA driven by it reacts to actual concurrency, not to a number we made up. Each ``GET /work`` request
holds one slot for its whole duration; ``active`` is therefore exactly the number of requests being worked
on, and ``waiting`` the number queued behind a busy pool.

Overload policy mirrors a real pool with ``listen.backlog``: up to ``max_queue`` requests wait (FIFO) for a
worker; one more than that is refused immediately (the HTTP layer answers 503), so a saturated pool sheds
load instead of growing an unbounded backlog.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress


class PoolFull(Exception):
    """Raised when every worker is busy and the wait queue is at its bound."""


class Admission(enum.Enum):
    """What the pool would do with a request arriving now."""

    RUN = "run"
    """A worker is free: start immediately."""
    QUEUE = "queue"
    """All workers busy, room in the wait queue: wait for a worker."""
    REJECT = "reject"
    """All workers busy and the wait queue full: refuse (HTTP 503)."""


class WorkerPool:
    """``workers`` slots plus a FIFO wait queue bounded by ``max_queue``.

    A released slot is handed *directly* to the oldest waiter (``active`` does not dip in between), so a
    newcomer can never overtake a queued request and the active count never flickers under steady load.
    All methods run on one event loop; no locking is needed.
    """

    def __init__(self, workers: int, max_queue: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, got {max_queue}")
        self.workers = workers
        self.max_queue = max_queue
        self._active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def active(self) -> int:
        """Workers currently holding a request."""
        return self._active

    @property
    def idle(self) -> int:
        """Workers free to take a request."""
        return self.workers - self._active

    @property
    def waiting(self) -> int:
        """Requests queued for a worker (cancelled waiters are not counted)."""
        return sum(1 for fut in self._waiters if not fut.done())

    def admission(self) -> Admission:
        """Decide, without side effects, what happens to a request arriving now."""
        if self._active < self.workers and self.waiting == 0:
            return Admission.RUN
        if self.waiting < self.max_queue:
            return Admission.QUEUE
        return Admission.REJECT

    def try_acquire(self) -> bool:
        """Take a free worker without waiting; ``False`` if none is free (or others are queued)."""
        if self.admission() is Admission.RUN:
            self._active += 1
            return True
        return False

    async def acquire(self) -> None:
        """Take a worker, waiting in the bounded queue if needed.

        Raises :class:`PoolFull` at once when the queue is already full. If the caller is cancelled while
        waiting, it leaves the queue; if a slot had already been handed to it, the slot is passed on.
        """
        decision = self.admission()
        if decision is Admission.RUN:
            self._active += 1
            return
        if decision is Admission.REJECT:
            raise PoolFull(
                f"all {self.workers} workers busy and {self.waiting} requests already queued "
                f"(max_queue={self.max_queue})"
            )
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                # The slot was handed over just as we were cancelled: give it to the next in line.
                self.release()
            else:
                self._discard(fut)
            raise

    def release(self) -> None:
        """Return a worker: hand it to the oldest live waiter, or mark it idle."""
        if self._active <= 0:
            raise RuntimeError("release() without a matching acquire()")
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # slot transfers; active count unchanged
                return
        self._active -= 1

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """``async with pool.slot():`` holds one worker for the body of the block."""
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    def _discard(self, fut: asyncio.Future[None]) -> None:
        with suppress(ValueError):
            self._waiters.remove(fut)
