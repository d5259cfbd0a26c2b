"""The adapter's provider against a REAL Prometheus scraping REAL mockmetrics processes on loopback.

Two mockmetrics processes play two pods (``demo/web-1``, ``demo/web-2``) behind one Service
(``mockmetrics``): Prometheus attaches ``namespace``/``pod``/``service`` through static_configs
labels, as Kubernetes service discovery would. A real kube-apiserver is not available to these
tests yet, so the cluster side (ResourceMapper, ObjectLister) uses the in-memory fakes; the
Prometheus side is entirely real (series API, PromQL evaluation, POST forms, staleness).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from adapter.errors import BackendUnavailable
from adapter.kube.mapper import StaticResourceMapper
from adapter.provider.base import CustomMetricInfo, ExternalMetricInfo, GroupResource, ObjectName
from adapter.provider.prometheus.client import PrometheusClient
from adapter.provider.prometheus.provider import PrometheusProvider
from adapter.rules.config import load_config
from adapter.selectors import EVERYTHING, parse_label_selector
from adapter.tools.explain import explain, format_explain
from adapter.tools.lint import format_lint, lint
from harness.localprom import LocalPrometheus, Target
from harness.mockproc import MockMetricsProcess
from harness.waits import wait_for_async
from tests.support.adapter_support import FIXTURES, FakeLister

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

PODS, SERVICES = GroupResource("", "pods"), GroupResource("", "services")


def _get(url: str, method: str = "GET") -> int:
    req = urllib.request.Request(url, method=method)
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.status


@pytest.fixture(scope="module")
def exporters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Two mockmetrics processes: {pod name: base url}."""
    base = tmp_path_factory.mktemp("mockmetrics")
    with contextlib.ExitStack() as stack:
        yield {
            pod: stack.enter_context(MockMetricsProcess(base / f"{pod}.log")).url
            for pod in ("web-1", "web-2")
        }


@pytest.fixture(scope="module")
def prom(exporters: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPrometheus]:
    targets = [
        Target(url.removeprefix("http://"), {"namespace": "demo", "pod": pod, "service": "mockmetrics"})
        for pod, url in exporters.items()
    ]
    lp = LocalPrometheus(targets, scrape_interval="1s", data_dir=tmp_path_factory.mktemp("prom"))
    with lp:
        lp.wait_for_targets_up(30)
        # some traffic on web-1 only, after its counters were first scraped, so the two pods differ
        _get(exporters["web-1"] + "/")
        lp.wait_for_series('http_requests_total{pod="web-1",path="/"}', timeout=30)
        for _ in range(20):
            _get(exporters["web-1"] + "/")
        _get(exporters["web-1"] + "/produce?n=50", method="POST")
        # rate() over [2m] needs two samples of each series
        lp.wait_for_series('rate(http_requests_total{pod="web-1",path="/"}[2m]) > 0', timeout=30)
        # ... and for the idle pod too: its (zero) rate exists only once two scrapes of it landed,
        # which on a loaded machine can be later than web-1's.
        lp.wait_for_series('rate(http_requests_total{pod="web-2",path="/"}[2m])', timeout=30)
        lp.wait_for_series("count_over_time(pm_status[2m]) >= 2", timeout=30, count=2)
        yield lp


@pytest.fixture
def lister() -> FakeLister:
    lst = FakeLister()
    for name in ("web-1", "web-2", "web-3"):  # web-3 exists in "the cluster" but is never scraped
        lst.add("pods", "demo", name, app="web")
    lst.add("services", "demo", "mockmetrics", app="mockmetrics")
    return lst


@pytest.fixture
async def provider(prom: LocalPrometheus, lister: FakeLister):  # type: ignore[no-untyped-def]
    p = PrometheusProvider(
        load_config(FIXTURES / "seed-rules.yaml"),
        PrometheusClient(prom.url, timeout=5),
        StaticResourceMapper(),
        lister,
        relist_interval=1.0,
        cache_ttl=0,
    )
    await p.refresh()
    yield p
    await p.stop()
    await p.prom.aclose()


async def test_discovery(provider: PrometheusProvider) -> None:
    infos = set(provider.list_all_metrics())
    for gr, metric in [
        (PODS, "fpm_active_rate"),
        (SERVICES, "total_hit_count"),
        (PODS, "http_requests"),
        (GroupResource("", "namespaces"), "fpm_active_rate"),
    ]:
        assert any(i.group_resource == gr and i.metric == metric for i in infos), (gr, metric, infos)
    assert ExternalMetricInfo("queue_depth", True) in provider.list_all_external_metrics()
    assert provider.status().ready


