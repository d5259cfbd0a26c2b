"""The composition root: each part on its own, the exit stack's order, start-up failures."""

from __future__ import annotations

import argparse
import logging
import socket
import ssl
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest

from adapter import app
from adapter.apiserver.server import build_app
from adapter.cli import build_parser, validate_serve
from adapter.kube.mapper import StaticResourceMapper
from adapter.provider.prometheus.provider import PrometheusProvider
from adapter.provider.static import StaticProvider
from adapter.rules.config import load_config
from tests.support.adapter_pki import make_ca, make_leaf
from tests.support.adapter_support import FIXTURES, FakeLister, FakePrometheus


@pytest.fixture
def static_args(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> argparse.Namespace:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    cert, key = make_leaf(make_ca("ca"), "adapter", usage="server").write(tmp_path, "tls")
    return build_parser().parse_args(
        [
            "serve",
            "--tls-cert-file",
            str(cert),
            "--tls-private-key-file",
            str(key),
            "--provider",
            "static",
            "--authn-mode",
            "none",
            "--authz-mode",
            "always-allow",
            "--bind-address",
            "127.0.0.1",
            "--secure-port",
            "0",
        ]
    )


async def test_exit_stack_stops_in_reverse_and_survives_a_failing_stop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stopped: list[str] = []

    def stop(name: str, fail: bool = False):  # type: ignore[no-untyped-def]
        async def run() -> None:
            stopped.append(name)
            if fail:
                raise RuntimeError(f"{name} broke")

        return run

    with caplog.at_level(logging.ERROR):
        async with AsyncExitStack() as stack:
            app.on_exit(stack, stop("cluster"))
            app.on_exit(stack, stop("provider", fail=True))
            app.on_exit(stack, stop("server"))
    assert stopped == ["server", "provider", "cluster"]
    assert "error during shutdown" in caplog.text


async def test_parts_compose_without_a_cluster(static_args: argparse.Namespace) -> None:
    checked = validate_serve(static_args)
    tls = app.load_tls(static_args)
    async with AsyncExitStack() as stack:
        cluster = await app.connect_cluster(stack, static_args, required=checked.needs_cluster)
        assert cluster == app.Cluster()
        provider = app.make_provider(static_args, cluster)
        assert isinstance(provider, StaticProvider) and provider.metrics == ["static_metric"]
        authenticator, authorizer = await app.make_auth(stack, static_args, cluster, tls)
        server = await app.start_server(
            stack, static_args, build_app(provider, authenticator=authenticator, authorizer=authorizer), tls
        )
        host, port = server.bound[0]
        verify = ssl.create_default_context()
        verify.check_hostname = False
        verify.verify_mode = ssl.CERT_NONE
        async with httpx.AsyncClient(verify=verify) as client:
            resp = await client.get(f"https://{host}:{port}/apis/custom.metrics.k8s.io/v1beta2")
        assert resp.status_code == 200 and "static_metric" in resp.text
    with pytest.raises(httpx.ConnectError):  # the stack stopped the server
        async with httpx.AsyncClient(verify=verify) as client:
            await client.get(f"https://{host}:{port}/healthz")


async def test_port_in_use_is_a_usage_error(static_args: argparse.Namespace) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        static_args.secure_port = busy.getsockname()[1]
        with pytest.raises(app.UsageError, match=r"cannot listen on 127\.0\.0\.1"):
            await app.serve(validate_serve(static_args))


async def test_a_kubeconfig_that_does_not_load_is_a_usage_error(
    static_args: argparse.Namespace, tmp_path: Path
) -> None:
    bad = tmp_path / "kubeconfig"
    bad.write_text("not: a kubeconfig\n")
    static_args.kubeconfig = str(bad)
    async with AsyncExitStack() as stack:
        with pytest.raises(app.UsageError, match="kubeconfig"):
            await app.connect_cluster(stack, static_args, required=False)



async def test_resource_provider_follows_the_prometheus_config(static_args: argparse.Namespace) -> None:
    """metrics.k8s.io is served (and advertised) while the running config has resourceRules."""
    static = app.make_provider(static_args, app.Cluster())
    assert app.make_resource_provider(static) is None
    seed = load_config(FIXTURES / "seed-rules.yaml")
    prom = PrometheusProvider(seed, FakePrometheus().client(), StaticResourceMapper(), FakeLister())
    rp = app.make_resource_provider(prom)
    assert rp is not None and not rp.serves_resource_metrics()
    prom.config = load_config(FIXTURES / "resource-rules.yaml")  # what a config reload does
    assert rp.serves_resource_metrics()
    await prom.prom.aclose()
