"""The constant-value provider through the real API layer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapter.apiserver.routes import build_api_app
from adapter.provider.base import GroupResource, ObjectMeta, ResourceInfo
from adapter.provider.static import StaticProvider
from adapter.selectors import LabelSelector

C = "/apis/custom.metrics.k8s.io"


class ListLister:
    def __init__(self, objects: list[ObjectMeta]) -> None:
        self.objects = objects
        self.calls: list[tuple[ResourceInfo, str | None, str]] = []

    async def list_objects(
        self, resource: ResourceInfo, namespace: str | None, selector: LabelSelector
    ) -> list[ObjectMeta]:
        self.calls.append((resource, namespace, str(selector)))
        return [o for o in self.objects if o.namespace == namespace and selector.matches(o.labels)]


async def _client(provider: StaticProvider) -> TestClient:
    client = TestClient(TestServer(build_api_app(provider)))
    await client.start_server()
    return client


@pytest.fixture
async def static() -> AsyncIterator[tuple[TestClient, ListLister]]:
    lister = ListLister([ObjectMeta("default", "a", {"app": "x"}), ObjectMeta("default", "b", {"app": "y"})])
    provider = StaticProvider(
        value=Decimal("10.5"), metrics=["m1", "m2"], external_metrics=["e1"], lister=lister
    )
    client = await _client(provider)
    try:
        yield client, lister
    finally:
        await client.close()


async def test_discovery_lists_metrics_per_resource(static) -> None:
    client, _ = static
    body = await (await client.get(f"{C}/v1beta2")).json()
    names = {r["name"]: r["namespaced"] for r in body["resources"]}
    assert names == {
        "pods/m1": True,
        "pods/m2": True,
        "services/m1": True,
        "services/m2": True,
        "namespaces/m1": False,
        "namespaces/m2": False,
    }


async def test_named_object_of_any_resource(static) -> None:
    client, _ = static
    resp = await client.get(f"{C}/v1beta2/namespaces/default/deployments.apps/web/m1")
    body = await resp.json()
    assert resp.status == 200, body
    item = body["items"][0]
    assert item["describedObject"] == {
        "kind": "Deployment",
        "namespace": "default",
        "name": "web",
        "apiVersion": "apps/v1",
    }
    assert item["value"] == "10500m"
    resp = await client.get(f"{C}/v1beta1/namespaces/default/metrics/m2")
    assert (await resp.json())["items"][0]["describedObject"]["kind"] == "Namespace"


async def test_unknown_metric_404(static) -> None:
    client, _ = static
    resp = await client.get(f"{C}/v1beta2/namespaces/default/pods/a/nope")
    assert resp.status == 404


async def test_star_uses_lister(static) -> None:
    client, lister = static
    resp = await client.get(f"{C}/v1beta2/namespaces/default/pods/*/m1?labelSelector=app%3Dx")
    body = await resp.json()
    assert [i["describedObject"]["name"] for i in body["items"]] == ["a"]
    resource, ns, sel = lister.calls[0]
    assert resource.group_resource == GroupResource("", "pods") and ns == "default" and sel == "app=x"


async def test_star_without_lister_404_hint() -> None:
    client = await _client(StaticProvider(value=Decimal(1), metrics=["m"]))
    try:
        resp = await client.get(f"{C}/v1beta2/namespaces/default/pods/*/m")
        body = await resp.json()
        assert resp.status == 404 and "--kubeconfig" in body["message"]
        resp = await client.get(f"{C}/v1beta2/namespaces/default/ingresses.networking.k8s.io/*/m")
        assert resp.status == 404  # unlisted resources only by name
    finally:
        await client.close()


async def test_external(static) -> None:
    client, _ = static
    resp = await client.get("/apis/external.metrics.k8s.io/v1beta1/namespaces/ns/e1?labelSelector=q%3Djobs")
    body = await resp.json()
    assert body["items"][0]["metricLabels"] == {"q": "jobs"} and body["items"][0]["value"] == "10500m"
    assert (await client.get("/apis/external.metrics.k8s.io/v1beta1/namespaces/ns/m1")).status == 404


def test_non_finite_value_rejected() -> None:
    with pytest.raises(ValueError):
        StaticProvider(value=Decimal("NaN"), metrics=["m"])
