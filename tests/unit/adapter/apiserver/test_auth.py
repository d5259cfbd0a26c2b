"""Authentication and authorization decisions (front-proxy certs, client CA, tokens, SAR)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict

from adapter.apiserver.auth import (
    ANONYMOUS,
    AlwaysAllow,
    Authenticator,
    AuthnConfig,
    AuthnOverrides,
    ConfigMapAuthnSource,
    RequestHeaderConfig,
    SubjectAccessReviewer,
    TokenReviewer,
    UserInfo,
    config_from_configmap,
    forbidden_message,
    request_attributes,
    subject_access_review,
)
from adapter.apiserver.server import build_app
from adapter.errors import BackendUnavailable, Unauthorized
from tests.support.adapter_fakes import sample_provider
from tests.support.adapter_pki import make_ca, make_leaf

FRONT_CA = make_ca("front-proxy-ca")
CLUSTER_CA = make_ca("cluster-ca")
OTHER_CA = make_ca("someone-else")
AGGREGATOR = make_leaf(FRONT_CA, "front-proxy-client")
ROGUE_FRONT = make_leaf(FRONT_CA, "not-the-aggregator")
ALICE_CERT = make_leaf(CLUSTER_CA, "alice", orgs=("dev", "ops"))
STRANGER = make_leaf(OTHER_CA, "front-proxy-client")
EXPIRED = make_leaf(FRONT_CA, "front-proxy-client", expired=True)
SERVER_ONLY = make_leaf(FRONT_CA, "front-proxy-client", usage="server")


def config(allowed: tuple[str, ...] = ("front-proxy-client",), **kw: Any) -> AuthnConfig:
    return AuthnConfig(
        requestheader=RequestHeaderConfig(ca_certs=(FRONT_CA.cert,), allowed_names=allowed, **kw),
        client_ca_certs=(CLUSTER_CA.cert,),
    )


def authn(cfg: AuthnConfig | None = None, **kw: Any) -> Authenticator:
    cfg = cfg or config()
    return Authenticator(lambda: cfg, **kw)


IDENTITY_HEADERS = CIMultiDict(
    [
        ("X-Remote-User", "bob"),
        ("X-Remote-Group", "team-a"),
        ("X-Remote-Group", "system:authenticated"),
        ("X-Remote-Extra-Scopes", "read"),
        ("X-Remote-Extra-Scopes", "write"),
        ("X-Remote-Extra-Acme.com%2Fproject", "p1"),
    ]
)


class FakeKube:
    """Answers TokenReview / SubjectAccessReview / ConfigMap reads; records what was sent."""

    def __init__(self) -> None:
        self.created: list[tuple[str, dict]] = []
        self.tokens: dict[str, dict] = {}
        self.allow: Callable[[dict], tuple[bool, str]] = lambda spec: (True, "")
        self.fail = False
        self.configmap: dict[str, str] = {}

    async def get(self, path: str, params: Any = None) -> dict:
        if self.fail:
            raise ConnectionError("connection refused")
        assert path == "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"
        return {"data": self.configmap}

    async def create(self, path: str, body: dict) -> dict:
        self.created.append((path, body))
        if self.fail:
            raise ConnectionError("connection refused")
        if path.endswith("/tokenreviews"):
            user = self.tokens.get(body["spec"]["token"])
            return {"status": {"authenticated": True, "user": user} if user else {"authenticated": False}}
        allowed, reason = self.allow(body["spec"])
        return {"status": {"allowed": allowed, "reason": reason}}


# ---- front-proxy (requestheader) -----------------------------------------------------------------


async def test_requestheader_cert_headers_used() -> None:
    user = await authn().authenticate(IDENTITY_HEADERS, AGGREGATOR.der)
    assert user.name == "bob"
    assert user.groups == ("team-a", "system:authenticated")
    assert user.extra == {"scopes": ("read", "write"), "acme.com/project": ("p1",)}


async def test_requestheader_authenticated_group_added_once() -> None:
    user = await authn().authenticate(CIMultiDict({"X-Remote-User": "bob"}), AGGREGATOR.der)
    assert user.groups == ("system:authenticated",)


async def test_requestheader_empty_allowed_names_accepts_any_cn() -> None:
    user = await authn(config(allowed=())).authenticate(IDENTITY_HEADERS, ROGUE_FRONT.der)
    assert user.name == "bob"


async def test_requestheader_disallowed_cn_is_401_even_with_anonymous() -> None:
    with pytest.raises(Unauthorized, match="not-the-aggregator"):
        await authn(allow_anonymous=True).authenticate(IDENTITY_HEADERS, ROGUE_FRONT.der)


async def test_requestheader_cert_without_user_header_falls_through() -> None:
    assert await authn(allow_anonymous=True).authenticate(CIMultiDict(), AGGREGATOR.der) == ANONYMOUS
    with pytest.raises(Unauthorized):
        await authn().authenticate(CIMultiDict(), AGGREGATOR.der)


async def test_custom_header_names_from_configmap() -> None:
    cfg = config(
        username_headers=("X-Who",),
        group_headers=("X-Teams",),
        extra_prefixes=("X-X-",),
        uid_headers=("X-Uid",),
    )
    headers = CIMultiDict(
        [
            ("X-Who", "carol"),
            ("X-Teams", "t1"),
            ("X-X-Foo", "bar"),
            ("X-Uid", "u-1"),
            ("X-Remote-User", "mallory"),
        ]
    )
    user = await authn(cfg).authenticate(headers, AGGREGATOR.der)
    assert (user.name, user.uid, user.groups, dict(user.extra)) == (
        "carol",
        "u-1",
        ("t1", "system:authenticated"),
        {"foo": ("bar",)},
    )


@pytest.mark.parametrize("peer", [None, STRANGER.der, EXPIRED.der, SERVER_ONLY.der, b"garbage"])
async def test_identity_headers_without_valid_front_proxy_cert_are_ignored(peer: bytes | None) -> None:
    a = authn(allow_anonymous=True)
    try:
        user = await a.authenticate(IDENTITY_HEADERS, peer)
    except Unauthorized:
        return  # an unusable certificate may also be refused outright; never trusted
    assert user == ANONYMOUS


async def test_headers_with_cluster_ca_cert_are_ignored_user_is_cn() -> None:
    user = await authn().authenticate(IDENTITY_HEADERS, ALICE_CERT.der)
    assert user.name == "alice"
    assert user.groups == ("dev", "ops", "system:authenticated")


async def test_front_proxy_cert_not_accepted_as_cluster_client() -> None:
    cfg = AuthnConfig(requestheader=None, client_ca_certs=(CLUSTER_CA.cert,))
    with pytest.raises(Unauthorized):
        await authn(cfg).authenticate(IDENTITY_HEADERS, AGGREGATOR.der)


async def test_anonymous_disabled_401_enabled_identity() -> None:
    with pytest.raises(Unauthorized, match="anonymous requests are disabled"):
        await authn().authenticate(CIMultiDict(), None)
    user = await authn(allow_anonymous=True).authenticate(CIMultiDict(), None)
    assert user.name == "system:anonymous" and user.groups == ("system:unauthenticated",)


# ---- tokens --------------------------------------------------------------------------------------


async def test_token_review_request_and_cache() -> None:
    kube = FakeKube()
    kube.tokens["good"] = {
        "username": "system:serviceaccount:kube-system:hpa",
        "uid": "42",
        "groups": ["system:serviceaccounts"],
        "extra": {"k": ["v"]},
    }
    a = authn(tokens=TokenReviewer(kube))
    for _ in range(3):
        user = await a.authenticate(CIMultiDict({"Authorization": "Bearer good"}), None)
    assert user.name == "system:serviceaccount:kube-system:hpa"
    assert user.uid == "42" and user.extra == {"k": ("v",)}
    assert user.groups == ("system:serviceaccounts", "system:authenticated")
    assert kube.created == [
        (
            "/apis/authentication.k8s.io/v1/tokenreviews",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": "good"}},
        )
    ]


async def test_bad_token_401_even_with_anonymous() -> None:
    kube = FakeKube()
    with pytest.raises(Unauthorized, match="invalid bearer token"):
        await authn(tokens=TokenReviewer(kube), allow_anonymous=True).authenticate(
            CIMultiDict({"Authorization": "Bearer nope"}), None
        )


async def test_token_review_unreachable_503() -> None:
    kube = FakeKube()
    kube.fail = True
    with pytest.raises(BackendUnavailable, match="TokenReview"):
        await authn(tokens=TokenReviewer(kube)).authenticate(CIMultiDict({"Authorization": "Bearer x"}), None)


async def test_front_proxy_wins_over_token() -> None:
    kube = FakeKube()
    headers = CIMultiDict(IDENTITY_HEADERS)
    headers["Authorization"] = "Bearer whatever"
    user = await authn(tokens=TokenReviewer(kube)).authenticate(headers, AGGREGATOR.der)
    assert user.name == "bob" and kube.created == []


# ---- authorization attributes ----------------------------------------------------------------------

BOB = UserInfo("bob", uid="u1", groups=("g1",), extra={"scopes": ("a",)})
C = "/apis/custom.metrics.k8s.io/v1beta2"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            f"{C}/namespaces/default/pods/*/http_requests",
            {
                "namespace": "default",
                "verb": "get",
                "group": "custom.metrics.k8s.io",
                "version": "v1beta2",
                "resource": "pods",
                "subresource": "http_requests",
                "name": "*",
            },
        ),
        (
            f"{C}/namespaces/default/pods/web-1/http_requests",
            {
                "namespace": "default",
                "verb": "get",
                "group": "custom.metrics.k8s.io",
                "version": "v1beta2",
                "resource": "pods",
                "subresource": "http_requests",
                "name": "web-1",
            },
        ),
        (
            f"{C}/namespaces/default/deployments.apps/web/hits",
            {
                "namespace": "default",
                "verb": "get",
                "group": "custom.metrics.k8s.io",
                "version": "v1beta2",
                "resource": "deployments.apps",
                "subresource": "hits",
                "name": "web",
            },
        ),
        (
            f"{C}/nodes/node-a/load",
            {
                "verb": "get",
                "group": "custom.metrics.k8s.io",
                "version": "v1beta2",
                "resource": "nodes",
                "subresource": "load",
                "name": "node-a",
            },
        ),
        (
            f"{C}/namespaces/default/metrics/queue",
            {
                "namespace": "default",
                "verb": "get",
                "group": "custom.metrics.k8s.io",
                "version": "v1beta2",
                "resource": "metrics",
                "name": "queue",
            },
        ),
        (
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/queue_messages",
            {
                "namespace": "default",
                "verb": "list",
                "group": "external.metrics.k8s.io",
                "version": "v1beta1",
                "resource": "queue_messages",
            },
        ),
    ],
)
def test_sar_resource_attributes(path: str, expected: dict) -> None:
    body = subject_access_review(request_attributes(BOB, "GET", path))
    assert body["apiVersion"] == "authorization.k8s.io/v1" and body["kind"] == "SubjectAccessReview"
    assert body["spec"] == {
        "user": "bob",
        "groups": ["g1"],
        "uid": "u1",
        "extra": {"scopes": ["a"]},
        "resourceAttributes": expected,
    }


@pytest.mark.parametrize("path", ["/apis", C, "/apis/custom.metrics.k8s.io", "/openapi/v2", "/metrics", "/"])
def test_sar_non_resource_attributes(path: str) -> None:
    spec = subject_access_review(request_attributes(BOB, "GET", path))["spec"]
    assert spec["nonResourceAttributes"] == {"path": path, "verb": "get"}
    assert "resourceAttributes" not in spec


def test_forbidden_messages() -> None:
    attrs = request_attributes(UserInfo("x"), "GET", f"{C}/namespaces/default/pods/*/foo")
    assert forbidden_message(attrs) == (
        'pods.custom.metrics.k8s.io "*" is forbidden: User "x" cannot get resource "pods/foo" in API group '
        '"custom.metrics.k8s.io" in the namespace "default"'
    )
    attrs = request_attributes(UserInfo("x"), "GET", f"{C}/nodes/n/foo")
    assert forbidden_message(attrs, "no RBAC policy matched").endswith(
        "at the cluster scope: no RBAC policy matched"
    )
    attrs = request_attributes(UserInfo("system:anonymous"), "GET", "/metrics")
    assert forbidden_message(attrs) == 'forbidden: User "system:anonymous" cannot get path "/metrics"'


async def test_sar_allow_cached_deny_not_for_long() -> None:
    now = [0.0]
    kube = FakeKube()
    kube.allow = lambda spec: (spec["user"] == "bob", "" if spec["user"] == "bob" else "nope")
    sar = SubjectAccessReviewer(kube, allow_ttl=10, deny_ttl=5)
    sar.cache.clock = lambda: now[0]
    attrs = request_attributes(BOB, "GET", f"{C}/namespaces/default/pods/*/m")
    assert (await sar.authorize(attrs)).allowed
    assert (await sar.authorize(attrs)).allowed
    assert len(kube.created) == 1
    now[0] = 11
    assert (await sar.authorize(attrs)).allowed
    assert len(kube.created) == 2
    denied = await sar.authorize(
        request_attributes(UserInfo("eve"), "GET", f"{C}/namespaces/default/pods/*/m")
    )
    assert not denied.allowed and denied.reason == "nope"


async def test_sar_unreachable_503() -> None:
    kube = FakeKube()
    kube.fail = True
    with pytest.raises(BackendUnavailable, match="SubjectAccessReview"):
        await SubjectAccessReviewer(kube).authorize(request_attributes(BOB, "GET", "/apis"))


# ---- configmap -------------------------------------------------------------------------------------


def _configmap() -> dict[str, str]:
    return {
        "client-ca-file": CLUSTER_CA.cert_pem.decode(),
        "requestheader-client-ca-file": FRONT_CA.cert_pem.decode(),
        "requestheader-allowed-names": '["front-proxy-client"]',
        "requestheader-username-headers": '["X-Remote-User"]',
        "requestheader-group-headers": '["X-Remote-Group"]',
        "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
    }


def test_config_from_configmap() -> None:
    cfg = config_from_configmap(_configmap())
    assert cfg.requestheader is not None
    assert cfg.requestheader.allowed_names == ("front-proxy-client",)
    assert cfg.requestheader.ca_certs == (FRONT_CA.cert,)
    assert cfg.client_ca_certs == (CLUSTER_CA.cert,)
    assert len(cfg.ca_pems()) == 2
    empty = config_from_configmap({})
    assert empty.requestheader is None and empty.client_ca_certs == ()
    with pytest.raises(ValueError, match="requestheader-allowed-names"):
        config_from_configmap({**_configmap(), "requestheader-allowed-names": "front-proxy-client"})


def test_overrides_replace_configmap(tmp_path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(OTHER_CA.cert_pem)
    cfg = AuthnOverrides(requestheader_client_ca_file=str(ca_file), requestheader_allowed_names=("a",)).apply(
        config_from_configmap(_configmap())
    )
    assert cfg.requestheader is not None
    assert cfg.requestheader.ca_certs == (OTHER_CA.cert,) and cfg.requestheader.allowed_names == ("a",)
    assert cfg.client_ca_certs == (CLUSTER_CA.cert,)


async def test_configmap_source_notifies_and_keeps_last_good() -> None:
    kube = FakeKube()
    kube.configmap = _configmap()
    seen: list[AuthnConfig] = []
    src = ConfigMapAuthnSource(kube, on_change=seen.append)
    await src.load()
    await src.load()
    assert len(seen) == 1
    kube.fail = True
    with pytest.raises(BackendUnavailable, match="extension-apiserver-authentication-reader"):
        await src.load()
    assert src.current() == seen[0]


# ---- middleware over the whole app ---------------------------------------------------------------


@pytest.fixture
async def secured() -> AsyncIterator[tuple[TestClient, FakeKube, dict]]:
    kube = FakeKube()
    peer: dict[str, bytes | None] = {"der": None}
    app = build_app(
        sample_provider(),
        authenticator=authn(tokens=TokenReviewer(kube)),
        authorizer=SubjectAccessReviewer(kube),
        peer_cert=lambda request: peer["der"],
    )
    async with TestClient(TestServer(app)) as client:
        yield client, kube, peer


async def test_middleware_401_status(secured) -> None:
    client, _, _ = secured
    resp = await client.get(
        f"{C}/namespaces/default/pods/*/http_requests", headers={"X-Remote-User": "admin"}
    )
    body = await resp.json()
    assert resp.status == 401
    assert body["kind"] == "Status" and body["reason"] == "Unauthorized" and body["code"] == 401


async def test_middleware_403_status_and_sar_sent(secured) -> None:
    client, kube, peer = secured
    kube.allow = lambda spec: (False, "")
    peer["der"] = AGGREGATOR.der
    resp = await client.get(f"{C}/namespaces/default/pods/*/http_requests", headers={"X-Remote-User": "eve"})
    body = await resp.json()
    assert resp.status == 403
    assert body["reason"] == "Forbidden" and body["code"] == 403
    assert 'User "eve" cannot get resource "pods/http_requests"' in body["message"]
    assert body["details"] == {"name": "*", "group": "custom.metrics.k8s.io", "kind": "pods"}
    ((path, sar),) = kube.created
    assert path == "/apis/authorization.k8s.io/v1/subjectaccessreviews"
    assert sar["spec"]["user"] == "eve"


async def test_middleware_allowed(secured) -> None:
    client, _, peer = secured
    peer["der"] = AGGREGATOR.der
    resp = await client.get(f"{C}/namespaces/default/pods/*/http_requests", headers={"X-Remote-User": "hpa"})
    assert resp.status == 200


@pytest.mark.parametrize("path", ["/healthz", "/livez", "/readyz"])
async def test_probes_need_no_credentials(secured, path: str) -> None:
    client, kube, _ = secured
    resp = await client.get(path)
    assert resp.status == 200 and await resp.text() == "ok"
    assert kube.created == []


async def test_metrics_needs_authn_and_nonresource_authz(secured) -> None:
    client, kube, peer = secured
    assert (await client.get("/metrics")).status == 401
    peer["der"] = ALICE_CERT.der
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert "hpakit_adapter_request_duration_seconds" in await resp.text()
    assert kube.created[-1][1]["spec"]["nonResourceAttributes"] == {"path": "/metrics", "verb": "get"}


async def test_metrics_public_when_asked() -> None:
    app = build_app(
        sample_provider(),
        authenticator=authn(),
        authorizer=AlwaysAllow(),
        metrics_public=True,
        peer_cert=lambda r: None,
    )
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/metrics")).status == 200
        assert (await client.get("/apis")).status == 401


async def test_readyz_503_until_provider_ready() -> None:
    provider = sample_provider()
    provider.ready = False
    async with TestClient(TestServer(build_app(provider))) as client:
        resp = await client.get("/readyz")
        assert resp.status == 503 and "first discovery pending" in await resp.text()
        provider.ready = True
        assert (await client.get("/readyz")).status == 200
