"""Discovery: series + rules + cluster resources -> index; failures keep the last good index."""

from __future__ import annotations

import pytest

from adapter.errors import BackendUnavailable
from adapter.kube.mapper import StaticResourceMapper
from adapter.provider.base import CustomMetricInfo, ExternalMetricInfo, GroupResource, ResourceInfo
from adapter.provider.prometheus.registry import Registry, discover
from adapter.rules.config import load_config, parse_config
from adapter.rules.resources import ResourceConverter, template_regex
from adapter.telemetry import REGISTRY
from tests.support.adapter_support import FIXTURES, FakePrometheus, pod_series

CFG = load_config(FIXTURES / "seed-rules.yaml")
PODS, SERVICES, NAMESPACES = (
    GroupResource("", "pods"),
    GroupResource("", "services"),
    GroupResource("", "namespaces"),
)


def seed_series() -> list[dict[str, str]]:
    return [
        pod_series("pm_status", "demo", "web-1", state="active processes"),
        pod_series("pm_status", "demo", "web-1", state="total processes"),
        pod_series("pm_status", "demo", "web-2", state="active processes"),
        {"__name__": "total_hit_count", "namespace": "demo", "service": "mockmetrics", "pod": "web-1"},
        pod_series("http_requests_total", "demo", "web-1", path="/", code="200"),
        pod_series("process_cpu_seconds_total", "demo", "web-1"),
        {"__name__": "queue_depth", "namespace": "demo", "queue": "orders"},
        {"__name__": "unrelated", "instance": "x"},
    ]


async def test_seed_discovery() -> None:
    fake = FakePrometheus(series_data=seed_series())
    async with fake.client() as prom:
        index = await discover(CFG, prom, StaticResourceMapper())
    infos = index.custom_infos()
    assert CustomMetricInfo(PODS, True, "fpm_active_rate") in infos
    assert CustomMetricInfo(NAMESPACES, False, "fpm_active_rate") in infos  # the namespace object case
    assert CustomMetricInfo(SERVICES, True, "total_hit_count") in infos
    assert CustomMetricInfo(PODS, True, "total_hit_count") not in infos  # overrides: only ns + service
    assert CustomMetricInfo(PODS, True, "http_requests") in infos
    assert CustomMetricInfo(PODS, True, "process_cpu_seconds") in infos
    # template <<.Resource>> maps the scrape `job` label to jobs.batch, exactly as upstream does
    assert CustomMetricInfo(GroupResource("batch", "jobs"), True, "http_requests") in infos
    assert index.external_infos() == [ExternalMetricInfo("queue_depth", True)]
    entry = index.lookup_custom(PODS, "fpm_active_rate")
    assert entry is not None and entry.label == "pod" and entry.namespace_label == "namespace"
    assert entry.series == "pm_status" and entry.rule.id == "rules[0]"
    # distinct series queries only once (rules[0], [1], [2], external[0] -> 4 different queries)
    assert len([r for r in fake.requests if r.url.path.endswith("/series")]) == 4
    report = {r.rule.id: r for r in index.reports}
    assert report["rules[2]"].kept_series == 2
    assert "pods/fpm_active_rate" in report["rules[0]"].metrics


async def test_shared_series_query_fetched_once() -> None:
    text = (
        (FIXTURES / "seed-rules.yaml")
        .read_text()
        .replace('\'pm_status{namespace!="",pod!=""}\'', '\'{__name__=~"^.*_total$",namespace!="",pod!=""}\'')
    )
    cfg = parse_config(text)
    fake = FakePrometheus(series_data=seed_series())
    async with fake.client() as prom:
        await discover(cfg, prom, StaticResourceMapper())
    assert len([r for r in fake.requests if r.url.path.endswith("/series")]) == 3


async def test_missing_cluster_resource_skipped_and_reported() -> None:
    mapper = StaticResourceMapper(
        [ResourceInfo(PODS, "v1", "Pod", True), ResourceInfo(NAMESPACES, "v1", "Namespace", False)]
    )
    fake = FakePrometheus(series_data=seed_series())
    async with fake.client() as prom:
        index = await discover(CFG, prom, mapper)
    assert not [i for i in index.custom_infos() if i.group_resource == SERVICES]
    report = {r.rule.id: r for r in index.reports}["rules[1]"]
    assert any("override service" in s and "no resource 'service'" in s for s in report.skipped)


async def test_failure_keeps_last_index_and_counts() -> None:
    fake = FakePrometheus(series_data=seed_series())
    async with fake.client() as prom:
        reg = Registry(prom, StaticResourceMapper())
        assert not reg.ready
        first = await reg.refresh(CFG)
        before = REGISTRY.get_sample_value("hpakit_adapter_discovery_failures_total") or 0
        fake.down = True
        with pytest.raises(BackendUnavailable):
            await reg.refresh(CFG)
        assert reg.current() is first and reg.ready
        assert reg.consecutive_failures == 1 and "connection refused" in (reg.last_error or "")
        assert REGISTRY.get_sample_value("hpakit_adapter_discovery_failures_total") == before + 1
        assert reg.age() is not None and reg.age() < 5  # type: ignore[operator]
        fake.down = False
        await reg.refresh(CFG)
        assert reg.consecutive_failures == 0 and reg.last_error is None
    assert REGISTRY.get_sample_value("hpakit_adapter_discovered_metrics", {"api": "external"}) == 1


async def test_bad_series_query_is_a_rule_error_not_an_outage() -> None:
    import httpx

    fake = FakePrometheus(series_data=seed_series())
    inner = fake.handler

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/series") and "pm_status" in str(request.url):
            return httpx.Response(
                400, json={"status": "error", "errorType": "bad_data", "error": "parse error"}
            )
        return inner(request)

    async with httpx.AsyncClient() as _:
        from adapter.provider.prometheus.client import PrometheusClient

        prom = PrometheusClient("http://p", transport=httpx.MockTransport(handler))
        index = await discover(CFG, prom, StaticResourceMapper())
        await prom.aclose()
    report = {r.rule.id: r for r in index.reports}
    assert report["rules[0]"].error and "rejected by Prometheus" in report["rules[0]"].error
    assert index.lookup_external("queue_depth") is not None


def test_resource_template_with_group() -> None:
    cfg = parse_config(
        "rules:\n- seriesQuery: x\n  resources: {template: 'kube_<<.Group>>_<<.Resource>>'}\n"
        "  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'\n"
    )
    mapping = cfg.rules[0].resources
    assert mapping.template is not None
    assert template_regex(mapping.template).pattern == "^kube_(?P<group>.+?)_(?P<resource>.+?)$"  # type: ignore[union-attr]
    conv = ResourceConverter(mapping, StaticResourceMapper())
    res = conv.resources_for_series(["kube_apps_deployment", "kube_networking_k8s_io_ingress", "instance"])
    assert [(r.label, str(r.resource.group_resource)) for r in res.resources] == [
        ("kube_apps_deployment", "deployments.apps"),
        ("kube_networking_k8s_io_ingress", "ingresses.networking.k8s.io"),
    ]
    assert conv.label_for_resource(GroupResource("apps", "deployments")) == "kube_apps_deployment"
    assert conv.namespace_label() == "kube__namespace"


def test_static_mapper_names() -> None:
    m = StaticResourceMapper()
    for name in ("pod", "pods", "Pod", "po"):
        assert m.resource_for(name).group_resource == PODS  # type: ignore[union-attr]
    assert m.resource_for("deployments.apps").group_resource == GroupResource("apps", "deployments")  # type: ignore[union-attr]
    assert m.resource_for("deployment", "apps") is not None
    assert m.resource_for("widgets") is None
