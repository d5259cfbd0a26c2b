"""An adapter behind the real kube-apiserver aggregator, on loopback: what the soak and the HPA
benchmark (``bench.soak``, ``bench.hpas``) send their requests through.

kube-apiserver proxies ``/apis/custom.metrics.k8s.io/<version>/...`` to the Service an APIService
names. There is no node, kube-proxy or cluster network here, so the Service is of type
``ExternalName`` ``127.0.0.1``: without ``--enable-aggregator-routing`` (the harness' control plane
runs without it) the aggregator resolves such a Service to ``https://<externalName>:<port>``,
verifying the adapter's certificate against the APIService's ``caBundle`` for the name
``<service>.<namespace>.svc`` and presenting its front-proxy client certificate, exactly as in a
cluster. The availability controller probes the adapter the same way before it marks the
APIService ``Available``.

The clients call kube-apiserver with the admin client certificate (``system:masters``), so the
aggregator forwards ``X-Remote-User``/``X-Remote-Group`` for a user that the adapter's delegated
SubjectAccessReview allows.
"""

from __future__ import annotations

import base64
import json
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from harness.certs import CertPair, ensure_ca, issue_cert
from harness.cluster.kubeapi import ApiClient, ApiError

__all__ = ["CUSTOM_GROUP", "Aggregator", "pod_body", "serving_cert"]

CUSTOM_GROUP = "custom.metrics.k8s.io"
#: (version, versionPriority): v1beta2 preferred, as the adapter's own manifests register it.
VERSIONS = (("v1beta2", 200), ("v1beta1", 100))


def serving_cert(out: Path, namespace: str, service: str) -> tuple[CertPair, CertPair]:
    """(CA, serving pair) for an adapter the aggregator reaches as ``<service>.<namespace>.svc``."""
    ca = ensure_ca(out, "serving-ca", "hpa-kit-bench-aggregated-ca")
    names = [f"{service}.{namespace}.svc", "127.0.0.1", "localhost"]
    return ca, issue_cert(out, "serving", ca, "localhost", hosts=names)


