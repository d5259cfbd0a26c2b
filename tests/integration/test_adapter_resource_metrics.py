"""metrics.k8s.io against a REAL Prometheus: resourceRules -> PromQL -> PodMetrics/NodeMetrics.

A small exporter on loopback plays cAdvisor and a node exporter: CPU counters that grow at fixed
rates per container/node, memory gauges of fixed sizes. Prometheus scrapes it every second. The
cluster side (pods and nodes) is the in-memory lister. Every served value is checked against
PromQL written independently here and evaluated by Prometheus at the served sample's own time, so
the comparison is exact, and the served quantities against that value's Kubernetes spelling.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapter.apiserver.quantity import format_binary_quantity, format_quantity
from adapter.apiserver.routes import build_api_app
from adapter.kube.mapper import StaticResourceMapper
from adapter.provider.prometheus.client import PrometheusClient
from adapter.provider.prometheus.provider import PrometheusProvider
from adapter.provider.prometheus.resource import PrometheusResourceProvider
from adapter.rules.config import load_config
from adapter.selectors import EVERYTHING, parse_field_selector
from harness.localprom import LocalPrometheus, Target
from tests.support.adapter_fakes import sample_provider
from tests.support.adapter_support import FakeLister

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

RULES = """
resourceRules:
  cpu:
    containerQuery: >-
      sum by (<<.GroupBy>>) (irate(container_cpu_usage_seconds_total{<<.LabelMatchers>>,container!=""}[3m]))
    nodeQuery: sum by (<<.GroupBy>>) (irate(node_cpu_usage_seconds_total{<<.LabelMatchers>>}[3m]))
    resources:
      overrides:
        namespace: {resource: namespace}
        pod: {resource: pod}
        node: {resource: node}
    containerLabel: container
  memory:
    containerQuery: >-
      sum by (<<.GroupBy>>) (container_memory_working_set_bytes{<<.LabelMatchers>>,container!=""})
    nodeQuery: sum by (<<.GroupBy>>) (node_memory_working_set_bytes{<<.LabelMatchers>>})
    resources:
      overrides:
        namespace: {resource: namespace}
        pod: {resource: pod}
        node: {resource: node}
    containerLabel: container
  window: 3m
