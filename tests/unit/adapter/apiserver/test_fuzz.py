"""Property test: whatever path, selector, query or identity headers arrive, the server answers with
a well-formed response and one of the expected codes -- never a 500, never a traceback, never a crash."""

from __future__ import annotations

import asyncio
import threading
import urllib.parse
from collections.abc import Iterator

import httpx
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapter.apiserver.auth import Attributes, Authenticator, AuthnConfig, Decision, RequestHeaderConfig
from adapter.apiserver.server import build_app
from adapter.errors import BackendUnavailable
from tests.support.adapter_fakes import FakeProvider, sample_provider
from tests.support.adapter_pki import make_ca, make_leaf

FRONT_CA = make_ca("fuzz-front-proxy-ca")
AGGREGATOR = make_leaf(FRONT_CA, "aggregator")
ALLOWED = {200, 400, 401, 403, 404, 503}


class FlakyProvider(FakeProvider):
    """Fails like a Prometheus outage for namespace ``down``."""

    async def get_metric_by_selector(self, namespace, selector, info, metric_selector):  # type: ignore[override]
        if namespace == "down":
            raise BackendUnavailable("Prometheus is down")
        return await super().get_metric_by_selector(namespace, selector, info, metric_selector)


class NameAuthorizer:
    async def authorize(self, attrs: Attributes) -> Decision:
        return Decision("deny" not in attrs.user.name, "denied by test")


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    base = sample_provider()
    provider = FlakyProvider(
        **{f: getattr(base, f) for f in ("infos", "external_infos", "values", "objects", "external_values")}
    )
    cfg = AuthnConfig(
        requestheader=RequestHeaderConfig(ca_certs=(FRONT_CA.cert,), allowed_names=("aggregator",))
    )
    app = build_app(
        provider,
        authenticator=Authenticator(lambda: cfg, allow_anonymous=False),
        authorizer=NameAuthorizer(),
        peer_cert=lambda request: AGGREGATOR.der if request.headers.get("X-Test-Cert") == "front" else None,
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner = web.AppRunner(app, access_log=None)

    async def start() -> int:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    port = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    yield f"http://127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


KNOWN = [
    "apis",
    "custom.metrics.k8s.io",
    "external.metrics.k8s.io",
    "v1beta1",
    "v1beta2",
    "namespaces",
    "default",
    "down",
    "metrics",
    "pods",
    "pod",
    "services",
    "deployments.apps",
    "nodes",
    "*",
    "web-1",
    "web",
    "node-a",
    "http_requests",
    "total_hit_count",
    "queue_depth",
    "node_load",
    "queue_messages",
    "global_rate",
    "openapi",
    "v2",
    "v3",
    "healthz",
    "readyz",
    "livez",
    "",
    "..",
    ".",
]
segment = st.one_of(st.sampled_from(KNOWN), st.text(min_size=0, max_size=12))
selector_text = st.one_of(
    st.sampled_from(
        ["", "app=web", "app in (web,db)", "!tier", "tier", "a>1", "a,,b", "(", "a in ()", "x=y=z"]
    ),
    st.text(max_size=40),
)
headers = st.fixed_dictionaries(
    {},
    optional={
        "X-Test-Cert": st.sampled_from(["front", "none"]),
        "X-Remote-User": st.sampled_from(["hpa", "deny-me", "", "system:anonymous"]),
        "X-Remote-Group": st.sampled_from(["system:masters", "g"]),
        "Authorization": st.sampled_from(["Bearer abc", "Basic xyz", "Bearer"]),
    },
)


def _path(segments: list[str]) -> str:
    return "/" + "/".join(urllib.parse.quote(s, safe="*.:") for s in segments)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    segments=st.lists(segment, min_size=0, max_size=9),
    label=st.none() | selector_text,
    metric_label=st.none() | selector_text,
    extra=st.dictionaries(
        st.sampled_from(["watch", "pretty", "limit", "labelSelector"]), st.text(max_size=8), max_size=2
    ),
    hdrs=headers,
)
def test_any_request_gets_an_expected_code(
    base_url: str,
    http: httpx.Client,
    segments: list[str],
    label: str | None,
    metric_label: str | None,
    extra: dict[str, str],
    hdrs: dict[str, str],
) -> None:
    params = dict(extra)
    if label is not None:
        params["labelSelector"] = label
    if metric_label is not None:
        params["metricLabelSelector"] = metric_label
    clean = {k: v for k, v in hdrs.items() if v.isprintable()}
    resp = http.get(base_url + _path(segments), params=params, headers=clean)
    assert resp.status_code in ALLOWED, (resp.status_code, resp.text)
    assert "Traceback" not in resp.text
    if resp.status_code != 200 and resp.headers.get("content-type", "").startswith("application/json"):
        body = resp.json()
        assert body["kind"] == "Status" and body["code"] == resp.status_code and body["status"] == "Failure"


def test_prometheus_outage_is_503(base_url: str, http: httpx.Client) -> None:
    resp = http.get(
        base_url + "/apis/custom.metrics.k8s.io/v1beta2/namespaces/down/pods/*/http_requests",
        headers={"X-Test-Cert": "front", "X-Remote-User": "hpa"},
    )
    assert resp.status_code == 503 and resp.json()["reason"] == "ServiceUnavailable"
