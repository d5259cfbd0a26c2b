"""The Kubernetes client, discovery mapper and watch cache against a fake API server on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapter import telemetry
from adapter.apiserver.status import status_for_error
from adapter.errors import AdapterError, BackendUnavailable, ConfigError
from adapter.kube.client import (
    KubeClient,
    KubeConnection,
    KubeError,
    WatchExpired,
    kubeconfig_connection,
    resource_path,
)
from adapter.kube.mapper import ApiDiscoveryMapper
from adapter.kube.objects import WatchCache
from adapter.provider.base import GroupResource, ResourceInfo
from adapter.selectors import parse_label_selector

PODS = ResourceInfo(GroupResource("", "pods"), "v1", "Pod", True)


def pod(ns: str, name: str, rv: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name, "resourceVersion": rv, "labels": labels}}


class FakeApiServer:
    """Just enough of a kube-apiserver: discovery, paginated LIST, scripted WATCH, reviews."""

    def __init__(self) -> None:
        self.pods: list[dict[str, Any]] = [
            pod("default", "web-1", "1", app="web"),
            pod("default", "db-1", "2", app="db"),
            pod("other", "web-9", "3", app="web"),
        ]
        self.list_rv = "10"
        self.list_calls = 0
        self.list_fail = 0  # fail the next N lists with 500
        self.watch_scripts: asyncio.Queue[list[dict[str, Any]] | int] = asyncio.Queue()
        self.requests: list[web.Request] = []
        self.bodies: list[dict[str, Any]] = []
        app = web.Application()
        app.router.add_get("/api/v1/pods", self.pods_handler)
        app.router.add_get("/apis", self.apis)
        app.router.add_get("/api/v1", self.core)
        app.router.add_get("/apis/apps/v1", self.apps)
        app.router.add_get("/apis/custom.metrics.k8s.io/v1beta2", self.unavailable)
        app.router.add_post("/apis/authentication.k8s.io/v1/tokenreviews", self.review)
        app.router.add_get("/api/v1/namespaces/kube-system/configmaps/missing", self.not_found)
        self.server = TestServer(app)

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    async def pods_handler(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request)
        if request.query.get("watch") == "true":
            return await self.watch(request)
        self.list_calls += 1
        if self.list_fail:
            self.list_fail -= 1
            return web.json_response(
                {"kind": "Status", "code": 500, "reason": "InternalError", "message": "etcd is sad"},
                status=500,
            )
        limit = int(request.query.get("limit", "500"))
        start = int(request.query.get("continue", "0"))
        items = self.pods[start : start + limit]
        meta: dict[str, Any] = {"resourceVersion": self.list_rv}
        if start + limit < len(self.pods):
            meta["continue"] = str(start + limit)
        return web.json_response({"kind": "PodList", "metadata": meta, "items": items})

    async def watch(self, request: web.Request) -> web.StreamResponse:
        script = await self.watch_scripts.get()
        if isinstance(script, int):
            return web.json_response(
                {"kind": "Status", "code": script, "reason": "Expired", "message": "too old"}, status=script
            )
        resp = web.StreamResponse()
        await resp.prepare(request)
        for event in script:
            await resp.write((json.dumps(event) + "\n").encode())
        return resp

    async def apis(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "kind": "APIGroupList",
                "groups": [
                    {
                        "name": "apps",
                        "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
                        "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"},
                    },
                    {
                        "name": "custom.metrics.k8s.io",
                        "versions": [{"version": "v1beta2"}],
                        "preferredVersion": {"version": "v1beta2"},
                    },
                ],
            }
        )

    async def core(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "resources": [
                    {
                        "name": "pods",
                        "singularName": "pod",
                        "namespaced": True,
                        "kind": "Pod",
                        "shortNames": ["po"],
                    },
                    {"name": "pods/log", "namespaced": True, "kind": "Pod"},
                    {
                        "name": "services",
                        "singularName": "service",
                        "namespaced": True,
                        "kind": "Service",
                        "shortNames": ["svc"],
                    },
                    {
                        "name": "namespaces",
                        "singularName": "namespace",
                        "namespaced": False,
                        "kind": "Namespace",
                    },
                    {
                        "name": "events",
                        "singularName": "event",
                        "namespaced": True,
                        "kind": "Event",
                        "shortNames": ["ev"],
                    },
                ]
            }
        )

    async def apps(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "resources": [
                    {
                        "name": "deployments",
                        "singularName": "deployment",
                        "namespaced": True,
                        "kind": "Deployment",
                        "shortNames": ["deploy"],
                    },
                    {"name": "events", "singularName": "event", "namespaced": True, "kind": "Event"},
                ]
            }
        )

    async def unavailable(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"kind": "Status", "code": 503, "reason": "ServiceUnavailable", "message": "no endpoints"},
            status=503,
        )

    async def not_found(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "kind": "Status",
                "code": 404,
                "reason": "NotFound",
                "message": 'configmaps "missing" not found',
            },
            status=404,
        )

    async def review(self, request: web.Request) -> web.Response:
        self.requests.append(request)
        body = await request.json()
        self.bodies.append(body)
        return web.json_response(
            {**body, "status": {"authenticated": True, "user": {"username": "u"}}}, status=201
        )


@pytest.fixture
async def api() -> AsyncIterator[FakeApiServer]:
    fake = FakeApiServer()
    await fake.server.start_server()
    try:
        yield fake
    finally:
        await fake.server.close()


@pytest.fixture
async def kube(api: FakeApiServer) -> AsyncIterator[KubeClient]:
    client = KubeClient(KubeConnection(server=api.url, token="s3cret"), timeout=5)
    try:
        yield client
    finally:
        await client.aclose()


# ---- client ---------------------------------------------------------------------------------------


async def test_create_sends_token_and_body(api: FakeApiServer, kube: KubeClient) -> None:
    out = await kube.create("/apis/authentication.k8s.io/v1/tokenreviews", {"spec": {"token": "t"}})
    assert out["status"]["authenticated"] is True
    assert api.requests[-1].headers["Authorization"] == "Bearer s3cret"
    assert api.bodies == [{"spec": {"token": "t"}}]


async def test_list_follows_continue(api: FakeApiServer, kube: KubeClient) -> None:
    page = await kube.list("/api/v1/pods", page_size=2, metadata_only=True)
    assert [p["metadata"]["name"] for p in page["items"]] == ["web-1", "db-1", "web-9"]
    assert page["metadata"]["resourceVersion"] == "10"
    assert api.list_calls == 2
    assert "PartialObjectMetadataList" in api.requests[-1].headers["Accept"]


def test_kube_and_config_errors_are_adapter_errors() -> None:
    """One root: start-up code catches AdapterError; a KubeError that reaches a client is a 503."""
    assert issubclass(KubeError, AdapterError) and issubclass(WatchExpired, KubeError)
    assert issubclass(ConfigError, AdapterError)
    err = KubeError(403, "Forbidden", "configmaps is forbidden")
    assert str(err) == "403 Forbidden: configmaps is forbidden" and err.message == "configmaps is forbidden"
    body = status_for_error(err)
    assert (body["code"], body["reason"]) == (503, "ServiceUnavailable")


async def test_errors_carry_status(kube: KubeClient) -> None:
    with pytest.raises(KubeError) as err:
        await kube.get("/api/v1/namespaces/kube-system/configmaps/missing")
    assert err.value.status == 404 and err.value.kube_reason == "NotFound" and "missing" in err.value.message


async def test_unreachable_is_backend_unavailable() -> None:
    client = KubeClient(KubeConnection(server="http://127.0.0.1:1"), timeout=2)
    try:
        with pytest.raises(BackendUnavailable, match="unreachable"):
            await client.get("/api")
    finally:
        await client.aclose()


async def test_watch_events_and_410(api: FakeApiServer, kube: KubeClient) -> None:
    await api.watch_scripts.put(
        [
            {"type": "ADDED", "object": pod("default", "x", "11")},
            {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}},
        ]
    )
    events = [e async for e in kube.watch("/api/v1/pods", resource_version="10")]
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    assert api.requests[-1].query["resourceVersion"] == "10"
    assert api.requests[-1].query["allowWatchBookmarks"] == "true"
    await api.watch_scripts.put(
        [{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}]
    )
    with pytest.raises(WatchExpired):
        _ = [e async for e in kube.watch("/api/v1/pods", resource_version="1")]
    await api.watch_scripts.put(410)
    with pytest.raises(WatchExpired):
        _ = [e async for e in kube.watch("/api/v1/pods", resource_version="1")]


async def test_token_file_reread(api: FakeApiServer, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("one\n")
    client = KubeClient(KubeConnection(server=api.url, token_file=str(token)))
    try:
        await client.create("/apis/authentication.k8s.io/v1/tokenreviews", {})
        assert api.requests[-1].headers["Authorization"] == "Bearer one"
        token.write_text("two-longer\n")
        await client.create("/apis/authentication.k8s.io/v1/tokenreviews", {})
        assert api.requests[-1].headers["Authorization"] == "Bearer two-longer"
    finally:
        await client.aclose()


def test_kubeconfig_connection(tmp_path: Path) -> None:
    cfg = tmp_path / "kubeconfig"
    cfg.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "c",
                "clusters": [
                    {
                        "name": "k",
                        "cluster": {"server": "https://127.0.0.1:6443", "insecure-skip-tls-verify": True},
                    }
                ],
                "users": [{"name": "u", "user": {"token": "abc"}}],
                "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
            }
        )
    )
    conn = kubeconfig_connection(str(cfg))
    assert conn.server == "https://127.0.0.1:6443"
    assert conn.token == "abc" and conn.insecure_skip_verify


def test_resource_paths() -> None:
    deploy = ResourceInfo(GroupResource("apps", "deployments"), "v1", "Deployment", True)
    nodes = ResourceInfo(GroupResource("", "nodes"), "v1", "Node", False)
    assert resource_path(PODS) == "/api/v1/pods"
    assert resource_path(deploy, "ns") == "/apis/apps/v1/namespaces/ns/deployments"
    assert resource_path(nodes, "ns") == "/api/v1/nodes"


# ---- discovery mapper ---------------------------------------------------------------------------


async def test_discovery_mapper_names(kube: KubeClient) -> None:
    mapper = ApiDiscoveryMapper(kube)
    await mapper.refresh()
    deploy = GroupResource("apps", "deployments")
    for name, group in [
        ("deployments", None),
        ("deployment", None),
        ("Deployment", None),
        ("deploy", None),
        ("deployments.apps", None),
        ("deployments", "apps"),
    ]:
        found = mapper.resource_for(name, group)
        assert found is not None and found.group_resource == deploy, name
    assert mapper.resource_for("po").group_resource == GroupResource("", "pods")  # type: ignore[union-attr]
    assert mapper.resource_for("svc").kind == "Service"  # type: ignore[union-attr]
    assert mapper.resource_for("events").group_resource.group == ""  # type: ignore[union-attr]  # core wins
    assert mapper.resource_for("events", "apps").group_resource.group == "apps"  # type: ignore[union-attr]
    assert mapper.resource_for("pods/log") is None
    assert mapper.resource_for("nope") is None
    assert not mapper.resource_for("namespaces").namespaced  # type: ignore[union-attr]
    assert len(mapper.all_resources()) == 6  # unavailable aggregated group skipped, subresources dropped


# ---- watch cache ----------------------------------------------------------------------------------


async def test_watch_cache_lists_then_applies_events(api: FakeApiServer, kube: KubeClient) -> None:
    cache = WatchCache(kube, sync_timeout=5)
    try:
        objs = await cache.list_objects(PODS, "default", parse_label_selector("app=web"))
        assert [o.name for o in objs] == ["web-1"]
        assert [o.name for o in await cache.list_objects(PODS, None, parse_label_selector(""))] == [
            "db-1",
            "web-1",
            "web-9",
        ]
        await api.watch_scripts.put(
            [
                {"type": "ADDED", "object": pod("default", "web-2", "11", app="web")},
                {"type": "DELETED", "object": pod("default", "web-1", "12", app="web")},
                {"type": "MODIFIED", "object": pod("default", "db-1", "13", app="web")},
            ]
        )
        for _ in range(100):
            names = [
                o.name for o in await cache.list_objects(PODS, "default", parse_label_selector("app=web"))
            ]
            if names == ["db-1", "web-2"]:
                break
            await asyncio.sleep(0.02)
        assert names == ["db-1", "web-2"]
        assert api.list_calls == 1  # served from memory, not a LIST per request
    finally:
        await cache.stop()


async def test_watch_cache_kept_answers_are_copies_and_bounded(api: FakeApiServer, kube: KubeClient) -> None:
    """Repeated selectors are answered from the kept sorted answer; a caller's edits never leak
    into it, and distinct selectors beyond the bound do not grow it without limit."""
    from adapter.kube import objects

    cache = WatchCache(kube, sync_timeout=5)
    try:
        web = parse_label_selector("app=web")
        first = await cache.list_objects(PODS, "default", web)
        first.clear()
        assert [o.name for o in await cache.list_objects(PODS, "default", web)] == ["web-1"]
        for i in range(objects._MAX_ANSWERS + 5):
            await cache.list_objects(PODS, None, parse_label_selector(f"app=x{i}"))
        assert len(cache._informers[PODS.group_resource].answers) <= objects._MAX_ANSWERS
        assert [o.name for o in await cache.list_objects(PODS, "default", web)] == ["web-1"]
    finally:
        await cache.stop()


async def test_watch_cache_relists_after_410(api: FakeApiServer, kube: KubeClient) -> None:
    cache = WatchCache(kube, sync_timeout=5)
    try:
        await cache.list_objects(PODS, None, parse_label_selector(""))
        api.pods.append(pod("default", "late", "20"))
        await api.watch_scripts.put(410)
        for _ in range(100):
            if api.list_calls >= 2:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)
        names = {o.name for o in await cache.list_objects(PODS, None, parse_label_selector(""))}
        assert "late" in names
    finally:
        await cache.stop()


async def test_watch_cache_failed_relist_keeps_last_good(api: FakeApiServer, kube: KubeClient) -> None:
    cache = WatchCache(kube, sync_timeout=5, max_backoff=0.05)
    before = (
        telemetry.REGISTRY.get_sample_value(
            "hpakit_adapter_object_relist_failures_total", {"resource": "pods"}
        )
        or 0.0
    )
    try:
        await cache.list_objects(PODS, None, parse_label_selector(""))
        api.list_fail = 1
        await api.watch_scripts.put(500)  # watch breaks, relist fails once, then succeeds
        await api.watch_scripts.put([])
        for _ in range(200):
            after = (
                telemetry.REGISTRY.get_sample_value(
                    "hpakit_adapter_object_relist_failures_total", {"resource": "pods"}
                )
                or 0.0
            )
            if after >= before + 2:
                break
            await asyncio.sleep(0.02)
        assert after >= before + 1
        assert len(await cache.list_objects(PODS, None, parse_label_selector(""))) == 3
    finally:
        await cache.stop()


async def test_watch_cache_initial_sync_bounded(api: FakeApiServer, kube: KubeClient) -> None:
    api.list_fail = 1000
    cache = WatchCache(kube, sync_timeout=0.3, max_backoff=0.05)
    try:
        with pytest.raises(BackendUnavailable, match="not loaded yet") as err:
            await cache.list_objects(PODS, None, parse_label_selector(""))
        assert "etcd is sad" in err.value.message
    finally:
        await cache.stop()
