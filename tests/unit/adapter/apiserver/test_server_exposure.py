"""What the adapter shows to the unauthenticated (issue 12, finding 4).

``/readyz`` is public (the kubelet probes it without credentials), so it says ok / not ok and
nothing else to anonymous callers; the reason (internal URLs, errors) goes to the log and to
authorized ``?verbose`` callers. ``--metrics-bind-address :PORT`` is plain HTTP and binds
loopback unless a host is given.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapter.apiserver.auth import Authenticator, AuthnConfig, SubjectAccessReviewer, TokenReviewer
from adapter.apiserver.server import AdapterServer, ServerSettings, TLSReloader, build_app
from tests.support.adapter_fakes import sample_provider
from tests.support.adapter_pki import make_ca, make_leaf

SECRET = "Prometheus http://prometheus-operated.monitoring.svc:9090 unreachable: connection refused"


class _Kube:
    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []

    async def get(self, path: str, params: Any = None) -> dict[str, Any]:
        raise AssertionError

    async def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.created.append(body)
        if path.endswith("/tokenreviews"):
            ok = body["spec"]["token"] == "ops-token"
            return {"status": {"authenticated": ok, "user": {"username": "ops"}}}
        return {"status": {"allowed": body["spec"]["user"] == "ops"}}


def _secured_app(kube: _Kube):  # type: ignore[no-untyped-def]
    provider = sample_provider()
    provider.ready = False
    provider.message = SECRET
    app = build_app(
        provider,
        authenticator=Authenticator(lambda: AuthnConfig(), tokens=TokenReviewer(kube)),
        authorizer=SubjectAccessReviewer(kube),
        peer_cert=lambda request: None,
    )
    return app, provider


async def test_readyz_hides_details_from_unauthenticated(caplog: pytest.LogCaptureFixture) -> None:
    kube = _Kube()
    app, provider = _secured_app(kube)
    async with TestClient(TestServer(app)) as client:
        with caplog.at_level(logging.WARNING):
            for path in ("/readyz", "/readyz?verbose"):
                resp = await client.get(path)
                text = await resp.text()
                assert resp.status == 503
                assert "prometheus" not in text.lower() and "connection refused" not in text
                assert "not ready" in text
        assert SECRET in caplog.text  # the reason is logged instead
        assert kube.created == []  # anonymous probes never call out
        provider.ready = True
        resp = await client.get("/readyz")
        assert resp.status == 200 and await resp.text() == "ok"


async def test_readyz_verbose_details_for_authorized_callers() -> None:
    kube = _Kube()
    app, _ = _secured_app(kube)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/readyz?verbose", headers={"Authorization": "Bearer ops-token"})
        assert resp.status == 503 and SECRET in await resp.text()
        resp = await client.get("/readyz?verbose", headers={"Authorization": "Bearer nope"})
        assert resp.status == 503 and SECRET not in await resp.text()


@pytest.mark.parametrize(("flag", "host"), [(":0", "127.0.0.1"), ("127.0.0.1:0", "127.0.0.1")])
async def test_metrics_bind_address_without_host_is_loopback(tmp_path: Path, flag: str, host: str) -> None:
    cert, key = make_leaf(make_ca("ca"), "adapter", usage="server").write(tmp_path, "tls")
    settings = ServerSettings(
        tls_cert_file=str(cert), tls_key_file=str(key), bind_address="127.0.0.1", secure_port=0,
        metrics_bind_address=flag,
    )
    server = AdapterServer(settings, build_app(sample_provider()), TLSReloader(str(cert), str(key)))
    await server.start()
    try:
        metrics_addresses = server._runners[-1].addresses
        assert [a[0] for a in metrics_addresses] == [host]
    finally:
        await server.stop()


def test_metrics_bind_address_help_says_loopback() -> None:
    from adapter.cli import build_parser

    serve = build_parser()._subparsers._group_actions[0].choices["serve"]  # type: ignore[union-attr]
    (action,) = [a for a in serve._actions if "--metrics-bind-address" in a.option_strings]
    assert "127.0.0.1" in (action.help or "") and "loopback" in (action.help or "")


async def test_metrics_reports_open_asyncio_tasks_at_scrape_time() -> None:
    """``hpakit_adapter_asyncio_tasks`` follows tasks that are started and that finish (the soak
    reads it to tell a task leak from a steady state)."""
    import asyncio

    from adapter.apiserver.server import metrics_only_app
    from tests.integration.adapter_cp_support import metric_sample

    async with TestClient(TestServer(metrics_only_app())) as client:

        async def scrape() -> float:
            return metric_sample(await (await client.get("/metrics")).text(), "hpakit_adapter_asyncio_tasks")

        before = await scrape()
        assert before >= 1  # at least the scrape's own handler task
        stop = asyncio.Event()
        extra = [asyncio.create_task(stop.wait()) for _ in range(7)]
        assert await scrape() == before + 7
        stop.set()
        await asyncio.gather(*extra)
        assert await scrape() == before
