"""Other hosts cannot reach the local node's pods, services or node address (issue 12).

"Another host" is a network namespace this test creates, joined to the host by a veth pair on a
/30 of the shared address space (100.64.251.0/30; the fixture first checks that no address or route
of this machine overlaps it) and routing the pod and service CIDRs through the host, as a machine on
the same LAN could. Its packets to the node address, to a
ClusterIP and to a pod must be dropped, while the host itself keeps reaching all three. Traffic goes
only to the cluster's bridge, its pods and that namespace.

Whether a packet reached the pod is read from the pod's own kernel counters (UDP to a closed port
counts ``Udp: NoPorts``), because an answer alone proves nothing: the egress guard rejects a pod's
reply to an outside address anyway, so even before the ingress guard the requests got in silently.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NS = "hpakit-t-outside"
HOST_IF, PEER_IF = "hpkt-out0", "hpkt-out1"
NET, HOST_IP, PEER_IP = "100.64.251.0/30", "100.64.251.1", "100.64.251.2"
CLOSED_UDP_PORT = 9  # discard: nothing listens there in the CoreDNS pod


def sh(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({out.returncode}): {out.stderr.strip()}")
    return out


def py(code: str, ns: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with this Python, in network namespace ``ns`` (None: the host's)."""
    argv = [sys.executable, "-c", code]
    return sh(*(["ip", "netns", "exec", ns, *argv] if ns else argv), check=False)


def tcp_connects(ip: str, port: int, ns: str | None = None) -> bool:
    code = f"import socket; socket.create_connection(({ip!r}, {port}), timeout=2).close()"
    return py(code, ns).returncode == 0


def send_udp(ip: str, port: int, n: int, ns: str | None = None) -> None:
    code = (
        "import socket, time\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"for _ in range({n}):\n"
        f"    s.sendto(b'hpa-kit', ({ip!r}, {port})); time.sleep(0.05)\n"
    )
    out = py(code, ns)
    assert out.returncode == 0, out.stderr


def udp_noports(pid: int) -> int:
    """``Udp: NoPorts`` of the network namespace process ``pid`` lives in."""
    lines = [ln.split() for ln in Path(f"/proc/{pid}/net/snmp").read_text().splitlines()]
    udp = [ln for ln in lines if ln[0] == "Udp:"]
    return int(udp[1][udp[0].index("NoPorts")])


def _in_use(net: ipaddress.IPv4Network) -> str | None:
    """The first address or route of this machine that overlaps ``net`` (None: it is free)."""
    text = sh("ip", "-o", "-4", "addr").stdout + sh("ip", "-4", "route").stdout
    for line in text.splitlines():
        for word in line.split():
            with contextlib.suppress(ValueError):
                if ipaddress.ip_network(word, strict=False).overlaps(net):
                    return line.strip()
    return None


@pytest.fixture(scope="module")
def outside(cluster: Any) -> Iterator[str]:
    """The "other host": a namespace routing the pod and service CIDRs via the host."""
    if cluster.provider != "local":
        pytest.skip("specific to the local provider: its host firewall (HPAKIT-* chains)")
    s = cluster.settings
    sh("ip", "netns", "del", NS, check=False)
    sh("ip", "link", "del", HOST_IF, check=False)
    clash = _in_use(ipaddress.ip_network(NET))
    if clash:
        pytest.fail(f"{NET} overlaps this machine's {clash!r}; pick another free /30 for NET")
    try:
        sh("ip", "netns", "add", NS)
        sh("ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", PEER_IF)
        sh("ip", "link", "set", PEER_IF, "netns", NS)
        sh("ip", "addr", "add", f"{HOST_IP}/30", "dev", HOST_IF)
        sh("ip", "link", "set", HOST_IF, "up")
        sh("ip", "-n", NS, "addr", "add", f"{PEER_IP}/30", "dev", PEER_IF)
        sh("ip", "-n", NS, "link", "set", PEER_IF, "up")
        sh("ip", "-n", NS, "link", "set", "lo", "up")
        for cidr in (s.pod_cidr, s.service_cidr):
            sh("ip", "-n", NS, "route", "add", cidr, "via", HOST_IP)
        yield NS
    finally:
        sh("ip", "netns", "del", NS, check=False)  # takes the veth pair with it
        sh("ip", "link", "del", HOST_IF, check=False)


@pytest.fixture(scope="module")
def coredns_pod(cluster: Any, outside: str) -> tuple[str, int]:
    """(pod IP, pid of a process in the pod) of a running CoreDNS pod."""
    out = sh("kubectl", "--kubeconfig", str(cluster.kubeconfig), "get", "pods", "-n", "kube-system",
             "-l", "k8s-app=kube-dns", "-o", "json")  # fmt: skip
    ips = [p["status"]["podIP"] for p in json.loads(out.stdout)["items"] if p["status"].get("podIP")]
    assert ips, "no CoreDNS pod with an IP"
    for comm in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            if comm.read_text().strip() != "coredns":
                continue
            pid = int(comm.parent.name)
            addrs = sh("nsenter", "-t", str(pid), "-n", "ip", "-o", "-4", "addr", check=False).stdout
            if f" {ips[0]}/" in addrs:
                return ips[0], pid
    raise AssertionError(f"no coredns process found in the network namespace of pod IP {ips[0]}")


def test_the_node_address_is_closed_to_other_hosts(cluster: Any, outside: str) -> None:
    s = cluster.settings
    assert tcp_connects(s.node_ip, s.apiserver_port), "the host itself must reach the API server"
    assert not tcp_connects(s.node_ip, s.apiserver_port, ns=outside), (
        f"another host reached kube-apiserver on the node address {s.node_ip}:{s.apiserver_port}"
    )


def test_kube_routers_health_port_is_closed_to_other_hosts(cluster: Any, outside: str) -> None:
    """It listens on every address of the host (no bind-address flag): the guard closes it."""
    s = cluster.settings
    if not s.network_policy:
        pytest.skip("this cluster runs without kube-router (network_policy=False)")
    assert tcp_connects("127.0.0.1", s.kube_router_health_port), "kube-router's health port must listen"
    assert not tcp_connects(HOST_IP, s.kube_router_health_port, ns=outside), (
        f"another host reached kube-router's health port on {HOST_IP}:{s.kube_router_health_port}"
    )


def test_cluster_ips_are_closed_to_other_hosts(cluster: Any, outside: str) -> None:
    ip = cluster.settings.kubernetes_service_ip
    assert tcp_connects(ip, 443), "the host itself must reach the kubernetes Service"
    assert not tcp_connects(ip, 443, ns=outside), f"another host reached the ClusterIP {ip}:443"


def test_pods_are_closed_to_other_hosts(outside: str, coredns_pod: tuple[str, int]) -> None:
    pod_ip, pod_pid = coredns_pod
    before = udp_noports(pod_pid)
    send_udp(pod_ip, CLOSED_UDP_PORT, 5)  # the host: must arrive (the counter works)
    time.sleep(0.5)
    from_host = udp_noports(pod_pid) - before
    assert from_host >= 5, f"the pod counted {from_host} of 5 datagrams from the host"
    before = udp_noports(pod_pid)
    send_udp(pod_ip, CLOSED_UDP_PORT, 5, ns=outside)
    time.sleep(0.5)
    from_outside = udp_noports(pod_pid) - before
    assert from_outside == 0, f"{from_outside} datagram(s) from another host reached pod {pod_ip}"
