"""``explain``: trace one metrics request end to end, without guessing.

"no metrics returned from custom metrics API" has a dozen causes (rule never matched, label not
mapped to a resource, object has no series, NaN, wrong namespace label...). explain runs the very
code path a request takes (the provider's ``evaluate_custom`` / ``evaluate_external``) and
records each step: the rule chosen (or why none, with the metrics close by name), the
objects considered, the PromQL sent, Prometheus' raw answer (truncated), the values that would be
returned and the objects left without data.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from adapter.errors import AdapterError
from adapter.provider.base import (
    CustomMetricInfo,
    ExternalMetricInfo,
    GroupResource,
    ObjectLister,
    ObjectMeta,
    ProviderStatus,
    ResourceMapper,
)
from adapter.provider.prometheus.client import QueryResult
from adapter.provider.prometheus.provider import CustomOutcome, ExternalOutcome
from adapter.provider.prometheus.registry import CustomEntry, ExternalEntry, MetricIndex
from adapter.provider.prometheus.resource import PrometheusResourceProvider, ResourceOutcome
from adapter.rules.config import DiscoveryRule
from adapter.rules.naming import close_names
from adapter.selectors import EVERYTHING, LabelSelector, parse_field_selector, parse_label_selector


class IndexSource(Protocol):
    def current(self) -> MetricIndex:
        """The discovery index requests are served from now."""
        ...


class Traceable(Protocol):
    """What explain uses of a provider: its index, its view of the cluster and the two evaluation
    steps the API methods run (:class:`~adapter.provider.prometheus.provider.PrometheusProvider`
    has them). The provider does not know about explain."""

    @property
    def registry(self) -> IndexSource: ...

    @property
    def mapper(self) -> ResourceMapper: ...

    @property
    def lister(self) -> ObjectLister: ...

    keep_raw: bool  # explain shows Prometheus' raw answer: the provider keeps it while tracing

    def status(self) -> ProviderStatus: ...

    def find_custom(self, info: CustomMetricInfo) -> CustomEntry: ...

    def find_external(self, info: ExternalMetricInfo) -> ExternalEntry: ...

    async def evaluate_custom(
        self,
        entry: CustomEntry,
        namespace: str | None,
        objects: list[ObjectMeta],
        metric_selector: LabelSelector | None,
    ) -> CustomOutcome: ...

    async def evaluate_external(
        self, entry: ExternalEntry, namespace: str | None, metric_selector: LabelSelector | None
    ) -> ExternalOutcome: ...


RAW_LIMIT = 4000
LIST_LIMIT = 50


def _rule_doc(rule: DiscoveryRule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "location": f"{rule.location.source}:{rule.location.line}" if rule.location else None,
        "seriesQuery": rule.series_query,
        "name": {"matches": rule.name_matches or ".*", "as": rule.name_as},
        "metricsQuery": rule.metrics_query.source,
    }


def _truncate(items: list[Any], limit: int = LIST_LIMIT) -> list[Any]:
    return items if len(items) <= limit else [*items[:limit], f"... {len(items) - limit} more"]


def _why_not_custom(provider: Traceable, gr: GroupResource, metric: str) -> list[str]:
    index = provider.registry.current()
    notes: list[str] = []
    for_resource = index.metrics_for_resource(gr)
    elsewhere = sorted({str(g) for (g, m) in index.custom if m == metric})
    if elsewhere:
        notes.append(f"{metric} is served for {', '.join(elsewhere)}, not for {gr}")
    close = close_names(metric, for_resource)
    if close:
        notes.append(f"metrics for {gr} with similar names: {', '.join(close)}")
    elif for_resource:
        notes.append(f"{gr} has {len(for_resource)} metric(s): {', '.join(for_resource[:10])}")
    else:
        notes.append(f"no rule produced any metric for {gr}")
    for report in index.reports:
        if report.error:
            notes.append(f"{report.rule.id}: {report.error}")
        elif report.kept_series == 0 and not report.rule.external:
            notes.append(
                f"{report.rule.id}: seriesQuery {report.rule.series_query!r} matched "
                f"{report.raw_series} series, none kept after seriesFilters/name.matches"
            )
        for s in report.skipped[:5]:
            notes.append(f"{report.rule.id}: {s}")
    return notes


async def explain(
    provider: Traceable,
    *,
    api: str = "custom",
    namespace: str | None = None,
    resource: str | None = None,
    name_or_star: str = "*",
    metric: str,
    label_selector: str | None = None,
    metric_label_selector: str | None = None,
) -> dict[str, Any]:
    """Trace one request (``api`` = "custom" or "external") and return a JSON-able dict."""
    provider.keep_raw = True
    doc: dict[str, Any] = {
        "request": {
            "api": api,
            "namespace": namespace,
            "resource": resource,
            "name": name_or_star,
            "metric": metric,
            "labelSelector": label_selector,
            "metricLabelSelector": metric_label_selector,
        },
        "status": {},
        "rule": None,
        "steps": [],
    }
    st = provider.status()
    doc["status"] = {"ready": st.ready, "message": st.message, **st.details}
    steps: list[str] = doc["steps"]
    try:
        metric_selector = parse_label_selector(metric_label_selector)
        if api == "external":
            await _explain_external(provider, doc, steps, namespace, metric, metric_selector)
        else:
            if not resource:
                raise ValueError("custom metrics need a resource (e.g. pods, services, deployments.apps)")
            await _explain_custom(
                provider,
                doc,
                steps,
                namespace,
                resource,
                name_or_star,
                metric,
                label_selector,
                metric_selector,
            )
    except (AdapterError, ValueError) as err:
        _record_failure(doc, steps, err)
    return doc


def _record_failure(doc: dict[str, Any], steps: list[str], err: AdapterError | ValueError) -> None:
    """The request's failure as the server would answer it: an AdapterError's own status, else 400."""
    if isinstance(err, AdapterError):
        doc["error"] = {"reason": err.reason, "code": err.code, "message": err.message}
        steps.append(f"the request fails with {err.code} {err.reason}: {err.message}")
    else:
        doc["error"] = {"reason": "BadRequest", "code": 400, "message": str(err)}
        steps.append(f"bad request: {err}")


async def _explain_custom(
    provider: Traceable,
    doc: dict[str, Any],
    steps: list[str],
    namespace: str | None,
    resource: str,
    name_or_star: str,
    metric: str,
    label_selector: str | None,
    metric_selector: LabelSelector,
) -> None:
    gr = GroupResource.parse(resource)
    info_r = provider.mapper.resource_for(gr.resource, gr.group or None)
    if info_r is None:
        steps.append(f"the cluster has no resource {resource!r}; nothing can be served for it")
        doc["error"] = {"reason": "NotFound", "code": 404, "message": f"unknown resource {resource!r}"}
        return
    gr = info_r.group_resource
    doc["resource"] = {
        "groupResource": str(gr),
        "kind": info_r.kind,
        "apiVersion": info_r.api_version,
        "namespaced": info_r.namespaced,
    }
    steps.append(
        f"resource {resource!r} -> {gr} (kind {info_r.kind}, "
        f"{'namespaced' if info_r.namespaced else 'cluster-scoped'})"
    )
    index = provider.registry.current()
    entries = index.custom.get((gr, metric), ())
    if not entries:
        doc["why_not"] = _why_not_custom(provider, gr, metric)
        steps.append(f"no rule serves {metric} for {gr}")
    else:
        doc["rule"] = _rule_doc(entries[0].rule)
        doc["series"] = entries[0].series
        doc["resourceLabel"] = entries[0].label
        doc["namespaceLabel"] = entries[0].namespace_label
        steps.append(
            f"{entries[0].rule.id} serves {metric} for {gr} from series {entries[0].series} "
            f"(objects named by label {entries[0].label!r})"
        )
        if len(entries) > 1:
            doc["overlapping_rules"] = [f"{e.rule.id} (series {e.series})" for e in entries[1:]]
            steps.append(f"also produced by {', '.join(doc['overlapping_rules'])}: the first rule wins")
    entry = provider.find_custom(CustomMetricInfo(gr, info_r.namespaced, metric))
    ns = namespace if info_r.namespaced else None
    if name_or_star == "*":
        selector = parse_label_selector(label_selector)
        objects = list(await provider.lister.list_objects(entry.resource, ns, selector))
        steps.append(
            f"{len(objects)} {gr} object(s) in {ns or 'all namespaces'} match labelSelector "
            f"{label_selector or '(everything)'}"
        )
    else:
        objects = [ObjectMeta(ns, name_or_star)]
        steps.append(f"one named object: {ns + '/' if ns else ''}{name_or_star}")
    doc["objects"] = _truncate([f"{o.namespace}/{o.name}" if o.namespace else o.name for o in objects])
    doc["object_count"] = len(objects)
    out = await provider.evaluate_custom(entry, ns, objects, metric_selector)
    if out.promql is None:
        steps.append("zero objects: the answer is an empty list and Prometheus is not queried")
    else:
        _query_doc(doc, steps, out.promql, out.result, out.cache, out.window)
    doc["values"] = [
        {
            "object": f"{v.described_object.namespace}/{v.described_object.name}"
            if v.described_object.namespace
            else v.described_object.name,
            "value": str(v.value),
            "timestamp": v.timestamp.isoformat(),
            "windowSeconds": v.window_seconds,
        }
        for v in out.values
    ]
    doc["without_data"] = [f"{o.namespace}/{o.name}" if o.namespace else o.name for o in out.without_data]
    doc["nonfinite"] = [{"object": o.name, "value": v} for o, v in out.nonfinite]
    steps.append(
        f"{len(out.values)} value(s) returned; {len(out.without_data)} object(s) without data; "
        f"{len(out.nonfinite)} non-finite value(s) skipped"
    )
    if out.unmatched_samples:
        doc["unmatched_samples"] = [s.labels for s in out.unmatched_samples[:10]]
        steps.append(
            f"{len(out.unmatched_samples)} sample(s) lack the label {entry.label!r}: does the "
            "metricsQuery keep it (by (<<.GroupBy>>))?"
        )
    if out.duplicate_samples:
        doc["duplicate_samples"] = [s.labels for s in out.duplicate_samples[:10]]
        steps.append(
            f"{len(out.duplicate_samples)} extra sample(s) for the same object were ignored (the sample "
            "whose labels sort first is used): aggregate with sum(...) by (<<.GroupBy>>)"
        )
    if out.without_data:
        steps.append(
            "objects without data: check the pods are scraped, carry the "
            f"{entry.label!r}/{entry.namespace_label!r} labels, and have samples within the window"
        )


async def _explain_external(
    provider: Traceable,
    doc: dict[str, Any],
    steps: list[str],
    namespace: str | None,
    metric: str,
    metric_selector: LabelSelector,
) -> None:
    index = provider.registry.current()
    entries = index.external.get(metric, ())
    if not entries:
        close = close_names(metric, sorted(index.external))
        doc["why_not"] = (
            [f"external metrics with similar names: {', '.join(close)}"]
            if close
            else [
                f"{len(index.external)} external metric(s) served: {', '.join(sorted(index.external)[:10])}"
            ]
        )
        for report in index.reports:
            if report.rule.external and (report.error or not report.kept_series):
                doc["why_not"].append(f"{report.rule.id}: {report.error or 'matched no series'}")
    else:
        doc["rule"] = _rule_doc(entries[0].rule)
        doc["series"] = entries[0].series
        doc["namespaced"] = entries[0].rule.external_namespaced
        steps.append(
            f"{entries[0].rule.id} serves external metric {metric} from series {entries[0].series}"
            + (
                ""
                if entries[0].rule.external_namespaced
                else " (namespaced: false, so the request namespace is not added)"
            )
        )
    entry = provider.find_external(ExternalMetricInfo(metric))
    out = await provider.evaluate_external(entry, namespace, metric_selector)
    _query_doc(doc, steps, out.promql, out.result, out.cache, out.window)
    doc["values"] = [
        {
            "labels": v.labels,
            "value": str(v.value),
            "timestamp": v.timestamp.isoformat(),
            "windowSeconds": v.window_seconds,
        }
        for v in out.values
    ]
    doc["nonfinite"] = [{"labels": s.labels, "value": str(s.value)} for s in out.nonfinite]
    steps.append(f"{len(out.values)} value(s) returned; {len(out.nonfinite)} non-finite value(s) skipped")


async def explain_resource(
    provider: PrometheusResourceProvider,
    status: ProviderStatus,
    *,
    resource: str,
    namespace: str | None = None,
    name: str = "*",
    label_selector: str | None = None,
    field_selector: str | None = None,
) -> dict[str, Any]:
    """Trace one metrics.k8s.io request (``resource`` = pods or nodes) through ``provider.evaluate``:
    the objects, both queries and Prometheus' answers, what is served and why anything is left out."""
    kind = {"pod": "pods", "pods": "pods", "node": "nodes", "nodes": "nodes"}.get(resource.lower(), "")
    doc: dict[str, Any] = {
        "request": {
            "api": "resource",
            "namespace": namespace if kind == "pods" else None,
            "resource": kind or resource,
            "name": name,
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
        },
        "status": {"ready": status.ready, "message": status.message, **status.details},
        "rule": None,
        "steps": [],
    }
    steps: list[str] = doc["steps"]
    try:
        if not kind:
            raise ValueError(f"metrics.k8s.io serves pods and nodes, not {resource!r}")
        rules = provider.rules()
        which = "containerQuery" if kind == "pods" else "nodeQuery"
        doc["rule"] = {
            "id": "resourceRules",
            "window": rules.window_seconds,
            "cpu": {which: getattr(rules.cpu, "container_query" if kind == "pods" else "node_query").source},
            "memory": {
                which: getattr(rules.memory, "container_query" if kind == "pods" else "node_query").source
            },
        }
        ns = namespace if kind == "pods" else None
        if name == "*":
            objects = await provider.objects(
                kind, ns, parse_label_selector(label_selector), parse_field_selector(field_selector)
            )
            steps.append(
                f"{len(objects)} {kind} in {ns or 'all namespaces'} match labelSelector "
                f"{label_selector or '(everything)'} and fieldSelector {field_selector or '(everything)'}"
            )
        else:
            every = parse_field_selector(None)
            objects = [o for o in await provider.objects(kind, ns, EVERYTHING, every) if o.name == name]
            steps.append(
                f"{kind[:-1]} {ns + '/' if ns else ''}{name}: "
                + ("found in the watch cache" if objects else "not in the cluster (404)")
            )
        doc["objects"] = _truncate([f"{o.namespace}/{o.name}" if o.namespace else o.name for o in objects])
        doc["object_count"] = len(objects)
        out = await provider.evaluate(kind, ns, objects)
        _resource_outcome_doc(doc, steps, out)
    except (AdapterError, ValueError) as err:
        _record_failure(doc, steps, err)
    return doc


