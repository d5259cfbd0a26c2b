"""Tests for harness.certs against the real cfssl/cfssljson binaries (ECDSA keys, so each call is fast)."""

from __future__ import annotations

import base64
import datetime as dt
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from harness import certs
from harness.certs import (
    CertError,
    CertPair,
    ca_bundle,
    ensure_ca,
    issue_cert,
    service_hosts,
    serving_bundle,
    tls_secret_manifest,
    write_kubeconfig,
)

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(
    not (
        shutil.which(os.environ.get("CFSSL", "cfssl"))
        and shutil.which(os.environ.get("CFSSLJSON", "cfssljson"))
    ),
    reason="cfssl/cfssljson not installed (Debian: apt-get install golang-cfssl)",
)

SVC, NS = "custom-metrics-apiserver", "monitoring"
FOUR = [
    "custom-metrics-apiserver",
    "custom-metrics-apiserver.monitoring",
    "custom-metrics-apiserver.monitoring.svc",
    "custom-metrics-apiserver.monitoring.svc.cluster.local",
]


def load(pair: CertPair) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pair.cert_pem())


def sans(cert: x509.Certificate) -> tuple[list[str], list[str]]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return ext.get_values_for_type(x509.DNSName), [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)]


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Bytes and mtime of every file, to prove that an idempotent call touched nothing."""
    return {
        p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(directory.iterdir()) if p.is_file()
    }


def openssl_verify(
    ca: CertPair, leaf: CertPair, purpose: str | None = None
) -> subprocess.CompletedProcess[str]:
    argv = ["openssl", "verify", "-CAfile", str(ca.cert)]
    if purpose:
        argv += ["-purpose", purpose]
    return subprocess.run([*argv, str(leaf.cert)], capture_output=True, text=True, check=False)


@pytest.fixture
def ca(tmp_path: Path) -> CertPair:
    return ensure_ca(tmp_path)


# ------------------------------------------------------------------------------------------- content


def test_serving_bundle_chain_verifies(tmp_path: Path) -> None:
    result = serving_bundle(tmp_path, SVC, NS)
    ca_pair, serving = result["ca"], result["serving"]
    assert isinstance(ca_pair, CertPair) and isinstance(serving, CertPair)
    load(serving).verify_directly_issued_by(load(ca_pair))
    if shutil.which("openssl"):
        proc = openssl_verify(ca_pair, serving, "sslserver")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout.strip().endswith(": OK")
    assert load(serving).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == f"{SVC}.{NS}.svc"
    assert result["ca_bundle"] == base64.b64encode(ca_pair.cert_pem()).decode()
    assert (tmp_path / "cabundle.txt").read_text().strip() == result["ca_bundle"]


def test_service_hosts() -> None:
    assert service_hosts(SVC, NS) == FOUR
    assert service_hosts("a", "b", "example.org")[-1] == "a.b.svc.example.org"


def test_sans_are_exactly_the_service_names(tmp_path: Path) -> None:
    result = serving_bundle(tmp_path, SVC, NS)
    dns, ips = sans(load(result["serving"]))  # type: ignore[arg-type]
    assert sorted(dns) == sorted(FOUR)
    assert ips == []


def test_sans_with_extra_dns_and_ip_hosts(tmp_path: Path) -> None:
    result = serving_bundle(
        tmp_path, SVC, NS, extra_hosts=["localhost", "127.0.0.1", "::1", "*.Example.COM", "localhost"]
    )
    dns, ips = sans(load(result["serving"]))  # type: ignore[arg-type]
    assert sorted(dns) == sorted([*FOUR, "localhost", "*.example.com"])
    assert sorted(ips) == sorted(["127.0.0.1", "::1"])


@pytest.mark.parametrize(
    ("usage", "ekus"),
    [
        ("server", {ExtendedKeyUsageOID.SERVER_AUTH}),
        ("client", {ExtendedKeyUsageOID.CLIENT_AUTH}),
        ("both", {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}),
    ],
)
def test_key_usages(
    tmp_path: Path, ca: CertPair, usage: certs.Usage, ekus: set[x509.ObjectIdentifier]
) -> None:
    pair = issue_cert(tmp_path, "leaf", ca, "leaf", hosts=["leaf.example"], usage=usage)
    cert = load(pair)
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature and ku.value.key_encipherment
    assert not ku.value.key_cert_sign
    assert set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == ekus
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    purpose = {"server": "sslserver", "client": "sslclient"}.get(usage)
    if purpose and shutil.which("openssl"):
        assert openssl_verify(ca, pair, purpose).returncode == 0
        other = "sslclient" if usage == "server" else "sslserver"
        assert openssl_verify(ca, pair, other).returncode != 0


def test_ca_is_a_ca(ca: CertPair) -> None:
    cert = load(ca)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "hpa-kit-ca"
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)


def test_client_cert_groups_for_kubernetes(tmp_path: Path, ca: CertPair) -> None:
    pair = issue_cert(
        tmp_path, "admin", ca, "kubernetes-admin", organizations=["system:masters", "hpa-kit"], usage="client"
    )
    cert = load(pair)
    orgs = sorted(a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
    assert orgs == ["hpa-kit", "system:masters"]
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)


def test_expiry_within_requested_hours(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    ca_pair = ensure_ca(tmp_path, expiry_hours=1000)
    leaf = issue_cert(tmp_path, "leaf", ca_pair, "leaf", hosts=["a.b"], expiry_hours=48)
    ca_end, leaf_end = load(ca_pair).not_valid_after_utc, load(leaf).not_valid_after_utc
    assert now + dt.timedelta(hours=999) < ca_end <= now + dt.timedelta(hours=1000, minutes=1)
    assert now + dt.timedelta(hours=47) < leaf_end <= now + dt.timedelta(hours=48, minutes=1)
    assert load(leaf).not_valid_before_utc <= now


def test_private_keys_are_0600(tmp_path: Path) -> None:
    result = serving_bundle(tmp_path, SVC, NS)
    for pair in (result["ca"], result["serving"]):
        assert isinstance(pair, CertPair)
        assert stat.S_IMODE(pair.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(result["secret"]).stat().st_mode) == 0o600  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------- idempotence


def test_idempotent_second_call_changes_nothing(tmp_path: Path) -> None:
    first = serving_bundle(tmp_path, SVC, NS, extra_hosts=["127.0.0.1"])
    before = snapshot(tmp_path)
    second = serving_bundle(tmp_path, SVC, NS, extra_hosts=["127.0.0.1"])
    assert second == first
    assert snapshot(tmp_path) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cfssl-")]  # no leftover scratch dirs


def test_ensure_ca_and_issue_cert_idempotent(tmp_path: Path) -> None:
    ca1 = ensure_ca(tmp_path, "front-proxy-ca", "front-proxy-ca")
    c1 = issue_cert(tmp_path, "fp-client", ca1, "front-proxy-client", usage="client", organizations=["x"])
    before = snapshot(tmp_path)
    assert ensure_ca(tmp_path, "front-proxy-ca", "front-proxy-ca") == ca1
    assert (
        issue_cert(tmp_path, "fp-client", ca1, "front-proxy-client", usage="client", organizations=["x"])
        == c1
    )
    assert snapshot(tmp_path) == before


def test_rotate_ca_reissues_serving_cert(tmp_path: Path) -> None:
    first = serving_bundle(tmp_path, SVC, NS)
    old_ca, old_serving = first["ca"], first["serving"]
    assert isinstance(old_ca, CertPair) and isinstance(old_serving, CertPair)
    old_ca_pem, old_ca_cert, old_leaf_pem = old_ca.cert_pem(), load(old_ca), old_serving.cert_pem()
    second = serving_bundle(tmp_path, SVC, NS, rotate_ca=True)
    new_ca, new_serving = second["ca"], second["serving"]
    assert isinstance(new_ca, CertPair) and isinstance(new_serving, CertPair)
    assert new_ca.cert_pem() != old_ca_pem
    assert new_serving.cert_pem() != old_leaf_pem
    load(new_serving).verify_directly_issued_by(load(new_ca))
    with pytest.raises(Exception):  # noqa: B017 - InvalidSignature or ValueError depending on key type
        load(new_serving).verify_directly_issued_by(old_ca_cert)
    assert second["ca_bundle"] != first["ca_bundle"]
    secret = yaml.safe_load(Path(second["secret"]).read_text())  # type: ignore[arg-type]
    assert base64.b64decode(secret["data"]["ca.crt"]) == new_ca.cert_pem()


def test_ensure_ca_rotate_flag(tmp_path: Path) -> None:
    a = ensure_ca(tmp_path).cert_pem()
    assert ensure_ca(tmp_path).cert_pem() == a
    assert ensure_ca(tmp_path, rotate=True).cert_pem() != a


def test_reissue_when_sans_change(tmp_path: Path, ca: CertPair) -> None:
    p1 = issue_cert(tmp_path, "leaf", ca, "leaf", hosts=["a.example"])
    pem1 = p1.cert_pem()
    p2 = issue_cert(tmp_path, "leaf", ca, "leaf", hosts=["a.example", "10.1.2.3"])
    assert p2.cert_pem() != pem1
    assert sans(load(p2)) == (["a.example"], ["10.1.2.3"])
    # Order and case of hosts do not count as a change.
    pem2 = p2.cert_pem()
    assert issue_cert(tmp_path, "leaf", ca, "leaf", hosts=["10.1.2.3", "A.Example"]).cert_pem() == pem2


@pytest.mark.parametrize(
    "change",
    [
        {"common_name": "other"},
        {"organizations": ["system:masters"]},
        {"usage": "both"},
        {"reissue": True},
    ],
)
def test_reissue_on_other_changes(tmp_path: Path, ca: CertPair, change: dict[str, object]) -> None:
    args: dict[str, object] = {"common_name": "leaf", "hosts": ["a.example"]}
    pem = issue_cert(tmp_path, "leaf", ca, **args).cert_pem()  # type: ignore[arg-type]
    args.update(change)
    assert issue_cert(tmp_path, "leaf", ca, **args).cert_pem() != pem  # type: ignore[arg-type]


def test_rsa_keys_and_switching_algorithm_reissues(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    ca_pair = ensure_ca(tmp_path, key_algo="rsa")
    assert isinstance(load(ca_pair).public_key(), rsa.RSAPublicKey)
    leaf = issue_cert(tmp_path, "leaf", ca_pair, "leaf", hosts=["a.example"], key_algo="rsa")
    assert isinstance(load(leaf).public_key(), rsa.RSAPublicKey)
    load(leaf).verify_directly_issued_by(load(ca_pair))
    ec_leaf = issue_cert(tmp_path, "leaf", ca_pair, "leaf", hosts=["a.example"])
    assert isinstance(load(ec_leaf).public_key(), ec.EllipticCurvePublicKey)


def test_extra_hosts_as_a_single_string(tmp_path: Path) -> None:
    result = serving_bundle(tmp_path, SVC, NS, extra_hosts="localhost")
    assert "localhost" in sans(load(result["serving"]))[0]  # type: ignore[arg-type]


def test_reissue_when_signed_by_another_ca(tmp_path: Path) -> None:
    ca1 = ensure_ca(tmp_path, "ca1", "one")
    ca2 = ensure_ca(tmp_path, "ca2", "two")
    pem = issue_cert(tmp_path, "leaf", ca1, "leaf").cert_pem()
    leaf = issue_cert(tmp_path, "leaf", ca2, "leaf")
    assert leaf.cert_pem() != pem
    load(leaf).verify_directly_issued_by(load(ca2))


def test_expiring_certs_are_replaced(tmp_path: Path) -> None:
    short_ca = ensure_ca(tmp_path, expiry_hours=24 * 10)  # ends within 30 days of a 10-year request
    pem = short_ca.cert_pem()
    assert ensure_ca(tmp_path, expiry_hours=24 * 10).cert_pem() == pem  # fine for what was asked
    ca_pair = ensure_ca(tmp_path)
    assert ca_pair.cert_pem() != pem
    leaf = issue_cert(tmp_path, "leaf", ca_pair, "leaf", expiry_hours=24 * 20)
    leaf_pem = leaf.cert_pem()
    assert issue_cert(tmp_path, "leaf", ca_pair, "leaf").cert_pem() != leaf_pem


def test_broken_ca_is_regenerated(tmp_path: Path) -> None:
    ca_pair = ensure_ca(tmp_path)
    other = ensure_ca(tmp_path / "other")
    ca_pair.key.write_bytes(other.key_pem())  # key no longer matches the certificate
    fixed = ensure_ca(tmp_path)
    assert fixed.cert_pem() != other.cert_pem()
    assert certs._valid_ca(fixed, 87600)
    fixed.cert.write_text("garbage")
    assert certs._valid_ca(ensure_ca(tmp_path), 87600)


def test_non_ca_is_rejected_as_issuer(tmp_path: Path, ca: CertPair) -> None:
    leaf = issue_cert(tmp_path, "leaf", ca, "leaf")
    with pytest.raises(CertError, match="not a CA certificate"):
        issue_cert(tmp_path, "x", leaf, "x")
    with pytest.raises(CertError, match="would overwrite the CA"):
        issue_cert(tmp_path, "ca", ca, "x")


# ------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "bad",
    [
        "bad_host",
        "a..b",
        "-a.example",
        "a-.example",
        "foo.*.example",
        "*",
        "*.",
        "a" * 64,
        "10.0.0.256",
        "",
        " ",
        "x.example.",
        "a b",
    ],
)
def test_bad_san_is_rejected_before_anything_is_written(tmp_path: Path, bad: str) -> None:
    out = tmp_path / "out"
    with pytest.raises(CertError) as info:
        serving_bundle(out, SVC, NS, extra_hosts=[bad])
    assert repr(bad) in str(info.value)
    assert "\n" not in str(info.value)
    assert not out.exists()


@pytest.mark.parametrize(
    ("good", "normalised"),
    [
        ("*.example.com", "*.example.com"),
        ("LocalHost", "localhost"),
        ("::1", "::1"),
        ("fd00:0::1", "fd00::1"),
        ("10.96.0.1", "10.96.0.1"),
        ("a" * 63 + ".x", "a" * 63 + ".x"),
    ],
)
def test_good_sans(good: str, normalised: str) -> None:
    assert certs.validate_host(good) == normalised


def test_invalid_arguments(tmp_path: Path, ca: CertPair) -> None:
    with pytest.raises(CertError, match="usage"):
        issue_cert(tmp_path, "x", ca, "x", usage="peer")  # type: ignore[arg-type]
    with pytest.raises(CertError, match="expiry_hours"):
        issue_cert(tmp_path, "x", ca, "x", expiry_hours=0)
    with pytest.raises(CertError, match="file name"):
        issue_cert(tmp_path, "../x", ca, "x")
    with pytest.raises(CertError, match="common name"):
        issue_cert(tmp_path, "x", ca, "")


def test_missing_cfssl_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CFSSL", raising=False)
    monkeypatch.delenv("CFSSLJSON", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(CertError) as info:
        ensure_ca(tmp_path / "out")
    assert str(info.value) == (
        "cfssl not found on PATH: install it (Debian: apt-get install golang-cfssl) "
        "or set CFSSL=/path/to/cfssl"
    )
    assert not (tmp_path / "out" / "ca.pem").exists()


def test_missing_cfssljson_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfssl = shutil.which("cfssl")
    assert cfssl
    monkeypatch.setenv("CFSSL", cfssl)
    monkeypatch.delenv("CFSSLJSON", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(CertError, match=r"cfssljson not found on PATH: .* set CFSSLJSON=/path/to/cfssljson"):
        ensure_ca(tmp_path / "out")


def test_cfssl_env_override_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = shutil.which("cfssl")
    log = tmp_path / "calls.log"
    wrapper = tmp_path / "my-cfssl"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("CFSSL", str(wrapper))
    ensure_ca(tmp_path / "out")
    assert "gencert -initca" in log.read_text()
    monkeypatch.setenv("CFSSL", str(tmp_path / "nope"))
    with pytest.raises(CertError, match=r"CFSSL=.*nope is not an executable"):
        ensure_ca(tmp_path / "out2")


def test_cfssl_failure_keeps_good_pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ca: CertPair) -> None:
    leaf = issue_cert(tmp_path, "leaf", ca, "leaf", hosts=["a.example"])
    before = snapshot(tmp_path)
    failing = tmp_path / "bin" / "cfssl"
    failing.parent.mkdir()
    failing.write_text(
        '#!/bin/sh\necho "[INFO] starting" >&2\necho "open ca.pem: permission denied" >&2\nexit 1\n'
    )
    failing.chmod(0o755)
    monkeypatch.setenv("CFSSL", str(failing))
    with pytest.raises(CertError) as info:
        issue_cert(tmp_path, "leaf", ca, "leaf", hosts=["a.example"], reissue=True)
    assert str(info.value) == "cfssl gencert failed (exit 1): open ca.pem: permission denied"
    assert snapshot(tmp_path) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".cfssl-")]
    load(leaf).verify_directly_issued_by(load(ca))


def test_real_cfssl_error_is_reported(tmp_path: Path) -> None:
    ca_pair = ensure_ca(tmp_path)
    broken = CertPair(cert=ca_pair.cert, key=tmp_path / "missing-key.pem")
    broken.key.write_text("not a key")
    with pytest.raises(CertError, match=r"^cfssl gencert failed \(exit 1\): "):
        issue_cert(tmp_path, "leaf", broken, "leaf")
    assert not (tmp_path / "leaf.pem").exists()


def test_unwritable_output_dir(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # root ignores directory permissions, so provoke the error with a path below a regular file.
        blocker = tmp_path / "file"
        blocker.write_text("x")
        out = blocker / "certs"
    else:
        out = tmp_path / "ro"
        out.mkdir()
        out.chmod(0o500)
    with pytest.raises(CertError) as info:
        ensure_ca(out)
    msg = str(info.value)
    assert str(out) in msg and "permissions" in msg and "--out" in msg


# ------------------------------------------------------------------------------------- manifests etc.


def test_tls_secret_manifest_shape(tmp_path: Path, ca: CertPair) -> None:
    leaf = issue_cert(tmp_path, "leaf", ca, "leaf")
    secret = tls_secret_manifest("adapter-tls", NS, leaf, ca)
    assert secret["apiVersion"] == "v1" and secret["kind"] == "Secret"
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"] == {"name": "adapter-tls", "namespace": NS}
    assert set(secret["data"]) == {"tls.crt", "tls.key", "ca.crt"}
    assert base64.b64decode(secret["data"]["tls.crt"]) == leaf.cert_pem()
    assert base64.b64decode(secret["data"]["tls.key"]) == leaf.key_pem()
    assert base64.b64decode(secret["data"]["ca.crt"]) == ca.cert_pem()
    assert set(tls_secret_manifest("x", "y", leaf)["data"]) == {"tls.crt", "tls.key"}


def test_serving_bundle_secret_file(tmp_path: Path) -> None:
    result = serving_bundle(tmp_path, SVC, NS)
    secret = yaml.safe_load(Path(result["secret"]).read_text())  # type: ignore[arg-type]
    assert secret["metadata"] == {"name": f"{SVC}-tls", "namespace": NS}
    assert secret == tls_secret_manifest(f"{SVC}-tls", NS, result["serving"], result["ca"])  # type: ignore[arg-type]
    assert ca_bundle(result["ca"]) == result["ca_bundle"]  # type: ignore[arg-type]


def test_write_kubeconfig(tmp_path: Path, ca: CertPair) -> None:
    admin = issue_cert(
        tmp_path, "admin", ca, "kubernetes-admin", organizations=["system:masters"], usage="client"
    )
    path = write_kubeconfig(
        tmp_path / "kube" / "admin.kubeconfig", server="https://127.0.0.1:6443", ca=ca, client=admin
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = yaml.safe_load(path.read_text())
    assert doc["current-context"] == "admin@hpa-kit"
    cluster = doc["clusters"][0]["cluster"]
    assert cluster["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(cluster["certificate-authority-data"]) == ca.cert_pem()
    user = doc["users"][0]["user"]
    assert base64.b64decode(user["client-certificate-data"]) == admin.cert_pem()
    assert base64.b64decode(user["client-key-data"]) == admin.key_pem()
    kube_config = pytest.importorskip("kubernetes.config.kube_config")
    loader = kube_config.KubeConfigLoader(config_dict=doc, temp_file_path=str(tmp_path))
    client_config = type("Cfg", (), {})()
    loader.load_and_set(client_config)
    assert client_config.host == "https://127.0.0.1:6443"
    assert Path(client_config.ssl_ca_cert).read_bytes() == ca.cert_pem()


# ---------------------------------------------------------------------------------------------- TLS


def _serve_once(pair: CertPair, ready: threading.Event, port: list[int]) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pair.cert, pair.key)
    with socket.create_server(("127.0.0.1", 0)) as srv:
        srv.settimeout(10)
        port.append(srv.getsockname()[1])
        ready.set()
        for _ in range(2):
            try:
                conn, _addr = srv.accept()
            except TimeoutError:
                return
            with conn:
                try:
                    with ctx.wrap_socket(conn, server_side=True) as tls:
                        tls.sendall(b"ok")
                except (ssl.SSLError, OSError):
                    pass  # the client refused us: expected for the wrong-hostname case


def test_tls_handshake_with_serving_cert(tmp_path: Path) -> None:
    result = serving_bundle(tmp_path, SVC, NS, extra_hosts=["127.0.0.1"])
    serving, ca_pair = result["serving"], result["ca"]
    assert isinstance(serving, CertPair) and isinstance(ca_pair, CertPair)
    ready, port = threading.Event(), list[int]()
    thread = threading.Thread(target=_serve_once, args=(serving, ready, port), daemon=True)
    thread.start()
    assert ready.wait(10)
    client = ssl.create_default_context(cafile=str(ca_pair.cert))

    with (
        socket.create_connection(("127.0.0.1", port[0]), timeout=10) as raw,
        client.wrap_socket(raw, server_hostname=f"{SVC}.{NS}.svc") as tls,
    ):
        assert tls.recv(2) == b"ok"
        peer = tls.getpeercert()
        assert peer is not None
        assert ("DNS", f"{SVC}.{NS}.svc") in peer["subjectAltName"]

    with (
        socket.create_connection(("127.0.0.1", port[0]), timeout=10) as raw,
        pytest.raises(ssl.SSLCertVerificationError, match=r"Hostname mismatch|doesn't match"),
    ):
        client.wrap_socket(raw, server_hostname=f"{SVC}.other-namespace.svc")
    thread.join(10)


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_serving(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    rc = certs.main(["serving", "--service", SVC, "--namespace", NS, "--host", "10.0.0.1", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    bundle = (out / "cabundle.txt").read_text().strip()
    assert f"caBundle: {bundle}" in printed
    assert str(out / "secret.yaml") in printed
    dns, ips = sans(load(CertPair(out / f"{SVC}-serving.pem", out / f"{SVC}-serving-key.pem")))
    assert sorted(dns) == sorted(FOUR) and ips == ["10.0.0.1"]


def test_cli_ca_and_client(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert certs.main(["--out", str(tmp_path), "ca", "--cn", "cluster-ca"]) == 0
    assert (
        certs.main(
            ["client", "--cn", "system:kube-scheduler", "--org", "system:masters", "--out", str(tmp_path)]
        )
        == 0
    )
    cert = load(CertPair(tmp_path / "system-kube-scheduler.pem", tmp_path / "system-kube-scheduler-key.pem"))
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "system:masters"
    assert cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "cluster-ca"
    assert "client:" in capsys.readouterr().out


def test_cli_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = certs.main(
        ["serving", "--service", SVC, "--namespace", NS, "--host", "bad_host", "--out", str(tmp_path)]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad_host" in err
    with pytest.raises(SystemExit) as info:
        certs.main(["serving", "--service", SVC])  # missing --namespace
    assert info.value.code == 2


def test_gen_certs_script(tmp_path: Path) -> None:
    script = REPO / "scripts" / "gen-certs.sh"
    ok = subprocess.run(
        [str(script), "serving", "--service", "s", "--namespace", "n", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr
    assert "caBundle: " in ok.stdout and (tmp_path / "s-serving.pem").exists()
    env = {**os.environ, "CFSSL": str(tmp_path / "missing-cfssl")}
    bad = subprocess.run(
        [str(script), "ca", "--rotate", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "CFSSL=" in bad.stderr


def test_module_entry_point(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "harness.certs", "ca", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "ca.pem").exists()
