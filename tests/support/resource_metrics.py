"""resourceRules test inputs: a rules text, a query engine keyed by series, sample pods and nodes.

Shared by the resource-metrics provider and explain tests (holds no tests).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from adapter.kube.mapper import StaticResourceMapper
from adapter.provider.prometheus.provider import PrometheusProvider
from adapter.provider.prometheus.resource import PrometheusResourceProvider
from adapter.rules.config import parse_config
from tests.support.adapter_support import TS, FakeLister, FakePrometheus, matchers_of, row_matches

RULES = """
resourceRules:
  cpu:
    containerQuery: >-
      sum by (<<.GroupBy>>) (rate(container_cpu_usage_seconds_total{<<.LabelMatchers>>,container!=""}[3m]))
    nodeQuery: sum by (<<.GroupBy>>) (rate(node_cpu_usage_seconds_total{<<.LabelMatchers>>}[3m]))
    resources:
      overrides:
        namespace: {resource: namespace}
        pod: {resource: pod}
        instance: {resource: node}
    containerLabel: container
  memory:
    containerQuery: >-
      sum by (<<.GroupBy>>) (container_memory_working_set_bytes{<<.LabelMatchers>>,container!=""})
    nodeQuery: sum by (<<.GroupBy>>) (node_memory_working_set_bytes{<<.LabelMatchers>>})
    resources:
      overrides:
        namespace: {resource: namespace}
        pod: {resource: pod}
        instance: {resource: node}
    containerLabel: container
  window: 3m
"""

CPU = "container_cpu_usage_seconds_total"
MEM = "container_memory_working_set_bytes"
NODE_CPU = "node_cpu_usage_seconds_total"
NODE_MEM = "node_memory_working_set_bytes"


class Engine:
    """Answers each query from the rows of the series it names (filtered by its matchers)."""

    def __init__(self) -> None:
        self.rows: dict[str, list[tuple[dict[str, str], str, float]]] = {}

    def add(self, series: str, value: str, ts: float = TS, **labels: str) -> None:
        self.rows.setdefault(series, []).append((labels, value, ts))

    def __call__(self, request: httpx.Request, query: str) -> httpx.Response:
        series = next(s for s in (CPU, MEM, NODE_CPU, NODE_MEM) if s in query)
        ms = [m for m in matchers_of(query) if m[0] != "container"]
        result = [
            {"metric": labels, "value": [ts, value]}
            for labels, value, ts in self.rows.get(series, [])
            if row_matches(labels, ms)
        ]
        return httpx.Response(
            200, json={"status": "success", "data": {"resultType": "vector", "result": result}}
        )


def sample_engine() -> Engine:
    e = Engine()
    for ns, pod in (("demo", "web-1"), ("demo", "web-2"), ("prod", "web-1")):
        e.add(CPU, "0.123456789", namespace=ns, pod=pod, container="app")
        e.add(MEM, "1572864", namespace=ns, pod=pod, container="app")
    e.add(CPU, "0.002", TS - 5, namespace="demo", pod="web-1", container="sidecar")
    e.add(MEM, "1000001", namespace="demo", pod="web-1", container="sidecar")
    # web-2's sidecar has CPU but no memory sample: the pod is left out
    e.add(CPU, "0.001", namespace="demo", pod="web-2", container="sidecar")
    e.add(NODE_CPU, "1.5", instance="node-a")
    e.add(NODE_MEM, "4294967296", TS - 10, instance="node-a")
    e.add(NODE_MEM, "1024", instance="node-b")  # node-b has no CPU sample
    return e


def sample_lister() -> FakeLister:
    lst = FakeLister()
    lst.add("pods", "demo", "web-1", app="web")
    lst.add("pods", "demo", "web-2", app="web")
    lst.add("pods", "demo", "idle", app="idle")  # no samples at all
    lst.add("pods", "prod", "web-1", app="web")
    lst.add("nodes", None, "node-a", role="worker")
    lst.add("nodes", None, "node-b", role="worker")
    lst.add("nodes", None, "node-c", role="control")
    return lst


@asynccontextmanager
async def resource_provider(
    engine: Engine, lister: FakeLister
) -> AsyncIterator[tuple[PrometheusResourceProvider, FakePrometheus]]:
    """A resource provider over ``engine`` (through a PrometheusProvider's cache) and ``lister``."""
    fake = FakePrometheus(responder=engine)
    provider = PrometheusProvider(
        parse_config(RULES), fake.client(), StaticResourceMapper(), lister, cache_ttl=0
    )
    rp = PrometheusResourceProvider(
        lambda: provider.config.resource_rules, provider.run_query, provider.mapper, lister
    )
    try:
        yield rp, fake
    finally:
        await provider.prom.aclose()
