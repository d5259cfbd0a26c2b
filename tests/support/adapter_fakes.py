"""An in-memory provider for API/server tests (imported by the adapter API, server and fuzz tests)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from adapter.errors import BackendUnavailable, MetricNotFound
from adapter.provider.base import (
    ContainerUsage,
    CustomMetricInfo,
    ExternalMetricInfo,
    ExternalMetricValue,
    GroupResource,
    MetricValue,
    NodeUsage,
    ObjectMeta,
    ObjectName,
    ObjectReference,
    PodUsage,
    ProviderStatus,
    ResourceUsage,
)
from adapter.selectors import FieldSelector, LabelSelector

TS = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)

KINDS = {
    GroupResource("", "pods"): ("Pod", "v1"),
    GroupResource("", "services"): ("Service", "v1"),
    GroupResource("", "namespaces"): ("Namespace", "v1"),
    GroupResource("", "nodes"): ("Node", "v1"),
    GroupResource("apps", "deployments"): ("Deployment", "apps/v1"),
}


@dataclass
class Call:
    kind: str
    args: tuple


@dataclass
class FakeProvider:
    """Serves ``values[(group_resource, namespace, name, metric)]``; records every call."""

    infos: list[CustomMetricInfo] = field(default_factory=list)
    external_infos: list[ExternalMetricInfo] = field(default_factory=list)
    values: dict[tuple[GroupResource, str | None, str, str], Decimal] = field(default_factory=dict)
    objects: dict[GroupResource, list[ObjectMeta]] = field(default_factory=dict)
    external_values: dict[str, list[tuple[dict[str, str], Decimal]]] = field(default_factory=dict)
    window: int | None = 60
    ready: bool = True
    message: str = "first discovery pending"  # ProviderStatus.message while not ready
    fail: Exception | None = None
    calls: list[Call] = field(default_factory=list)
    accepts_unlisted_resources: bool = False

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def status(self) -> ProviderStatus:
        return ProviderStatus(ready=self.ready, message="" if self.ready else self.message)

    def list_all_metrics(self) -> list[CustomMetricInfo]:
        return list(self.infos)

    def list_all_external_metrics(self) -> list[ExternalMetricInfo]:
        return list(self.external_infos)

    def _value(
        self, gr: GroupResource, ns: str | None, name: str, metric: str, sel: LabelSelector
    ) -> MetricValue:
        key = (gr, ns, name, metric)
        if key not in self.values:
            raise MetricNotFound(f"no data for {gr} {ns}/{name} metric {metric}")
        kind, api_version = KINDS.get(gr, ("Thing", "v1"))
        return MetricValue(
            described_object=ObjectReference(kind, name, ns, api_version),
            metric=metric,
            timestamp=TS,
            value=self.values[key],
            window_seconds=self.window,
            metric_selector=None,
        )

    async def get_metric_by_name(
        self, name: ObjectName, info: CustomMetricInfo, metric_selector: LabelSelector
    ) -> MetricValue:
        self.calls.append(Call("by_name", (name, info, metric_selector)))
        if self.fail:
            raise self.fail
        return self._value(info.group_resource, name.namespace, name.name, info.metric, metric_selector)

    async def get_metric_by_selector(
        self,
        namespace: str | None,
        selector: LabelSelector,
        info: CustomMetricInfo,
        metric_selector: LabelSelector,
    ) -> list[MetricValue]:
        self.calls.append(Call("by_selector", (namespace, selector, info, metric_selector)))
        if self.fail:
            raise self.fail
        out = []
        for obj in self.objects.get(info.group_resource, []):
            if obj.namespace == namespace and selector.matches(obj.labels):
                key = (info.group_resource, namespace, obj.name, info.metric)
                if key in self.values:
                    out.append(
                        self._value(info.group_resource, namespace, obj.name, info.metric, metric_selector)
                    )
        return out

    async def get_external_metric(
        self, namespace: str | None, metric_selector: LabelSelector, info: ExternalMetricInfo
    ) -> list[ExternalMetricValue]:
        self.calls.append(Call("external", (namespace, metric_selector, info)))
        if self.fail:
            raise self.fail
        return [
            ExternalMetricValue(info.metric, labels, TS, value, self.window)
            for labels, value in self.external_values.get(info.metric, [])
            if metric_selector.matches(labels)
        ]


def sample_provider() -> FakeProvider:
    pods = GroupResource("", "pods")
    svc = GroupResource("", "services")
    ns = GroupResource("", "namespaces")
    nodes = GroupResource("", "nodes")
    deps = GroupResource("apps", "deployments")
    return FakeProvider(
        infos=[
            CustomMetricInfo(pods, True, "http_requests"),
            CustomMetricInfo(svc, True, "total_hit_count"),
            CustomMetricInfo(ns, False, "queue_depth"),
            CustomMetricInfo(nodes, False, "node_load"),
            CustomMetricInfo(deps, True, "http_requests"),
        ],
        external_infos=[ExternalMetricInfo("queue_messages", True), ExternalMetricInfo("global_rate", False)],
        values={
            (pods, "default", "web-1", "http_requests"): Decimal("1.5"),
            (pods, "default", "web-2", "http_requests"): Decimal("2000"),
            (pods, "other", "web-9", "http_requests"): Decimal("7"),
            (svc, "default", "web", "total_hit_count"): Decimal("123.456"),
            (ns, None, "default", "queue_depth"): Decimal("42"),
            (nodes, None, "node-a", "node_load"): Decimal("0.0001"),
            (deps, "default", "web", "http_requests"): Decimal("3"),
        },
        objects={
            pods: [
                ObjectMeta("default", "web-1", {"app": "web"}),
                ObjectMeta("default", "web-2", {"app": "web", "tier": "front"}),
                ObjectMeta("default", "db-1", {"app": "db"}),
                ObjectMeta("other", "web-9", {"app": "web"}),
            ],
        },
        external_values={
            "queue_messages": [({"queue": "jobs"}, Decimal("12")), ({"queue": "mail"}, Decimal("0.5"))],
            "global_rate": [({}, Decimal("1e21"))],
        },
    )


__all__ = ["TS", "BackendUnavailable", "FakeProvider", "sample_provider"]


@dataclass
class FakeResourceProvider:
    """metrics.k8s.io over fixed pods and nodes (selectors applied); records every call."""

    pods: list[PodUsage] = field(default_factory=list)
    nodes: list[NodeUsage] = field(default_factory=list)
    enabled: bool = True
    calls: list[Call] = field(default_factory=list)

    def serves_resource_metrics(self) -> bool:
        return self.enabled

    async def list_node_metrics(self, selector: LabelSelector, fields: FieldSelector) -> list[NodeUsage]:
        self.calls.append(Call("nodes", (selector, fields)))
        return [n for n in self.nodes if selector.matches(n.labels) and fields.matches(None, n.name)]

    async def get_node_metrics(self, name: str) -> NodeUsage:
        self.calls.append(Call("node", (name,)))
        for n in self.nodes:
            if n.name == name:
                return n
        raise MetricNotFound(f'nodemetrics.metrics.k8s.io "{name}" not found')

    async def list_pod_metrics(
        self, namespace: str | None, selector: LabelSelector, fields: FieldSelector
    ) -> list[PodUsage]:
        self.calls.append(Call("pods", (namespace, selector, fields)))
        return [
            p
            for p in self.pods
            if (namespace is None or p.namespace == namespace)
            and selector.matches(p.labels)
            and fields.matches(p.namespace, p.name)
        ]

    async def get_pod_metrics(self, namespace: str, name: str) -> PodUsage:
        self.calls.append(Call("pod", (namespace, name)))
        for p in self.pods:
            if (p.namespace, p.name) == (namespace, name):
                return p
        raise MetricNotFound(f'podmetrics.metrics.k8s.io "{namespace}/{name}" not found')


def sample_resource_provider() -> FakeResourceProvider:
    def usage(cpu: str, memory: str) -> ResourceUsage:
        return ResourceUsage(Decimal(cpu), Decimal(memory))

    return FakeResourceProvider(
        pods=[
            PodUsage(
                "default",
                "web-1",
                {"app": "web"},
                TS,
                300,
                (
                    ContainerUsage("app", usage("0.123456789", "1572864")),
                    ContainerUsage("sidecar", usage("0.5", "1000001.5")),
                ),
            ),
            PodUsage(
                "default", "web-2", {"app": "web"}, TS, 300, (ContainerUsage("app", usage("2", "512")),)
            ),
            PodUsage("other", "db-0", {}, TS, 300, (ContainerUsage("db", usage("0", "1073741824")),)),
        ],
        nodes=[
            NodeUsage("node-a", {"role": "worker"}, TS, 30.5, usage("1.5", "4294967296")),
            NodeUsage("node-b", {"role": "control"}, TS, 30.5, usage("0.000000001", "1000")),
        ],
    )