def pod_body(name: str, labels: dict[str, str]) -> dict[str, Any]:
    """A minimal Pod that stays Pending (no node): enough for an adapter's pod informer."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "automountServiceAccountToken": False,
            "containers": [{"name": "app", "image": "registry.invalid/bench:0"}],
        },
    }


@dataclass
class Aggregator:
    """Admin calls to one control plane, and the APIServices that put an adapter behind it."""

    server: str
    ca: Path
    admin: CertPair

    def __post_init__(self) -> None:
        self.api = ApiClient(self.server, ca=self.ca, cert=self.admin.cert, key=self.admin.key, timeout=20)

    # --- objects ---------------------------------------------------------------------------------

    def create(self, path: str, body: dict[str, Any], *, exist_ok: bool = True) -> int:
        status, text = self.api.request("POST", path, body)
        if status == 409 and exist_ok:
            return status
        if status not in (200, 201, 202):
            raise ApiError(status, f"POST {path}: {text}")
        return status

    def delete(self, path: str) -> int:
        status, text = self.api.request("DELETE", path)
        if status not in (200, 202, 404):
            raise ApiError(status, f"DELETE {path}: {text}")
        return status

    def apply(self, path: str, name: str, body: dict[str, Any], attempts: int = 5) -> None:
        """Create, or replace what is there (with its resourceVersion; a 409 because a controller
        wrote the object's status in between is retried)."""
        for _ in range(attempts):
            status, text = self.api.request("GET", f"{path}/{name}")
            if status == 404:
                self.create(path, body, exist_ok=False)
                return
            if status != 200:
                raise ApiError(status, f"GET {path}/{name}: {text}")
            version = json.loads(text)["metadata"]["resourceVersion"]
            doc = {**body, "metadata": {**body["metadata"], "resourceVersion": version}}
            status, text = self.api.request("PUT", f"{path}/{name}", doc)
            if status == 200:
                return
            if status != 409:
                break
        raise ApiError(status, f"PUT {path}/{name}: {text}")

    def namespace(self, ns: str) -> None:
        """The namespace and its ``default`` ServiceAccount (no controller-manager creates it here)."""
        self.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        self.create(
            f"/api/v1/namespaces/{ns}/serviceaccounts",
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}},
        )

    def create_pod(self, ns: str, name: str, labels: dict[str, str]) -> int:
        return self.create(f"/api/v1/namespaces/{ns}/pods", pod_body(name, labels))

    def delete_pod(self, ns: str, name: str) -> int:
        return self.delete(f"/api/v1/namespaces/{ns}/pods/{name}")

    # --- the APIService --------------------------------------------------------------------------

    def register(
        self,
        ns: str,
        service: str,
        port: int,
        ca: CertPair,
        *,
        timeout: float = 60.0,
        progress: Callable[[str], None] = print,
    ) -> float:
        """Point ``custom.metrics.k8s.io`` (v1beta1 + v1beta2) at ``127.0.0.1:port``; wait until the
        aggregator marks both Available. Re-pointing an existing registration is fine. Returns
        the seconds it took."""
        t0 = time.monotonic()
        self.apply(
            f"/api/v1/namespaces/{ns}/services",
            service,
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": service, "namespace": ns},
                "spec": {"type": "ExternalName", "externalName": "127.0.0.1", "ports": [{"port": port}]},
            },
        )
        bundle = base64.b64encode(ca.cert_pem()).decode()
        for version, priority in VERSIONS:
            name = f"{version}.{CUSTOM_GROUP}"
            self.apply(
                "/apis/apiregistration.k8s.io/v1/apiservices",
                name,
                {
                    "apiVersion": "apiregistration.k8s.io/v1",
                    "kind": "APIService",
                    "metadata": {"name": name},
                    "spec": {
                        "group": CUSTOM_GROUP,
                        "version": version,
                        "service": {"namespace": ns, "name": service, "port": port},
                        "caBundle": bundle,
                        "groupPriorityMinimum": 100,
                        "versionPriority": priority,
                    },
                },
            )
        for version, _ in VERSIONS:
            self._wait_available(f"{version}.{CUSTOM_GROUP}", port, t0 + timeout, progress)
        return time.monotonic() - t0

    def _wait_available(self, name: str, port: int, deadline: float, progress: Callable[[str], None]) -> None:
        last = "no status yet"
        while time.monotonic() < deadline:
            status, text = self.api.request("GET", f"/apis/apiregistration.k8s.io/v1/apiservices/{name}")
            if status == 200:
                doc = json.loads(text)
                svc = doc["spec"].get("service") or {}
                conds = {c["type"]: c for c in doc.get("status", {}).get("conditions", [])}
                avail = conds.get("Available", {})
                # After re-pointing, the old port's "True" may linger until the controller re-checks.
                if svc.get("port") == port and avail.get("status") == "True":
                    return
                last = f"{avail.get('status')} {avail.get('reason')}: {avail.get('message', '')[:200]}"
            else:
                last = f"HTTP {status}"
            time.sleep(0.5)
        raise ApiError(503, f"APIService {name} not Available for port {port}: {last}")

    def unregister(self) -> None:
        for version, _ in VERSIONS:
            self.delete(f"/apis/apiregistration.k8s.io/v1/apiservices/{version}.{CUSTOM_GROUP}")

    # --- the clients' side -----------------------------------------------------------------------

    def client_tls(self) -> ssl.SSLContext:
        """TLS for calling kube-apiserver as admin (what the load clients use)."""
        ctx = ssl.create_default_context(cafile=str(self.ca))
        ctx.load_cert_chain(str(self.admin.cert), str(self.admin.key))
        return ctx

    def pods_url(self, ns: str, metric: str, selector: str, version: str = "v1beta2") -> str:
        """``pods/*/<metric>`` for ``selector``, through kube-apiserver (never the adapter directly)."""
        return (
            f"{self.server}/apis/{CUSTOM_GROUP}/{version}/namespaces/{ns}/pods/*/{metric}"
            f"?labelSelector={quote(selector, safe='')}"
        )


def parallel(fn: Callable[[Any], Any], items: Sequence[Any], workers: int = 8) -> list[Any]:
    """``fn`` over ``items`` on a few threads (object creation in bulk); exceptions propagate."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))
