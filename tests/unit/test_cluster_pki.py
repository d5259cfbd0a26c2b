"""The local cluster's etcd PKI (issue 12): a CA of its own, loopback serving certs, client certs
that only it signs. Real cfssl (ECDSA keys: each call is fast)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID

from harness.certs import CertPair
from harness.cluster.pki import PKI, ensure_pki

pytestmark = pytest.mark.skipif(
    not (
        shutil.which(os.environ.get("CFSSL", "cfssl"))
        and shutil.which(os.environ.get("CFSSLJSON", "cfssljson"))
    ),
    reason="cfssl/cfssljson not installed (Debian: apt-get install golang-cfssl)",
)

SERVER, CLIENT = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH


def _cert(pair: CertPair) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pair.cert.read_bytes())


def _ekus(pair: CertPair) -> set[x509.ObjectIdentifier]:
    return set(_cert(pair).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def _signed_by(pair: CertPair, ca: CertPair) -> bool:
    try:
        _cert(pair).verify_directly_issued_by(_cert(ca))
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def test_etcd_has_its_own_ca_and_loopback_certificates(tmp_path: Path) -> None:
    def make() -> PKI:
        return ensure_pki(
            tmp_path / "pki",
            cluster="t",
            server="https://127.0.0.1:6443",
            apiserver_ips=[],
            node_name=None,
            node_ip=None,
        )

    pki = make()
    e = pki.etcd
    assert _cert(e.ca).subject != _cert(pki.ca).subject
    for pair in (e.server, e.peer, e.apiserver_client, e.healthcheck_client):
        assert _signed_by(pair, e.ca) and not _signed_by(pair, pki.ca), pair.cert.name
    # The cluster CA's clients (admin: system:masters) are no etcd clients.
    assert not _signed_by(pki.admin, e.ca)
    for pair in (e.server, e.peer):
        sans = _cert(pair).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = {str(v) for v in sans.get_values_for_type(x509.IPAddress)}
        assert names | set(sans.get_values_for_type(x509.DNSName)) == {"127.0.0.1", "localhost"}
    # etcd's HTTP gateway presents the serving cert to its own gRPC port: client auth too.
    assert _ekus(e.server) == {SERVER, CLIENT}
    assert _ekus(e.peer) == {SERVER, CLIENT}
    assert _ekus(e.apiserver_client) == {CLIENT} and _ekus(e.healthcheck_client) == {CLIENT}
    # A second call keeps every file (kube-apiserver and etcd keep running with them).
    before = {p: p.read_bytes() for p in (tmp_path / "pki").glob("etcd*.pem")}
    again = make()
    assert again.etcd == e
    assert {p: p.read_bytes() for p in before} == before
