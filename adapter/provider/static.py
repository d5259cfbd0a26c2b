"""A provider that answers one fixed value for every metric: the constant-value walkthrough server.

It has no backend at all, so it isolates the plumbing a real adapter depends on: the APIService and
its caBundle, serving certificates, the aggregator's front-proxy authentication, RBAC for the HPA
controller, and the HPA's own arithmetic. If an HPA scales on this provider, whatever goes wrong
with Prometheus later is a Prometheus/rules problem and not a cluster-wiring problem.

Named objects of any resource get the value (the object need not exist: there is nothing to look
up); ``*`` requests need the objects themselves, so they use the watch cache when the adapter has
cluster access and say so with a 404 when it does not.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal

from adapter.errors import MetricNotFound
from adapter.provider.base import (
    CustomMetricInfo,
    ExternalMetricInfo,
    ExternalMetricValue,
    GroupResource,
    MetricValue,
    ObjectLister,
    ObjectName,
    ObjectReference,
    ProviderStatus,
    ResourceInfo,
    ResourceMapper,
)
from adapter.selectors import LabelSelector

log = logging.getLogger(__name__)

DEFAULT_RESOURCES = (
    GroupResource("", "pods"),
    GroupResource("", "services"),
    GroupResource("", "namespaces"),
)

# Used when no mapper is given (or it does not know the resource).
_FALLBACK = {
    GroupResource("", "pods"): ("Pod", "v1", True),
    GroupResource("", "services"): ("Service", "v1", True),
    GroupResource("", "namespaces"): ("Namespace", "v1", False),
    GroupResource("", "nodes"): ("Node", "v1", False),
    GroupResource("apps", "deployments"): ("Deployment", "v1", True),
    GroupResource("apps", "statefulsets"): ("StatefulSet", "v1", True),
    GroupResource("apps", "replicasets"): ("ReplicaSet", "v1", True),
    GroupResource("networking.k8s.io", "ingresses"): ("Ingress", "v1", True),
}


class StaticProvider:
    """Serves ``value`` for ``metrics`` on ``resources`` and for ``external_metrics``.

    It accepts unlisted resources (see :class:`~adapter.provider.base.Provider`): a by-name request
    for a resource not in the list is still answered (any object kind can be an Object-metric target).
    """

    accepts_unlisted_resources = True

    def __init__(
        self,
        *,
        value: Decimal,
        metrics: Sequence[str],
        external_metrics: Sequence[str] = (),
        resources: Iterable[GroupResource] = DEFAULT_RESOURCES,
        mapper: ResourceMapper | None = None,
        lister: ObjectLister | None = None,
        window_seconds: int | None = None,
    ) -> None:
        if not value.is_finite():
            raise ValueError(f"static value must be a finite number, got {value}")
        self.value = value
        self.metrics = list(dict.fromkeys(metrics))
        self.external_metrics = list(dict.fromkeys(external_metrics))
        self.resources = list(dict.fromkeys(resources))
        self.mapper = mapper
        self.lister = lister
        self.window_seconds = window_seconds

    # ---- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def status(self) -> ProviderStatus:
        return ProviderStatus(
            True, "ok", {"metrics": len(self.metrics), "external_metrics": len(self.external_metrics)}
        )

    # ---- resources ----------------------------------------------------------------------------

    def _resource(self, gr: GroupResource) -> ResourceInfo:
        if self.mapper is not None:
            try:
                found = self.mapper.resource_for(gr.resource, gr.group or None)
            except Exception:  # a flaky mapper must not fail a constant answer
                found = None
            if found is not None:
                return found
        if gr in _FALLBACK:
            kind, version, namespaced = _FALLBACK[gr]
            return ResourceInfo(gr, version, kind, namespaced)
        kind = gr.resource[:-1] if gr.resource.endswith("s") else gr.resource
        return ResourceInfo(gr, "v1", kind[:1].upper() + kind[1:], True)

    # ---- custom metrics -----------------------------------------------------------------------

    def list_all_metrics(self) -> list[CustomMetricInfo]:
        out = []
        for gr in self.resources:
            info = self._resource(gr)
            for metric in self.metrics:
                out.append(CustomMetricInfo(info.group_resource, info.namespaced, metric))
        return out

    def _check_metric(self, metric: str) -> None:
        if metric not in self.metrics:
            raise MetricNotFound(
                f'the static provider does not serve the metric "{metric}" (--static-metrics)'
            )

    def _value(
        self, info: ResourceInfo, namespace: str | None, name: str, metric: str, selector: LabelSelector
    ) -> MetricValue:
        return MetricValue(
            described_object=ObjectReference(
                info.kind, name, namespace if info.namespaced else None, info.api_version
            ),
            metric=metric,
            timestamp=datetime.now(UTC),
            value=self.value,
            window_seconds=self.window_seconds,
            metric_selector=None if selector.empty else selector,
        )

    async def get_metric_by_name(
        self, name: ObjectName, info: CustomMetricInfo, metric_selector: LabelSelector
    ) -> MetricValue:
        self._check_metric(info.metric)
        resource = self._resource(info.group_resource)
        return self._value(resource, name.namespace, name.name, info.metric, metric_selector)

    async def get_metric_by_selector(
        self,
        namespace: str | None,
        selector: LabelSelector,
        info: CustomMetricInfo,
        metric_selector: LabelSelector,
    ) -> list[MetricValue]:
        self._check_metric(info.metric)
        if self.lister is None:
            raise MetricNotFound(
                f"the static provider cannot answer {info.group_resource}/* without listing objects: "
                "run it with cluster access (--kubeconfig, or in a pod) or ask for a named object"
            )
        resource = self._resource(info.group_resource)
        objects = await self.lister.list_objects(resource, namespace, selector)
        return [self._value(resource, o.namespace, o.name, info.metric, metric_selector) for o in objects]

    # ---- external metrics ---------------------------------------------------------------------

    def list_all_external_metrics(self) -> list[ExternalMetricInfo]:
        return [ExternalMetricInfo(m, True) for m in self.external_metrics]

    async def get_external_metric(
        self, namespace: str | None, metric_selector: LabelSelector, info: ExternalMetricInfo
    ) -> list[ExternalMetricValue]:
        if info.metric not in self.external_metrics:
            raise MetricNotFound(f'the static provider does not serve the external metric "{info.metric}"')
        labels = {r.key: r.values[0] for r in metric_selector.requirements if r.op == "="}
        return [ExternalMetricValue(info.metric, labels, datetime.now(UTC), self.value, self.window_seconds)]


__all__ = ["DEFAULT_RESOURCES", "StaticProvider"]
