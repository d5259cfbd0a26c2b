"""PrometheusResourceProvider: resourceRules -> PromQL -> PodUsage/NodeUsage, over fake edges."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from adapter.errors import ConfigError, MetricNotFound, NotFound
from adapter.kube.mapper import StaticResourceMapper
from adapter.provider.base import ResourceMetricsProvider
from adapter.provider.prometheus.provider import PrometheusProvider
from adapter.provider.prometheus.resource import PrometheusResourceProvider
from adapter.rules.config import parse_config
from adapter.selectors import EVERYTHING, parse_field_selector, parse_label_selector
from tests.support.adapter_support import TS, FakeLister, FakePrometheus
from tests.support.resource_metrics import (
    NODE_CPU,
    NODE_MEM,
    RULES,
    Engine,
    resource_provider,
    sample_engine,
    sample_lister,
)


@pytest.fixture
def engine() -> Engine:
    return sample_engine()


@pytest.fixture
def lister() -> FakeLister:
    return sample_lister()


@pytest.fixture
async def rp(engine: Engine, lister: FakeLister) -> AsyncIterator[PrometheusResourceProvider]:
    async with resource_provider(engine, lister) as (provider, fake):
        provider.fake = fake  # type: ignore[attr-defined]
        yield provider


def when(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


async def test_satisfies_protocol(rp: PrometheusResourceProvider) -> None:
    assert isinstance(rp, ResourceMetricsProvider)
    assert rp.serves_resource_metrics()


async def test_pod_queries_render_the_rule(rp: PrometheusResourceProvider) -> None:
    out = await rp.evaluate(
        "pods", "demo", await rp.objects("pods", "demo", EVERYTHING, parse_field_selector(""))
    )
    cpu, mem = (q.promql for q in out.queries)
    assert cpu == (
        'sum by (namespace,pod,container) (rate(container_cpu_usage_seconds_total{namespace="demo",'
        'pod=~"idle|web-1|web-2",container!=""}[3m]))'
    )
    assert mem == (
        'sum by (namespace,pod,container) (container_memory_working_set_bytes{namespace="demo",'
        'pod=~"idle|web-1|web-2",container!=""})'
    )
    assert out.window_seconds == 180


async def test_pods_in_namespace_per_container_usage(rp: PrometheusResourceProvider) -> None:
    pods = await rp.list_pod_metrics("demo", EVERYTHING, parse_field_selector(None))
    assert [p.name for p in pods] == ["web-1"]
    web1 = pods[0]
    assert web1.namespace == "demo" and web1.labels == {"app": "web"}
    assert [(c.name, c.usage.cpu, c.usage.memory) for c in web1.containers] == [
        ("app", Decimal("0.123456789"), Decimal("1572864")),
        ("sidecar", Decimal("0.002"), Decimal("1000001")),
    ]
    assert web1.timestamp == when(TS - 5)  # the earliest sample's own time
    assert web1.window_seconds == 180


async def test_pods_missing_samples_are_left_out_and_explained(
    rp: PrometheusResourceProvider, caplog: pytest.LogCaptureFixture
) -> None:
    objects = await rp.objects("pods", "demo", EVERYTHING, parse_field_selector(None))
    with caplog.at_level(logging.INFO):
        out = await rp.evaluate("pods", "demo", objects)
    why = {o.name: reason for o, reason in out.without_data}
    assert why == {
        "idle": "no CPU or memory sample for any container",
        "web-2": "container 'sidecar' has no memory sample",
    }
    assert "no resource metrics for pod demo/web-2" in caplog.text
    with pytest.raises(MetricNotFound, match="container 'sidecar' has no memory sample") as err:
        await rp.get_pod_metrics("demo", "web-2")
    assert err.value.code == 404 and 'podmetrics.metrics.k8s.io "demo/web-2" not found' in err.value.message


async def test_all_namespaces_one_query_per_resource(rp: PrometheusResourceProvider) -> None:
    n = len(rp.fake.queries)  # type: ignore[attr-defined]
    pods = await rp.list_pod_metrics(None, parse_label_selector("app=web"), parse_field_selector(None))
    assert [(p.namespace, p.name) for p in pods] == [("demo", "web-1"), ("prod", "web-1")]
    queries = rp.fake.queries[n:]  # type: ignore[attr-defined]
    assert len(queries) == 2 and all("namespace=" not in q.split("by")[1].split("}")[0] for q in queries)
    assert all('pod=~"web-(?:1|2)"' in q for q in queries)


async def test_label_and_field_selectors(rp: PrometheusResourceProvider) -> None:
    pods = await rp.list_pod_metrics(None, EVERYTHING, parse_field_selector("metadata.namespace=prod"))
    assert [(p.namespace, p.name) for p in pods] == [("prod", "web-1")]
    pods = await rp.list_pod_metrics("demo", EVERYTHING, parse_field_selector("metadata.name!=web-1"))
    assert pods == []
    nodes = await rp.list_node_metrics(parse_label_selector("role=worker"), parse_field_selector(""))
    assert [n.name for n in nodes] == ["node-a"]
    nodes = await rp.list_node_metrics(EVERYTHING, parse_field_selector("metadata.name=node-c"))
    assert nodes == []
    assert 'instance="node-c"' in rp.fake.queries[-1]  # type: ignore[attr-defined]


async def test_selector_matching_nothing_sends_no_query(rp: PrometheusResourceProvider) -> None:
    n = len(rp.fake.queries)  # type: ignore[attr-defined]
    assert await rp.list_pod_metrics("demo", parse_label_selector("app=none"), parse_field_selector("")) == []
    assert len(rp.fake.queries) == n  # type: ignore[attr-defined]


async def test_nodes(rp: PrometheusResourceProvider) -> None:
    objects = await rp.objects("nodes", None, EVERYTHING, parse_field_selector(None))
    out = await rp.evaluate("nodes", None, objects)
    assert out.queries[0].promql == (
        'sum by (instance) (rate(node_cpu_usage_seconds_total{instance=~"node-(?:a|b|c)"}[3m]))'
    )
    assert [(n.name, n.usage.cpu, n.usage.memory, n.timestamp) for n in out.nodes] == [
        ("node-a", Decimal("1.5"), Decimal("4294967296"), when(TS - 10))
    ]
    assert out.nodes[0].labels == {"role": "worker"}
    assert {o.name: why for o, why in out.without_data} == {
        "node-b": "no cpu sample",
        "node-c": "no cpu and no memory sample",
    }
    assert (await rp.get_node_metrics("node-a")).name == "node-a"
    with pytest.raises(
        MetricNotFound, match=r'nodemetrics\.metrics\.k8s\.io "node-c" not found: no cpu and no memory'
    ):
        await rp.get_node_metrics("node-c")
    with pytest.raises(MetricNotFound, match="there is no node node-z in the cluster"):
        await rp.get_node_metrics("node-z")


async def test_duplicates_are_deterministic_and_reported(
    rp: PrometheusResourceProvider, engine: Engine
) -> None:
    # a query whose `by` kept an extra label: two samples for node-a's CPU, in either order
    engine.rows[NODE_CPU] = [
        ({"instance": "node-a", "cpu": "1"}, "0.7", TS),
        ({"instance": "node-a", "cpu": "0"}, "0.3", TS),
    ]
    out = await rp.evaluate(
        "nodes", None, await rp.objects("nodes", None, EVERYTHING, parse_field_selector(""))
    )
    assert out.nodes[0].usage.cpu == Decimal("0.3")  # the sample whose labels sort first
    assert [(w, s.labels["cpu"]) for w, s in out.duplicate_samples] == [("cpu", "1")]
    engine.rows[NODE_CPU].reverse()
    again = await rp.evaluate("nodes", None, out.objects)
    assert again.nodes[0].usage.cpu == Decimal("0.3")


async def test_nonfinite_negative_and_unlabelled_samples(
    rp: PrometheusResourceProvider, engine: Engine
) -> None:
    engine.rows[NODE_CPU] = [({"instance": "node-a"}, "NaN", TS), ({"instance": "node-b"}, "-0.5", TS)]
    engine.rows[NODE_MEM].append(({}, "5", TS))  # no node label: cannot be assigned
    out = await rp.evaluate(
        "nodes", None, await rp.objects("nodes", None, EVERYTHING, parse_field_selector(""))
    )
    assert [(n.name, n.usage.cpu) for n in out.nodes] == [
        ("node-b", Decimal(0))
    ]  # negative -> 0, as upstream
    assert dict((o.name, why) for o, why in out.without_data)["node-a"] == "a non-finite value"
    assert [w for w, _ in out.unmatched_samples] == ["memory"]


async def test_labels_come_from_the_resources_mapping(lister: FakeLister) -> None:
    text = RULES.replace("instance: {resource: node}", "node: {resource: node}")
    fake = FakePrometheus(rows=[])
    provider = PrometheusProvider(
        parse_config(text), fake.client(), StaticResourceMapper(), lister, cache_ttl=0
    )
    rp = PrometheusResourceProvider(
        lambda: provider.config.resource_rules, provider.run_query, provider.mapper, lister
    )
    await rp.list_node_metrics(EVERYTHING, parse_field_selector(""))
    assert 'sum by (node) (rate(node_cpu_usage_seconds_total{node=~"node-(?:a|b|c)"}[3m]))' in fake.queries
    no_pod = text.replace("        pod: {resource: pod}\n", "")
    provider.config = parse_config(no_pod)
    with pytest.raises(ConfigError, match=r"resourceRules.cpu.resources maps no label to pods"):
        await rp.list_pod_metrics("demo", EVERYTHING, parse_field_selector(""))
    await provider.prom.aclose()


async def test_without_resource_rules_nothing_is_served(lister: FakeLister) -> None:
    rp = PrometheusResourceProvider(lambda: None, None, StaticResourceMapper(), lister)  # type: ignore[arg-type]
    assert not rp.serves_resource_metrics()
    with pytest.raises(NotFound, match="no resourceRules"):
        await rp.list_node_metrics(EVERYTHING, parse_field_selector(""))
