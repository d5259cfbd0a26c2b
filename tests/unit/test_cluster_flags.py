"""The exact command lines the local provider starts its components with, for one settings object.

Written before the flag builders moved out of ``LocalCluster`` (the issue asking to split large
harness files): the expected lists are the argv the class produced then, so any change to a flag,
its value or its position fails here. ``_argvs`` is the only thing that follows the code around.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.certs import CertPair
from harness.cluster import binaries, flags
from harness.cluster.local import LocalCluster
from harness.cluster.pki import PKI, EtcdPKI
from harness.cluster.settings import HPASettings, LocalSettings

ST = "/st/clusters/pin"  # state dir of the settings below
PK = f"{ST}/pki"
KC = f"{ST}/kubeconfigs"
BIN = "/opt/k8s/bin"
DEAD = "http://127.0.0.1:9"


def _settings(with_node: bool) -> LocalSettings:
    return LocalSettings(
        name="pin",
        state_root=Path("/st"),
        with_node=with_node,
        hpa=HPASettings(sync_period="7s"),
        verbosity=3,
        etcd_client_port=12379,
        etcd_peer_port=12380,
        apiserver_port=16443,
        controller_manager_port=20257,
        scheduler_port=20259,
    )


def _pki(d: Path) -> PKI:
    """A PKI object with cfssl's file names (nothing is created: the builders only name paths)."""

    def pair(n: str) -> CertPair:
        return CertPair(d / f"{n}.pem", d / f"{n}-key.pem")

    comps = ("admin", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")
    return PKI(
        dir=d,
        ca=pair("ca"),
        front_proxy_ca=pair("front-proxy-ca"),
        apiserver=pair("apiserver"),
        apiserver_kubelet_client=pair("apiserver-kubelet-client"),
        front_proxy_client=pair("front-proxy-client"),
        sa_key=d / "sa.key",
        sa_pub=d / "sa.pub",
        admin=pair("admin"),
        kubeconfigs={c: d.parent / "kubeconfigs" / f"{c}.kubeconfig" for c in comps},
        etcd=EtcdPKI(
            ca=pair("etcd-ca"),
            server=pair("etcd-server"),
            peer=pair("etcd-peer"),
            apiserver_client=pair("apiserver-etcd-client"),
            healthcheck_client=pair("etcd-healthcheck-client"),
        ),
        kubelet_serving=pair("kubelet-serving"),
    )


def _argvs(s: LocalSettings) -> dict[str, object]:
    """Every command line (and containerd's environment) the local provider builds for ``s``."""
    c = LocalCluster(s)  # what the cluster hands the builders: its bin dir and node paths
    pki, bins, p = _pki(s.state_dir / "pki"), c._bins, c.paths
    return {
        "etcd": flags.etcd(s, pki, bin_dir=bins),
        "kube-apiserver": flags.kube_apiserver(s, pki, bin_dir=bins),
        "kube-controller-manager": flags.kube_controller_manager(s, pki, bin_dir=bins),
        "kube-scheduler": flags.kube_scheduler(s, pki, bin_dir=bins),
        "containerd": flags.containerd(p),
        "containerd-env": flags.containerd_env(s),
        "kubelet": flags.kubelet(s, pki, p, bin_dir=bins),
        "kube-proxy": flags.kube_proxy(s, p, bin_dir=bins),
        "kube-router": flags.kube_router(s, pki, binary=binaries.kube_router_path()),
    }


ETCD = [
    f"{BIN}/etcd",
    "--name=pin",
    f"--data-dir={ST}/etcd",
    # issue 12: TLS on both ports, and only clients with a certificate of etcd's own CA
    "--listen-client-urls=https://127.0.0.1:12379",
    "--advertise-client-urls=https://127.0.0.1:12379",
    f"--cert-file={PK}/etcd-server.pem",
    f"--key-file={PK}/etcd-server-key.pem",
    "--client-cert-auth=true",
    f"--trusted-ca-file={PK}/etcd-ca.pem",
    "--listen-peer-urls=https://127.0.0.1:12380",
    "--initial-advertise-peer-urls=https://127.0.0.1:12380",
    "--initial-cluster=pin=https://127.0.0.1:12380",
    f"--peer-cert-file={PK}/etcd-peer.pem",
    f"--peer-key-file={PK}/etcd-peer-key.pem",
    "--peer-client-cert-auth=true",
    f"--peer-trusted-ca-file={PK}/etcd-ca.pem",
    "--initial-cluster-state=new",
    "--listen-metrics-urls=",
    "--unsafe-no-fsync=true",
    "--snapshot-count=10000",
    "--auto-compaction-mode=periodic",
    "--auto-compaction-retention=10m",
    "--log-level=warn",
]


def _apiserver(bind: str, *, aggregator_routing: bool = True) -> list[str]:
    return [
        f"{BIN}/kube-apiserver",
        "--etcd-servers=https://127.0.0.1:12379",
        f"--etcd-cafile={PK}/etcd-ca.pem",
        f"--etcd-certfile={PK}/apiserver-etcd-client.pem",
        f"--etcd-keyfile={PK}/apiserver-etcd-client-key.pem",
        f"--bind-address={bind}",
        "--secure-port=16443",
        f"--tls-cert-file={PK}/apiserver.pem",
        f"--tls-private-key-file={PK}/apiserver-key.pem",
        f"--client-ca-file={PK}/ca.pem",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        "--allow-privileged=true",
        "--service-cluster-ip-range=10.96.0.0/16",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={PK}/sa.pub",
        f"--service-account-signing-key-file={PK}/sa.key",
        f"--kubelet-client-certificate={PK}/apiserver-kubelet-client.pem",
        f"--kubelet-client-key={PK}/apiserver-kubelet-client-key.pem",
        f"--kubelet-certificate-authority={PK}/ca.pem",
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        f"--requestheader-client-ca-file={PK}/front-proxy-ca.pem",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-username-headers=X-Remote-User",
        f"--proxy-client-cert-file={PK}/front-proxy-client.pem",
        f"--proxy-client-key-file={PK}/front-proxy-client-key.pem",
        f"--enable-aggregator-routing={str(aggregator_routing).lower()}",
        "--profiling=false",
        "--event-ttl=1h",
        "--v=3",
    ]


NODE = {
    "etcd": ETCD,
    "kube-apiserver": [*_apiserver("10.244.0.1"), "--advertise-address=10.244.0.1"],
    "kube-controller-manager": [
        f"{BIN}/kube-controller-manager",
        f"--kubeconfig={KC}/kube-controller-manager.kubeconfig",
        f"--authentication-kubeconfig={KC}/kube-controller-manager.kubeconfig",
        f"--authorization-kubeconfig={KC}/kube-controller-manager.kubeconfig",
        "--bind-address=127.0.0.1",
        "--secure-port=20257",
        "--leader-elect=false",
        "--use-service-account-credentials=true",
        f"--root-ca-file={PK}/ca.pem",
        f"--service-account-private-key-file={PK}/sa.key",
        f"--cluster-signing-cert-file={PK}/ca.pem",
        f"--cluster-signing-key-file={PK}/ca-key.pem",
        "--service-cluster-ip-range=10.96.0.0/16",
        "--allocate-node-cidrs=false",
        "--controllers=*",
        "--horizontal-pod-autoscaler-sync-period=7s",
        "--horizontal-pod-autoscaler-downscale-stabilization=30s",
        "--horizontal-pod-autoscaler-cpu-initialization-period=30s",
        "--horizontal-pod-autoscaler-initial-readiness-delay=10s",
        "--horizontal-pod-autoscaler-tolerance=0.1",
        "--v=3",
    ],
    "kube-scheduler": [
        f"{BIN}/kube-scheduler",
        f"--kubeconfig={KC}/kube-scheduler.kubeconfig",
        f"--authentication-kubeconfig={KC}/kube-scheduler.kubeconfig",
        f"--authorization-kubeconfig={KC}/kube-scheduler.kubeconfig",
        "--bind-address=127.0.0.1",
        "--secure-port=20259",
        "--leader-elect=false",
        "--v=3",
    ],
    "containerd": ["containerd", f"--config={ST}/config/containerd.toml"],
    "containerd-env": {
        "HTTP_PROXY": DEAD,
        "HTTPS_PROXY": DEAD,
        "http_proxy": DEAD,
        "https_proxy": DEAD,
        "NO_PROXY": "",
        "no_proxy": "",
    },
    "kubelet": [
        f"{BIN}/kubelet",
        f"--config={ST}/config/kubelet.yaml",
        f"--kubeconfig={KC}/kubelet.kubeconfig",
        "--hostname-override=pin",
        "--node-ip=10.244.0.1",
        f"--root-dir={ST}/kubelet",
        f"--cert-dir={ST}/kubelet/pki",
        "--v=3",
    ],
    "kube-proxy": [f"{BIN}/kube-proxy", f"--config={ST}/config/kube-proxy.yaml", "--v=3"],
    # issue 12: the NetworkPolicy enforcer only - no routing, no service proxy (kube-proxy has those)
    "kube-router": [
        "/cache/bin/kube-router-v2.1.0/kube-router",
        "--run-firewall=true",
        "--run-router=false",
        "--run-service-proxy=false",
        f"--kubeconfig={KC}/admin.kubeconfig",
        "--hostname-override=pin",
        "--service-cluster-ip-range=10.96.0.0/16",
        "--health-port=20244",
        "--metrics-port=0",
        "--v=3",
    ],
}


@pytest.fixture(autouse=True)
def _bin_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HPA_KIT_BIN_DIR", BIN)
    monkeypatch.setenv("HPA_KIT_CACHE", "/cache")


@pytest.mark.parametrize("component", list(NODE))
def test_node_cluster_command_lines_are_pinned(component: str) -> None:
    assert _argvs(_settings(with_node=True))[component] == NODE[component]


@pytest.mark.parametrize(
    ("component", "expected"),
    [("etcd", ETCD), ("kube-apiserver", _apiserver("127.0.0.1", aggregator_routing=False))],
)
def test_control_plane_command_lines_are_pinned(component: str, expected: list[str]) -> None:
    """``with_node=False`` (the ``control_plane`` fixture, the bench): loopback, no advertise address."""
    assert _argvs(_settings(with_node=False))[component] == expected


def test_control_plane_reports_the_requestheader_flags_its_apiserver_runs_with() -> None:
    """``ControlPlane.requestheader_*`` (what tests configure an extension server with) are the
    values of the ``--requestheader-*`` flags of the same name the apiserver gets."""
    import dataclasses

    from harness.cluster.controlplane import ControlPlane

    argv = _argvs(_settings(with_node=False))["kube-apiserver"]
    assert isinstance(argv, list)
    given = dict(a.removeprefix("--").split("=", 1) for a in argv[1:])
    reported = {
        f.name: f.default_factory()  # type: ignore[misc]
        for f in dataclasses.fields(ControlPlane)
        if f.name.startswith("requestheader_")
    }
    assert len(reported) == 4
    for name, values in reported.items():
        assert given[name.replace("_", "-")].split(",") == values, name