async def test_per_pod_values_and_missing_pod(provider: PrometheusProvider) -> None:
    values = await provider.get_metric_by_selector(
        "demo", parse_label_selector("app=web"), CustomMetricInfo(PODS, True, "http_requests"), EVERYTHING
    )
    by_pod = {v.described_object.name: v for v in values}
    assert set(by_pod) == {"web-1", "web-2"}  # web-3 has no data: reported, not served
    assert by_pod["web-1"].value > by_pod["web-2"].value >= 0
    assert by_pod["web-1"].window_seconds == 120
    assert abs(by_pod["web-1"].timestamp.timestamp() - time.time()) < 30
    fpm = await provider.get_metric_by_selector(
        "demo", parse_label_selector("app=web"), CustomMetricInfo(PODS, True, "fpm_active_rate"), EVERYTHING
    )
    assert {v.described_object.name for v in fpm} == {"web-1", "web-2"}
    assert all(Decimal(0) <= v.value <= 1 for v in fpm)


async def test_object_metric_on_service(
    provider: PrometheusProvider, prom: LocalPrometheus, exporters: dict[str, str]
) -> None:
    # 120 hits on web-2 now: over the rule's 1 m window the Service's rate is 120/60 = 2/s, plus at
    # most the fixture's 21 hits on web-1 if they still fall inside the window. rate() extrapolates
    # to the window's edges; on a loaded machine with late scrapes that adds up to ~25 % (2.70/s seen
    # once for 141 hits), hence the upper margin. A 30 % under-count, the wrong Service or a doubled
    # series all still fall outside.
    start = _gauge(exporters["web-2"], "total_hit_count")
    for _ in range(120):
        _get(exporters["web-2"] + "/")
    prom.wait_for_series(f'total_hit_count{{pod="web-2"}} >= {start + 120}', timeout=30)
    v = await provider.get_metric_by_name(
        ObjectName("demo", "mockmetrics"), CustomMetricInfo(SERVICES, True, "total_hit_count"), EVERYTHING
    )
    assert v.described_object.kind == "Service" and v.window_seconds == 60
    assert 0.9 * 120 / 60 <= float(v.value) <= 1.3 * (120 + 21) / 60, v.value


async def test_metric_label_selector(provider: PrometheusProvider) -> None:
    info = CustomMetricInfo(PODS, True, "http_requests")
    ok = await provider.get_metric_by_name(
        ObjectName("demo", "web-1"), info, parse_label_selector("code=200")
    )
    assert ok.value > 0
    from adapter.errors import MetricNotFound

    with pytest.raises(MetricNotFound, match="no data"):
        await provider.get_metric_by_name(ObjectName("demo", "web-1"), info, parse_label_selector("code=599"))


async def test_escaped_names_and_post(provider: PrometheusProvider, lister: FakeLister) -> None:
    info = CustomMetricInfo(PODS, True, "http_requests")
    # unescaped, "web.1|web.2" would match web-1 and web-2 (upstream's behaviour)
    lister.objects["pods"] = []
    lister.add("pods", "demo", "web.1", app="dots")
    lister.add("pods", "demo", "web.2", app="dots")
    assert (
        await provider.get_metric_by_selector("demo", parse_label_selector("app=dots"), info, EVERYTHING)
        == []
    )
    # 800 names: the query is far over the GET limit and goes as a POST form
    for i in range(800):
        lister.add("pods", "demo", f"worker-{i:04d}-abcdefghij", app="many")
    lister.add("pods", "demo", "web-2", app="many")
    values = await provider.get_metric_by_selector("demo", parse_label_selector("app=many"), info, EVERYTHING)
    assert [v.described_object.name for v in values] == ["web-2"]


