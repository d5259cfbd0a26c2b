"""The custom and external metrics HTTP API: routes, request resolution and Kubernetes JSON shapes.

This layer owns everything a client can observe on the wire: the paths the aggregator proxies
(custom.metrics.k8s.io v1beta1 and v1beta2, external.metrics.k8s.io v1beta1), the discovery
documents (``APIGroupList``, ``APIGroup``, ``APIResourceList``) and minimal OpenAPI documents, and
the exact item shapes of ``MetricValueList`` / ``ExternalMetricValueList``. Providers never see
HTTP: the API resolves the requested resource against what the provider says it serves, parses
selectors (400 on error), calls the provider and renders; errors become ``metav1.Status``.

Path segments are matched the way the generic Kubernetes API server lays them out:

* ``/apis/custom.metrics.k8s.io/{v}/namespaces/{ns}/{resource}/{name|*}/{metric}``
* ``/apis/custom.metrics.k8s.io/{v}/{resource}/{name|*}/{metric}`` (cluster-scoped objects)
* ``/apis/custom.metrics.k8s.io/{v}/namespaces/{ns}/metrics/{metric}`` (the namespace itself)
* ``/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/{metric}``
* ``/apis/external.metrics.k8s.io/v1beta1/{metric}`` for metrics of ``namespaced: false`` rules, which
  discovery lists as ``namespaced: false`` (upstream lists every external metric as namespaced and
  has no such path); their namespaced path is served too, since the HPA always asks with one
* ``/apis/metrics.k8s.io/v1beta1/nodes[/{name}]``, ``.../pods``,
  ``.../namespaces/{ns}/pods[/{name}]`` (resource metrics, served and advertised only while the
  resource-metrics provider has rules: :meth:`ResourceMetricsProvider.serves_resource_metrics`)
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from adapter import telemetry
from adapter.apiserver import paths
from adapter.apiserver.quantity import format_binary_quantity, format_quantity
from adapter.apiserver.status import error_response
from adapter.errors import AdapterError, BadRequest, MetricNotFound, NotFound
from adapter.provider.base import (
    ContainerUsage,
    CustomMetricInfo,
    ExternalMetricInfo,
    ExternalMetricValue,
    GroupResource,
    MetricValue,
    NodeUsage,
    ObjectName,
    ObjectReference,
    PodUsage,
    Provider,
    ResourceMapper,
    ResourceMetricsProvider,
    ResourceUsage,
    SharedValues,
)
from adapter.selectors import FieldSelector, LabelSelector, parse_field_selector, parse_label_selector

log = logging.getLogger(__name__)

CUSTOM_GROUP = "custom.metrics.k8s.io"
EXTERNAL_GROUP = "external.metrics.k8s.io"
RESOURCE_GROUP = "metrics.k8s.io"
RESOURCE_VERSIONS = ("v1beta1",)
CUSTOM_VERSIONS = ("v1beta2", "v1beta1")  # preferred first, as upstream advertises them
EXTERNAL_VERSIONS = ("v1beta1",)
GROUPS: dict[str, tuple[str, ...]] = {CUSTOM_GROUP: CUSTOM_VERSIONS, EXTERNAL_GROUP: EXTERNAL_VERSIONS}
#: metrics.k8s.io joins GROUPS in discovery only while resource rules are configured
ALL_GROUPS: dict[str, tuple[str, ...]] = {**GROUPS, RESOURCE_GROUP: RESOURCE_VERSIONS}

_CUSTOM_LIST_HINT = f"kubectl get --raw /apis/{CUSTOM_GROUP}/v1beta2"
_EXTERNAL_LIST_HINT = f"kubectl get --raw /apis/{EXTERNAL_GROUP}/v1beta1"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --------------------------------------------------------------------------------------------
# JSON shapes
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def format_time(ts: datetime) -> str:
    """``metav1.Time`` JSON: RFC 3339 in UTC with second precision (``2024-05-01T12:00:00Z``).

    Cached: the items of one answer share their sample timestamp, so one strftime serves them all.
    """
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_OPERATORS = {"!=": "NotIn", "in": "In", "notin": "NotIn", "exists": "Exists", "!": "DoesNotExist"}


def selector_json(selector: LabelSelector | None) -> dict[str, Any] | None:
    """A parsed selector as ``metav1.LabelSelector`` (``None`` -> JSON null, like upstream).

    Equalities become ``matchLabels``; set and existence requirements ``matchExpressions``.
    ``>``/``<`` have no metav1 operator; they are echoed as ``Gt``/``Lt`` expressions (the node
    affinity spelling) rather than dropped, so the echo never misrepresents the query.
    """
    if selector is None or selector.empty:
        return None
    match_labels: dict[str, str] = {}
    expressions: list[dict[str, Any]] = []
    for req in selector.requirements:
        if req.op == "=" and req.key not in match_labels:
            match_labels[req.key] = req.values[0]
        elif req.op == "=":
            expressions.append({"key": req.key, "operator": "In", "values": list(req.values)})
        elif req.op in ("gt", "lt"):
            expressions.append({"key": req.key, "operator": req.op.capitalize(), "values": list(req.values)})
        else:
            expr: dict[str, Any] = {"key": req.key, "operator": _OPERATORS[req.op]}
            if req.values:
                expr["values"] = list(req.values)
            expressions.append(expr)
    out: dict[str, Any] = {}
    if match_labels:
        out["matchLabels"] = match_labels
    if expressions:
        out["matchExpressions"] = expressions
    return out


def object_reference_json(ref: ObjectReference) -> dict[str, Any]:
    """``core/v1.ObjectReference`` with its omitempty fields left out.

    ``apiVersion`` is the Kubernetes form: ``v1`` for the core group, ``group/version`` otherwise.
    prometheus-adapter joins group and version with a slash even when the group is empty, so it
    writes ``/v1`` for Pods, Services, Namespaces and Nodes; the HPA does not read this field, and
    ``v1`` is what every other Kubernetes API writes, so hpa-kit keeps it (README, "The adapter").
    """
    out: dict[str, Any] = {"kind": ref.kind}
    if ref.namespace:
        out["namespace"] = ref.namespace
    out["name"] = ref.name
    out["apiVersion"] = ref.api_version
    return out


def custom_value_json(
    version: str, value: MetricValue, request_selector: LabelSelector | None
) -> dict[str, Any]:
    """One ``MetricValue`` item in the shape of the requested API version.

    v1beta1 names the metric in ``metricName`` and the window in ``window``; v1beta2 nests name and
    selector in ``metric`` and calls the window ``windowSeconds``. Both omit the window when unknown.
    """
    selector = selector_json(value.metric_selector if value.metric_selector is not None else request_selector)
    item: dict[str, Any] = {"describedObject": object_reference_json(value.described_object)}
    if version == "v1beta1":
        item["metricName"] = value.metric
        item["timestamp"] = format_time(value.timestamp)
        if value.window_seconds is not None:
            item["window"] = int(value.window_seconds)
        item["value"] = format_quantity(value.value)
        item["selector"] = selector
    else:
        item["metric"] = {"name": value.metric, "selector": selector}
        item["timestamp"] = format_time(value.timestamp)
        if value.window_seconds is not None:
            item["windowSeconds"] = int(value.window_seconds)
        item["value"] = format_quantity(value.value)
    return item


_encode_str = json.encoder.encode_basestring_ascii  # what json.dumps writes for a str (ensure_ascii)


def custom_list_text(
    version: str, values: Iterable[MetricValue], request_selector: LabelSelector | None
) -> str:
    """``json.dumps`` of the ``MetricValueList`` of ``values``, byte for byte, built as text.

    A pods/* answer over N pods has N items that differ only in name, timestamp and value; building
    N dicts and encoding them was most of the adapter's CPU per such request. Here the parts an
    item shares with its neighbours (kind, namespace, apiVersion, metric, window, selector) are
    encoded once and only the rest per item. :func:`custom_value_json` stays the definition of
    the shape; a unit test holds the two equal.
    """
    shared: dict[tuple[Any, ...], tuple[str, str, str, str]] = {}
    items: list[str] = []
    for value in values:
        ref = value.described_object
        selector = value.metric_selector if value.metric_selector is not None else request_selector
        key = (ref.kind, ref.namespace, ref.api_version, value.metric, value.window_seconds, selector)
        parts = shared.get(key)
        if parts is None:
            parts = shared[key] = _custom_item_parts(version, value, selector)
        head, middle, before_value, tail = parts
        items.append(
            f"{head}{_encode_str(ref.name)}{middle}{_encode_str(format_time(value.timestamp))}"
            f"{before_value}{_encode_str(format_quantity(value.value))}{tail}"
        )
    return (
        f'{{"kind": "MetricValueList", "apiVersion": {_encode_str(f"{CUSTOM_GROUP}/{version}")}, '
        f'"metadata": {{}}, "items": [{", ".join(items)}]}}'
    )


def _custom_item_parts(
    version: str, value: MetricValue, selector: LabelSelector | None
) -> tuple[str, str, str, str]:
    """The text of an item before its object's name, between the name and the timestamp, between
    the timestamp and the value, and after the value, as :func:`custom_value_json` lays it out."""
    ref, window = value.described_object, value.window_seconds
    ns = f', "namespace": {_encode_str(ref.namespace)}' if ref.namespace else ""
    head = f'{{"describedObject": {{"kind": {_encode_str(ref.kind)}{ns}, "name": '
    after_ref = f', "apiVersion": {_encode_str(ref.api_version)}}}, '
    metric = _encode_str(value.metric)
    sel = json.dumps(selector_json(selector))
    if version == "v1beta1":
        w = "" if window is None else f', "window": {int(window)}'
        middle = f'{after_ref}"metricName": {metric}, "timestamp": '
        return head, middle, f'{w}, "value": ', f', "selector": {sel}}}'
    w = "" if window is None else f', "windowSeconds": {int(window)}'
    middle = f'{after_ref}"metric": {{"name": {metric}, "selector": {sel}}}, "timestamp": '
    return head, middle, f'{w}, "value": ', "}"


def external_value_json(value: ExternalMetricValue) -> dict[str, Any]:
    item: dict[str, Any] = {
        "metricName": value.metric,
        "metricLabels": dict(value.labels),
        "timestamp": format_time(value.timestamp),
    }
    if value.window_seconds is not None:
        item["window"] = int(value.window_seconds)
    item["value"] = format_quantity(value.value)
    return item


def value_list_json(group: str, version: str, kind: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": kind, "apiVersion": f"{group}/{version}", "metadata": {}, "items": items}


def group_json(group: str) -> dict[str, Any]:
    versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in ALL_GROUPS[group]]
    return {"name": group, "versions": versions, "preferredVersion": versions[0]}


def custom_resources_json(infos: Iterable[CustomMetricInfo]) -> list[dict[str, Any]]:
    """Discovery entries ``<resource>[.<group>]/<metric>``, one per served pair, sorted."""
    seen: dict[str, dict[str, Any]] = {}
    for info in infos:
        name = f"{info.group_resource}/{info.metric}"
        seen.setdefault(
            name,
            {"name": name, "singularName": "", "namespaced": info.namespaced, "kind": "MetricValueList",
             "verbs": ["get"]},
        )
    return [seen[k] for k in sorted(seen)]


def external_resources_json(infos: Iterable[ExternalMetricInfo]) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    for info in infos:
        seen.setdefault(
            info.metric,
            {"name": info.metric, "singularName": "", "namespaced": info.namespaced,
             "kind": "ExternalMetricValueList", "verbs": ["get"]},
        )
    return [seen[k] for k in sorted(seen)]


#: metrics.k8s.io/v1beta1's resources, as metrics-server lists them
RESOURCE_METRICS_RESOURCES: list[dict[str, Any]] = [
    {"name": "nodes", "singularName": "", "namespaced": False, "kind": "NodeMetrics",
     "verbs": ["get", "list"]},
    {"name": "pods", "singularName": "", "namespaced": True, "kind": "PodMetrics",
     "verbs": ["get", "list"]},
]


def go_duration(seconds: float) -> str:
    """``metav1.Duration`` JSON (Go's ``time.Duration.String``): ``5m0s``, ``1h0m0s``, ``30s``, ``1.5s``."""
    nanos = round(seconds * 1_000_000_000)
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    nanos = abs(nanos)
    if nanos < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("\u00b5s", 1_000), ("ns", 1)):
            if nanos >= size:
                return sign + _go_fraction(nanos, size) + unit
    hours, rest = divmod(nanos, 3600 * 1_000_000_000)
    minutes, rest = divmod(rest, 60 * 1_000_000_000)
    text = _go_fraction(rest, 1_000_000_000) + "s"
    if hours or minutes:
        text = f"{minutes}m" + text
    if hours:
        text = f"{hours}h" + text
    return sign + text


def _go_fraction(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = str(frac).rjust(len(str(unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"


def usage_json(usage: ResourceUsage) -> dict[str, str]:
    """``corev1.ResourceList`` as metrics-server fills it: CPU in cores (canonical DecimalSI, so
    ``123456789n``), memory in bytes (canonical BinarySI, so ``1536Ki`` when 1024 divides it)."""
    return {"cpu": format_quantity(usage.cpu), "memory": format_binary_quantity(usage.memory)}


def _metrics_meta(name: str, namespace: str | None, labels: dict[str, str], now: datetime) -> dict[str, Any]:
    # metrics objects are computed, not stored: creationTimestamp is when this answer was made, as
    # metrics-server and prometheus-adapter set it
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    meta["creationTimestamp"] = format_time(now)
    if labels:
        meta["labels"] = dict(labels)
    return meta


def pod_metrics_json(pod: PodUsage, now: datetime, *, kind: bool = False) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if kind:
        item.update({"kind": "PodMetrics", "apiVersion": f"{RESOURCE_GROUP}/v1beta1"})
    item["metadata"] = _metrics_meta(pod.name, pod.namespace, pod.labels, now)
    item["timestamp"] = format_time(pod.timestamp)
    item["window"] = go_duration(pod.window_seconds)
    item["containers"] = [container_json(c) for c in pod.containers]
    return item


def container_json(container: ContainerUsage) -> dict[str, Any]:
    return {"name": container.name, "usage": usage_json(container.usage)}


def node_metrics_json(node: NodeUsage, now: datetime, *, kind: bool = False) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if kind:
        item.update({"kind": "NodeMetrics", "apiVersion": f"{RESOURCE_GROUP}/v1beta1"})
    item["metadata"] = _metrics_meta(node.name, None, node.labels, now)
    item["timestamp"] = format_time(node.timestamp)
    item["window"] = go_duration(node.window_seconds)
    item["usage"] = usage_json(node.usage)
    return item


def resource_list_json(group: str, version: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}",
            "resources": resources}


# --------------------------------------------------------------------------------------------
# Resolving the requested resource against what the provider serves
# --------------------------------------------------------------------------------------------


def _plural_guesses(name: str) -> list[str]:
    """Cheap singular -> plural guesses, used only when no cluster discovery is available."""
    guesses = [name, name + "s", name + "es"]
    if name.endswith("y"):
        guesses.append(name[:-1] + "ies")
    return guesses


def resolve_custom(
    infos: list[CustomMetricInfo],
    resource_text: str,
    metric: str,
    *,
    namespaced: bool,
    mapper: ResourceMapper | None = None,
    accept_unlisted: bool = False,
) -> CustomMetricInfo:
    """Find the served ``CustomMetricInfo`` a request means, or raise a 404 that says what to do.

    Accepts the plural (``pods``), singular (``pod``), kind (``Pod``) and group-qualified
    (``deployments.apps``) spellings: exact matches first, then the cluster's discovery (when a
    mapper is available), then simple plural guesses. ``namespaced`` is the scope the path used; a
    match of the other scope is refused with a hint naming the right path shape.
    """
    requested = GroupResource.parse(resource_text.lower())
    candidates = [i for i in infos if i.metric == metric]
    if not candidates:
        raise MetricNotFound(
            f'the server could not find the metric "{metric}" for {requested}: no resource serves it; '
            f"list the metrics that are served with: {_CUSTOM_LIST_HINT}",
            details={"name": metric, "group": CUSTOM_GROUP, "kind": str(requested)},
        )

    wanted: list[GroupResource] = [requested]
    if mapper is not None:
        try:
            found = mapper.resource_for(requested.resource, requested.group or None)
        except Exception:  # discovery trouble must not turn a lookup into a 500
            log.debug("resource mapper failed for %s", requested, exc_info=True)
            found = None
        if found is not None:
            wanted.insert(0, found.group_resource)
    matches = [i for i in candidates if i.group_resource in wanted]
    if not matches:
        # Without discovery: plural guesses, and an unqualified name matching one served group.
        guesses = set(_plural_guesses(requested.resource))
        matches = [
            i
            for i in candidates
            if i.group_resource.resource in guesses
            and (not requested.group or i.group_resource.group == requested.group)
        ]
        if len({i.group_resource for i in matches}) > 1:
            matches = [i for i in matches if not i.group_resource.group]
    if not matches:
        if accept_unlisted:
            return CustomMetricInfo(wanted[0], namespaced, metric)
        served = ", ".join(sorted({str(i.group_resource) for i in candidates}))
        raise MetricNotFound(
            f'the server could not find the metric "{metric}" for {requested}: it is served for {served}; '
            f"list the metrics that are served with: {_CUSTOM_LIST_HINT}",
            details={"name": metric, "group": CUSTOM_GROUP, "kind": str(requested)},
        )
    same_scope = [i for i in matches if i.namespaced == namespaced]
    if same_scope:
        return same_scope[0]
    info = matches[0]
    if info.namespaced:
        hint = f"/apis/{CUSTOM_GROUP}/<version>/namespaces/<namespace>/{info.group_resource}/<name>/{metric}"
        scope = "namespaced"
    else:
        hint = f"/apis/{CUSTOM_GROUP}/<version>/{info.group_resource}/<name>/{metric}"
        scope = "cluster-scoped"
    raise MetricNotFound(
        f'the server could not find the metric "{metric}" for {requested} at this scope: '
        f"{info.group_resource} is {scope} for this metric; request it as {hint}",
        details={"name": metric, "group": CUSTOM_GROUP, "kind": str(requested)},
    )


def resolve_external(infos: list[ExternalMetricInfo], metric: str) -> ExternalMetricInfo:
    for info in infos:
        if info.metric == metric:
            return info
    raise MetricNotFound(
        f'the server could not find the external metric "{metric}"; '
        f"list the external metrics that are served with: {_EXTERNAL_LIST_HINT}",
        details={"name": metric, "group": EXTERNAL_GROUP, "kind": metric},
    )


# --------------------------------------------------------------------------------------------
# HTTP
# --------------------------------------------------------------------------------------------


def _first(request: web.Request, name: str) -> str | None:
    """A query parameter's first value, as Kubernetes' parameter codec reads a repeated one (the
    later values are ignored, never parsed: a request Kubernetes serves is served here too)."""
    return request.query.getone(name, None)


def _selector_param(request: web.Request, name: str) -> LabelSelector:
    try:
        return parse_label_selector(_first(request, name))
    except BadRequest as err:
        raise BadRequest(f"invalid {name}: {err.message}") from err


def route_template(request: web.Request) -> str:
    """The matched route's template (bounded label values for REQUESTS), or ``unmatched``."""
    try:
        resource = request.match_info.route.resource
    except AttributeError:
        return "unmatched"
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def status_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost middleware: every failure leaves as a Status, every request is counted."""
    start = time.perf_counter()
    try:
        response = await handler(request)
    except Exception as err:  # AdapterError, aiohttp HTTPException, or a bug
        response = error_response(err)
    telemetry.REQUESTS.labels(route=route_template(request), code=str(response.status)).observe(
        time.perf_counter() - start
    )
    return response


def resource_target(request: web.Request) -> paths.RouteTarget | None:
    """The resource a matched metrics route addresses (the authorizer's attributes come from here)."""
    return paths.route_target(request, CUSTOM_GROUP, EXTERNAL_GROUP, RESOURCE_GROUP)


def _finite(values: Iterable[Any], api: str) -> list[Any]:
    """Drop NaN/Inf values a provider let through: no Quantity can carry them (counted, logged)."""
    kept = []
    for v in values:
        if v.value.is_finite():
            kept.append(v)
        else:
            telemetry.NONFINITE_VALUES.labels(api=api).inc()
            log.warning("dropping non-finite value %s for metric %s", v.value, v.metric)
    return kept


def _custom_text(version: str, values: list[MetricValue], request_selector: LabelSelector | None) -> str:
    """The MetricValueList text of ``values``; a provider's :class:`SharedValues` keeps it, so the
    same answer handed out again is not encoded again."""
    rendered = values.rendered if isinstance(values, SharedValues) else None
    key = (version, request_selector)
    text = rendered.get(key) if rendered is not None else None
    if text is None:
        finite = _finite(values, "custom")
        text = custom_list_text(version, finite, request_selector)
        if rendered is not None and len(finite) == len(values):
            rendered[key] = text
    return text


def _json(body: dict[str, Any]) -> web.Response:
    return web.Response(text=json.dumps(body), content_type="application/json")


def _field_param(request: web.Request) -> FieldSelector:
    return parse_field_selector(_first(request, "fieldSelector"))


class MetricsAPI:
    """Request handlers over one provider (and, optionally, the cluster's resource mapper and a
    resource-metrics provider for metrics.k8s.io)."""

    def __init__(
        self,
        provider: Provider,
        *,
        mapper: ResourceMapper | None = None,
        resource_provider: ResourceMetricsProvider | None = None,
    ) -> None:
        self.provider = provider
        self.mapper = mapper
        self.resource_provider = resource_provider

    def _serves_resource_metrics(self) -> bool:
        return self.resource_provider is not None and self.resource_provider.serves_resource_metrics()

    def _groups(self) -> list[str]:
        return [*GROUPS, *([RESOURCE_GROUP] if self._serves_resource_metrics() else [])]

    def _resource_provider(self) -> ResourceMetricsProvider:
        if self.resource_provider is None or not self.resource_provider.serves_resource_metrics():
            raise NotFound(
                f"the server could not find the requested resource: {RESOURCE_GROUP} is not served "
                "(add resourceRules to the adapter's config to serve it)"
            )
        return self.resource_provider

    def add_routes(self, app: web.Application) -> None:
        cv = "{version:v1beta1|v1beta2}"
        c = f"/apis/{CUSTOM_GROUP}"
        e = f"/apis/{EXTERNAL_GROUP}"
        app.router.add_get("/apis", self.group_list, allow_head=False)
        app.router.add_get("/apis/", self.group_list, allow_head=False)
        app.router.add_get(c, self.custom_group, allow_head=False)
        app.router.add_get(c + "/", self.custom_group, allow_head=False)
        app.router.add_get(e, self.external_group, allow_head=False)
        app.router.add_get(e + "/", self.external_group, allow_head=False)
        app.router.add_get(f"{c}/{cv}", self.custom_resources, allow_head=False)
        app.router.add_get(f"{c}/{cv}/", self.custom_resources, allow_head=False)
        app.router.add_get(f"{e}/v1beta1", self.external_resources, allow_head=False)
        app.router.add_get(f"{e}/v1beta1/", self.external_resources, allow_head=False)
        app.router.add_get(f"{c}/{cv}/namespaces/{{namespace}}/metrics/{{metric}}", self.namespace_metric,
                           allow_head=False, name=paths.CUSTOM_NAMESPACE)
        app.router.add_get(f"{c}/{cv}/namespaces/{{namespace}}/{{resource}}/{{name}}/{{metric}}",
                           self.namespaced_metric, allow_head=False, name=paths.CUSTOM_NAMESPACED)
        app.router.add_get(f"{c}/{cv}/{{resource}}/{{name}}/{{metric}}", self.root_metric, allow_head=False,
                           name=paths.CUSTOM_ROOT)
        app.router.add_get(f"{e}/v1beta1/namespaces/{{namespace}}/{{metric}}", self.external_metric,
                           allow_head=False, name=paths.EXTERNAL)
        app.router.add_get(f"{e}/v1beta1/{{metric}}", self.external_root_metric, allow_head=False,
                           name=paths.EXTERNAL_ROOT)
        r = f"/apis/{RESOURCE_GROUP}"
        app.router.add_get(r, self.resource_group, allow_head=False)
        app.router.add_get(r + "/", self.resource_group, allow_head=False)
        app.router.add_get(f"{r}/v1beta1", self.resource_resources, allow_head=False)
        app.router.add_get(f"{r}/v1beta1/", self.resource_resources, allow_head=False)
        app.router.add_get(f"{r}/v1beta1/nodes", self.node_metrics_list, allow_head=False,
                           name=paths.RESOURCE_NODES)
        app.router.add_get(f"{r}/v1beta1/nodes/{{name}}", self.node_metrics, allow_head=False,
                           name=paths.RESOURCE_NODE)
        app.router.add_get(f"{r}/v1beta1/pods", self.pod_metrics_list, allow_head=False,
                           name=paths.RESOURCE_PODS)
        app.router.add_get(f"{r}/v1beta1/namespaces/{{namespace}}/pods", self.pod_metrics_list,
                           allow_head=False, name=paths.RESOURCE_NAMESPACE_PODS)
        app.router.add_get(f"{r}/v1beta1/namespaces/{{namespace}}/pods/{{name}}", self.pod_metrics,
                           allow_head=False, name=paths.RESOURCE_POD)
        app.router.add_get("/openapi/v2", self.openapi_v2, allow_head=False)
        app.router.add_get("/openapi/v3", self.openapi_v3_index, allow_head=False)
        app.router.add_get("/openapi/v3/apis/{group}/{version}", self.openapi_v3_group, allow_head=False)

    # ---- discovery -------------------------------------------------------------------------

    async def group_list(self, request: web.Request) -> web.Response:
        groups = [group_json(g) for g in self._groups()]
        return _json({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})

    async def custom_group(self, request: web.Request) -> web.Response:
        return _json({"kind": "APIGroup", "apiVersion": "v1", **group_json(CUSTOM_GROUP)})

    async def external_group(self, request: web.Request) -> web.Response:
        return _json({"kind": "APIGroup", "apiVersion": "v1", **group_json(EXTERNAL_GROUP)})

    async def custom_resources(self, request: web.Request) -> web.Response:
        resources = custom_resources_json(self.provider.list_all_metrics())
        return _json(resource_list_json(CUSTOM_GROUP, request.match_info["version"], resources))

    async def resource_group(self, request: web.Request) -> web.Response:
        self._resource_provider()
        return _json({"kind": "APIGroup", "apiVersion": "v1", **group_json(RESOURCE_GROUP)})

    async def resource_resources(self, request: web.Request) -> web.Response:
        self._resource_provider()
        resources = [dict(r) for r in RESOURCE_METRICS_RESOURCES]
        return _json(resource_list_json(RESOURCE_GROUP, "v1beta1", resources))

    async def external_resources(self, request: web.Request) -> web.Response:
        resources = external_resources_json(self.provider.list_all_external_metrics())
        return _json(resource_list_json(EXTERNAL_GROUP, "v1beta1", resources))

    # ---- OpenAPI ---------------------------------------------------------------------------
    # The aggregator downloads these to merge into the cluster's spec; they only need to be
    # valid documents. Types are left out: clients of these APIs use discovery, not OpenAPI.

    @staticmethod
    def _info() -> dict[str, str]:
        return {"title": "hpa-kit metrics adapter", "version": "v0.1.0"}

    async def openapi_v2(self, request: web.Request) -> web.Response:
        return _json({"swagger": "2.0", "info": self._info(), "paths": {}, "definitions": {}})

    def _v3_doc(self) -> dict[str, Any]:
        return {"openapi": "3.0.0", "info": self._info(), "paths": {}, "components": {"schemas": {}}}

    async def openapi_v3_index(self, request: web.Request) -> web.Response:
        digest = hashlib.sha256(json.dumps(self._v3_doc(), sort_keys=True).encode()).hexdigest()[:32].upper()
        paths = {
            f"apis/{g}/{v}": {"serverRelativeURL": f"/openapi/v3/apis/{g}/{v}?hash={digest}"}
            for g in self._groups()
            for v in ALL_GROUPS[g]
        }
        return _json({"paths": paths})

    async def openapi_v3_group(self, request: web.Request) -> web.Response:
        group = request.match_info["group"]
        if group not in self._groups() or request.match_info["version"] not in ALL_GROUPS[group]:
            raise NotFound("the server could not find the requested resource")
        return _json(self._v3_doc())

    # ---- custom metrics --------------------------------------------------------------------

    async def namespaced_metric(self, request: web.Request) -> web.Response:
        m = request.match_info
        return await self._custom(request, m["namespace"], m["resource"], m["name"], m["metric"])

    async def root_metric(self, request: web.Request) -> web.Response:
        m = request.match_info
        return await self._custom(request, None, m["resource"], m["name"], m["metric"])

    async def namespace_metric(self, request: web.Request) -> web.Response:
        """``namespaces/{ns}/metrics/{metric}``: a metric describing the namespace object itself."""
        m = request.match_info
        return await self._custom(request, None, "namespaces", m["namespace"], m["metric"])

    async def _custom(
        self, request: web.Request, namespace: str | None, resource: str, name: str, metric: str
    ) -> web.Response:
        version = request.match_info["version"]
        label_selector = _selector_param(request, "labelSelector")
        metric_selector = _selector_param(request, "metricLabelSelector")
        info = resolve_custom(
            self.provider.list_all_metrics(),
            resource,
            metric,
            namespaced=namespace is not None,
            mapper=self.mapper,
            accept_unlisted=self.provider.accepts_unlisted_resources and name != "*",
        )
        provider = self.provider
        if name == "*":
            values = await provider.get_metric_by_selector(namespace, label_selector, info, metric_selector)
        else:
            values = [await provider.get_metric_by_name(ObjectName(namespace, name), info, metric_selector)]
        request_selector = None if metric_selector.empty else metric_selector
        text = _custom_text(version, values, request_selector)
        return web.Response(text=text, content_type="application/json")

    # ---- external metrics ------------------------------------------------------------------

    async def external_metric(self, request: web.Request) -> web.Response:
        m = request.match_info
        return await self._external(request, m["namespace"], m["metric"])

    async def external_root_metric(self, request: web.Request) -> web.Response:
        """A ``namespaced: false`` metric at the cluster scope its discovery entry promises."""
        return await self._external(request, None, request.match_info["metric"])

    async def _external(self, request: web.Request, namespace: str | None, metric: str) -> web.Response:
        selector = _selector_param(request, "labelSelector")
        info = resolve_external(self.provider.list_all_external_metrics(), metric)
        if namespace is None and info.namespaced:
            raise MetricNotFound(
                f'the external metric "{metric}" is namespaced: request it as '
                f"/apis/{EXTERNAL_GROUP}/v1beta1/namespaces/<namespace>/{metric}",
                details={"name": metric, "group": EXTERNAL_GROUP, "kind": metric},
            )
        values = await self.provider.get_external_metric(namespace, selector, info)
        items = [external_value_json(v) for v in _finite(values, "external")]
        return _json(value_list_json(EXTERNAL_GROUP, "v1beta1", "ExternalMetricValueList", items))

    # ---- resource metrics (metrics.k8s.io) --------------------------------------------------

    async def node_metrics_list(self, request: web.Request) -> web.Response:
        provider = self._resource_provider()
        selector = _selector_param(request, "labelSelector")
        fields = _field_param(request)
        nodes = await provider.list_node_metrics(selector, fields)
        now = datetime.now(UTC)
        items = [node_metrics_json(n, now) for n in nodes]
        return _json(value_list_json(RESOURCE_GROUP, "v1beta1", "NodeMetricsList", items))

    async def node_metrics(self, request: web.Request) -> web.Response:
        node = await self._resource_provider().get_node_metrics(request.match_info["name"])
        return _json(node_metrics_json(node, datetime.now(UTC), kind=True))

    async def pod_metrics_list(self, request: web.Request) -> web.Response:
        provider = self._resource_provider()
        selector = _selector_param(request, "labelSelector")
        fields = _field_param(request)
        pods = await provider.list_pod_metrics(request.match_info.get("namespace"), selector, fields)
        now = datetime.now(UTC)
        items = [pod_metrics_json(p, now) for p in pods]
        return _json(value_list_json(RESOURCE_GROUP, "v1beta1", "PodMetricsList", items))

    async def pod_metrics(self, request: web.Request) -> web.Response:
        m = request.match_info
        pod = await self._resource_provider().get_pod_metrics(m["namespace"], m["name"])
        return _json(pod_metrics_json(pod, datetime.now(UTC), kind=True))


def build_api_app(
    provider: Provider,
    *,
    mapper: ResourceMapper | None = None,
    middlewares: Iterable[Any] = (),
    resource_provider: ResourceMetricsProvider | None = None,
) -> web.Application:
    """An application serving only the metrics API (the server adds health, metrics and auth)."""
    app = web.Application(middlewares=[status_middleware, paths.path_middleware, *middlewares])
    MetricsAPI(provider, mapper=mapper, resource_provider=resource_provider).add_routes(app)
    return app


__all__ = [
    "CUSTOM_GROUP",
    "EXTERNAL_GROUP",
    "RESOURCE_GROUP",
    "AdapterError",
    "MetricsAPI",
    "build_api_app",
    "custom_value_json",
    "external_value_json",
    "format_time",
    "go_duration",
    "node_metrics_json",
    "pod_metrics_json",
    "resolve_custom",
    "resolve_external",
    "resource_target",
    "selector_json",
    "status_middleware",
]
