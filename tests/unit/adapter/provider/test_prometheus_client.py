"""Prometheus client: exact values, GET/POST, and errors that name the cause."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
import pytest

from adapter.errors import BackendUnavailable
from adapter.provider.prometheus.client import (
    PrometheusClient,
    PrometheusQueryError,
    parse_query_response,
    parse_value,
)
from adapter.telemetry import PROM_QUERIES, REGISTRY
from tests.support.adapter_support import FakePrometheus


def test_decimal_exactness() -> None:
    body = (
        b'{"status":"success","data":{"resultType":"vector","result":['
        b'{"metric":{"pod":"a"},"value":[1700000000.123,"123456789012345678901234567890.5"]},'
        b'{"metric":{"pod":"b"},"value":[1700000000.123,"1e-30"]},'
        b'{"metric":{"pod":"c"},"value":[1700000000.123,"NaN"]},'
        b'{"metric":{"pod":"d"},"value":[1700000000.123,"+Inf"]},'
        b'{"metric":{"pod":"e"},"value":[1700000000.123,"-Inf"]}]}}'
    )
    r = parse_query_response("q", body)
    values = [s.value for s in r.samples]
    assert values[0] == Decimal("123456789012345678901234567890.5")
    assert values[1] == Decimal("1E-30")
    assert [s.finite for s in r.samples] == [True, True, False, False, False]
    assert r.samples[0].timestamp == Decimal("1700000000.123")
    assert r.samples[0].time.microsecond == 123000


def test_scalar_and_matrix() -> None:
    r = parse_query_response("q", b'{"status":"success","data":{"resultType":"scalar","result":[1,"2.5"]}}')
    assert r.samples[0].labels == {} and r.samples[0].value == Decimal("2.5")
    with pytest.raises(PrometheusQueryError, match="instant vector"):
        parse_query_response("q", b'{"status":"success","data":{"resultType":"matrix","result":[]}}')


def test_parse_value_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_value("abc")


async def test_get_for_short_post_for_long() -> None:
    fake = FakePrometheus()
    async with fake.client() as prom:
        await prom.query("up")
        long_q = 'sum(x{pod=~"' + "|".join(f"pod-{i:05d}-abcdef" for i in range(400)) + '"})'
        r = await prom.query(long_q, time=1700000000.0)
    assert [req.method for req in fake.requests] == ["GET", "POST"]
    assert r.method == "POST"
    assert fake.queries[1] == long_q
    assert b"time=1700000000.000" in fake.requests[1].content


async def test_connection_refused_is_backend_unavailable() -> None:
    fake = FakePrometheus(down=True)
    before = (
        REGISTRY.get_sample_value(
            "hpakit_adapter_prometheus_query_duration_seconds_count",
            {"endpoint": "query", "outcome": "error"},
        )
        or 0
    )
    async with fake.client() as prom:
        with pytest.raises(BackendUnavailable) as exc:
            await prom.query("up")
    assert "prometheus at http://prom.test:9090 unreachable: connection refused" in exc.value.message
    assert "check --prometheus-url" in exc.value.message
    assert exc.value.code == 503
    after = REGISTRY.get_sample_value(
        "hpakit_adapter_prometheus_query_duration_seconds_count", {"endpoint": "query", "outcome": "error"}
    )
    assert after == before + 1
    assert PROM_QUERIES is not None


async def test_real_refused_port() -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    async with PrometheusClient(f"http://127.0.0.1:{port}", timeout=2) as prom:
        with pytest.raises(BackendUnavailable, match="connection refused"):
            await prom.query("up")


async def test_timeout() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    async with PrometheusClient("http://p:9090", timeout=0.5, transport=httpx.MockTransport(handler)) as prom:
        with pytest.raises(BackendUnavailable, match=r"did not answer .* within 0.5s.*--prometheus-timeout"):
            await prom.query("up")


@pytest.mark.parametrize(
    ("status", "body", "exc", "fragment"),
    [
        (
            400,
            {"status": "error", "errorType": "bad_data", "error": "parse error at char 5"},
            PrometheusQueryError,
            "bad_data: parse error",
        ),
        (
            422,
            {"status": "error", "errorType": "execution", "error": "many-to-many matching not allowed"},
            PrometheusQueryError,
            "fix the rule's metricsQuery",
        ),
        (
            503,
            {"status": "error", "errorType": "timeout", "error": "query timed out"},
            BackendUnavailable,
            "HTTP 503 timeout",
        ),
        (502, None, BackendUnavailable, "HTTP 502"),
        (401, None, BackendUnavailable, "--prometheus-token-file"),
    ],
)
async def test_http_errors(status: int, body: dict | None, exc: type, fragment: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body) if body else httpx.Response(status, text="bad gateway")

    async with PrometheusClient("http://p:9090", transport=httpx.MockTransport(handler)) as prom:
        with pytest.raises(exc) as info:
            await prom.query("up")
    assert fragment in info.value.message


async def test_unparsable_answer() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>login</html>")

    async with PrometheusClient("http://p:9090", transport=httpx.MockTransport(handler)) as prom:
        with pytest.raises(BackendUnavailable, match="unparsable answer"):
            await prom.query("up")


async def test_bearer_token_reread(tmp_path) -> None:  # type: ignore[no-untyped-def]
    token = tmp_path / "token"
    token.write_text("one\n")
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization", ""))
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": []}})

    async with PrometheusClient(
        "http://p:9090", token_file=str(token), transport=httpx.MockTransport(handler)
    ) as p:
        await p.query("up")
        await asyncio.sleep(0.01)
        token.write_text("two")
        import os

        os.utime(token, (1, 1))
        await p.query("up")
    assert seen == ["Bearer one", "Bearer two"]


async def test_series_and_scrape_interval() -> None:
    fake = FakePrometheus(
        series_data=[{"__name__": "x", "pod": "a"}, {"__name__": "y", "pod": "b"}], scrape_interval="30s"
    )
    async with fake.client() as prom:
        assert await prom.series(["x"], 0, 1) == [{"__name__": "x", "pod": "a"}]
        assert await prom.scrape_interval() == 30
