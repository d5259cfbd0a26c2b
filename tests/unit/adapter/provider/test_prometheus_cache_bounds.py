"""The query-result cache is bounded by bytes, not only by count (issue 12, finding 6).

2048 entries of whatever size Prometheus sent (each also holding the raw body, for explain) could
hold gigabytes. Now: the cache is bounded by an approximate byte size, expired entries are evicted
on insert, the raw body is kept only when explain asks for it, and a Prometheus answer above a
size cap is refused with a clear 503.
"""

from __future__ import annotations

import gc
import inspect
import tracemalloc
from typing import Any

import httpx
import pytest

from adapter.errors import BackendUnavailable
from adapter.kube.mapper import StaticResourceMapper
from adapter.provider.prometheus.cache import QueryCache
from adapter.provider.prometheus.client import PrometheusClient
from adapter.provider.prometheus.provider import PrometheusProvider
from adapter.rules.config import load_config
from tests.support.adapter_support import FIXTURES, TS, FakeLister, FakePrometheus


def _accepted(cls: Any, **kw: Any) -> dict[str, Any]:
    params = inspect.signature(cls).parameters
    return {k: v for k, v in kw.items() if k in params}


def big_answer(request: httpx.Request, query: str, samples: int = 250) -> httpx.Response:
    result = [
        {"metric": {"pod": f"web-{i:05d}-{query}", "namespace": "demo", "le": "x" * 120},
         "value": [TS, str(i)]}
        for i in range(samples)
    ]
    return httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": result}})


def provider(fake: FakePrometheus, **kw: Any) -> PrometheusProvider:
    return PrometheusProvider(
        load_config(FIXTURES / "seed-rules.yaml"), fake.client(), StaticResourceMapper(), FakeLister(),
        **_accepted(PrometheusProvider, cache_ttl=600.0, **kw),
    )


async def test_cache_retained_memory_is_bounded_by_bytes() -> None:
    fake = FakePrometheus(responder=big_answer)
    p = provider(fake, cache_max_bytes=2 * 1024 * 1024)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(100):  # 100 distinct queries of ~50 KB answers each
            await p._run(f"q{i}")
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
        await p.prom.aclose()
    print(f"retained by 100 cached ~50 KB answers: {retained / 1e6:.1f} MB")
    assert retained < 8 * 1024 * 1024, f"{retained / 1e6:.1f} MB retained with a 2 MiB cache budget"


async def test_raw_body_kept_only_when_asked() -> None:
    fake = FakePrometheus(responder=lambda r, q: big_answer(r, q, samples=3))
    p = provider(fake)
    try:
        result, _ = await p._run("up")
        assert result.raw == ""  # the served path never needs the body again
        p.keep_raw = True
        result, _ = await p._run("up")
        assert '"resultType"' in result.raw
    finally:
        await p.prom.aclose()


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


async def test_expired_entries_evicted_on_insert() -> None:
    clock = Clock()
    cache: QueryCache[str] = QueryCache(ttl=5, clock=clock)

    async def fetch() -> str:
        return "v"

    for i in range(10):
        await cache.get(f"a{i}", fetch)
    assert len(cache) == 10
    clock.t += 6
    await cache.get("b", fetch)
    assert len(cache) == 1  # the ten expired answers went when "b" was inserted


async def test_cache_bytes_accounting_and_eviction() -> None:
    cache: QueryCache[str] = QueryCache(ttl=60, **_accepted(QueryCache, max_bytes=1000, size_of=len))

    for i in range(10):
        value = str(i) * 300

        async def fetch(v: str = value) -> str:
            return v

        await cache.get(f"k{i}", fetch)
    assert cache.bytes <= 1000 and len(cache) == 3
    assert "k9" in cache._results and "k0" not in cache._results

    async def huge() -> str:
        return "x" * 5000

    value, _ = await cache.get("huge", huge)
    assert len(value) == 5000 and "huge" not in cache._results  # larger than the budget: not cached


async def test_oversized_prometheus_answer_is_503() -> None:
    fake = FakePrometheus(responder=lambda r, q: big_answer(r, q, samples=250))
    prom = fake.client(**_accepted(PrometheusClient, max_response_bytes=10_000))
    try:
        with pytest.raises(BackendUnavailable) as info:
            await prom.query("huge_query")
        assert info.value.code == 503
        assert "larger than" in info.value.message and "10000 bytes" in info.value.message
        assert "--prometheus-max-response-bytes" in info.value.message
    finally:
        await prom.aclose()


async def test_answer_under_the_cap_is_parsed() -> None:
    fake = FakePrometheus(responder=lambda r, q: big_answer(r, q, samples=2))
    prom = fake.client(**_accepted(PrometheusClient, max_response_bytes=10_000))
    try:
        result = await prom.query("small")
        assert len(result.samples) == 2
    finally:
        await prom.aclose()