def _resource_outcome_doc(doc: dict[str, Any], steps: list[str], out: ResourceOutcome) -> None:
    if not out.queries:
        steps.append("zero objects: the answer is an empty list and Prometheus is not queried")
    doc["queries"] = []
    for q in out.queries:
        entry: dict[str, Any] = {"resource": q.resource, "promql": q.promql, "cache": q.cache}
        if q.result is not None:
            raw = q.result.raw
            entry["samples"] = len(q.result.samples)
            entry["raw"] = raw if len(raw) <= RAW_LIMIT else raw[:RAW_LIMIT] + f"... ({len(raw)} bytes)"
        doc["queries"].append(entry)
        steps.append(f"{q.resource} PromQL (cache {q.cache}): {q.promql}")
        steps.append(f"Prometheus answered {entry.get('samples', 0)} {q.resource} sample(s)")
    doc["values"] = [
        {
            "object": f"{p.namespace}/{p.name}",
            "containers": {
                c.name: {"cpu": str(c.usage.cpu), "memory": str(c.usage.memory)} for c in p.containers
            },
            "timestamp": p.timestamp.isoformat(),
            "windowSeconds": p.window_seconds,
        }
        for p in out.pods
    ] + [
        {
            "object": n.name,
            "usage": {"cpu": str(n.usage.cpu), "memory": str(n.usage.memory)},
            "timestamp": n.timestamp.isoformat(),
            "windowSeconds": n.window_seconds,
        }
        for n in out.nodes
    ]
    doc["without_data"] = [f"{_name(o)}: {why}" for o, why in out.without_data]
    doc["nonfinite"] = [{"resource": w, "labels": s.labels, "value": str(s.value)} for w, s in out.nonfinite]
    steps.append(
        f"{len(doc['values'])} object(s) served; {len(out.without_data)} left out (listed with the reason)"
    )
    if out.unmatched_samples:
        doc["unmatched_samples"] = [
            {"resource": w, "labels": s.labels} for w, s in out.unmatched_samples[:10]
        ]
        steps.append(
            f"{len(out.unmatched_samples)} sample(s) lack a label the answer is keyed by (namespace, "
            "pod/node, container): does the query keep them (by (<<.GroupBy>>))?"
        )
    if out.duplicate_samples:
        doc["duplicate_samples"] = [
            {"resource": w, "labels": s.labels} for w, s in out.duplicate_samples[:10]
        ]
        steps.append(
            f"{len(out.duplicate_samples)} extra sample(s) for the same object/container were ignored (the "
            "sample whose labels sort first is used): aggregate with sum by (<<.GroupBy>>)"
        )


