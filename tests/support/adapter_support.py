"""In-memory fakes for adapter tests (imported by unit and integration tests; holds no tests).

- ``FakeLister``: an ObjectLister over a fixed list of objects (label selectors applied).
- ``StaticResourceMapper`` (from adapter.kube.mapper) stands in for API discovery.
- ``FakePrometheus``: the Prometheus HTTP edge behind ``httpx.MockTransport``. Its query "engine"
  only filters the configured result rows by the label matchers of the query's first selector
  (matchers on labels a row does not carry are ignored) — enough to check which objects a
  query asked for, including regex escaping, without reimplementing PromQL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from adapter.provider.base import ObjectMeta, ResourceInfo
from adapter.provider.prometheus.client import PrometheusClient
from adapter.selectors import LabelSelector

#: Rules files and other inputs of the adapter tests.
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "adapter"

TS = 1700000000.5


class FakeLister:
    def __init__(self, objects: dict[str, list[ObjectMeta]] | None = None) -> None:
        self.objects = objects or {}
        self.calls: list[tuple[str, str | None, str]] = []

    def add(self, resource: str, namespace: str | None, name: str, **labels: str) -> None:
        self.objects.setdefault(resource, []).append(ObjectMeta(namespace, name, dict(labels)))

    async def list_objects(
        self, resource: ResourceInfo, namespace: str | None, selector: LabelSelector
    ) -> list[ObjectMeta]:
        self.calls.append((str(resource.group_resource), namespace, str(selector)))
        return [
            o
            for o in self.objects.get(str(resource.group_resource), [])
            if (namespace is None or o.namespace == namespace) and selector.matches(o.labels)
        ]


_MATCHER_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


def unquote_promql(s: str) -> str:
    return json.loads('"' + s + '"')


def matchers_of(query: str) -> list[tuple[str, str, str]]:
    m = re.search(r"\{([^{}]*)\}", query)
    if not m:
        return []
    return [(k, op, unquote_promql(v)) for k, op, v in _MATCHER_RE.findall(m.group(1))]


def row_matches(labels: dict[str, str], matchers: list[tuple[str, str, str]]) -> bool:
    for key, op, value in matchers:
        if key not in labels:
            continue
        have = labels[key]
        ok = {
            "=": have == value,
            "!=": have != value,
            "=~": re.fullmatch(value, have) is not None,
            "!~": re.fullmatch(value, have) is None,
        }[op]
        if not ok:
            return False
    return True


@dataclass
class FakePrometheus:
    series_data: list[dict[str, str]] = field(default_factory=list)
    rows: list[tuple[dict[str, str], str]] = field(default_factory=list)
    responder: Callable[[httpx.Request, str], httpx.Response] | None = None
    down: bool = False
    requests: list[httpx.Request] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    scrape_interval: str = "15s"

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.down:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        if request.method == "POST":
            params = httpx.QueryParams(request.content.decode())
        else:
            params = request.url.params
        path = request.url.path
        if path.endswith("/api/v1/series"):
            return httpx.Response(
                200, json={"status": "success", "data": self.series_for(params.get_list("match[]"))}
            )
        if path.endswith("/api/v1/status/config"):
            return httpx.Response(
                200,
                json={
                    "status": "success",
                    "data": {"yaml": f"global:\n  scrape_interval: {self.scrape_interval}\n"},
                },
            )
        if path.endswith("/api/v1/query"):
            q = params["query"]
            self.queries.append(q)
            if self.responder is not None:
                return self.responder(request, q)
            ms = matchers_of(q)
            result = [
                {"metric": labels, "value": [TS, value]}
                for labels, value in self.rows
                if row_matches(labels, ms)
            ]
            return httpx.Response(
                200, json={"status": "success", "data": {"resultType": "vector", "result": result}}
            )
        return httpx.Response(404, text="not found")

    def series_for(self, matches: list[str]) -> list[dict[str, str]]:
        out = []
        for match in matches:
            name_m = re.match(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", match)
            ms = matchers_of(match)
            for s in self.series_data:
                if name_m and s.get("__name__") != name_m.group(1):
                    continue
                if all(self._series_match(s, m) for m in ms):
                    out.append(s)
        return out

    @staticmethod
    def _series_match(labels: dict[str, str], m: tuple[str, str, str]) -> bool:
        key, op, value = m
        have = labels.get(key, "")
        return {
            "=": have == value,
            "!=": have != value,
            "=~": re.fullmatch(value, have) is not None,
            "!~": re.fullmatch(value, have) is None,
        }[op]

    def client(self, **kw: Any) -> PrometheusClient:
        return PrometheusClient("http://prom.test:9090", transport=httpx.MockTransport(self.handler), **kw)


def pod_series(name: str, namespace: str, pod: str, **extra: str) -> dict[str, str]:
    return {
        "__name__": name,
        "namespace": namespace,
        "pod": pod,
        "job": "kubernetes-pods",
        "instance": "10.0.0.1:8080",
        **extra,
    }
