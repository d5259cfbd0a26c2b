"""Coalescing + short-TTL cache for Prometheus instant queries.

The HPA controller asks for the same metric for every HPA on each sync, and several replicas of
the API server path can ask at once; identical PromQL within a few seconds returns the same
answer. So: N concurrent identical queries share one in-flight request (``coalesced``), and a
finished answer is reused for ``ttl`` seconds (``hit``). Errors are shared with the waiters that
coalesced on them but never cached. ``ttl=0`` keeps coalescing and disables reuse.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from adapter.telemetry import CACHE

T = TypeVar("T")


class QueryCache(Generic[T]):
    def __init__(
        self, ttl: float = 5.0, max_entries: int = 2048, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._results: OrderedDict[str, tuple[float, T]] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[T]] = {}

    def clear(self) -> None:
        self._results.clear()

    def __len__(self) -> int:
        return len(self._results)

    async def get(self, key: str, fetch: Callable[[], Awaitable[T]]) -> tuple[T, str]:
        """Return ``(value, outcome)`` with outcome ``hit``, ``coalesced`` or ``miss``."""
        now = self._clock()
        cached = self._results.get(key)
        if cached is not None:
            if cached[0] > now:
                self._results.move_to_end(key)
                CACHE.labels("hit").inc()
                return cached[1], "hit"
            del self._results[key]
        pending = self._inflight.get(key)
        if pending is not None:
            CACHE.labels("coalesced").inc()
            # shield: one waiter being cancelled must not cancel the shared request.
            return await asyncio.shield(pending), "coalesced"
        CACHE.labels("miss").inc()
        # The request runs as its own task so that the first caller being cancelled (client went
        # away) does not cancel it for the callers that coalesced onto it.
        task: asyncio.Task[T] = asyncio.ensure_future(fetch())
        self._inflight[key] = task
        task.add_done_callback(functools.partial(self._finish, key))
        return await asyncio.shield(task), "miss"

    def _finish(self, key: str, task: asyncio.Task[T]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if task.cancelled() or task.exception() is not None:
            return
        if self.ttl > 0:
            self._results[key] = (self._clock() + self.ttl, task.result())
            while len(self._results) > self.max_entries:
                self._results.popitem(last=False)
