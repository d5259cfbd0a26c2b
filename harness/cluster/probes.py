"""Health and readiness probes of the local cluster's components.

Each answers one question once as a probe of :mod:`harness.waits` (``(done, detail)``), for
:func:`harness.procs.wait_until`
to poll while ``LocalCluster`` starts a component (and for ``status``). They only ask (HTTP,
``ctr version``, the API, CoreDNS) and never change anything.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

from harness import procs
from harness.cluster.dnsprobe import query_a
from harness.cluster.kubeapi import ApiClient
from harness.cluster.pki import EtcdPKI
from harness.cluster.settings import LocalSettings

__all__ = [
    "containerd_healthy",
    "coredns_ready",
    "etcd_healthy",
    "https_healthz",
    "kube_proxy_healthy",
    "kube_router_healthy",
    "kubelet_healthy",
    "node_ready",
]


def etcd_healthy(port: int, pki: EtcdPKI) -> tuple[bool, str]:
    """etcd's ``/health`` over TLS, verified against the etcd CA, with the health-check client cert."""
    c = pki.healthcheck_client
    client = ApiClient(f"https://127.0.0.1:{port}", ca=pki.ca.cert, cert=c.cert, key=c.key, timeout=2)
    status, text = client.get_text("/health")
    return status == 200 and '"true"' in text, f"/health: {status} {text.strip()}"


def https_healthz(port: int) -> Callable[[], tuple[bool, str]]:
    """``/healthz`` of kube-controller-manager or kube-scheduler on loopback ``port``."""
    client = ApiClient(f"https://127.0.0.1:{port}", ca=None, timeout=2)
    return lambda: client.ok("/healthz")


def containerd_healthy(sock: Path) -> tuple[bool, str]:
    if not sock.exists():
        return False, f"{sock} not there yet"
    out = procs.run(["ctr", "-a", str(sock), "version"], timeout=10, check=False)
    return (True, "ctr version answers") if out.returncode == 0 else (False, out.stderr.strip())


def kubelet_healthy() -> tuple[bool, str]:
    return ApiClient("http://127.0.0.1:10248", ca=None, timeout=2).ok("/healthz")


def kube_proxy_healthy() -> tuple[bool, str]:
    return ApiClient("http://127.0.0.1:10256", ca=None, timeout=2).ok("/healthz")


def kube_router_healthy(port: int) -> Callable[[], tuple[bool, str]]:
    """kube-router's ``/healthz`` (200 once its controllers, here only the firewall, report in)."""
    client = ApiClient(f"http://127.0.0.1:{port}", ca=None, timeout=2)
    return lambda: client.ok("/healthz")


def node_ready(api: ApiClient, node_name: str, kubelet: procs.ProcessRecord | None) -> tuple[bool, str]:
    """Ready=True posted by the kubelet of ``kubelet`` (its pid record; None: any Ready=True counts)."""
    status, text = api.get_text(f"/api/v1/nodes/{node_name}")
    if status == 404:
        return False, "node not registered yet"
    if status != 200:
        return False, f"HTTP {status}"
    for cond in json.loads(text).get("status", {}).get("conditions", []):
        if cond.get("type") != "Ready":
            continue
        if cond.get("status") != "True":
            return False, f"Ready={cond.get('status')}: {cond.get('message')}"
        # After a warm restart the node object still carries the Ready=True of the previous run;
        # only a status posted by the kubelet running now counts.
        beat = _parse_time(cond.get("lastHeartbeatTime"))
        if kubelet is not None and (beat is None or beat < int(kubelet.started_at)):
            return False, "Ready=True is stale (posted before this kubelet started)"
        return True, "Ready=True"
    return False, "no Ready condition yet"


def coredns_ready(api: ApiClient, s: LocalSettings) -> tuple[bool, str]:
    status, text = api.get_text("/apis/apps/v1/namespaces/kube-system/deployments/coredns")
    if status != 200:
        return False, f"deployment: HTTP {status}"
    st = json.loads(text).get("status", {})
    if st.get("readyReplicas", 0) < 1:
        return False, f"readyReplicas={st.get('readyReplicas', 0)} conditions={st.get('conditions', [])}"
    # readyReplicas may be stale after a warm restart: ask CoreDNS itself, through the Service.
    name = f"kubernetes.default.svc.{s.cluster_domain}"
    try:
        got = query_a(s.dns_ip, name, timeout=1.0)
    except (OSError, ValueError) as exc:
        return False, f"{s.dns_ip} does not resolve {name} yet: {exc}"
    if s.kubernetes_service_ip not in got:
        return False, f"{name} resolved to {got}, expected {s.kubernetes_service_ip}"
    return True, f"{name} resolves to {s.kubernetes_service_ip}"


def _parse_time(value: object) -> float | None:
    """RFC 3339 ``2026-01-02T03:04:05Z`` (as the API writes it) to epoch seconds."""
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
