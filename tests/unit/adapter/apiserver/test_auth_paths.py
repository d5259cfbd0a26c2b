"""Authorization attributes come from the matched route, and bad path segments are 400 before authn.

Issue 12, finding 1: the SubjectAccessReview used to be computed from the fully decoded path while
routing kept ``%2F`` inside one segment, so a user allowed one external metric could read another.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapter.apiserver.auth import Authenticator, AuthnConfig, SubjectAccessReviewer, TokenReviewer
from adapter.apiserver.server import build_app
from tests.support.adapter_fakes import sample_provider

E = "/apis/external.metrics.k8s.io/v1beta1"
C = "/apis/custom.metrics.k8s.io/v1beta2"
TOKEN = "good-token"


class RBACKube:
    """TokenReview knows one token; SAR answers like RBAC rules with verbs get+list and no resourceNames.

    ``rules`` holds (namespace, resource, subresource) triples.
    """

    def __init__(self, rules: set[tuple[str, str, str, str]]) -> None:
        self.rules = rules
        self.created: list[tuple[str, dict[str, Any]]] = []

    async def get(self, path: str, params: Any = None) -> dict[str, Any]:
        raise AssertionError("not used")

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.created.append((path, body))
        if path.endswith("/tokenreviews"):
            ok = body["spec"]["token"] == TOKEN
            return {"status": {"authenticated": ok, "user": {"username": "team-a-hpa"}}}
        ra = body["spec"].get("resourceAttributes") or {}
        key = (ra.get("namespace", ""), ra.get("resource", ""), ra.get("subresource", ""))
        return {"status": {"allowed": key in self.rules}}


@pytest.fixture
async def client() -> AsyncIterator[tuple[TestClient, RBACKube]]:
    kube = RBACKube(
        {
            ("team-a", "allowed_metric", ""),  # external: get/list <metric> in team-a
            ("", "global_rate", ""),  # external, namespaced: false: the cluster-scoped path
            ("default", "queue_messages", ""),
            ("team-a", "pods", "allowed_metric"),  # custom: get pods/<metric>
            ("default", "pods", "http_requests"),
        }
    )
    app = build_app(
        sample_provider(),
        authenticator=Authenticator(lambda: AuthnConfig(), tokens=TokenReviewer(kube)),
        authorizer=SubjectAccessReviewer(kube),
        peer_cert=lambda request: None,
    )
    async with TestClient(TestServer(app, skip_url_asserts=True)) as c:
        yield c, kube


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


async def raw_get(c: TestClient, path: str) -> tuple[int, dict[str, Any]]:
    """GET ``path`` byte for byte (HTTP clients normalize ``.``/``..`` segments; attackers do not)."""
    reader, writer = await asyncio.open_connection(c.server.host, c.server.port)
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


async def test_exploit_was_served_before_the_fix_shape(client) -> None:
    """The exact reported request: must not be 200 with the secret metric."""
    c, _ = client
    resp = await c.get(f"{E}/namespaces/team-a%2Fallowed_metric/queue_messages", headers=_auth())
    assert resp.status == 400
    assert "queue_messages" not in [i.get("metricName") for i in (await resp.json()).get("items", [])]


@pytest.mark.parametrize(
    "path",
    [
        # the reported exploit: routing sees namespace "team-a/allowed_metric", metric "queue_messages";
        # the SAR used to see namespace "team-a", resource "allowed_metric"
        f"{E}/namespaces/team-a%2Fallowed_metric/queue_messages",
        f"{E}/namespaces/team-a%2fallowed_metric/queue_messages",
        f"{C}/namespaces/team-a/pods/*%2Fallowed_metric/http_requests",
        f"{C}/namespaces/team-a%2Fpods%2F*%2Fallowed_metric/pods/*/http_requests",
        f"{C}/namespaces/default/pods/*%2Fhttp_requests%2F/queue_depth",
    ],
)
async def test_encoded_slash_is_400_before_any_review(client, path: str) -> None:
    c, kube = client
    resp = await c.get(path, headers=_auth())
    body = await resp.json()
    assert resp.status == 400, body
    assert body["kind"] == "Status" and body["reason"] == "BadRequest" and body["code"] == 400
    assert kube.created == []  # neither a TokenReview nor a SubjectAccessReview was sent


@pytest.mark.parametrize(
    "path",
    [
        f"{E}/namespaces/Team-A/queue_messages",  # not a DNS-1123 label
        f"{E}/namespaces/-team/queue_messages",
        f"{E}/namespaces/{'a' * 64}/queue_messages",
        f"{E}/namespaces/default/queue%25messages",  # '%' in a name
        f"{C}/namespaces/default/pods/%2E%2E/http_requests",
        f"{C}/namespaces/default/pods/web%251/http_requests",
        f"{C}/namespaces/default/pods/./http_requests",
        f"{C}/namespaces/default/pods/../http_requests",
        f"{E}/namespaces/default/..",
        f"{C}/nodes/node%25a/node_load",
        f"{C}/namespaces/bad_ns/metrics/queue_depth",
    ],
)
async def test_invalid_segments_are_400_before_any_review(client, path: str) -> None:
    c, kube = client
    status, body = await raw_get(c, path)
    assert status == 400, body
    assert body["kind"] == "Status" and body["reason"] == "BadRequest"
    assert kube.created == []


async def test_allowed_requests_still_served_and_sar_matches_route(client) -> None:
    c, kube = client
    resp = await c.get(f"{E}/namespaces/default/queue_messages", headers=_auth())
    assert resp.status == 200
    sar = kube.created[-1][1]["spec"]["resourceAttributes"]
    assert sar == {"namespace": "default", "verb": "list", "group": "external.metrics.k8s.io",
                   "version": "v1beta1", "resource": "queue_messages"}
    resp = await c.get(f"{C}/namespaces/default/pods/*/http_requests", headers=_auth())
    assert resp.status == 200
    sar = kube.created[-1][1]["spec"]["resourceAttributes"]
    assert sar["resource"] == "pods" and sar["name"] == "*" and sar["subresource"] == "http_requests"


async def test_cluster_scoped_external_sar(client) -> None:
    c, kube = client
    resp = await c.get(f"{E}/global_rate", headers=_auth())
    assert resp.status == 200
    sar = kube.created[-1][1]["spec"]["resourceAttributes"]
    assert sar == {"verb": "list", "group": "external.metrics.k8s.io", "version": "v1beta1",
                   "resource": "global_rate"}
    assert (await c.get(f"{E}/queue_messages", headers=_auth())).status == 403  # not allowed cluster-wide


async def test_other_metric_forbidden(client) -> None:
    c, _ = client
    assert (await c.get(f"{E}/namespaces/team-a/queue_messages", headers=_auth())).status == 403
