"""The real HTTPS listener in-process: handshakes, client certificates, certificate hot reload."""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509

from adapter import telemetry
from adapter.apiserver.auth import AlwaysAllow, Authenticator, AuthnConfig, RequestHeaderConfig
from adapter.apiserver.server import AdapterServer, ServerSettings, TLSReloader, build_app, split_host_port
from tests.support.adapter_fakes import sample_provider
from tests.support.adapter_pki import Issued, make_ca, make_leaf

SERVING_CA = make_ca("serving-ca")
FRONT_CA = make_ca("front-proxy-ca")
OTHER_CA = make_ca("other-ca")


@dataclass
class Running:
    server: AdapterServer
    tls: TLSReloader
    port: int
    cert_file: Path
    key_file: Path
    ca_file: Path


def _write_serving(tmp: Path, issued: Issued) -> tuple[Path, Path]:
    return issued.write(tmp, "serving")


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    serving = make_leaf(SERVING_CA, "adapter", usage="server", hosts=("127.0.0.1", "localhost"))
    cert, key = _write_serving(tmp_path, serving)
    ca_file = tmp_path / "serving-ca.pem"
    ca_file.write_bytes(SERVING_CA.cert_pem)
    cfg = AuthnConfig(
        requestheader=RequestHeaderConfig(ca_certs=(FRONT_CA.cert,), allowed_names=("aggregator",))
    )
    tls = TLSReloader(str(cert), str(key), client_ca_pems=cfg.ca_pems())
    app = build_app(
        sample_provider(),
        authenticator=Authenticator(lambda: cfg, allow_anonymous=False),
        authorizer=AlwaysAllow(),
    )
    settings = ServerSettings(
        tls_cert_file=str(cert),
        tls_key_file=str(key),
        bind_address="127.0.0.1",
        secure_port=0,
        cert_check_interval=0.1,
    )
    server = AdapterServer(settings, app, tls)
    await server.start()
    try:
        yield Running(server, tls, server.bound[0][1], cert, key, ca_file)
    finally:
        await server.stop()


def client_context(ca_file: Path, client: Issued | None = None, tmp: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca_file))
    if client is not None:
        assert tmp is not None
        cert, key = client.write(tmp, "client")
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


async def fetch(
    r: Running, path: str, ctx: ssl.SSLContext, headers: dict | None = None
) -> tuple[int, dict | str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"https://127.0.0.1:{r.port}{path}", ssl=ctx, headers=headers) as resp,
    ):
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, body


async def served_cert(r: Running) -> x509.Certificate:
    ctx = ssl.create_default_context(cafile=str(r.ca_file))
    _, writer = await asyncio.open_connection("127.0.0.1", r.port, ssl=ctx, server_hostname="localhost")
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    return x509.load_der_x509_certificate(der)


async def test_https_verified_and_anonymous_refused(running: Running, tmp_path: Path) -> None:
    status, body = await fetch(running, "/apis", client_context(running.ca_file))
    assert status == 401 and isinstance(body, dict) and body["reason"] == "Unauthorized"
    status, body = await fetch(running, "/readyz", client_context(running.ca_file))
    assert (status, body) == (200, "ok")


async def test_front_proxy_cert_headers_used(running: Running, tmp_path: Path) -> None:
    ctx = client_context(running.ca_file, make_leaf(FRONT_CA, "aggregator"), tmp_path)
    status, _ = await fetch(
        running,
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/http_requests",
        ctx,
        {"X-Remote-User": "system:serviceaccount:kube-system:horizontal-pod-autoscaler"},
    )
    assert status == 200


async def test_front_proxy_cert_with_wrong_cn_refused(running: Running, tmp_path: Path) -> None:
    ctx = client_context(running.ca_file, make_leaf(FRONT_CA, "intruder"), tmp_path)
    status, body = await fetch(running, "/apis", ctx, {"X-Remote-User": "admin"})
    assert status == 401 and isinstance(body, dict) and "intruder" in body["message"]


async def test_untrusted_client_cert_never_authenticates(running: Running, tmp_path: Path) -> None:
    ctx = client_context(running.ca_file, make_leaf(OTHER_CA, "aggregator"), tmp_path)
    try:
        status, _ = await fetch(running, "/apis", ctx, {"X-Remote-User": "admin"})
    except (aiohttp.ClientError, ssl.SSLError, ConnectionError):
        return  # the handshake itself refused the unknown CA
    assert status == 401


async def test_certificate_hot_reload(running: Running) -> None:
    first = await served_cert(running)
    before = (
        telemetry.REGISTRY.get_sample_value(
            "hpakit_adapter_config_reloads_total", {"kind": "certs", "outcome": "success"}
        )
        or 0.0
    )
    new = make_leaf(SERVING_CA, "adapter-rotated", usage="server", hosts=("127.0.0.1", "localhost"))
    tmp_cert = running.cert_file.with_suffix(".new")
    tmp_key = running.key_file.with_suffix(".new")
    tmp_cert.write_bytes(new.cert_pem)
    tmp_key.write_bytes(new.key_pem)
    os.replace(tmp_key, running.key_file)
    os.replace(tmp_cert, running.cert_file)
    for _ in range(50):
        second = await served_cert(running)
        if second.serial_number != first.serial_number:
            break
        await asyncio.sleep(0.1)
    assert second.serial_number == new.cert.serial_number
    after = telemetry.REGISTRY.get_sample_value(
        "hpakit_adapter_config_reloads_total", {"kind": "certs", "outcome": "success"}
    )
    assert after is not None and after >= before + 1


async def test_mismatched_pair_keeps_old_cert(running: Running) -> None:
    first = await served_cert(running)
    other = make_leaf(SERVING_CA, "x", usage="server", hosts=("127.0.0.1", "localhost"))
    running.cert_file.write_bytes(other.cert_pem)  # key not rotated yet: a half-done rotation
    assert running.tls.reload_if_changed() is False
    assert (await served_cert(running)).serial_number == first.serial_number
    running.key_file.write_bytes(other.key_pem)
    assert running.tls.reload_if_changed() is True
    assert (await served_cert(running)).serial_number == other.cert.serial_number


def test_bad_pair_fails_at_startup(tmp_path: Path) -> None:
    a = make_leaf(SERVING_CA, "a", usage="server")
    b = make_leaf(SERVING_CA, "b", usage="server")
    cert, _ = a.write(tmp_path, "a")
    _, key = b.write(tmp_path, "b")
    with pytest.raises(ssl.SSLError):
        TLSReloader(str(cert), str(key))


@pytest.mark.parametrize(
    ("text", "expected"),
    [(":8080", ("0.0.0.0", 8080)), ("127.0.0.1:9", ("127.0.0.1", 9)), ("[::1]:443", ("::1", 443))],
)
def test_split_host_port(text: str, expected: tuple[str, int]) -> None:
    assert split_host_port(text) == expected


@pytest.mark.parametrize("text", ["8080", "host:", "host:99999", "host:x"])
def test_split_host_port_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        split_host_port(text)
