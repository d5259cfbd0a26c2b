"""The local cluster's PKI: one cluster CA, a front-proxy CA, the service-account key pair, and a
certificate + kubeconfig per component, all made idempotently through :mod:`harness.certs` (cfssl).

A warm ``up`` finds everything valid and reuses it, so kubeconfigs handed out earlier keep working.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from harness.certs import CertPair, ensure_ca, issue_cert, write_kubeconfig

__all__ = ["PKI", "ensure_pki"]


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
    pki = PKI(d, ca, fp_ca, apiserver, kubelet_client, fp_client, sa_key, sa_pub, admin, kubeconfigs)
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
