"""The local cluster's PKI: one cluster CA, a front-proxy CA, an etcd CA, the service-account key
pair, and a certificate + kubeconfig per component, all made idempotently through :mod:`harness.certs`
(cfssl).

etcd has a CA of its own (as kubeadm lays it out): etcd trusts only client certificates that CA
signed, so no certificate of the cluster CA (an admin's, a kubelet's) opens the datastore, and
nothing without one (any local process) can read or write ``/registry``.

A warm ``up`` finds everything valid and reuses it, so kubeconfigs handed out earlier keep working.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from harness.certs import CertPair, ensure_ca, issue_cert, write_kubeconfig

__all__ = ["PKI", "EtcdPKI", "ensure_pki"]


@dataclass
class EtcdPKI:
    """etcd's own CA and the certificates around it (file names as kubeadm's ``etcd/`` directory)."""

    #: Signs everything below; etcd's ``--trusted-ca-file`` and ``--peer-trusted-ca-file``.
    ca: CertPair
    #: etcd's client-port serving certificate (127.0.0.1, localhost).
    server: CertPair
    #: The peer port's certificate, presented and checked in both directions (server + client).
    peer: CertPair
    #: kube-apiserver's client certificate (``--etcd-certfile``).
    apiserver_client: CertPair
    #: What the harness' health probe presents to ``/health``.
    healthcheck_client: CertPair


@dataclass
class PKI:
    dir: Path
    ca: CertPair
    front_proxy_ca: CertPair
    apiserver: CertPair
    apiserver_kubelet_client: CertPair
    front_proxy_client: CertPair
    sa_key: Path
    sa_pub: Path
    admin: CertPair
    kubeconfigs: dict[str, Path]
    etcd: EtcdPKI
    kubelet_serving: CertPair | None = None


def _sa_keypair(d: Path) -> tuple[Path, Path]:
    """RSA key pair the apiserver signs service-account tokens with (RS256: what every client expects)."""
    key, pub = d / "sa.key", d / "sa.pub"
    if key.is_file() and pub.is_file():
        return key, pub
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tmp = d / ".sa.key.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(
            private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
    pub.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    tmp.replace(key)
    return key, pub


def _etcd_pki(d: Path, cluster: str) -> EtcdPKI:
    """etcd's CA and certificates; loopback only, since etcd never listens anywhere else."""
    ca = ensure_ca(d, "etcd-ca", f"hpa-kit-{cluster}-etcd-ca")
    loopback = ["127.0.0.1", "localhost"]
    return EtcdPKI(
        ca=ca,
        # Server and client: with --client-cert-auth etcd's own HTTP gateway dials its gRPC port
        # presenting this certificate (as kubeadm issues it), so a server-only one breaks /v3/*.
        server=issue_cert(d, "etcd-server", ca, f"hpa-kit-{cluster}-etcd", hosts=loopback, usage="both"),
        peer=issue_cert(d, "etcd-peer", ca, f"hpa-kit-{cluster}-etcd-peer", hosts=loopback, usage="both"),
        apiserver_client=issue_cert(
            d, "apiserver-etcd-client", ca, "kube-apiserver-etcd-client", usage="client"
        ),
        healthcheck_client=issue_cert(
            d, "etcd-healthcheck-client", ca, "hpa-kit-etcd-healthcheck-client", usage="client"
        ),
    )


def ensure_pki(
    d: Path,
    *,
    cluster: str,
    server: str,
    apiserver_ips: list[str],
    node_name: str | None,
    node_ip: str | None,
    cluster_domain: str = "cluster.local",
    local_server: str | None = None,
) -> PKI:
    """Create (or keep) every certificate and kubeconfig the cluster needs.

    ``server`` is the URL components use; ``node_name`` None means a control plane without a node
    (no kubelet/kube-proxy/controller certificates).
    """
    d.mkdir(parents=True, exist_ok=True)
    kc = d.parent / "kubeconfigs"
    ca = ensure_ca(d, "ca", f"hpa-kit-{cluster}-ca")
    fp_ca = ensure_ca(d, "front-proxy-ca", f"hpa-kit-{cluster}-front-proxy-ca")
    hosts = [
        "127.0.0.1",
        *apiserver_ips,
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        f"kubernetes.default.svc.{cluster_domain}",
    ]
    apiserver = issue_cert(d, "apiserver", ca, "kube-apiserver", hosts=hosts, usage="server")
    kubelet_client = issue_cert(
        d,
        "apiserver-kubelet-client",
        ca,
        "kube-apiserver-kubelet-client",
        organizations=["system:masters"],
        usage="client",
    )
    fp_client = issue_cert(d, "front-proxy-client", fp_ca, "front-proxy-client", usage="client")
    sa_key, sa_pub = _sa_keypair(d)
    admin = issue_cert(d, "admin", ca, "hpa-kit-admin", organizations=["system:masters"], usage="client")
    kubeconfigs = {
        "admin": write_kubeconfig(
            kc / "admin.kubeconfig", server=server, ca=ca, client=admin, cluster=cluster, user="admin"
        ),
    }
    pki = PKI(
        dir=d,
        ca=ca,
        front_proxy_ca=fp_ca,
        apiserver=apiserver,
        apiserver_kubelet_client=kubelet_client,
        front_proxy_client=fp_client,
        sa_key=sa_key,
        sa_pub=sa_pub,
        admin=admin,
        kubeconfigs=kubeconfigs,
        etcd=_etcd_pki(d, cluster),
    )
    if node_name is None:
        return pki
    comp_server = local_server or server
    clients = {
        "kube-controller-manager": ("system:kube-controller-manager", []),
        "kube-scheduler": ("system:kube-scheduler", []),
        "kubelet": (f"system:node:{node_name}", ["system:nodes"]),
        "kube-proxy": ("system:kube-proxy", []),
    }
    for comp, (cn, orgs) in clients.items():
        pair = issue_cert(d, comp, ca, cn, organizations=orgs, usage="client")
        kubeconfigs[comp] = write_kubeconfig(
            kc / f"{comp}.kubeconfig", server=comp_server, ca=ca, client=pair, cluster=cluster, user=comp
        )
    pki.kubelet_serving = issue_cert(
        d,
        "kubelet-serving",
        ca,
        f"system:node:{node_name}",
        hosts=[node_name, *([node_ip] if node_ip else []), "127.0.0.1", "localhost"],
        organizations=["system:nodes"],
        usage="server",
    )
    return pki
