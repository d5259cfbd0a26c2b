"""Certificate reload builds a fresh SSLContext (issue 12, finding 3).

Loading a new pair into the live context *adds* it next to the old one when the key type differs
(OpenSSL keeps one certificate per key type), so after an RSA -> ECDSA rotation a client that only
offers RSA kept being served the old, possibly revoked, certificate. Real certificates, real
handshakes on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509

from adapter.apiserver.server import TLSReloader
from tests.support.adapter_pki import make_ca, make_leaf

CA = make_ca("serving-ca")
CLIENT_CA = make_ca("client-ca")
HOSTS = ("127.0.0.1", "localhost")


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        await reader.read(1)
    writer.close()


@pytest.fixture
async def listener(tmp_path: Path) -> AsyncIterator[tuple[TLSReloader, int, Path]]:
    old = make_leaf(CA, "adapter-rsa", usage="server", hosts=HOSTS, key_type="rsa")
    cert, key = old.write(tmp_path, "serving")
    tls = TLSReloader(str(cert), str(key), client_ca_pems=[CLIENT_CA.cert_pem])
    server = await asyncio.start_server(_echo, "127.0.0.1", 0, ssl=tls.context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield tls, port, tmp_path
    finally:
        server.close()
        await server.wait_closed()


def _client(*, rsa_only: bool = False, ecdsa_only: bool = False) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # we only look at which certificate is presented
    if rsa_only or ecdsa_only:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2  # TLS 1.2 suites name the certificate's key type
        ctx.set_ciphers("ECDHE-RSA-AES128-GCM-SHA256" if rsa_only else "ECDHE-ECDSA-AES128-GCM-SHA256")
    return ctx


async def _presented(port: int, ctx: ssl.SSLContext) -> x509.Certificate:
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    return x509.load_der_x509_certificate(der)


def _rotate(directory: Path, new_key_type: str) -> x509.Certificate:
    new = make_leaf(CA, f"adapter-{new_key_type}", usage="server", hosts=HOSTS, key_type=new_key_type)
    (directory / "serving-key.pem").write_bytes(new.key_pem)
    (directory / "serving.pem").write_bytes(new.cert_pem)
    return new.cert


async def test_rsa_to_ecdsa_old_certificate_no_longer_served(listener) -> None:  # type: ignore[no-untyped-def]
    tls, port, directory = listener
    old = await _presented(port, _client(rsa_only=True))
    assert old.subject.rfc4514_string() == "CN=adapter-rsa"
    new = _rotate(directory, "ec")
    assert tls.reload_if_changed() is True
    assert (await _presented(port, _client())).serial_number == new.serial_number
    assert (await _presented(port, _client(ecdsa_only=True))).serial_number == new.serial_number
    # A client that only accepts RSA must not get the replaced certificate any more.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        got = await _presented(port, _client(rsa_only=True))
        assert got.serial_number != old.serial_number, "old RSA certificate still served after rotation"
        raise ConnectionError("served the new certificate")


async def test_ecdsa_to_rsa_and_back(listener) -> None:  # type: ignore[no-untyped-def]
    tls, port, directory = listener
    ec_cert = _rotate(directory, "ec")
    assert tls.reload_if_changed() is True
    rsa_cert = _rotate(directory, "rsa")
    assert tls.reload_if_changed() is True
    assert (await _presented(port, _client())).serial_number == rsa_cert.serial_number
    with pytest.raises((ssl.SSLError, ConnectionError)):
        got = await _presented(port, _client(ecdsa_only=True))
        assert got.serial_number != ec_cert.serial_number, "old ECDSA certificate still served after rotation"
        raise ConnectionError("served the new certificate")


async def test_client_cas_and_verify_mode_survive_reload(listener) -> None:  # type: ignore[no-untyped-def]
    tls, _, directory = listener
    _rotate(directory, "ec")
    assert tls.reload_if_changed() is True
    tls.add_client_cas([make_ca("late-ca").cert_pem])
    client = make_leaf(CLIENT_CA, "alice")
    cert, key = client.write(directory, "client")
    ctx = _client()
    ctx.load_cert_chain(str(cert), str(key))
    seen: list[bytes | None] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(writer.get_extra_info("ssl_object").getpeercert(binary_form=True))
        writer.close()

    server = await asyncio.start_server(record, "127.0.0.1", 0, ssl=tls.context)
    try:
        p = server.sockets[0].getsockname()[1]
        _, w = await asyncio.open_connection("127.0.0.1", p, ssl=ctx, server_hostname="localhost")
        for _ in range(50):
            if seen:
                break
            await asyncio.sleep(0.02)
        w.close()
    finally:
        server.close()
        await server.wait_closed()
    assert seen and seen[0] == client.der  # the client certificate was requested and verified
