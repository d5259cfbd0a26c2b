"""metrics.k8s.io over a fake resource provider: discovery, item shapes, quantities, selectors, authz."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapter.apiserver.auth import Authenticator, AuthnConfig, SubjectAccessReviewer, TokenReviewer
from adapter.apiserver.routes import build_api_app, go_duration
from adapter.apiserver.server import build_app
from tests.support.adapter_fakes import FakeResourceProvider, sample_provider, sample_resource_provider

M = "/apis/metrics.k8s.io"
V = f"{M}/v1beta1"


@pytest.fixture
def rp() -> FakeResourceProvider:
    return sample_resource_provider()


@pytest.fixture
async def client(rp: FakeResourceProvider) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(build_api_app(sample_provider(), resource_provider=rp))) as c:
        yield c


async def get(client: TestClient, path: str, code: int = 200, params: Any = None) -> dict:
    resp = await client.get(path, params=params)
    body = await resp.json()
    assert resp.status == code, body
    assert resp.content_type == "application/json"
    return body


# ---- discovery -------------------------------------------------------------------------------


async def test_discovery_lists_the_group_and_its_resources(client: TestClient) -> None:
    groups = {g["name"]: g for g in (await get(client, "/apis"))["groups"]}
    assert groups["metrics.k8s.io"] == {
        "name": "metrics.k8s.io",
        "versions": [{"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"}],
        "preferredVersion": {"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"},
    }
    group = await get(client, M)
    assert group["kind"] == "APIGroup" and group["name"] == "metrics.k8s.io"
    body = await get(client, V)
    assert body == {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "metrics.k8s.io/v1beta1",
        "resources": [
            {
                "name": "nodes",
                "singularName": "",
                "namespaced": False,
                "kind": "NodeMetrics",
                "verbs": ["get", "list"],
            },
            {
                "name": "pods",
                "singularName": "",
                "namespaced": True,
                "kind": "PodMetrics",
                "verbs": ["get", "list"],
            },
        ],
    }
    index = await get(client, "/openapi/v3")
    assert "apis/metrics.k8s.io/v1beta1" in index["paths"]


@pytest.mark.parametrize("provider", ["none", "disabled"])
async def test_without_resource_rules_nothing_is_advertised(provider: str) -> None:
    rp = None if provider == "none" else FakeResourceProvider(enabled=False)
    async with TestClient(TestServer(build_api_app(sample_provider(), resource_provider=rp))) as c:
        groups = [g["name"] for g in (await get(c, "/apis"))["groups"]]
        assert groups == ["custom.metrics.k8s.io", "external.metrics.k8s.io"]
        for path in (
            M,
            V,
            f"{V}/nodes",
            f"{V}/namespaces/default/pods/web-1",
            "/openapi/v3/apis/metrics.k8s.io/v1beta1",
        ):
            body = await get(c, path, 404)
            assert body["kind"] == "Status" and body["reason"] == "NotFound"
        assert "resourceRules" in (await get(c, f"{V}/pods", 404))["message"]


async def test_discovery_follows_a_config_reload(rp: FakeResourceProvider, client: TestClient) -> None:
    rp.enabled = False
    assert "metrics.k8s.io" not in [g["name"] for g in (await get(client, "/apis"))["groups"]]
    rp.enabled = True
    assert "metrics.k8s.io" in [g["name"] for g in (await get(client, "/apis"))["groups"]]


# ---- objects -----------------------------------------------------------------------------------


async def test_pod_metrics_shape_and_quantities(client: TestClient) -> None:
    body = await get(client, f"{V}/namespaces/default/pods/web-1")
    created = body["metadata"].pop("creationTimestamp")
    assert created.endswith("Z") and len(created) == 20
    assert body == {
        "kind": "PodMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web"}},
        "timestamp": "2024-05-01T12:00:00Z",
        "window": "5m0s",
        "containers": [
            {"name": "app", "usage": {"cpu": "123456789n", "memory": "1536Ki"}},
            {"name": "sidecar", "usage": {"cpu": "500m", "memory": "1000002"}},
        ],
    }


async def test_pod_metrics_lists(client: TestClient, rp: FakeResourceProvider) -> None:
    body = await get(client, f"{V}/namespaces/default/pods")
    assert body["kind"] == "PodMetricsList" and body["apiVersion"] == "metrics.k8s.io/v1beta1"
    assert body["metadata"] == {}
    assert [i["metadata"]["name"] for i in body["items"]] == ["web-1", "web-2"]
    assert "kind" not in body["items"][0]
    assert body["items"][1]["containers"] == [{"name": "app", "usage": {"cpu": "2", "memory": "512"}}]
    body = await get(client, f"{V}/pods")
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in body["items"]] == [
        ("default", "web-1"),
        ("default", "web-2"),
        ("other", "db-0"),
    ]
    db = body["items"][2]
    assert "labels" not in db["metadata"]  # omitempty, as the Go types
    assert db["containers"][0]["usage"] == {"cpu": "0", "memory": "1Gi"}
    assert rp.calls[-1].args[0] is None  # all namespaces


async def test_node_metrics(client: TestClient) -> None:
    body = await get(client, f"{V}/nodes/node-a")
    body["metadata"].pop("creationTimestamp")
    assert body == {
        "kind": "NodeMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": {"name": "node-a", "labels": {"role": "worker"}},
        "timestamp": "2024-05-01T12:00:00Z",
        "window": "30.5s",
        "usage": {"cpu": "1500m", "memory": "4Gi"},
    }
    body = await get(client, f"{V}/nodes")
    assert body["kind"] == "NodeMetricsList"
    assert [(i["metadata"]["name"], i["usage"]) for i in body["items"]] == [
        ("node-a", {"cpu": "1500m", "memory": "4Gi"}),
        ("node-b", {"cpu": "1n", "memory": "1k"}),
    ]


async def test_missing_objects_are_404_status(client: TestClient) -> None:
    body = await get(client, f"{V}/nodes/node-z", 404)
    assert body["kind"] == "Status" and body["reason"] == "NotFound" and "node-z" in body["message"]
    body = await get(client, f"{V}/namespaces/default/pods/nope", 404)
    assert 'podmetrics.metrics.k8s.io "default/nope" not found' in body["message"]


async def test_label_and_field_selectors(client: TestClient, rp: FakeResourceProvider) -> None:
    body = await get(client, f"{V}/nodes", params={"labelSelector": "role=worker"})
    assert [i["metadata"]["name"] for i in body["items"]] == ["node-a"]
    body = await get(client, f"{V}/pods", params={"fieldSelector": "metadata.name=db-0"})
    assert [i["metadata"]["name"] for i in body["items"]] == ["db-0"]
    assert str(rp.calls[-1].args[2]) == "metadata.name=db-0"
    body = await get(client, f"{V}/namespaces/default/pods", params={"fieldSelector": "metadata.name!=web-1"})
    assert [i["metadata"]["name"] for i in body["items"]] == ["web-2"]
    body = await get(client, f"{V}/pods", params={"labelSelector": "app=nothing"})
    assert body["items"] == []  # zero matches: an empty list, not a 404


async def test_repeated_selectors_take_the_first(client: TestClient) -> None:
    params = [
        ("fieldSelector", "metadata.name=web-2"),
        ("fieldSelector", "metadata.name=web-1"),
        ("labelSelector", "app=web"),
        ("labelSelector", "app=nothing"),
    ]
    body = await get(client, f"{V}/pods", params=params)
    assert [i["metadata"]["name"] for i in body["items"]] == ["web-2"]


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"fieldSelector": "spec.nodeName=x"}, "field label"),
        ({"fieldSelector": "metadata.name"}, "cannot parse"),
        ({"labelSelector": "a in (b"}, "invalid labelSelector"),
    ],
)
async def test_bad_selectors_are_400(client: TestClient, params: Any, needle: str) -> None:
    body = await get(client, f"{V}/pods", 400, params=params)
    assert body["reason"] == "BadRequest" and needle in body["message"]


async def test_invalid_namespace_is_400(client: TestClient) -> None:
    body = await get(client, f"{V}/namespaces/Bad_NS/pods", 400)
    assert "invalid namespace" in body["message"]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(300, "5m0s"), (60, "1m0s"), (30, "30s"), (1.5, "1.5s"), (3600, "1h0m0s"), (0.25, "250ms"), (0, "0s")],
)
def test_go_duration(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


# ---- authorization -------------------------------------------------------------------------------


class SARKube:
    """Accepts one token; SubjectAccessReview allows what ``allowed`` lists as (verb, ns, resource, name)."""

    def __init__(self, allowed: set[tuple[str, str, str, str]]) -> None:
        self.allowed = allowed
        self.reviews: list[dict[str, Any]] = []

    async def get(self, path: str, params: Any = None) -> dict[str, Any]:
        raise AssertionError("not used")

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if path.endswith("/tokenreviews"):
            return {"status": {"authenticated": True, "user": {"username": "kubectl-user"}}}
        ra = body["spec"]["resourceAttributes"]
        self.reviews.append(ra)
        key = (ra["verb"], ra.get("namespace", ""), ra["resource"], ra.get("name", ""))
        return {"status": {"allowed": key in self.allowed and ra["group"] == "metrics.k8s.io"}}


async def test_authorization_attributes(rp: FakeResourceProvider) -> None:
    kube = SARKube(
        {
            ("list", "", "nodes", ""),
            ("get", "", "nodes", "node-a"),
            ("list", "default", "pods", ""),
            ("get", "default", "pods", "web-1"),
            ("list", "", "pods", ""),
        }
    )
    app = build_app(
        sample_provider(),
        authenticator=Authenticator(lambda: AuthnConfig(), tokens=TokenReviewer(kube)),  # type: ignore[arg-type]
        authorizer=SubjectAccessReviewer(kube),  # type: ignore[arg-type]
        resource_provider=rp,
        peer_cert=lambda request: None,
    )
    headers = {"Authorization": "Bearer t"}
    expected = {
        f"{V}/nodes": {"verb": "list", "resource": "nodes"},
        f"{V}/nodes/node-a": {"verb": "get", "resource": "nodes", "name": "node-a"},
        f"{V}/pods": {"verb": "list", "resource": "pods"},
        f"{V}/namespaces/default/pods": {"verb": "list", "resource": "pods", "namespace": "default"},
        f"{V}/namespaces/default/pods/web-1": {
            "verb": "get",
            "resource": "pods",
            "namespace": "default",
            "name": "web-1",
        },
    }
    async with TestClient(TestServer(app)) as c:
        for path, attrs in expected.items():
            resp = await c.get(path, headers=headers)
            assert resp.status == 200, await resp.text()
            assert kube.reviews[-1] == {"group": "metrics.k8s.io", "version": "v1beta1", **attrs}
        served = len(rp.calls)
        resp = await c.get(f"{V}/namespaces/other/pods/db-0", headers=headers)
        assert resp.status == 403
        body = await resp.json()
        assert (
            'cannot get resource "pods" in API group "metrics.k8s.io" in the namespace "other"'
            in body["message"]
        )
        assert len(rp.calls) == served  # the refused request never reached the provider
        assert (await c.get(f"{V}/nodes")).status == 401
