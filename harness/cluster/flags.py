"""Command lines of the local cluster's components: pure functions of settings, PKI and paths.

``LocalCluster`` starts every process with what these return (``LocalSettings(with_node=False)``,
the ``control_plane`` fixture and the benchmark, uses :func:`etcd` and :func:`kube_apiserver` only).
Nothing here reads the disk or runs anything: ``tests/unit/test_cluster_flags.py`` pins each argv.
"""

from __future__ import annotations

from pathlib import Path

from harness.cluster.configs import NodePaths
from harness.cluster.pki import PKI
from harness.cluster.settings import LocalSettings

__all__ = [
    "REQUESTHEADER_ALLOWED_NAMES",
    "REQUESTHEADER_EXTRA_HEADERS_PREFIX",
    "REQUESTHEADER_GROUP_HEADERS",
    "REQUESTHEADER_USERNAME_HEADERS",
    "containerd",
    "containerd_env",
    "etcd",
    "kube_apiserver",
    "kube_controller_manager",
    "kube_proxy",
    "kube_router",
    "kube_scheduler",
    "kubelet",
]

# The aggregation layer's front-proxy identity: kube-apiserver runs with these ``--requestheader-*``
# flags and ``ControlPlane`` hands the same values to the tests that configure an extension server.
#: CN of the proxy client certificate (pki.py issues it as ``front-proxy-client``).
REQUESTHEADER_ALLOWED_NAMES = ("front-proxy-client",)
REQUESTHEADER_USERNAME_HEADERS = ("X-Remote-User",)
REQUESTHEADER_GROUP_HEADERS = ("X-Remote-Group",)
REQUESTHEADER_EXTRA_HEADERS_PREFIX = ("X-Remote-Extra-",)


def etcd(s: LocalSettings, pki: PKI, *, bin_dir: Path) -> list[str]:
    """etcd on loopback, TLS on both ports and a certificate of the etcd CA required of every client.

    Plain HTTP or a connection without such a certificate is refused: the datastore holds every
    Secret and RBAC object, so write access to it is cluster-admin.
    """
    c, p = f"https://127.0.0.1:{s.etcd_client_port}", f"https://127.0.0.1:{s.etcd_peer_port}"
    e = pki.etcd
    return [
        str(bin_dir / "etcd"),
        f"--name={s.name}",
        f"--data-dir={s.state_dir / 'etcd'}",
        f"--listen-client-urls={c}",
        f"--advertise-client-urls={c}",
        f"--cert-file={e.server.cert}",
        f"--key-file={e.server.key}",
        "--client-cert-auth=true",
        f"--trusted-ca-file={e.ca.cert}",
        f"--listen-peer-urls={p}",
        f"--initial-advertise-peer-urls={p}",
        f"--initial-cluster={s.name}={p}",
        f"--peer-cert-file={e.peer.cert}",
        f"--peer-key-file={e.peer.key}",
        "--peer-client-cert-auth=true",
        f"--peer-trusted-ca-file={e.ca.cert}",
        "--initial-cluster-state=new",
        "--listen-metrics-urls=",
        # A throwaway test cluster on a small VM: fsync dominates etcd latency and buys nothing.
        "--unsafe-no-fsync=true",
        "--snapshot-count=10000",
        "--auto-compaction-mode=periodic",
        "--auto-compaction-retention=10m",
        "--log-level=warn",
    ]


def kube_apiserver(s: LocalSettings, pki: PKI, *, bin_dir: Path) -> list[str]:
    argv = [
        str(bin_dir / "kube-apiserver"),
        f"--etcd-servers=https://127.0.0.1:{s.etcd_client_port}",
        f"--etcd-cafile={pki.etcd.ca.cert}",
        f"--etcd-certfile={pki.etcd.apiserver_client.cert}",
        f"--etcd-keyfile={pki.etcd.apiserver_client.key}",
        f"--bind-address={s.apiserver_address}",
        f"--secure-port={s.apiserver_port}",
        f"--tls-cert-file={pki.apiserver.cert}",
        f"--tls-private-key-file={pki.apiserver.key}",
        f"--client-ca-file={pki.ca.cert}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        "--allow-privileged=true",
        f"--service-cluster-ip-range={s.service_cidr}",
        f"--service-account-issuer=https://kubernetes.default.svc.{s.cluster_domain}",
        f"--service-account-key-file={pki.sa_pub}",
        f"--service-account-signing-key-file={pki.sa_key}",
        f"--kubelet-client-certificate={pki.apiserver_kubelet_client.cert}",
        f"--kubelet-client-key={pki.apiserver_kubelet_client.key}",
        f"--kubelet-certificate-authority={pki.ca.cert}",
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        # aggregation layer
        f"--requestheader-client-ca-file={pki.front_proxy_ca.cert}",
        f"--requestheader-allowed-names={','.join(REQUESTHEADER_ALLOWED_NAMES)}",
        f"--requestheader-extra-headers-prefix={','.join(REQUESTHEADER_EXTRA_HEADERS_PREFIX)}",
        f"--requestheader-group-headers={','.join(REQUESTHEADER_GROUP_HEADERS)}",
        f"--requestheader-username-headers={','.join(REQUESTHEADER_USERNAME_HEADERS)}",
        f"--proxy-client-cert-file={pki.front_proxy_client.cert}",
        f"--proxy-client-key-file={pki.front_proxy_client.key}",
        # With a node, the aggregator dials an APIService's endpoint IPs (no kube-proxy needed).
        # Without one there is no routable endpoint (Endpoints refuse loopback IPs), so the
        # aggregator resolves the Service itself: an ExternalName Service reaches an aggregated
        # server on loopback (bench/aggregated.py), as the Service's cluster IP would in a cluster.
        f"--enable-aggregator-routing={'true' if s.with_node else 'false'}",
        "--profiling=false",
        "--event-ttl=1h",
        f"--v={s.verbosity}",
    ]
    if s.with_node:
        argv.append(f"--advertise-address={s.node_ip}")
    return argv


