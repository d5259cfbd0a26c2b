"""explain for metrics.k8s.io: the objects, both queries, what is served and why a pod is left out."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from adapter.provider.base import ProviderStatus
from adapter.provider.prometheus.resource import PrometheusResourceProvider
from adapter.tools.explain import explain_resource, format_explain
from tests.support.resource_metrics import resource_provider, sample_engine, sample_lister

READY = ProviderStatus(True, "ok")


@pytest.fixture
async def rp() -> AsyncIterator[PrometheusResourceProvider]:
    async with resource_provider(sample_engine(), sample_lister()) as (provider, _):
        yield provider


async def test_explain_pods_names_what_was_left_out(rp: PrometheusResourceProvider) -> None:
    doc = await explain_resource(rp, READY, resource="pods", namespace="demo", label_selector="app")
    assert doc["request"]["api"] == "resource" and doc["object_count"] == 3
    assert [q["resource"] for q in doc["queries"]] == ["cpu", "memory"]
    assert doc["queries"][0]["promql"].startswith("sum by (namespace,pod,container)")
    assert [v["object"] for v in doc["values"]] == ["demo/web-1"]
    assert doc["values"][0]["containers"]["app"] == {"cpu": "0.123456789", "memory": "1572864"}
    assert sorted(doc["without_data"]) == [
        "demo/idle: no CPU or memory sample for any container",
        "demo/web-2: container 'sidecar' has no memory sample",
    ]
    assert doc["rule"]["window"] == 180
    text = format_explain(doc)
    assert "Request: metrics.k8s.io/v1beta1/namespaces/demo/pods" in text
    assert "cpu PromQL: sum by (namespace,pod,container)" in text
    assert "demo/web-2: container 'sidecar' has no memory sample" in text


async def test_explain_one_node_and_errors(rp: PrometheusResourceProvider) -> None:
    doc = await explain_resource(rp, READY, resource="node", name="node-b")
    assert doc["without_data"] == ["node-b: no cpu sample"]
    assert "Request: metrics.k8s.io/v1beta1/nodes/node-b" in format_explain(doc)
    doc = await explain_resource(rp, READY, resource="node", name="node-z")
    assert doc["object_count"] == 0 and "not in the cluster (404)" in doc["steps"][0]
    doc = await explain_resource(rp, READY, resource="services")
    assert doc["error"]["code"] == 400
    doc = await explain_resource(rp, READY, resource="pods", field_selector="spec.nodeName=x")
    assert doc["error"]["code"] == 400 and "not supported" in doc["error"]["message"]