def _gauge(url: str, name: str) -> float:
    """A metric straight from the exporter process's own /metrics: the ground truth Prometheus scrapes."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{url}/metrics has no {name}")


async def test_external_metric(
    provider: PrometheusProvider, prom: LocalPrometheus, exporters: dict[str, str]
) -> None:
    # Drive the queue, then hold the adapter's answer against the processes' own gauges: the queue
    # only drains (5 jobs/s per process), so Prometheus' sample, up to a few scrapes old, lies between
    # the depth now and the depth now plus what drained since.
    _get(exporters["web-2"] + "/produce?n=400", method="POST")
    prom.wait_for_series('queue_depth{pod="web-2"} > 300', timeout=30)
    before = sum(_gauge(url, "queue_depth") for url in exporters.values())
    values = await provider.get_external_metric("demo", EVERYTHING, ExternalMetricInfo("queue_depth"))
    after = sum(_gauge(url, "queue_depth") for url in exporters.values())
    assert len(values) == 1 and values[0].labels == {"namespace": "demo"}
    served = float(values[0].value)
    assert after <= served <= before + 5.0 * 3, (after, served, before)
    assert served > 250, "the 400 jobs produced are not in the served value"
    assert await provider.get_external_metric("other", EVERYTHING, ExternalMetricInfo("queue_depth")) == []


async def test_explain_real(provider: PrometheusProvider) -> None:
    doc = await explain(
        provider,
        api="custom",
        namespace="demo",
        resource="pods",
        name_or_star="*",
        metric="http_requests",
        label_selector="app=web",
    )
    assert doc["rule"]["id"] == "rules[2]" and doc["without_data"] == ["demo/web-3"]
    assert doc["prometheus"]["samples"] == 2 and '"pod":"web-1"' in doc["prometheus"]["raw"]
    text = format_explain(doc)
    assert "PromQL: sum(rate(http_requests_total{" in text and "demo/web-3" in text


async def test_lint_real(prom: LocalPrometheus) -> None:
    cfg = load_config(FIXTURES / "seed-rules.yaml")
    async with PrometheusClient(prom.url) as client:
        report = await lint(cfg, client, relist_interval=0.5)
    assert "pods/http_requests" in report.custom_metrics and "queue_depth" in report.external_metrics
    assert report.scrape_interval == 1
    text = format_lint(report)
    assert "relist interval 0.5s is shorter than Prometheus' scrape interval 1s" in text
    assert "exposes services/total_hit_count" in text


async def test_config_reload_on_file_change(
    prom: LocalPrometheus, lister: FakeLister, tmp_path: Path
) -> None:
    path = tmp_path / "adapter.yaml"
    path.write_text((FIXTURES / "seed-rules.yaml").read_text())
    p = PrometheusProvider(
        load_config(path),
        PrometheusClient(prom.url),
        StaticResourceMapper(),
        lister,
        relist_interval=0.3,
        config_path=path,
    )
    await p.start()
    try:
        await _until(lambda: p.status().ready, 10)
        path.write_text("rules:\n- seriesQuery: [broken\n")
        await asyncio.sleep(1.0)
        assert p.config_error and "invalid YAML" in p.config_error
        assert ExternalMetricInfo("queue_depth", True) in p.list_all_external_metrics()
        path.write_text((FIXTURES / "external-global.yaml").read_text().replace('queue!=""', 'namespace!=""'))
        await _until(lambda: [i.metric for i in p.list_all_external_metrics()] == ["global_queue_depth"], 10)
        assert p.list_all_metrics() == [] and p.config_error is None
    finally:
        await p.stop()
        await p.prom.aclose()


async def test_prometheus_killed_then_restarted(prom: LocalPrometheus, lister: FakeLister) -> None:
    """Runs last: kills the module's Prometheus and brings it back on the same port and data."""
    p = PrometheusProvider(
        load_config(FIXTURES / "seed-rules.yaml"),
        PrometheusClient(prom.url, timeout=2),
        StaticResourceMapper(),
        lister,
        relist_interval=0.3,
        cache_ttl=0,
    )
    await p.start()
    info = CustomMetricInfo(PODS, True, "http_requests")
    try:
        await _until(lambda: p.status().ready, 10)
        good = p.list_all_metrics()
        prom.kill()
        with pytest.raises(BackendUnavailable, match="connection refused"):
            await p.get_metric_by_name(ObjectName("demo", "web-1"), info, EVERYTHING)
        await _until(lambda: p.registry.consecutive_failures >= 1, 10)
        st = p.status()
        assert st.ready and "discovery failing" in st.message
        assert p.list_all_metrics() == good
        await asyncio.to_thread(prom.restart)
        await _until(lambda: p.registry.consecutive_failures == 0, 20)
        prom.wait_for_series('http_requests_total{pod="web-1"}', timeout=30)
        value = await p.get_metric_by_name(ObjectName("demo", "web-1"), info, EVERYTHING)
        assert value.value >= 0
    finally:
        await p.stop()
        await p.prom.aclose()


async def _until(cond, timeout: float) -> None:  # type: ignore[no-untyped-def]
    await wait_for_async("condition", lambda: (bool(cond()), "not met"), timeout=timeout, interval=0.05,
                         progress=None, error=lambda _k, msg: AssertionError(msg))  # fmt: skip