def _talks_to_apiserver(kubeconfig: Path) -> list[str]:
    """A control-plane component's kubeconfig for its work, authn and authz; serving on loopback."""
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
    ]


def kube_controller_manager(s: LocalSettings, pki: PKI, *, bin_dir: Path) -> list[str]:
    return [
        str(bin_dir / "kube-controller-manager"),
        *_talks_to_apiserver(pki.kubeconfigs["kube-controller-manager"]),
        f"--secure-port={s.controller_manager_port}",
        "--leader-elect=false",
        "--use-service-account-credentials=true",
        f"--root-ca-file={pki.ca.cert}",
        f"--service-account-private-key-file={pki.sa_key}",
        f"--cluster-signing-cert-file={pki.ca.cert}",
        f"--cluster-signing-key-file={pki.ca.key}",
        f"--service-cluster-ip-range={s.service_cidr}",
        "--allocate-node-cidrs=false",
        "--controllers=*",
        *s.hpa.flags(),
        f"--v={s.verbosity}",
    ]


def kube_scheduler(s: LocalSettings, pki: PKI, *, bin_dir: Path) -> list[str]:
    return [
        str(bin_dir / "kube-scheduler"),
        *_talks_to_apiserver(pki.kubeconfigs["kube-scheduler"]),
        f"--secure-port={s.scheduler_port}",
        "--leader-elect=false",
        f"--v={s.verbosity}",
    ]


def containerd(p: NodePaths) -> list[str]:
    return ["containerd", f"--config={p.containerd_config}"]


def containerd_env(s: LocalSettings) -> dict[str, str]:
    """Send every registry request of containerd to a dead loopback proxy.

    Images come only from offline archives; a pod naming a missing image must fail at once
    ("proxyconnect ... connection refused") instead of resolving and dialling a registry off this
    machine. Go's proxy lookup never proxies loopback, so nothing else is affected.
    """
    if not s.block_registry_pulls:
        return {}
    dead = "http://127.0.0.1:9"
    return {
        "HTTP_PROXY": dead,
        "HTTPS_PROXY": dead,
        "http_proxy": dead,
        "https_proxy": dead,
        "NO_PROXY": "",
        "no_proxy": "",
    }


def kubelet(s: LocalSettings, pki: PKI, p: NodePaths, *, bin_dir: Path) -> list[str]:
    return [
        str(bin_dir / "kubelet"),
        f"--config={p.kubelet_config}",
        f"--kubeconfig={pki.kubeconfigs['kubelet']}",
        f"--hostname-override={s.node_name}",
        f"--node-ip={s.node_ip}",
        f"--root-dir={p.kubelet_root}",
        f"--cert-dir={p.kubelet_root / 'pki'}",
        f"--v={s.verbosity}",
    ]


def kube_proxy(s: LocalSettings, p: NodePaths, *, bin_dir: Path) -> list[str]:
    return [
        str(bin_dir / "kube-proxy"),
        f"--config={p.kube_proxy_config}",
        f"--v={s.verbosity}",
    ]


def kube_router(s: LocalSettings, pki: PKI, *, binary: Path) -> list[str]:
    """kube-router as the node's NetworkPolicy enforcer only (iptables + ipset on the host).

    Pod networking stays with the bridge CNI and Services with kube-proxy: routing (BGP) and its IPVS
    service proxy are off. It needs to list pods, namespaces and NetworkPolicies cluster-wide, so it
    uses the admin kubeconfig, like the other host components of this single-user test cluster.
    """
    return [
        str(binary),
        "--run-firewall=true",
        "--run-router=false",
        "--run-service-proxy=false",
        f"--kubeconfig={pki.kubeconfigs['admin']}",
        f"--hostname-override={s.node_name}",
        f"--service-cluster-ip-range={s.service_cidr}",
        f"--health-port={s.kube_router_health_port}",
        "--metrics-port=0",
        f"--v={s.verbosity}",
    ]
