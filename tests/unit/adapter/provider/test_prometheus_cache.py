"""Coalescing and TTL caching of identical queries."""

from __future__ import annotations

import asyncio

import pytest

from adapter.provider.prometheus.cache import QueryCache


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


async def test_concurrent_identical_calls_coalesce() -> None:
    calls = 0
    gate = asyncio.Event()

    async def fetch() -> str:
        nonlocal calls
        calls += 1
        await gate.wait()
        return "v"

    cache: QueryCache[str] = QueryCache(ttl=5)
    tasks = [asyncio.create_task(cache.get("q", fetch)) for _ in range(10)]
    await asyncio.sleep(0.01)
    gate.set()
    results = await asyncio.gather(*tasks)
    assert calls == 1
    assert sorted(o for _, o in results) == ["coalesced"] * 9 + ["miss"]


async def test_ttl_and_zero_ttl() -> None:
    clock = Clock()
    calls = 0

    async def fetch() -> int:
        nonlocal calls
        calls += 1
        return calls

    cache: QueryCache[int] = QueryCache(ttl=5, clock=clock)
    assert await cache.get("q", fetch) == (1, "miss")
    await asyncio.sleep(0)
    assert await cache.get("q", fetch) == (1, "hit")
    clock.t += 6
    assert await cache.get("q", fetch) == (2, "miss")
    nocache: QueryCache[int] = QueryCache(ttl=0, clock=clock)
    await nocache.get("q", fetch)
    await asyncio.sleep(0)
    assert (await nocache.get("q", fetch))[1] == "miss"


async def test_errors_shared_but_not_cached() -> None:
    calls = 0
    gate = asyncio.Event()

    async def fetch() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        raise RuntimeError("boom")

    cache: QueryCache[int] = QueryCache(ttl=5)
    tasks = [asyncio.create_task(cache.get("q", fetch)) for _ in range(3)]
    await asyncio.sleep(0.01)
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results) and calls == 1
    gate.clear()
    gate.set()
    with pytest.raises(RuntimeError):
        await cache.get("q", fetch)
    assert calls == 2


async def test_first_caller_cancel_does_not_cancel_others() -> None:
    gate = asyncio.Event()

    async def fetch() -> str:
        await gate.wait()
        return "ok"

    cache: QueryCache[str] = QueryCache(ttl=5)
    first = asyncio.create_task(cache.get("q", fetch))
    await asyncio.sleep(0)
    second = asyncio.create_task(cache.get("q", fetch))
    await asyncio.sleep(0)
    first.cancel()
    gate.set()
    assert (await second)[0] == "ok"


async def test_bounded() -> None:
    async def fetch() -> int:
        return 1

    cache: QueryCache[int] = QueryCache(ttl=60, max_entries=3)
    for i in range(10):
        await cache.get(str(i), fetch)
        await asyncio.sleep(0)
    assert len(cache) == 3
