"""A job queue with a fixed per-replica consume rate, for external-metric (queue-depth) scaling.

Why it exists: the classic External-metric scenario scales consumers on a backlog. Its steady state is
predictable -- replicas settle near ``produced rate / per-replica consume rate`` -- only if each replica
consumes at a known, fixed rate. So consumption here is a rate, not real work.

Multiple replicas: each pod has its *own* queue. The external metric sums them (``sum(queue_depth)``), so
the HPA sees the total backlog. To model one shared global backlog, an e2e test produces into every
replica through the Service (``POST /produce?n=K`` spread by kube-proxy) or sets ``--produce-rate`` so
each replica's internal producer contributes its share; a replica's consume rate then drains only its own
share, and adding replicas adds consume capacity, which is what the HPA reasons about.

The logic is a pure class with an injectable clock: the state is advanced from elapsed time whenever it is
observed (:meth:`JobQueue.advance`), so unit tests move a fake clock instead of sleeping, and a scrape
always sees the queue as of "now" regardless of how often the background consumer task runs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

MAX_PRODUCE = 1_000_000
"""Upper bound for one ``produce`` call: large enough for any test, small enough to catch typos."""


@dataclass(frozen=True)
class QueueSnapshot:
    """The queue's state at one instant (what ``GET /queue`` returns)."""

    depth: int
    produced: int
    consumed: int
    consume_rate: float
    produce_rate: float


class JobQueue:
    """Counts jobs in, jobs out; never holds real job objects.

    ``consume_rate`` jobs/s are removed while jobs are present; ``produce_rate`` jobs/s are added by an
    optional steady internal producer. Fractional progress is carried between advances so rates are exact
    over time whatever the tick interval. An idle consumer does not bank capacity: while the queue is
    empty its progress resets, so a burst after a quiet period drains at the configured rate (the first
    job after ``1 / consume_rate`` seconds), not partly at once.
    """

    def __init__(
        self,
        consume_rate: float,
        produce_rate: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, rate in (("consume_rate", consume_rate), ("produce_rate", produce_rate)):
            if not math.isfinite(rate) or rate < 0:
                raise ValueError(f"{name} must be a finite number >= 0 jobs/s, got {rate!r}")
        self.consume_rate = float(consume_rate)
        self.produce_rate = float(produce_rate)
        self._clock = clock
        self._last = clock()
        self._depth = 0
        self._produced = 0
        self._consumed = 0
        self._produce_credit = 0.0
        self._consume_credit = 0.0

    @property
    def depth(self) -> int:
        """Jobs waiting, as of the last advance (call :meth:`advance` first for "now")."""
        return self._depth

    @property
    def produced(self) -> int:
        """Jobs ever added (external ``produce`` calls plus the internal producer)."""
        return self._produced

    @property
    def consumed(self) -> int:
        """Jobs ever removed by the consumer."""
        return self._consumed

    def advance(self) -> None:
        """Apply the internal producer and the consumer for the time elapsed since the last advance."""
        now = self._clock()
        elapsed = now - self._last
        if elapsed <= 0:
            return  # clock did not move (or went backwards): nothing to do, never undo work
        self._last = now

        self._produce_credit += self.produce_rate * elapsed
        made = math.floor(self._produce_credit)
        self._produce_credit -= made
        self._depth += made
        self._produced += made

        self._consume_credit += self.consume_rate * elapsed
        taken = min(math.floor(self._consume_credit), self._depth)
        self._consume_credit -= taken
        self._depth -= taken
        self._consumed += taken
        if self._depth == 0:
            self._consume_credit = 0.0

    def produce(self, n: int) -> int:
        """Add ``n`` jobs now; returns the new depth. ``n`` must be 1..MAX_PRODUCE."""
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_PRODUCE:
            raise ValueError(f"n must be an integer from 1 to {MAX_PRODUCE}, got {n!r}")
        self.advance()  # jobs produced now must not be consumed by time that passed before they existed
        self._depth += n
        self._produced += n
        return self._depth

    def snapshot(self) -> QueueSnapshot:
        """Advance to now and return the state."""
        self.advance()
        return QueueSnapshot(
            depth=self._depth,
            produced=self._produced,
            consumed=self._consumed,
            consume_rate=self.consume_rate,
            produce_rate=self.produce_rate,
        )