def _name(obj: ObjectMeta) -> str:
    return f"{obj.namespace}/{obj.name}" if obj.namespace else obj.name


def _query_doc(
    doc: dict[str, Any],
    steps: list[str],
    promql: str | None,
    result: QueryResult | None,
    cache: str | None,
    window: int | None,
) -> None:
    doc["promql"] = promql
    doc["windowSeconds"] = window
    if result is None:
        return
    raw = result.raw
    doc["prometheus"] = {
        "method": result.method,
        "cache": cache,
        "resultType": result.result_type,
        "samples": len(result.samples),
        "warnings": result.warnings,
        "raw": raw if len(raw) <= RAW_LIMIT else raw[:RAW_LIMIT] + f"... ({len(raw)} bytes)",
    }
    steps.append(f"PromQL ({result.method}, cache {cache}): {promql}")
    steps.append(f"Prometheus answered {len(result.samples)} sample(s)")


def format_explain(doc: dict[str, Any]) -> str:
    """Human-readable text for a terminal."""
    r = doc["request"]
    lines: list[str] = []
    if r["api"] == "external":
        target = f"external metric {r['metric']} in namespace {r['namespace'] or '-'}"
    elif r["api"] == "resource":
        ns = f"namespaces/{r['namespace']}/" if r["namespace"] else ""
        target = f"metrics.k8s.io/v1beta1/{ns}{r['resource']}" + (f"/{r['name']}" if r["name"] != "*" else "")
    else:
        ns = f"namespaces/{r['namespace']}/" if r["namespace"] else ""
        target = f"{ns}{r['resource']}/{r['name']}/{r['metric']}"
    lines.append(f"Request: {target}")
    if r.get("labelSelector"):
        lines.append(f"  labelSelector: {r['labelSelector']}")
    if r.get("metricLabelSelector"):
        lines.append(f"  metricLabelSelector: {r['metricLabelSelector']}")
    status = doc.get("status", {})
    lines.append(f"Adapter: {'ready' if status.get('ready') else 'NOT READY'} — {status.get('message', '')}")
    if doc.get("rule") and r["api"] == "resource":
        rule = doc["rule"]
        lines.append(f"Rules: resourceRules (window {rule['window']:g}s)")
        for which in ("cpu", "memory"):
            for field_name, source in rule[which].items():
                lines.append(f"  {which}.{field_name}: {source}")
    elif doc.get("rule"):
        rule = doc["rule"]
        lines.append(f"Rule: {rule['id']} ({rule['location']})")
        lines.append(f"  seriesQuery:  {rule['seriesQuery']}")
        lines.append(f"  metricsQuery: {rule['metricsQuery']}")
    lines.append("Steps:")
    lines.extend(f"  - {s}" for s in doc.get("steps", []))
    if doc.get("why_not"):
        lines.append("Why no rule matched:")
        lines.extend(f"  - {w}" for w in doc["why_not"])
    if doc.get("promql"):
        lines.append(f"PromQL: {doc['promql']}")
    prom = doc.get("prometheus")
    if prom:
        lines.append(f"Prometheus answer ({prom['resultType']}, {prom['samples']} samples):")
        lines.append("  " + prom["raw"][:1500])
    for q in doc.get("queries") or []:
        lines.append(f"{q['resource']} PromQL: {q['promql']}")
        if "raw" in q:
            lines.append(f"  Prometheus answer ({q['samples']} samples): {q['raw'][:1500]}")
    if doc.get("values") is not None and (doc.get("promql") or doc.get("queries") or doc.get("values")):
        lines.append("Values returned:")
        for v in doc["values"] or []:
            who = v.get("object") or json.dumps(v.get("labels"), sort_keys=True)
            value = v.get("value") or json.dumps(v.get("containers") or v.get("usage"), sort_keys=True)
            lines.append(f"  {who} = {value} at {v['timestamp']} (window {v['windowSeconds']}s)")
        if not doc["values"]:
            lines.append("  (none)")
    if doc.get("without_data"):
        lines.append("Objects without data (reported, not served):")
        lines.extend(f"  {o}" for o in doc["without_data"])
    if doc.get("nonfinite"):
        lines.append("Non-finite values (skipped):")
        lines.extend(f"  {json.dumps(n, sort_keys=True)}" for n in doc["nonfinite"])
    if doc.get("error"):
        e = doc["error"]
        lines.append(f"Result: {e['code']} {e['reason']}: {e['message']}")
    return "\n".join(lines)