"""

#: (namespace, pod, container) -> (CPU cores used, memory bytes or None for "no memory series")
CONTAINERS: dict[tuple[str, str, str], tuple[float, int | None]] = {
    ("demo", "web-1", "app"): (0.25, 1572864),
    ("demo", "web-1", "sidecar"): (0.01, 1000001),
    ("demo", "web-2", "app"): (1.5, 2048),
    ("demo", "web-2", "sidecar"): (0.002, None),  # web-2 must be left out
    ("prod", "web-1", "app"): (0.5, 1073741824),
}
#: node -> (cores, bytes or None)
NODES: dict[str, tuple[float | None, int]] = {"node-a": (2.0, 4294967296), "node-b": (None, 1024)}


class _Exporter(BaseHTTPRequestHandler):
    started = time.time()

    def do_GET(self) -> None:
        elapsed = 1000 + time.time() - self.started  # counters never start at zero
        lines = []
        for (ns, pod, c), (cores, mem) in CONTAINERS.items():
            labels = f'namespace="{ns}",pod="{pod}",container="{c}"'
            lines.append(f"container_cpu_usage_seconds_total{{{labels}}} {cores * elapsed!r}")
            if mem is not None:
                lines.append(f"container_memory_working_set_bytes{{{labels}}} {mem}")
        for node, (node_cores, mem) in NODES.items():
            if node_cores is not None:
                lines.append(f'node_cpu_usage_seconds_total{{node="{node}"}} {node_cores * elapsed!r}')
            lines.append(f'node_memory_working_set_bytes{{node="{node}"}} {mem}')
        body = ("\n".join(lines) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPrometheus]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Exporter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        target = Target(f"127.0.0.1:{server.server_address[1]}", job="resource")
        with LocalPrometheus([target], scrape_interval="1s", data_dir=tmp_path_factory.mktemp("prom")) as lp:
            lp.wait_for_targets_up(30)
            # irate() needs two scrapes of every counter
            lp.wait_for_series("rate(container_cpu_usage_seconds_total[3m]) > 0", timeout=30, count=5)
            lp.wait_for_series("rate(node_cpu_usage_seconds_total[3m]) > 0", timeout=30)
            yield lp
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
async def rp(prom: LocalPrometheus, tmp_path: Path) -> AsyncIterator[PrometheusResourceProvider]:
    lister = FakeLister()
    for ns, pod in (("demo", "web-1"), ("demo", "web-2"), ("demo", "idle"), ("prod", "web-1")):
        lister.add("pods", ns, pod, app="web")
    for node in ("node-a", "node-b", "node-c"):
        lister.add("nodes", None, node, role="worker")
    (tmp_path / "rules.yaml").write_text(RULES)
    provider = PrometheusProvider(
        load_config(tmp_path / "rules.yaml"),
        PrometheusClient(prom.url, timeout=5),
        StaticResourceMapper(),
        lister,
        cache_ttl=60,  # the HTTP request below is answered from the evaluation the test checked
    )
    yield PrometheusResourceProvider(
        lambda: provider.config.resource_rules, provider.run_query, provider.mapper, lister
    )
    await provider.prom.aclose()


async def _independent(prom: LocalPrometheus, promql: str, at: float) -> Decimal:
    async with PrometheusClient(prom.url, timeout=5) as client:
        result = await client.query(promql, time=at)
    assert len(result.samples) == 1, (promql, result.samples)
    return result.samples[0].value


async def test_pod_metrics_match_independent_promql(
    prom: LocalPrometheus, rp: PrometheusResourceProvider
) -> None:
    objects = await rp.objects("pods", None, EVERYTHING, parse_field_selector(None))
    out = await rp.evaluate("pods", None, objects)
    assert sorted((p.namespace, p.name) for p in out.pods) == [("demo", "web-1"), ("prod", "web-1")]
    assert sorted((o.namespace, o.name, why) for o, why in out.without_data) == [
        ("demo", "idle", "no CPU or memory sample for any container"),
        ("demo", "web-2", "container 'sidecar' has no memory sample"),
    ]
    assert all(not out_q.result.warnings for out_q in out.queries if out_q.result)
    expected: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
    for pod in out.pods:
        at = pod.timestamp.timestamp()
        assert abs(at - time.time()) < 30
        assert pod.window_seconds == 180
        for c in pod.containers:
            sel = f'namespace="{pod.namespace}",pod="{pod.name}",container="{c.name}"'
            cpu = await _independent(prom, f"irate(container_cpu_usage_seconds_total{{{sel}}}[3m])", at)
            mem = await _independent(prom, f"container_memory_working_set_bytes{{{sel}}}", at)
            assert (c.usage.cpu, c.usage.memory) == (cpu, mem)
            cores = CONTAINERS[(pod.namespace, pod.name, c.name)][0]
            # irate() of a counter growing at `cores`/s (loose: scrapes are timed by a loaded machine)
            assert abs(float(cpu) - cores) < cores * 0.2
            expected.setdefault((pod.namespace, pod.name), {})[c.name] = {
                "cpu": format_quantity(cpu),
                "memory": format_binary_quantity(mem),
            }
    assert expected[("demo", "web-1")]["app"]["memory"] == "1536Ki"
    assert expected[("demo", "web-1")]["sidecar"]["memory"] == "1000001"
    assert expected[("prod", "web-1")]["app"]["memory"] == "1Gi"
    assert re.fullmatch(r"\d+[num]?", expected[("demo", "web-1")]["app"]["cpu"])

    api = build_api_app(sample_provider(), resource_provider=rp)
    async with TestClient(TestServer(api)) as client:
        resp = await client.get("/apis/metrics.k8s.io/v1beta1/pods")
        body = await resp.json()
        assert resp.status == 200, body
        served = {
            (i["metadata"]["namespace"], i["metadata"]["name"]): {
                c["name"]: c["usage"] for c in i["containers"]
            }
            for i in body["items"]
        }
        assert served == expected
        assert {i["window"] for i in body["items"]} == {"3m0s"}
        resp = await client.get("/apis/metrics.k8s.io/v1beta1/namespaces/demo/pods/web-2")
        assert resp.status == 404
        assert "container 'sidecar' has no memory sample" in (await resp.json())["message"]


async def test_node_metrics_match_independent_promql(
    prom: LocalPrometheus, rp: PrometheusResourceProvider
) -> None:
    objects = await rp.objects("nodes", None, EVERYTHING, parse_field_selector(None))
    out = await rp.evaluate("nodes", None, objects)
    assert [n.name for n in out.nodes] == ["node-a"]
    assert sorted((o.name, why) for o, why in out.without_data) == [
        ("node-b", "no cpu sample"),
        ("node-c", "no cpu and no memory sample"),
    ]
    node = out.nodes[0]
    at = node.timestamp.timestamp()
    cpu = await _independent(prom, 'irate(node_cpu_usage_seconds_total{node="node-a"}[3m])', at)
    mem = await _independent(prom, 'node_memory_working_set_bytes{node="node-a"}', at)
    assert (node.usage.cpu, node.usage.memory) == (cpu, mem)
    assert abs(float(cpu) - 2.0) < 0.4
    api = build_api_app(sample_provider(), resource_provider=rp)
    async with TestClient(TestServer(api)) as client:
        # the same objects render the same query: answered from the evaluation checked above
        resp = await client.get("/apis/metrics.k8s.io/v1beta1/nodes")
        body = await resp.json()
        assert resp.status == 200, body
        assert [(i["metadata"]["name"], i["usage"]) for i in body["items"]] == [
            ("node-a", {"cpu": format_quantity(cpu), "memory": "4Gi"})
        ]
        resp = await client.get("/apis/metrics.k8s.io/v1beta1/nodes/node-a")
        body = await resp.json()
        assert resp.status == 200, body
        assert body["kind"] == "NodeMetrics" and body["window"] == "3m0s"
        assert body["usage"]["memory"] == "4Gi" and re.fullmatch(r"\d+[num]?", body["usage"]["cpu"])
        resp = await client.get(
            "/apis/metrics.k8s.io/v1beta1/nodes", params={"fieldSelector": "metadata.name=node-b"}
        )
        assert (await resp.json())["items"] == []
        assert (await client.get("/apis/metrics.k8s.io/v1beta1/nodes/node-b")).status == 404
