"""The metrics API over a fake provider: every route, item shape and status code."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapter import telemetry
from adapter.apiserver.routes import build_api_app, resolve_custom, selector_json
from adapter.errors import BackendUnavailable, MetricNotFound
from adapter.provider.base import CustomMetricInfo, GroupResource, ResourceInfo
from adapter.selectors import parse_label_selector
from tests.support.adapter_fakes import FakeProvider, sample_provider

C = "/apis/custom.metrics.k8s.io"
E = "/apis/external.metrics.k8s.io/v1beta1"


@pytest.fixture
def provider() -> FakeProvider:
    return sample_provider()


@pytest.fixture
async def client(provider: FakeProvider) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(build_api_app(provider))) as c:
        yield c


async def get(client: TestClient, path: str, code: int = 200, **params: str) -> dict:
    resp = await client.get(path, params=params or None)
    body = await resp.json()
    assert resp.status == code, body
    assert resp.content_type == "application/json"
    return body


def assert_status(body: dict, code: int, reason: str) -> None:
    assert body["kind"] == "Status"
    assert body["apiVersion"] == "v1"
    assert body["metadata"] == {}
    assert body["status"] == "Failure"
    assert body["code"] == code
    assert body["reason"] == reason
    assert isinstance(body["message"], str) and body["message"]
    assert "Traceback" not in body["message"]


# ---- discovery -------------------------------------------------------------------------------


async def test_group_list(client: TestClient) -> None:
    body = await get(client, "/apis")
    assert body["kind"] == "APIGroupList" and body["apiVersion"] == "v1"
    groups = {g["name"]: g for g in body["groups"]}
    assert set(groups) == {"custom.metrics.k8s.io", "external.metrics.k8s.io"}
    custom = groups["custom.metrics.k8s.io"]
    assert custom["versions"] == [
        {"groupVersion": "custom.metrics.k8s.io/v1beta2", "version": "v1beta2"},
        {"groupVersion": "custom.metrics.k8s.io/v1beta1", "version": "v1beta1"},
    ]
    assert custom["preferredVersion"] == {
        "groupVersion": "custom.metrics.k8s.io/v1beta2",
        "version": "v1beta2",
    }


@pytest.mark.parametrize("group", ["custom.metrics.k8s.io", "external.metrics.k8s.io"])
async def test_api_group(client: TestClient, group: str) -> None:
    body = await get(client, f"/apis/{group}")
    assert body["kind"] == "APIGroup" and body["name"] == group
    assert body["preferredVersion"]["groupVersion"].startswith(group + "/")


@pytest.mark.parametrize("version", ["v1beta1", "v1beta2"])
async def test_custom_resource_list(client: TestClient, version: str) -> None:
    body = await get(client, f"{C}/{version}")
    assert body["kind"] == "APIResourceList" and body["apiVersion"] == "v1"
    assert body["groupVersion"] == f"custom.metrics.k8s.io/{version}"
    by_name = {r["name"]: r for r in body["resources"]}
    assert list(by_name) == sorted(by_name)
    assert by_name["pods/http_requests"] == {
        "name": "pods/http_requests",
        "singularName": "",
        "namespaced": True,
        "kind": "MetricValueList",
        "verbs": ["get"],
    }
    assert by_name["namespaces/queue_depth"]["namespaced"] is False
    assert by_name["nodes/node_load"]["namespaced"] is False
    assert "deployments.apps/http_requests" in by_name


async def test_external_resource_list(client: TestClient) -> None:
    body = await get(client, E)
    assert body["groupVersion"] == "external.metrics.k8s.io/v1beta1"
    by_name = {r["name"]: r for r in body["resources"]}
    assert by_name["queue_messages"] == {
        "name": "queue_messages",
        "singularName": "",
        "namespaced": True,
        "kind": "ExternalMetricValueList",
        "verbs": ["get"],
    }
    assert by_name["global_rate"]["namespaced"] is False  # shows in discovery, unlike upstream


async def test_empty_provider_discovery(provider: FakeProvider) -> None:
    async with TestClient(TestServer(build_api_app(FakeProvider()))) as c:
        body = await get(c, f"{C}/v1beta2")
        assert body["resources"] == []


async def test_openapi_documents(client: TestClient) -> None:
    v2 = await get(client, "/openapi/v2")
    assert v2["swagger"] == "2.0" and v2["paths"] == {} and "info" in v2
    v3 = await get(client, "/openapi/v3")
    assert "apis/custom.metrics.k8s.io/v1beta2" in v3["paths"]
    url = v3["paths"]["apis/external.metrics.k8s.io/v1beta1"]["serverRelativeURL"]
    doc = await get(client, url.split("?")[0])
    assert doc["openapi"].startswith("3.") and doc["info"]["title"]
    await get(client, "/openapi/v3/apis/custom.metrics.k8s.io/v9", 404)


# ---- custom metrics: item shapes -------------------------------------------------------------


async def test_v1beta2_by_name_shape(client: TestClient) -> None:
    body = await get(client, f"{C}/v1beta2/namespaces/default/pods/web-1/http_requests")
    assert body["kind"] == "MetricValueList"
    assert body["apiVersion"] == "custom.metrics.k8s.io/v1beta2"
    assert body["metadata"] == {}
    assert body["items"] == [
        {
            "describedObject": {"kind": "Pod", "namespace": "default", "name": "web-1", "apiVersion": "v1"},
            "metric": {"name": "http_requests", "selector": None},
            "timestamp": "2024-05-01T12:00:00Z",
            "windowSeconds": 60,
            "value": "1500m",
        }
    ]


async def test_v1beta1_by_name_shape(client: TestClient) -> None:
    body = await get(client, f"{C}/v1beta1/namespaces/default/pods/web-1/http_requests")
    assert body["apiVersion"] == "custom.metrics.k8s.io/v1beta1"
    assert body["items"] == [
        {
            "describedObject": {"kind": "Pod", "namespace": "default", "name": "web-1", "apiVersion": "v1"},
            "metricName": "http_requests",
            "timestamp": "2024-05-01T12:00:00Z",
            "window": 60,
            "value": "1500m",
            "selector": None,
        }
    ]


async def test_window_omitted_when_unknown(client: TestClient, provider: FakeProvider) -> None:
    provider.window = None
    b2 = await get(client, f"{C}/v1beta2/namespaces/default/pods/web-1/http_requests")
    b1 = await get(client, f"{C}/v1beta1/namespaces/default/pods/web-1/http_requests")
    assert "windowSeconds" not in b2["items"][0]
    assert "window" not in b1["items"][0]


@pytest.mark.parametrize("version", ["v1beta1", "v1beta2"])
async def test_metric_label_selector_echoed(client: TestClient, provider: FakeProvider, version: str) -> None:
    body = await get(
        client,
        f"{C}/{version}/namespaces/default/pods/web-1/http_requests",
        metricLabelSelector="verb=GET,code in (200,201),!debug",
    )
    item = body["items"][0]
    sel = item["selector"] if version == "v1beta1" else item["metric"]["selector"]
    assert sel == {
        "matchLabels": {"verb": "GET"},
        "matchExpressions": [
            {"key": "code", "operator": "In", "values": ["200", "201"]},
            {"key": "debug", "operator": "DoesNotExist"},
        ],
    }
    (call,) = provider.calls
    assert str(call.args[2]) == "code in (200,201),debug,verb=GET".replace("debug", "!debug")


async def test_star_with_label_selector(client: TestClient, provider: FakeProvider) -> None:
    body = await get(client, f"{C}/v1beta2/namespaces/default/pods/*/http_requests", labelSelector="app=web")
    names = sorted(i["describedObject"]["name"] for i in body["items"])
    assert names == ["web-1", "web-2"]
    values = {i["describedObject"]["name"]: i["value"] for i in body["items"]}
    assert values == {"web-1": "1500m", "web-2": "2k"}
    (call,) = provider.calls
    assert call.kind == "by_selector" and call.args[0] == "default" and str(call.args[1]) == "app=web"


async def test_star_percent_encoded(client: TestClient) -> None:
    body = await get(client, f"{C}/v1beta2/namespaces/default/pods/%2A/http_requests")
    assert len(body["items"]) == 2


async def test_star_zero_objects_is_empty_list(client: TestClient) -> None:
    body = await get(client, f"{C}/v1beta2/namespaces/default/pods/*/http_requests", labelSelector="app=nope")
    assert body["items"] == []


async def test_label_selector_ignored_for_named_object(client: TestClient, provider: FakeProvider) -> None:
    body = await get(
        client, f"{C}/v1beta2/namespaces/default/pods/web-1/http_requests", labelSelector="app=nope"
    )
    assert len(body["items"]) == 1


async def test_service_object_metric(client: TestClient) -> None:
    body = await get(client, f"{C}/v1beta2/namespaces/default/services/web/total_hit_count")
    assert body["items"][0]["value"] == "123456m"
    assert body["items"][0]["describedObject"]["kind"] == "Service"


async def test_core_described_object_api_version_is_v1(client: TestClient) -> None:
    # A deliberate difference: prometheus-adapter writes "/v1" here (group and version joined by a
    # slash, with the core group empty); hpa-kit writes the Kubernetes form "v1". Named groups are
    # "group/version" in both (test_group_qualified).
    for path in ("namespaces/default/pods/web-1/http_requests", "nodes/node-a/node_load",
                 "namespaces/default/metrics/queue_depth"):
        for version in ("v1beta1", "v1beta2"):
            body = await get(client, f"{C}/{version}/{path}")
            assert body["items"][0]["describedObject"]["apiVersion"] == "v1"


async def test_root_scoped(client: TestClient) -> None:
    body = await get(client, f"{C}/v1beta2/nodes/node-a/node_load")
    item = body["items"][0]
    assert item["describedObject"] == {"kind": "Node", "name": "node-a", "apiVersion": "v1"}
    assert item["value"] == "100u"


async def test_namespace_metrics_route(client: TestClient, provider: FakeProvider) -> None:
    body = await get(client, f"{C}/v1beta2/namespaces/default/metrics/queue_depth")
    item = body["items"][0]
    assert item["describedObject"] == {"kind": "Namespace", "name": "default", "apiVersion": "v1"}
    assert item["value"] == "42"
    (call,) = provider.calls
    name, info, _ = call.args
    assert name.namespace is None and name.name == "default"
    assert info == CustomMetricInfo(GroupResource("", "namespaces"), False, "queue_depth")


async def test_namespace_as_root_scoped_object(client: TestClient) -> None:
    body = await get(client, f"{C}/v1beta1/namespaces/default/queue_depth")
    assert body["items"][0]["metricName"] == "queue_depth"


@pytest.mark.parametrize("resource", ["pods", "pod", "Pods", "POD"])
async def test_resource_spellings(client: TestClient, resource: str) -> None:
    body = await get(client, f"{C}/v1beta2/namespaces/default/{resource}/web-1/http_requests")
    assert body["items"][0]["describedObject"]["kind"] == "Pod"


@pytest.mark.parametrize("resource", ["deployments.apps", "deployment.apps"])
async def test_group_qualified(client: TestClient, provider: FakeProvider, resource: str) -> None:
    body = await get(client, f"{C}/v1beta2/namespaces/default/{resource}/web/http_requests")
    assert body["items"][0]["describedObject"] == {
        "kind": "Deployment",
        "namespace": "default",
        "name": "web",
        "apiVersion": "apps/v1",
    }
    assert provider.calls[0].args[1].group_resource == GroupResource("apps", "deployments")


# ---- custom metrics: errors --------------------------------------------------------------------


async def test_unknown_metric_404_with_hint(client: TestClient) -> None:
    body = await get(client, f"{C}/v1beta2/namespaces/default/pods/web-1/nope", 404)
    assert_status(body, 404, "NotFound")
    assert '"nope"' in body["message"]
    assert "kubectl get --raw /apis/custom.metrics.k8s.io/v1beta2" in body["message"]
    assert body["details"]["name"] == "nope"


async def test_metric_served_for_other_resource_404(client: TestClient) -> None:
    body = await get(client, f"{C}/v1beta2/namespaces/default/services/web/http_requests", 404)
    assert_status(body, 404, "NotFound")
    assert "served for" in body["message"] and "pods" in body["message"]


async def test_wrong_scope_404_names_right_path(client: TestClient) -> None:
    body = await get(client, f"{C}/v1beta2/pods/web-1/http_requests", 404)
    assert "namespaced" in body["message"] and "/namespaces/<namespace>/pods/" in body["message"]
    body = await get(client, f"{C}/v1beta2/namespaces/default/nodes/node-a/node_load", 404)
    assert "cluster-scoped" in body["message"]


async def test_object_without_data_404(client: TestClient) -> None:
    body = await get(client, f"{C}/v1beta2/namespaces/default/pods/db-1/http_requests", 404)
    assert_status(body, 404, "NotFound")


@pytest.mark.parametrize("param", ["labelSelector", "metricLabelSelector"])
@pytest.mark.parametrize("bad", ["a=(", "=x", "a in ()", "a,,b", "a>x"])
async def test_bad_selector_400(client: TestClient, param: str, bad: str) -> None:
    body = await get(client, f"{C}/v1beta2/namespaces/default/pods/*/http_requests", 400, **{param: bad})
    assert_status(body, 400, "BadRequest")
    assert param in body["message"]


async def test_repeated_selector_takes_the_first(client: TestClient, provider: FakeProvider) -> None:
    """Kubernetes' parameter codec reads a repeated query parameter's first value (no 400)."""
    body = await get(
        client,
        f"{C}/v1beta2/namespaces/default/pods/*/http_requests"
        "?labelSelector=app%3Dweb&labelSelector=app%3Dnothing&metricLabelSelector=a%3Db&metricLabelSelector=!c",
    )
    assert [i["describedObject"]["name"] for i in body["items"]] == ["web-1", "web-2"]
    _, selector, _, metric_selector = provider.calls[-1].args
    assert str(selector) == "app=web" and str(metric_selector) == "a=b"
    await get(client, f"{E}/namespaces/default/queue_messages?labelSelector=q%3Da&labelSelector=q%3Db")
    assert str(provider.calls[-1].args[1]) == "q=a"
    # a bad second value is never parsed, as upstream
    path = f"{C}/v1beta2/namespaces/default/pods/*/http_requests"
    await get(client, f"{path}?labelSelector=app&labelSelector=(")


async def test_backend_unavailable_503(client: TestClient, provider: FakeProvider) -> None:
    provider.fail = BackendUnavailable("Prometheus at http://prom:9090 did not answer within 10s; check it")
    body = await get(client, f"{C}/v1beta2/namespaces/default/pods/web-1/http_requests", 503)
    assert_status(body, 503, "ServiceUnavailable")
    assert "Prometheus" in body["message"]


async def test_unexpected_error_500_generic(client: TestClient, provider: FakeProvider, caplog) -> None:
    provider.fail = RuntimeError("secret internals")
    body = await get(client, f"{C}/v1beta2/namespaces/default/pods/web-1/http_requests", 500)
    assert_status(body, 500, "InternalError")
    assert "secret internals" not in body["message"]
    assert any("secret internals" in (r.exc_text or "") or r.exc_info for r in caplog.records)


async def test_non_finite_values_dropped(client: TestClient, provider: FakeProvider) -> None:
    provider.values[(GroupResource("", "pods"), "default", "web-1", "http_requests")] = Decimal("NaN")
    body = await get(client, f"{C}/v1beta2/namespaces/default/pods/*/http_requests")
    assert [i["describedObject"]["name"] for i in body["items"]] == ["web-2"]


@pytest.mark.parametrize(
    "path",
    [
        "/apis/custom.metrics.k8s.io/v1",
        "/apis/custom.metrics.k8s.io/v1beta3/pods/x/y",
        f"{C}/v1beta2/namespaces/default/pods/web-1",
        f"{C}/v1beta2/namespaces/default/pods/web-1/http_requests/extra",
        "/apis/other.k8s.io",
        "/api",
        "/",
        f"{E}/namespaces/default",
    ],
)
async def test_unmatched_paths_404_status(client: TestClient, path: str) -> None:
    body = await get(client, path, 404)
    assert_status(body, 404, "NotFound")


async def test_wrong_method_405_status(client: TestClient) -> None:
    resp = await client.post(f"{C}/v1beta2")
    body = await resp.json()
    assert resp.status == 405
    assert_status(body, 405, "MethodNotAllowed")


# ---- external metrics --------------------------------------------------------------------------


async def test_external_shape(client: TestClient, provider: FakeProvider) -> None:
    body = await get(client, f"{E}/namespaces/default/queue_messages", labelSelector="queue=jobs")
    assert body == {
        "kind": "ExternalMetricValueList",
        "apiVersion": "external.metrics.k8s.io/v1beta1",
        "metadata": {},
        "items": [
            {
                "metricName": "queue_messages",
                "metricLabels": {"queue": "jobs"},
                "timestamp": "2024-05-01T12:00:00Z",
                "window": 60,
                "value": "12",
            }
        ],
    }
    (call,) = provider.calls
    assert call.args[0] == "default" and str(call.args[1]) == "queue=jobs"


async def test_external_all_and_huge_value(client: TestClient) -> None:
    body = await get(client, f"{E}/namespaces/default/queue_messages")
    assert [i["value"] for i in body["items"]] == ["12", "500m"]
    body = await get(client, f"{E}/namespaces/anything/global_rate")
    assert body["items"][0]["value"] == "1e21"
    assert body["items"][0]["metricLabels"] == {}


async def test_external_cluster_scoped_path_matches_discovery(
    client: TestClient, provider: FakeProvider
) -> None:
    """Discovery says ``namespaced: false`` for such a metric, so its cluster-scoped path serves it
    (the namespaced path keeps working: the HPA always asks with the HPA's namespace)."""
    body = await get(client, f"{E}/global_rate", labelSelector="a=b")
    assert body["kind"] == "ExternalMetricValueList"
    assert provider.calls[-1].args[0] is None and str(provider.calls[-1].args[1]) == "a=b"
    body = await get(client, f"{E}/queue_messages", 404)
    assert_status(body, 404, "NotFound")
    assert f"{E}/namespaces/<namespace>/queue_messages" in body["message"]
    assert_status(await get(client, f"{E}/nope", 404), 404, "NotFound")


async def test_external_unknown_404(client: TestClient) -> None:
    body = await get(client, f"{E}/namespaces/default/nope", 404)
    assert_status(body, 404, "NotFound")
    assert "kubectl get --raw /apis/external.metrics.k8s.io/v1beta1" in body["message"]


async def test_external_bad_selector_400(client: TestClient) -> None:
    body = await get(client, f"{E}/namespaces/default/queue_messages", 400, labelSelector="(")
    assert_status(body, 400, "BadRequest")


# ---- telemetry ---------------------------------------------------------------------------------


async def test_requests_recorded_by_route_template(client: TestClient) -> None:
    route = "/apis/custom.metrics.k8s.io/{version}/namespaces/{namespace}/{resource}/{name}/{metric}"

    def count(code: str) -> float:
        return (
            telemetry.REGISTRY.get_sample_value(
                "hpakit_adapter_request_duration_seconds_count", {"route": route, "code": code}
            )
            or 0.0
        )

    before_ok, before_404 = count("200"), count("404")
    await get(client, f"{C}/v1beta2/namespaces/default/pods/web-1/http_requests")
    await get(client, f"{C}/v1beta2/namespaces/default/pods/web-1/nope", 404)
    assert count("200") == before_ok + 1
    assert count("404") == before_404 + 1


# ---- pure helpers ------------------------------------------------------------------------------


def test_selector_json_operators() -> None:
    sel = parse_label_selector("a=1,a=2,b!=3,c notin (x),d,e>5")
    assert selector_json(sel) == {
        "matchLabels": {"a": "1"},
        "matchExpressions": [
            {"key": "a", "operator": "In", "values": ["2"]},
            {"key": "b", "operator": "NotIn", "values": ["3"]},
            {"key": "c", "operator": "NotIn", "values": ["x"]},
            {"key": "d", "operator": "Exists"},
            {"key": "e", "operator": "Gt", "values": ["5"]},
        ],
    }
    assert selector_json(parse_label_selector("")) is None


class _Mapper:
    def resource_for(self, name: str, group: str | None = None) -> ResourceInfo | None:
        if name in ("deploy", "deployment", "deployments") and group in (None, "apps"):
            return ResourceInfo(GroupResource("apps", "deployments"), "v1", "Deployment", True)
        return None

    def all_resources(self) -> list[ResourceInfo]:
        return []


def test_resolve_with_mapper_short_name() -> None:
    infos = sample_provider().infos
    info = resolve_custom(infos, "deploy", "http_requests", namespaced=True, mapper=_Mapper())
    assert info.group_resource == GroupResource("apps", "deployments")
    with pytest.raises(MetricNotFound):
        resolve_custom(infos, "deploy", "http_requests", namespaced=True)


def test_resolve_unlisted_accepted_when_provider_allows() -> None:
    infos = sample_provider().infos
    info = resolve_custom(
        infos, "ingresses.networking.k8s.io", "http_requests", namespaced=True, accept_unlisted=True
    )
    assert info == CustomMetricInfo(GroupResource("networking.k8s.io", "ingresses"), True, "http_requests")
    with pytest.raises(MetricNotFound):
        resolve_custom(infos, "ingresses", "unknown_metric", namespaced=True, accept_unlisted=True)
