"""PrometheusProvider against a fake Prometheus edge and in-memory cluster fakes."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from adapter.errors import BackendUnavailable, MetricNotFound
from adapter.kube.mapper import StaticResourceMapper
from adapter.provider.base import (
    CustomMetricInfo,
    ExternalMetricInfo,
    GroupResource,
    ObjectName,
    Provider,
)
from adapter.provider.prometheus.provider import PrometheusProvider
from adapter.rules.config import load_config
from adapter.selectors import EVERYTHING, parse_label_selector
from adapter.telemetry import REGISTRY
from tests.support.adapter_support import FIXTURES, TS, FakeLister, FakePrometheus, pod_series

PODS, SERVICES, NAMESPACES = (
    GroupResource("", "pods"),
    GroupResource("", "services"),
    GroupResource("", "namespaces"),
)


def series() -> list[dict[str, str]]:
    return [
        pod_series("pm_status", "demo", "web-1", state="active processes"),
        pod_series("pm_status", "demo", "web-2", state="active processes"),
        {"__name__": "total_hit_count", "namespace": "demo", "service": "mockmetrics"},
        pod_series("http_requests_total", "demo", "web-1", path="/", code="200"),
        {"__name__": "queue_depth", "namespace": "demo", "queue": "orders"},
    ]


@pytest.fixture
def fake() -> FakePrometheus:
    return FakePrometheus(series_data=series())


@pytest.fixture
def lister() -> FakeLister:
    lst = FakeLister()
    for name in ("web-1", "web-2", "web-3"):
        lst.add("pods", "demo", name, app="web")
    lst.add("pods", "demo", "other", app="other")
    lst.add("pods", "prod", "web-1", app="web")
    lst.add("services", "demo", "mockmetrics", app="mockmetrics")
    return lst


@pytest.fixture
async def provider(fake: FakePrometheus, lister: FakeLister):  # type: ignore[no-untyped-def]
    p = PrometheusProvider(
        load_config(FIXTURES / "seed-rules.yaml"), fake.client(), StaticResourceMapper(), lister, cache_ttl=0
    )
    await p.refresh()
    yield p
    await p.stop()
    await p.prom.aclose()


def info(gr: GroupResource, metric: str, namespaced: bool = True) -> CustomMetricInfo:
    return CustomMetricInfo(gr, namespaced, metric)


async def test_satisfies_protocol(provider: PrometheusProvider) -> None:
    assert isinstance(provider, Provider)
    assert provider.status().ready


async def test_pods_by_selector_accounts_for_every_object(
    provider: PrometheusProvider, fake: FakePrometheus, caplog: pytest.LogCaptureFixture
) -> None:
    fake.rows = [
        ({"pod": "web-1", "namespace": "demo"}, "0.25"),
        ({"pod": "web-2", "namespace": "demo"}, "0.5"),
    ]
    before = (
        REGISTRY.get_sample_value(
            "hpakit_adapter_objects_without_data_total", {"resource": "pods", "metric": "fpm_active_rate"}
        )
        or 0
    )
    with caplog.at_level(logging.INFO):
        values = await provider.get_metric_by_selector(
            "demo", parse_label_selector("app=web"), info(PODS, "fpm_active_rate"), EVERYTHING
        )
    assert [(v.described_object.name, v.value) for v in values] == [
        ("web-1", Decimal("0.25")),
        ("web-2", Decimal("0.5")),
    ]
    v = values[0]
    assert v.described_object.kind == "Pod" and v.described_object.api_version == "v1"
    assert v.described_object.namespace == "demo"
    assert v.window_seconds == 120 and v.timestamp.timestamp() == TS and v.metric_selector is None
    assert 'pod=~"web-(?:1|2|3)"' in fake.queries[-1] and 'namespace="demo"' in fake.queries[-1]
    assert (
        REGISTRY.get_sample_value(
            "hpakit_adapter_objects_without_data_total", {"resource": "pods", "metric": "fpm_active_rate"}
        )
        == before + 1
    )
    assert "no data for Pod demo/web-3" in caplog.text


async def test_zero_objects_is_empty_without_query(
    provider: PrometheusProvider, fake: FakePrometheus
) -> None:
    n = len(fake.queries)
    values = await provider.get_metric_by_selector(
        "demo", parse_label_selector("app=nothing"), info(PODS, "fpm_active_rate"), EVERYTHING
    )
    assert values == [] and len(fake.queries) == n


async def test_several_samples_for_one_object_deterministic(
    provider: PrometheusProvider, fake: FakePrometheus, caplog: pytest.LogCaptureFixture
) -> None:
    """A query whose ``by`` keeps an extra label: the sample whose label set sorts first is used,
    whatever order Prometheus answers in, and the others are reported (logged, kept for explain)."""
    rows = [
        ({"pod": "web-1", "namespace": "demo", "path": "/b"}, "2"),
        ({"pod": "web-1", "namespace": "demo", "path": "/a"}, "1"),
    ]
    for order in (rows, rows[::-1]):
        fake.rows = list(order)
        with caplog.at_level(logging.WARNING):
            value = await provider.get_metric_by_name(
                ObjectName("demo", "web-1"), info(PODS, "fpm_active_rate"), EVERYTHING
            )
        assert value.value == Decimal("1")
    assert "1 extra sample(s) for the same object" in caplog.text


async def test_object_metric_on_service(provider: PrometheusProvider, fake: FakePrometheus) -> None:
    fake.rows = [({"service": "mockmetrics", "namespace": "demo"}, "123.5")]
    v = await provider.get_metric_by_name(
        ObjectName("demo", "mockmetrics"), info(SERVICES, "total_hit_count"), EVERYTHING
    )
    assert v.value == Decimal("123.5") and v.described_object.kind == "Service" and v.window_seconds == 60
    assert fake.queries[-1] == (
        'sum(rate(total_hit_count{namespace="demo",service="mockmetrics"}[1m])) by (service)'
    )


async def test_named_object_without_data_is_404_with_reason(
    provider: PrometheusProvider, fake: FakePrometheus
) -> None:
    fake.rows = []
    with pytest.raises(MetricNotFound, match=r"no data for metric fpm_active_rate on pod demo/web-9"):
        await provider.get_metric_by_name(
            ObjectName("demo", "web-9"), info(PODS, "fpm_active_rate"), EVERYTHING
        )


async def test_namespace_object_case(provider: PrometheusProvider, fake: FakePrometheus) -> None:
    fake.rows = [({"namespace": "demo"}, "0.75")]
    v = await provider.get_metric_by_name(
        ObjectName(None, "demo"), info(NAMESPACES, "fpm_active_rate", False), EVERYTHING
    )
    assert v.described_object.kind == "Namespace" and v.described_object.namespace is None
    assert 'namespace="demo"' in fake.queries[-1] and "by (namespace)" in fake.queries[-1]


async def test_metric_label_selector(provider: PrometheusProvider, fake: FakePrometheus) -> None:
    fake.rows = [({"pod": "web-1", "namespace": "demo"}, "2")]
    sel = parse_label_selector("code=200,path")
    v = await provider.get_metric_by_name(ObjectName("demo", "web-1"), info(PODS, "http_requests"), sel)
    assert v.metric_selector == sel
    assert fake.queries[-1] == (
        'sum(rate(http_requests_total{code="200",path=~".+",namespace="demo",pod="web-1"}[2m])) by (pod)'
    )


async def test_nonfinite_skipped_and_counted(provider: PrometheusProvider, fake: FakePrometheus) -> None:
    fake.rows = [
        ({"pod": "web-1", "namespace": "demo"}, "NaN"),
        ({"pod": "web-2", "namespace": "demo"}, "+Inf"),
        ({"pod": "web-3", "namespace": "demo"}, "1e-9"),
    ]
    before = REGISTRY.get_sample_value("hpakit_adapter_nonfinite_values_total", {"api": "custom"}) or 0
    values = await provider.get_metric_by_selector(
        "demo", parse_label_selector("app=web"), info(PODS, "fpm_active_rate"), EVERYTHING
    )
    assert [(v.described_object.name, v.value) for v in values] == [("web-3", Decimal("1E-9"))]
    assert REGISTRY.get_sample_value("hpakit_adapter_nonfinite_values_total", {"api": "custom"}) == before + 2
    with pytest.raises(MetricNotFound, match="is NaN"):
        await provider.get_metric_by_name(
            ObjectName("demo", "web-1"), info(PODS, "fpm_active_rate"), EVERYTHING
        )


async def test_huge_and_tiny_values_exact(provider: PrometheusProvider, fake: FakePrometheus) -> None:
    fake.rows = [
        ({"pod": "web-1", "namespace": "demo"}, "98765432109876543210.123456789"),
        ({"pod": "web-2", "namespace": "demo"}, "0.000000000000000001"),
    ]
    values = await provider.get_metric_by_selector(
        "demo", parse_label_selector("app=web"), info(PODS, "fpm_active_rate"), EVERYTHING
    )
    assert [v.value for v in values] == [Decimal("98765432109876543210.123456789"), Decimal("1E-18")]


async def test_names_with_regex_metacharacters(
    provider: PrometheusProvider, fake: FakePrometheus, lister: FakeLister
) -> None:
    lister.objects["pods"] = []
    lister.add("pods", "demo", "a.b", app="dots")
    lister.add("pods", "demo", "a-b", app="dots")
    fake.rows = [({"pod": "aXb", "namespace": "demo"}, "9"), ({"pod": "a.b", "namespace": "demo"}, "1")]
    values = await provider.get_metric_by_selector(
        "demo", parse_label_selector("app=dots"), info(PODS, "fpm_active_rate"), EVERYTHING
    )
    assert [(v.described_object.name, v.value) for v in values] == [("a.b", Decimal("1"))]
    assert 'pod=~"a\\\\-b|a\\\\.b"'.replace("\\\\-", "-") in fake.queries[-1]


async def test_long_name_list_goes_by_post(
    provider: PrometheusProvider, fake: FakePrometheus, lister: FakeLister
) -> None:
    lister.objects["pods"] = []
    for i in range(600):
        lister.add("pods", "demo", f"worker-{i:04d}-{'x' * (i % 7)}", app="many")
    fake.rows = [({"pod": "worker-0001-x", "namespace": "demo"}, "1")]
    values = await provider.get_metric_by_selector(
        "demo", parse_label_selector("app=many"), info(PODS, "fpm_active_rate"), EVERYTHING
    )
    assert len(values) == 1
    assert fake.requests[-1].method == "POST"


async def test_root_scoped_request_over_namespaces(
    provider: PrometheusProvider, fake: FakePrometheus
) -> None:
    fake.rows = [({"pod": "web-1", "namespace": "demo"}, "1"), ({"pod": "web-1", "namespace": "prod"}, "2")]
    values = await provider.get_metric_by_selector(
        None, parse_label_selector("app=web"), info(PODS, "fpm_active_rate"), EVERYTHING
    )
    got = {(v.described_object.namespace, v.described_object.name): v.value for v in values}
    assert got[("demo", "web-1")] == 1 and got[("prod", "web-1")] == 2


async def test_unknown_metric_suggests(provider: PrometheusProvider) -> None:
    with pytest.raises(MetricNotFound, match="it is served for namespaces, pods"):
        await provider.get_metric_by_name(
            ObjectName("demo", "mockmetrics"), info(SERVICES, "fpm_active_rate"), EVERYTHING
        )
    with pytest.raises(MetricNotFound, match="similar metrics for pods: http_requests"):
        await provider.get_metric_by_name(ObjectName("demo", "web-1"), info(PODS, "http_request"), EVERYTHING)


async def test_external_metric(provider: PrometheusProvider, fake: FakePrometheus) -> None:
    fake.rows = [({"namespace": "demo"}, "42"), ({"namespace": "demo", "queue": "bad"}, "NaN")]
    assert provider.list_all_external_metrics() == [ExternalMetricInfo("queue_depth", True)]
    values = await provider.get_external_metric(
        "demo", parse_label_selector("queue=orders"), ExternalMetricInfo("queue_depth")
    )
    assert [(v.labels, v.value) for v in values] == [({"namespace": "demo"}, Decimal("42"))]
    assert fake.queries[-1] == 'sum(queue_depth{queue="orders",namespace="demo"}) by (namespace)'
    with pytest.raises(MetricNotFound, match="similar: queue_depth"):
        await provider.get_external_metric("demo", EVERYTHING, ExternalMetricInfo("queue_dept"))


async def test_external_not_namespaced(fake: FakePrometheus, lister: FakeLister) -> None:
    fake.series_data = [{"__name__": "queue_depth", "queue": "orders", "namespace": "x"}]
    fake.rows = [({"queue": "orders"}, "7")]
    p = PrometheusProvider(
        load_config(FIXTURES / "external-global.yaml"), fake.client(), StaticResourceMapper(), lister
    )
    await p.refresh()
    assert p.list_all_external_metrics() == [ExternalMetricInfo("global_queue_depth", False)]
    values = await p.get_external_metric("default", EVERYTHING, ExternalMetricInfo("global_queue_depth"))
    assert values[0].value == 7 and fake.queries[-1] == "sum(queue_depth{}) by (queue)"
    await p.prom.aclose()


async def test_prometheus_down_is_503_and_index_kept(
    provider: PrometheusProvider, fake: FakePrometheus
) -> None:
    fake.down = True
    with pytest.raises(BackendUnavailable, match="connection refused"):
        await provider.get_metric_by_name(
            ObjectName("demo", "web-1"), info(PODS, "fpm_active_rate"), EVERYTHING
        )
    with pytest.raises(BackendUnavailable):
        await provider.refresh()
    st = provider.status()
    assert st.ready and "discovery failing" in st.message
    assert provider.list_all_metrics()


async def test_not_ready_before_first_discovery(fake: FakePrometheus, lister: FakeLister) -> None:
    fake.down = True
    p = PrometheusProvider(
        load_config(FIXTURES / "seed-rules.yaml"),
        fake.client(),
        StaticResourceMapper(),
        lister,
        relist_interval=0.05,
    )
    await p.start()
    await asyncio.sleep(0.2)
    assert not p.status().ready and "connection refused" in p.status().message
    with pytest.raises(BackendUnavailable, match="discovery has not completed"):
        await p.get_metric_by_name(ObjectName("demo", "web-1"), info(PODS, "fpm_active_rate"), EVERYTHING)
    fake.down = False
    for _ in range(50):
        if p.status().ready:
            break
        await asyncio.sleep(0.05)
    assert p.status().ready
    await p.stop()
    await p.prom.aclose()


async def test_concurrent_identical_requests_coalesce(fake: FakePrometheus, lister: FakeLister) -> None:
    inner = fake.handler
    gate = asyncio.Event()
    fake.rows = [({"pod": "web-1", "namespace": "demo"}, "1")]

    async def slow(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/query"):
            await gate.wait()
        return inner(request)

    from adapter.provider.prometheus.client import PrometheusClient

    p = PrometheusProvider(
        load_config(FIXTURES / "seed-rules.yaml"),
        PrometheusClient("http://p", transport=httpx.MockTransport(slow)),
        StaticResourceMapper(),
        lister,
        cache_ttl=5,
    )
    await p.refresh()
    calls = [
        p.get_metric_by_name(ObjectName("demo", "web-1"), info(PODS, "fpm_active_rate"), EVERYTHING)
        for _ in range(20)
    ]
    tasks = [asyncio.create_task(c) for c in calls]
    await asyncio.sleep(0.05)
    gate.set()
    values = await asyncio.gather(*tasks)
    assert len(values) == 20 and len(fake.queries) == 1
    await p.get_metric_by_name(ObjectName("demo", "web-1"), info(PODS, "fpm_active_rate"), EVERYTHING)
    assert len(fake.queries) == 1  # TTL hit
    await p.prom.aclose()


async def test_config_reload(tmp_path: Path, fake: FakePrometheus, lister: FakeLister) -> None:
    path = tmp_path / "config.yaml"
    path.write_text((FIXTURES / "seed-rules.yaml").read_text())
    p = PrometheusProvider(load_config(path), fake.client(), StaticResourceMapper(), lister, config_path=path)
    await p.refresh()
    ok_before = (
        REGISTRY.get_sample_value(
            "hpakit_adapter_config_reloads_total", {"kind": "config", "outcome": "success"}
        )
        or 0
    )
    err_before = (
        REGISTRY.get_sample_value(
            "hpakit_adapter_config_reloads_total", {"kind": "config", "outcome": "error"}
        )
        or 0
    )
    path.write_text("rules:\n- seriesQuery: [broken\n")
    assert not p.check_config_reload()
    assert p.config.rules and p.config_error and "invalid YAML" in p.config_error
    assert (
        REGISTRY.get_sample_value(
            "hpakit_adapter_config_reloads_total", {"kind": "config", "outcome": "error"}
        )
        == err_before + 1
    )
    path.write_text((FIXTURES / "external-global.yaml").read_text())
    assert p.check_config_reload()
    await p.refresh()
    assert [i.metric for i in p.list_all_external_metrics()] == ["global_queue_depth"]
    assert p.list_all_metrics() == []
    assert (
        REGISTRY.get_sample_value(
            "hpakit_adapter_config_reloads_total", {"kind": "config", "outcome": "success"}
        )
        == ok_before + 1
    )
    await p.prom.aclose()


async def test_from_settings(tmp_path: Path, lister: FakeLister) -> None:
    p = PrometheusProvider.from_settings(
        config_path=FIXTURES / "seed-rules.yaml",
        prometheus_url="http://127.0.0.1:1",
        mapper=StaticResourceMapper(),
        lister=lister,
        prometheus_timeout=3,
    )
    assert p.prom.timeout == 3 and p.config_path is not None
    await p.stop()
