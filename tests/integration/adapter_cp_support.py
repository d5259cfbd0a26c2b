"""Helpers for the adapter-against-a-real-control-plane tests (``test_adapter_controlplane.py``).

A tiny synchronous admin client for the ``control_plane`` fixture's kube-apiserver (create objects,
tokens, RBAC), deadline polling, and reading one sample out of the adapter's ``/metrics``.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx
from prometheus_client.parser import text_string_to_metric_families

from harness.certs import CertPair
from harness.waits import wait_for

T = TypeVar("T")


def tls_context(ca: Path, client: CertPair | None = None) -> ssl.SSLContext:
    """Verify the server against ``ca``; present ``client`` (cert + key) when given."""
    ctx = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        ctx.load_cert_chain(str(client.cert), str(client.key))
    return ctx


class KubeAdmin:
    """Admin (system:masters client cert) calls to the control plane's API, JSON in and out."""

    def __init__(self, server: str, ca: Path, admin: CertPair) -> None:
        self.client = httpx.Client(base_url=server, verify=tls_context(ca, admin), timeout=20)

    def close(self) -> None:
        self.client.close()

    def create(self, path: str, body: dict[str, Any], *, exist_ok: bool = True) -> dict[str, Any]:
        r = self.client.post(path, json=body)
        if r.status_code == 409 and exist_ok:
            return {}
        if r.status_code not in (200, 201, 202):
            raise AssertionError(f"POST {path} -> {r.status_code}: {r.text[:500]}")
        return dict(r.json())

    def delete(self, path: str, *, missing_ok: bool = True) -> None:
        r = self.client.delete(path)
        if r.status_code == 404 and missing_ok:
            return
        if r.status_code not in (200, 202):
            raise AssertionError(f"DELETE {path} -> {r.status_code}: {r.text[:500]}")

    # --- object builders ------------------------------------------------------------------------

    def namespace(self, name: str) -> None:
        self.create(
            "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        )

    def service_account(self, ns: str, name: str) -> None:
        self.create(
            f"/api/v1/namespaces/{ns}/serviceaccounts",
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
        )

    def pod(self, ns: str, name: str, labels: Mapping[str, str]) -> None:
        """A Pod that stays Pending (no node): enough for the adapter's watch cache."""
        self.create(
            f"/api/v1/namespaces/{ns}/pods",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "labels": dict(labels)},
                "spec": {
                    "automountServiceAccountToken": False,
                    "containers": [{"name": "mockmetrics", "image": "hpa-kit/mockmetrics:dev"}],
                },
            },
        )

    def service(self, ns: str, name: str, selector: Mapping[str, str]) -> None:
        self.create(
            f"/api/v1/namespaces/{ns}/services",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": name, "labels": {"app": name}},
                "spec": {"selector": dict(selector), "ports": [{"port": 80, "targetPort": 8080}]},
            },
        )

    def cluster_role(self, name: str, rules: list[dict[str, Any]]) -> None:
        self.create(
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": name},
                "rules": rules,
            },
        )

    def bind_cluster_role(self, name: str, role: str, subject: dict[str, str]) -> None:
        self.create(
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [subject],
            },
        )

    def bind_role_in(self, ns: str, name: str, cluster_role: str, subject: dict[str, str]) -> None:
        self.create(
            f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": name},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": cluster_role,
                },
                "subjects": [subject],
            },
        )

    def token(self, ns: str, service_account: str, seconds: int = 3600) -> str:
        """A bound token for the ServiceAccount (TokenRequest API), as a pod would get it."""
        doc = self.create(
            f"/api/v1/namespaces/{ns}/serviceaccounts/{service_account}/token",
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": seconds},
            },
            exist_ok=False,
        )
        return str(doc["status"]["token"])


def until(fn: Callable[[], T | None], timeout: float, what: str, interval: float = 0.25) -> T:
    """Call ``fn`` until it returns something other than None (AssertionError counts as None).

    A value-returning shape over the one polling primitive, :func:`harness.waits.wait_for`.
    """
    got: list[T] = []

    def probe() -> tuple[bool, str]:
        value = fn()
        if value is None:
            return False, "None"
        got.append(value)
        return True, "got a value"

    wait_for(what, probe, timeout=timeout, interval=interval, progress=None,
             error=lambda _k, msg: AssertionError(f"{what}: not within {timeout:g}s ({msg})"))  # fmt: skip
    return got[0]


def metric_sample(text: str, name: str, labels: Mapping[str, str] | None = None) -> float:
    """The value of sample ``name`` with (at least) ``labels`` in an exposition; 0 when absent."""
    want = dict(labels or {})
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in want.items()):
                return float(sample.value)
    return 0.0


__all__ = ["KubeAdmin", "metric_sample", "tls_context", "until"]
