"""The provider interface between the API layer and a metrics backend.

Shaped like custom-metrics-apiserver's provider interfaces: the API layer parses paths and
selectors, asks a provider, and renders Kubernetes JSON. Providers never see HTTP; they raise
:mod:`adapter.errors` exceptions (``MetricNotFound`` -> 404, ``BackendUnavailable`` -> 503).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol, runtime_checkable

from adapter.selectors import FieldSelector, LabelSelector


@dataclass(frozen=True, order=True)
class GroupResource:
    """A Kubernetes resource, e.g. ``GroupResource("", "pods")`` or ``("apps", "deployments")``."""

    group: str
    resource: str

    def __str__(self) -> str:
        return f"{self.resource}.{self.group}" if self.group else self.resource

    @classmethod
    def parse(cls, text: str) -> GroupResource:
        """``deployments.apps`` -> ("apps", "deployments"); ``pods`` -> ("", "pods")."""
        resource, _, group = text.partition(".")
        return cls(group, resource)


@dataclass(frozen=True, order=True)
class CustomMetricInfo:
    """One (resource, metric) pair served by custom.metrics.k8s.io."""

    group_resource: GroupResource
    namespaced: bool
    metric: str


@dataclass(frozen=True, order=True)
class ExternalMetricInfo:
    metric: str
    namespaced: bool = True


@dataclass(frozen=True, slots=True)
class ObjectReference:
    """``describedObject`` of a MetricValue."""

    kind: str
    name: str
    namespace: str | None
    api_version: str


@dataclass(frozen=True, slots=True)
class MetricValue:
    """One custom metric value for one object.

    ``value`` is exact (``Decimal``); NaN/Inf never reach here: providers drop or report them.
    ``window_seconds`` is the rule's window (or None when the query has none).
    ``metric_selector`` echoes the metricLabelSelector the value was computed with.
    """

    described_object: ObjectReference
    metric: str
    timestamp: datetime
    value: Decimal
    window_seconds: int | None = None
    metric_selector: LabelSelector | None = None


class SharedValues(list[MetricValue]):
    """Values a provider hands out again, the same list, for the same answer (while the answer it
    was derived from is cached). Read-only by contract: every request that gets it shares it. The
    API keeps what it rendered of it in ``rendered`` (by API version and selector), so a repeated
    ``pods/*`` answer over thousands of objects is encoded once, not once per request."""

    __slots__ = ("rendered",)

    def __init__(self, values: Iterable[MetricValue] = ()) -> None:
        super().__init__(values)
        self.rendered: dict[Hashable, str] = {}


@dataclass(frozen=True)
class ExternalMetricValue:
    metric: str
    labels: dict[str, str]
    timestamp: datetime
    value: Decimal
    window_seconds: int | None = None


@dataclass(frozen=True)
class ObjectName:
    namespace: str | None
    name: str


@dataclass
class ProviderStatus:
    """What readiness and /metrics report about the backend."""

    ready: bool
    message: str = ""
    details: dict[str, object] = field(default_factory=dict)


@runtime_checkable
class CustomMetricsProvider(Protocol):
    def list_all_metrics(self) -> list[CustomMetricInfo]:
        """Everything servable now (drives discovery documents)."""
        ...

    async def get_metric_by_name(
        self, name: ObjectName, info: CustomMetricInfo, metric_selector: LabelSelector
    ) -> MetricValue:
        """Value for one named object; ``MetricNotFound`` when the object has no data."""
        ...

    async def get_metric_by_selector(
        self,
        namespace: str | None,
        selector: LabelSelector,
        info: CustomMetricInfo,
        metric_selector: LabelSelector,
    ) -> list[MetricValue]:
        """Values for every object matching ``selector``; zero objects -> ``[]``, not 404."""
        ...


@runtime_checkable
class ExternalMetricsProvider(Protocol):
    def list_all_external_metrics(self) -> list[ExternalMetricInfo]: ...

    async def get_external_metric(
        self, namespace: str | None, metric_selector: LabelSelector, info: ExternalMetricInfo
    ) -> list[ExternalMetricValue]: ...


class Provider(CustomMetricsProvider, ExternalMetricsProvider, Protocol):
    """A provider serving both APIs, with lifecycle hooks the server calls.

    Capabilities the API layer honours are declared here, never probed with ``getattr``.
    """

    #: A by-name request for a resource the provider does not list in discovery is still passed
    #: to it (the static provider answers for any object kind); otherwise such a request is a 404.
    accepts_unlisted_resources: bool

    async def start(self) -> None:
        """Begin background work (discovery loop, watches). Must not block on the first result."""
        ...

    async def stop(self) -> None: ...

    def status(self) -> ProviderStatus:
        """Ready once the first discovery finished (readiness probe)."""
        ...


# --- metrics.k8s.io (resource metrics: ``kubectl top``, HPA Resource metrics) -------------------


@dataclass(frozen=True)
class ResourceUsage:
    """CPU in cores and memory in bytes, exact (the API layer renders them as quantities)."""

    cpu: Decimal
    memory: Decimal


@dataclass(frozen=True)
class ContainerUsage:
    name: str
    usage: ResourceUsage


@dataclass(frozen=True)
class PodUsage:
    """One ``PodMetrics``: every container of the pod has both CPU and memory samples.

    ``timestamp`` is the earliest sample's own time (conservative for the HPA's start-up checks);
    ``window_seconds`` the rules' ``window``.
    """

    namespace: str
    name: str
    labels: dict[str, str]
    timestamp: datetime
    window_seconds: float
    containers: tuple[ContainerUsage, ...]


@dataclass(frozen=True)
class NodeUsage:
    """One ``NodeMetrics``."""

    name: str
    labels: dict[str, str]
    timestamp: datetime
    window_seconds: float
    usage: ResourceUsage


@runtime_checkable
class ResourceMetricsProvider(Protocol):
    """Serves metrics.k8s.io. Objects without complete data are left out of lists (and logged);
    a by-name request for one raises ``MetricNotFound`` saying why."""

    def serves_resource_metrics(self) -> bool:
        """True while the configuration has resource rules (drives discovery)."""
        ...

    async def list_node_metrics(self, selector: LabelSelector, fields: FieldSelector) -> list[NodeUsage]: ...

    async def get_node_metrics(self, name: str) -> NodeUsage: ...

    async def list_pod_metrics(
        self, namespace: str | None, selector: LabelSelector, fields: FieldSelector
    ) -> list[PodUsage]: ...

    async def get_pod_metrics(self, namespace: str, name: str) -> PodUsage: ...


# --- What providers need from the cluster (implemented in adapter/kube/client.py and objects.py) ---


@dataclass(frozen=True)
class ResourceInfo:
    """A resource as the cluster's API discovery describes it."""

    group_resource: GroupResource
    version: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        g = self.group_resource.group
        return f"{g}/{self.version}" if g else self.version


class ResourceMapper(Protocol):
    """Maps names people write (``pod``, ``pods``, ``Pod``, ``deployments.apps``, ``deployment``)
    to the cluster's resources, from API discovery (refreshed periodically)."""

    def resource_for(self, name: str, group: str | None = None) -> ResourceInfo | None: ...

    def all_resources(self) -> list[ResourceInfo]: ...


@dataclass(frozen=True)
class ObjectMeta:
    namespace: str | None
    name: str
    labels: dict[str, str] = field(default_factory=dict)


class ObjectLister(Protocol):
    """Objects of a resource, from a watch-backed cache (not a LIST per request)."""

    async def list_objects(
        self, resource: ResourceInfo, namespace: str | None, selector: LabelSelector
    ) -> list[ObjectMeta]: ...
