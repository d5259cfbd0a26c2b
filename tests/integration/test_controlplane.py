"""The ``control_plane`` fixture: a real etcd + kube-apiserver on loopback, started from our binaries."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest
from cryptography import x509

from harness.cluster.binaries import versions

pytestmark = pytest.mark.integration


def kubectl(cp, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(cp.kubeconfig), *args],
        capture_output=True,
        text=True,
        input=input,
        timeout=60,
    )


def test_readyz_through_kubectl(control_plane) -> None:
    out = kubectl(control_plane, "get", "--raw", "/readyz")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_server_version_is_the_pinned_one(control_plane) -> None:
    out = kubectl(control_plane, "get", "--raw", "/version")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["gitVersion"] == versions()["K8S_VERSION"] == "v1.35.4"


def test_create_and_read_a_namespace(control_plane) -> None:
    name = f"cp-test-{uuid.uuid4().hex[:8]}"
    out = kubectl(control_plane, "create", "namespace", name)
    assert out.returncode == 0, out.stderr
    got = kubectl(control_plane, "get", "namespace", name, "-o", "jsonpath={.status.phase}")
    assert got.stdout == "Active"


def test_aggregation_identity_is_published(control_plane) -> None:
    """Extension servers read requestheader settings from this configmap; they must match the fixture."""
    out = kubectl(
        control_plane,
        "get",
        "configmap",
        "-n",
        "kube-system",
        "extension-apiserver-authentication",
        "-o",
        "json",
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)["data"]
    assert json.loads(data["requestheader-allowed-names"]) == control_plane.requestheader_allowed_names
    assert json.loads(data["requestheader-extra-headers-prefix"]) == ["X-Remote-Extra-"]
    assert data["requestheader-client-ca-file"].strip() == control_plane.front_proxy_ca.read_text().strip()
    assert data["client-ca-file"].strip() == control_plane.ca.read_text().strip()
    client = x509.load_pem_x509_certificate(control_plane.front_proxy_client.cert.read_bytes())
    ca = x509.load_pem_x509_certificate(control_plane.front_proxy_ca.read_bytes())
    client.verify_directly_issued_by(ca)
    assert client.subject.rfc4514_string() == "CN=front-proxy-client"


def test_rbac_is_enforced_for_unprivileged_users(control_plane) -> None:
    """Authorization runs Node,RBAC: an impersonated user without bindings is refused."""
    out = kubectl(control_plane, "auth", "can-i", "list", "secrets", "-A", "--as", "nobody@example.com")
    assert out.stdout.strip() == "no"
    out = kubectl(control_plane, "auth", "can-i", "list", "secrets", "-A")
    assert out.stdout.strip() == "yes"


# ----------------------------------------------------------------- etcd is not open to any local process


def _etcd_range(cp, scheme: str, *, ca=None, cert=None) -> str:
    """POST etcd's v3 ``kv/range`` for the default namespace's key; returns ``"<status> <body>"``
    or the error that stopped the request. What any local process would try to read ``/registry``.
    """
    import base64
    import http.client
    import ssl

    port = cp.cluster.settings.etcd_client_port
    body = json.dumps({"key": base64.b64encode(b"/registry/namespaces/default").decode()})
    if scheme == "https":
        ctx = ssl.create_default_context(cafile=str(ca)) if ca else ssl._create_unverified_context()
        if cert is not None:
            ctx.load_cert_chain(str(cert.cert), str(cert.key))
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=5, context=ctx
        )
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("POST", "/v3/kv/range", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return f"{resp.status} {resp.read().decode(errors='replace')}"
    except (OSError, http.client.HTTPException) as exc:
        return f"refused: {type(exc).__name__}: {exc}"
    finally:
        conn.close()


def test_etcd_refuses_plain_http(control_plane) -> None:
    got = _etcd_range(control_plane, "http")
    assert got.startswith("refused"), f"etcd answered plain HTTP: {got[:200]}"


def test_etcd_refuses_tls_clients_without_a_certificate(control_plane) -> None:
    etcd = control_plane.cluster.pki().etcd
    got = _etcd_range(control_plane, "https", ca=etcd.ca.cert)
    assert got.startswith("refused"), f"etcd answered a client without a certificate: {got[:200]}"


def test_etcd_refuses_certificates_of_the_cluster_ca(control_plane) -> None:
    """A cluster-admin client certificate (cluster CA, system:masters) is no etcd credential."""
    etcd = control_plane.cluster.pki().etcd
    got = _etcd_range(control_plane, "https", ca=etcd.ca.cert, cert=control_plane.admin)
    assert got.startswith("refused"), f"etcd answered the admin certificate: {got[:200]}"


def test_etcd_serves_its_own_clients_and_the_apiserver_works(control_plane) -> None:
    """The positive control: a certificate of the etcd CA reads the key, and the API (which reaches
    etcd with its own client certificate) lists namespaces."""
    etcd = control_plane.cluster.pki().etcd
    got = _etcd_range(control_plane, "https", ca=etcd.ca.cert, cert=etcd.healthcheck_client)
    assert got.startswith("200 ") and '"kvs"' in got, got[:300]
    out = kubectl(control_plane, "get", "namespace", "default", "-o", "name")
    assert out.returncode == 0 and out.stdout.strip() == "namespace/default", out.stderr
