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
