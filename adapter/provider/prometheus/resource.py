"""metrics.k8s.io from prometheus-adapter's ``resourceRules``: pods/nodes -> PromQL -> usage.

For a request the provider takes the objects from the watch cache (pods or nodes, filtered by the
label and field selectors), renders the CPU and the memory rule's query over exactly those names
and runs both through the provider's coalescing cache, concurrently:

* pods: ``containerQuery`` with ``<<.LabelMatchers>>`` = the namespace label (one namespace
  asked for) and the pod label, ``<<.GroupBy>>`` = namespace label, pod label, ``containerLabel``.
  A request for all namespaces sends one query per resource for every listed pod (the namespace
  label in the grouping tells pods of the same name apart), not one per namespace.
* nodes: ``nodeQuery`` with the node label, grouped by it.

The labels come from each rule's ``resources`` block (``overrides``/``template``) through the
same :class:`~adapter.rules.resources.ResourceConverter` the custom metrics use. The reported
window is the rules' ``window`` (as upstream: the queries carry their own ranges), the timestamp
the earliest sample used.

Every object ends up somewhere: served (every container has both a CPU and a memory sample),
or left out with the reason recorded, logged and counted -- a pod none of whose containers has
samples, a container with only one of the two, a non-finite value. When several samples carry
the same key (the query's ``by`` keeps labels beyond the grouping) the one whose label set sorts
first is used, so the answer does not depend on Prometheus' result order, and the others are
reported. Negative values (a subtraction in a node query racing its inputs) are served as 0, as
upstream does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from adapter.errors import ConfigError, MetricNotFound, NotFound
from adapter.provider.base import (
    ContainerUsage,
    GroupResource,
    NodeUsage,
    ObjectLister,
    ObjectMeta,
    PodUsage,
    ResourceInfo,
    ResourceMapper,
    ResourceUsage,
)
from adapter.provider.prometheus.client import QueryResult, Sample
from adapter.rules.config import ResourceRule, ResourceRules
from adapter.rules.promql import render_template, resource_query_args
from adapter.rules.resources import ResourceConverter
from adapter.selectors import EVERYTHING, FieldSelector, LabelSelector
from adapter.telemetry import NONFINITE_VALUES, OBJECTS_WITHOUT_DATA

log = logging.getLogger(__name__)

PODS = ResourceInfo(GroupResource("", "pods"), "v1", "Pod", True)
NODES = ResourceInfo(GroupResource("", "nodes"), "v1", "Node", False)
RESOURCES = ("cpu", "memory")
GROUP = "metrics.k8s.io"

Runner = Callable[[str], Awaitable[tuple[QueryResult, str]]]


@dataclass
class ResourceQuery:
    """One of the two queries of a request (``resource`` is ``cpu`` or ``memory``)."""

    resource: str
    promql: str
    object_label: str
    namespace_label: str | None
    container_label: str | None
    result: QueryResult | None = None
    cache: str | None = None


@dataclass
class ResourceOutcome:
    """Everything one metrics.k8s.io evaluation did (the API returns ``pods``/``nodes``)."""

    kind: str  # "pods" or "nodes"
    namespace: str | None
    objects: list[ObjectMeta]
    window_seconds: float = 0.0
    queries: list[ResourceQuery] = field(default_factory=list)
    pods: list[PodUsage] = field(default_factory=list)
    nodes: list[NodeUsage] = field(default_factory=list)
    without_data: list[tuple[ObjectMeta, str]] = field(default_factory=list)
    unmatched_samples: list[tuple[str, Sample]] = field(default_factory=list)
    duplicate_samples: list[tuple[str, Sample]] = field(default_factory=list)
    nonfinite: list[tuple[str, Sample]] = field(default_factory=list)


def _label_order(sample: Sample) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(sample.labels.items()))


def _where(obj: ObjectMeta) -> str:
    return f"{obj.namespace}/{obj.name}" if obj.namespace else obj.name


class PrometheusResourceProvider:
    """Serves metrics.k8s.io from the current config's ``resourceRules`` (see base.ResourceMetricsProvider).

    ``rules`` is read on every request, so a config reload that adds or removes ``resourceRules``
    takes effect at once (discovery follows :meth:`serves_resource_metrics`).
    """

    def __init__(
        self,
        rules: Callable[[], ResourceRules | None],
        run: Runner,
        mapper: ResourceMapper,
        lister: ObjectLister,
    ) -> None:
        self._rules = rules
        self._run = run
        self.mapper = mapper
        self.lister = lister

    def serves_resource_metrics(self) -> bool:
        return self._rules() is not None

    def rules(self) -> ResourceRules:
        rules = self._rules()
        if rules is None:
            raise NotFound(
                "the server could not find the requested resource: metrics.k8s.io is not served "
                "(the adapter's config has no resourceRules)"
            )
        return rules

    # --- PromQL ---------------------------------------------------------------------------------

    def _label(self, converter: ResourceConverter, info: ResourceInfo, which: str) -> str:
        label = converter.label_for_resource(info.group_resource)
        if label is None:
            raise ConfigError(
                f"resourceRules.{which}.resources maps no label to {info.group_resource}; add an "
                f"override such as {info.kind.lower()}: {{resource: {info.kind.lower()}}}"
            )
        return label

    def build_query(
        self, which: str, rule: ResourceRule, kind: str, names: list[str], namespace: str | None
    ) -> ResourceQuery:
        """Render ``rule``'s container (pods) or node query over ``names``."""
        converter = ResourceConverter(rule.resources, self.mapper)
        if kind == "pods":
            pod_label = self._label(converter, PODS, which)
            ns_label = converter.namespace_label()
            args = resource_query_args(
                pod_label,
                names,
                namespace=namespace,
                namespace_label=ns_label,
                group_by=[ns_label, pod_label, rule.container_label],
            )
            promql = render_template(rule.container_query, args, f"resourceRules.{which}.containerQuery")
            return ResourceQuery(which, promql, pod_label, ns_label, rule.container_label)
        node_label = self._label(converter, NODES, which)
        args = resource_query_args(
            node_label, names, namespace=None, namespace_label=None, group_by=[node_label]
        )
        promql = render_template(rule.node_query, args, f"resourceRules.{which}.nodeQuery")
        return ResourceQuery(which, promql, node_label, None, None)

    async def _query_all(
        self, out: ResourceOutcome, rules: ResourceRules, names: list[str], namespace: str | None
    ) -> None:
        out.queries = [
            self.build_query("cpu", rules.cpu, out.kind, names, namespace),
            self.build_query("memory", rules.memory, out.kind, names, namespace),
        ]
        answers = await asyncio.gather(*(self._run(q.promql) for q in out.queries))
        for q, (result, cache) in zip(out.queries, answers, strict=True):
            q.result, q.cache = result, cache

    # --- samples -> objects -----------------------------------------------------------------------

    def _index(
        self, out: ResourceOutcome, q: ResourceQuery, key_labels: list[str]
    ) -> dict[tuple[str, ...], Sample]:
        """Samples of one query keyed by the values of ``key_labels`` (all present, none empty)."""
        assert q.result is not None
        found: dict[tuple[str, ...], list[Sample]] = {}
        for sample in q.result.samples:
            key = tuple(sample.labels.get(label, "") for label in key_labels)
            if all(key):
                found.setdefault(key, []).append(sample)
            else:  # a key label is missing (Prometheus drops empty labels): cannot be assigned
                out.unmatched_samples.append((q.resource, sample))
        chosen: dict[tuple[str, ...], Sample] = {}
        extra = 0
        for key, samples in found.items():
            samples.sort(key=_label_order)
            chosen[key] = samples[0]
            extra += len(samples) - 1
            out.duplicate_samples.extend((q.resource, s) for s in samples[1:])
        if extra:
            log.warning(
                "%s query returned %d extra sample(s) for the same object/container; using the one "
                "whose labels sort first (aggregate with sum by (<<.GroupBy>>)): %s",
                q.resource,
                extra,
                q.promql,
            )
        return chosen

    def _value(self, out: ResourceOutcome, which: str, obj: ObjectMeta, sample: Sample) -> Decimal | None:
        if not sample.finite:
            out.nonfinite.append((which, sample))
            NONFINITE_VALUES.labels("resource").inc()
            return None
        return sample.value if sample.value >= 0 else Decimal(0)

    def _left_out(self, out: ResourceOutcome, obj: ObjectMeta, why: str) -> None:
        out.without_data.append((obj, why))
        OBJECTS_WITHOUT_DATA.labels(out.kind, "resource").inc()
        log.info("no resource metrics for %s %s: %s", out.kind[:-1], _where(obj), why)

    @staticmethod
    def _pod_key(q: ResourceQuery) -> list[str]:
        assert q.namespace_label is not None and q.container_label is not None
        return [q.namespace_label, q.object_label, q.container_label]

    def _assign_pods(self, out: ResourceOutcome, window: float) -> None:
        cpu_q, mem_q = out.queries
        cpu = self._index(out, cpu_q, self._pod_key(cpu_q))
        mem = self._index(out, mem_q, self._pod_key(mem_q))
        per_pod: dict[tuple[str, str], dict[str, dict[str, Sample]]] = {}
        for which, index in (("cpu", cpu), ("memory", mem)):
            for (ns, pod, container), sample in index.items():
                per_pod.setdefault((ns, pod), {}).setdefault(container, {})[which] = sample
        for obj in out.objects:
            containers = per_pod.get((obj.namespace or "", obj.name))
            if not containers:
                self._left_out(out, obj, "no CPU or memory sample for any container")
                continue
            usages: list[ContainerUsage] = []
            times: list[datetime] = []
            why = ""
            for name in sorted(containers):
                got = containers[name]
                missing = [w for w in RESOURCES if w not in got]
                if missing:
                    why = f"container {name!r} has no {' and no '.join(missing)} sample"
                    break
                cpu_v = self._value(out, "cpu", obj, got["cpu"])
                mem_v = self._value(out, "memory", obj, got["memory"])
                if cpu_v is None or mem_v is None:
                    why = f"container {name!r} has a non-finite value"
                    break
                usages.append(ContainerUsage(name, ResourceUsage(cpu_v, mem_v)))
                times.extend((got["cpu"].time, got["memory"].time))
            if why:
                self._left_out(out, obj, why)
                continue
            out.pods.append(
                PodUsage(obj.namespace or "", obj.name, dict(obj.labels), min(times), window, tuple(usages))
            )

    def _assign_nodes(self, out: ResourceOutcome, window: float) -> None:
        cpu_q, mem_q = out.queries
        cpu = self._index(out, cpu_q, [cpu_q.object_label])
        mem = self._index(out, mem_q, [mem_q.object_label])
        for obj in out.objects:
            got = {w: s for w, index in (("cpu", cpu), ("memory", mem)) if (s := index.get((obj.name,)))}
            missing = [w for w in RESOURCES if w not in got]
            if missing:
                self._left_out(out, obj, f"no {' and no '.join(missing)} sample")
                continue
            cpu_v = self._value(out, "cpu", obj, got["cpu"])
            mem_v = self._value(out, "memory", obj, got["memory"])
            if cpu_v is None or mem_v is None:
                self._left_out(out, obj, "a non-finite value")
                continue
            ts = min(got["cpu"].time, got["memory"].time)
            out.nodes.append(NodeUsage(obj.name, dict(obj.labels), ts, window, ResourceUsage(cpu_v, mem_v)))

    # --- evaluation -------------------------------------------------------------------------------

    async def evaluate(self, kind: str, namespace: str | None, objects: list[ObjectMeta]) -> ResourceOutcome:
        """Usage for ``objects`` (pods or nodes); every object ends up served or in ``without_data``."""
        rules = self.rules()
        out = ResourceOutcome(kind, namespace, objects, rules.window_seconds)
        if not objects:
            return out
        names = sorted({o.name for o in objects})
        await self._query_all(out, rules, names, namespace)
        if kind == "pods":
            self._assign_pods(out, rules.window_seconds)
        else:
            self._assign_nodes(out, rules.window_seconds)
        return out

    async def objects(
        self, kind: str, namespace: str | None, selector: LabelSelector, fields: FieldSelector
    ) -> list[ObjectMeta]:
        info = PODS if kind == "pods" else NODES
        listed = await self.lister.list_objects(info, namespace if kind == "pods" else None, selector)
        return [o for o in listed if fields.matches(o.namespace, o.name)]

    async def list_node_metrics(self, selector: LabelSelector, fields: FieldSelector) -> list[NodeUsage]:
        self.rules()
        out = await self.evaluate("nodes", None, await self.objects("nodes", None, selector, fields))
        return out.nodes

    async def list_pod_metrics(
        self, namespace: str | None, selector: LabelSelector, fields: FieldSelector
    ) -> list[PodUsage]:
        self.rules()
        out = await self.evaluate("pods", namespace, await self.objects("pods", namespace, selector, fields))
        return out.pods

    async def _one(self, kind: str, namespace: str | None, name: str) -> ResourceOutcome:
        self.rules()
        objects = [
            o for o in await self.objects(kind, namespace, EVERYTHING, FieldSelector()) if o.name == name
        ]
        where = f"{namespace}/{name}" if namespace else name
        singular = "podmetrics" if kind == "pods" else "nodemetrics"
        if not objects:
            raise MetricNotFound(
                f'{singular}.{GROUP} "{where}" not found: there is no {kind[:-1]} {where} in the cluster '
                "(as the adapter's watch cache sees it)",
                details={"name": name, "group": GROUP, "kind": kind},
            )
        out = await self.evaluate(kind, namespace, objects)
        if out.without_data:
            why = out.without_data[0][1]
            raise MetricNotFound(
                f'{singular}.{GROUP} "{where}" not found: {why} (`hpa-kit-adapter explain '
                "--resource-metrics` shows the queries and Prometheus' answer)",
                details={"name": name, "group": GROUP, "kind": kind},
            )
        return out

    async def get_node_metrics(self, name: str) -> NodeUsage:
        return (await self._one("nodes", None, name)).nodes[0]

    async def get_pod_metrics(self, namespace: str, name: str) -> PodUsage:
        return (await self._one("pods", namespace, name)).pods[0]


__all__ = ["NODES", "PODS", "PrometheusResourceProvider", "ResourceOutcome", "ResourceQuery"]
