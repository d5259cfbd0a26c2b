"""Coalescing + short-TTL cache for Prometheus instant queries.

The HPA controller asks for the same metric for every HPA on each sync, and several replicas of
the API server path can ask at once; identical PromQL within a few seconds returns the same
answer. So: N concurrent identical queries share one in-flight request (``coalesced``), and a
finished answer is reused for ``ttl`` seconds (``hit``). Errors are shared with the waiters that
coalesced on them but never cached. ``ttl=0`` keeps coalescing and disables reuse.

The cache is bounded by ``max_entries`` and by ``max_bytes`` of approximate size (``size_of``,
e.g. :func:`adapter.provider.prometheus.client.approx_size`): a few huge answers must not pin
gigabytes. Expired answers are dropped whenever one is inserted, then the least recently used go
until the new one fits; an answer larger than the whole budget is returned but not cached.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from adapter.telemetry import CACHE

T = TypeVar("T")
V = TypeVar("V")

DEFAULT_MAX_BYTES = 64 * 1024 * 1024


class QueryCache(Generic[T]):
    def __init__(
        self,
        ttl: float = 5.0,
        max_entries: int = 2048,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        size_of: Callable[[T], int] = sys.getsizeof,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.size_of = size_of
        self._clock = clock
        #: key -> (expires, value, approximate bytes)
        self._results: OrderedDict[str, tuple[float, T, int]] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[T]] = {}
        self.bytes = 0

    def clear(self) -> None:
        self._results.clear()
        self.bytes = 0

    def _drop(self, key: str) -> None:
        entry = self._results.pop(key, None)
        if entry is not None:
            self.bytes -= entry[2]

    def _evict_expired(self, now: float) -> None:
        for key in [k for k, (expires, _, _) in self._results.items() if expires <= now]:
            self._drop(key)

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
            self._drop(key)
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
        if self.ttl <= 0:
            return
        value = task.result()
        size = max(0, int(self.size_of(value)))
        now = self._clock()
        self._drop(key)
        self._evict_expired(now)
        if size > self.max_bytes:
            return  # larger than the whole budget: served once, never cached
        while self._results and (
            len(self._results) >= self.max_entries or self.bytes + size > self.max_bytes
        ):
            self._drop(next(iter(self._results)))  # least recently used first
        self._results[key] = (now + self.ttl, value, size)
        self.bytes += size


class Memo(Generic[V]):
    """A small least-recently-used memo bounded by entry count and by a total weight.

    For answers derived from cached answers (a pods/* evaluation over a cached Prometheus result):
    the caller says what an entry weighs (objects, characters) so a few huge entries cannot pin
    unbounded memory, and checks an entry is still valid; the memo only keeps and bounds.
    """

    def __init__(self, max_entries: int, max_weight: int) -> None:
        if max_entries < 1 or max_weight < 1:
            raise ValueError("a memo needs room for at least one entry of weight 1")
        self.max_entries = max_entries
        self.max_weight = max_weight
        self.weight = 0
        self._entries: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: Hashable, value: V, weight: int) -> None:
        """Keep ``value`` (replacing ``key``'s); one heavier than the whole memo is not kept."""
        self.discard(key)
        if weight > self.max_weight:
            return
        entries = self._entries
        while entries and (len(entries) >= self.max_entries or self.weight + weight > self.max_weight):
            _, (_, dropped) = entries.popitem(last=False)
            self.weight -= dropped
        entries[key] = (value, weight)
        self.weight += weight

    def discard(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.weight -= entry[1]

    def clear(self) -> None:
        self._entries.clear()
        self.weight = 0
