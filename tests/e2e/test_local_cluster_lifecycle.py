"""``down`` of the cluster leaves nothing behind, and the next ``up`` is warm.

local: ``down`` stops every process and keeps the state. kind: ``delete`` (kind clusters are not
restartable) leaves no node container, volume, kind network or bridge, and no iptables rule of
Docker's on the host; the next create reuses the cached node image.

Disruptive (it stops the session's cluster and brings it back), so the root conftest runs tests
marked ``disruptive`` after all others.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from harness import procs
from harness.cluster import hostnet

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.disruptive]


def _leftovers(cluster: Any, baseline: dict[str, Any]) -> dict[str, Any]:
    """Everything of the cluster still present on the host (empty dict == clean)."""
    s = cluster.settings
    found: dict[str, Any] = {}
    alive = [c for c in cluster.components() if procs.alive(procs.load_record(cluster.pid_dir, c))]
    if alive:
        found["processes"] = alive
    shims = cluster._shim_pids()
    if shims:
        found["shims"] = shims
    if Path(f"/sys/class/net/{s.bridge}").exists():
        found["bridge"] = s.bridge
    veths = subprocess.run(
        ["ip", "-o", "link", "show", "type", "veth"], capture_output=True, text=True, check=False
    ).stdout
    # Ours hang off our bridge (or off nothing once it is gone); a veth on another bridge belongs to
    # someone else on this machine (Docker's kind network, say) and is not ours to clean up.
    mine = [line for line in veths.strip().splitlines()
            if " master " not in line or f" master {s.bridge} " in line]  # fmt: skip
    if mine:
        found["veths"] = mine
    pre = {f"{k}/{c}" for k, chains in baseline.get("chains", {}).items() for c in chains}
    chains = hostnet.owned_chains(pre)
    if chains:
        found["iptables"] = chains
    pre_sets = set(baseline.get("ipsets", []))
    sets = [n for n in hostnet.ipsets() if hostnet.OWNED_IPSET.match(n) and n not in pre_sets]
    if sets:
        found["ipsets"] = sets
    mounts = hostnet.mounts_under([cluster.state_dir, cluster.run_dir])
    if mounts:
        found["mounts"] = mounts
    for name, before in baseline.get("sysctls", {}).items():
        now = hostnet.read_sysctl(name)
        if before is not None and now != before:
            found.setdefault("sysctls", {})[name] = {"before": before, "now": now}
    cgroups = [str(p) for p in hostnet._kubepods_dirs() if str(p) not in baseline.get("cgroups", [])]
    if cgroups:
        found["cgroups"] = cgroups
    routes = subprocess.run(["ip", "route", "show", s.service_cidr], capture_output=True, text=True).stdout
    if routes.strip():
        found["routes"] = routes.strip()
    return found


def _docker_rules() -> list[str]:
    """Host iptables rules of Docker's (its engine runs with --iptables=false: there must be none)."""
    found: list[str] = []
    for table in ("filter", "nat", "mangle", "raw"):
        text = subprocess.run(["iptables", "-t", table, "-S"], capture_output=True, text=True).stdout
        found += [f"{table}: {r}" for r in text.splitlines()
                  if re.search(r"DOCKER|docker0|br-[0-9a-f]{12}", r)]
    return found


def _kind_delete_leaves_nothing_and_create_is_warm(cluster: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.kubectl import Kubectl
    from harness.waits import wait_for

    ids = cluster._node_container_ids()
    assert ids, f"no node container of kind cluster {cluster.name}"
    net = subprocess.run(["docker", "network", "inspect", "kind", "--format", "{{.Id}}"],
                         capture_output=True, text=True, check=True).stdout.strip()
    bridge = f"br-{net[:12]}"
    assert Path(f"/sys/class/net/{bridge}").exists()
    lines: list[str] = []

    t0 = time.monotonic()
    cluster.delete(lines.append)  # raises when a container, volume, network or mount is left
    delete_s = time.monotonic() - t0
    assert not cluster.exists()
    assert not Path(f"/sys/class/net/{bridge}").exists(), f"bridge {bridge} of the kind network left"
    assert _docker_rules() == []

    t0 = time.monotonic()
    info = cluster.create(lines.append)
    create_s = time.monotonic() - t0
    assert info.running, "\n".join(lines)
    kubectl = Kubectl(cluster.kubeconfig)

    def dns_ready() -> tuple[bool, str]:
        node = kubectl.get("node", cluster.node_name)
        ready = [c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready"]
        dep = kubectl.get("deploy", "coredns", namespace="kube-system")
        have = dep["status"].get("readyReplicas", 0)
        return ready == ["True"] and have >= 1, f"node Ready={ready}, coredns ready={have}"

    wait_for("node Ready and CoreDNS ready", dns_ready, timeout=120, progress=lines.append)
    assert _docker_rules() == []
    with capsys.disabled():
        print(f"\n[lifecycle] kind delete {delete_s:.1f}s, warm create {create_s:.1f}s "
              f"(+CoreDNS {time.monotonic() - t0 - create_s:.1f}s)")


LIFECYCLE_NS = "hpakit-t-lifecycle"


def _make_kube_router_create_an_ipset(cluster: Any, baseline: dict[str, Any]) -> None:
    """A NetworkPolicy in a throwaway namespace, so ``down`` has kube-router's ipsets to remove."""
    from harness.kubectl import Kubectl
    from harness.waits import wait_for

    kubectl = Kubectl(cluster.kubeconfig)
    ns = LIFECYCLE_NS
    kubectl.run("create", "namespace", ns, check=False)
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "ipsets", "namespace": ns},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": [{"podSelector": {}}]}]},
    }
    kubectl.apply([policy])

    def created() -> tuple[bool, str]:
        sets = [n for n in hostnet.ipsets() if hostnet.OWNED_IPSET.match(n)]
        return bool(set(sets) - set(baseline.get("ipsets", []))), f"kube-router's ipsets: {sets}"

    wait_for("kube-router creates an ipset for a NetworkPolicy", created, timeout=60, progress=None)


def test_down_leaves_nothing_and_up_is_warm(cluster: Any, capsys: pytest.CaptureFixture[str]) -> None:
    if cluster.provider == "kind":
        _kind_delete_leaves_nothing_and_create_is_warm(cluster, capsys)
        return
    if cluster.provider != "local":
        pytest.skip("host cleanup is checked for the local and kind providers")
    baseline_path = cluster.state_dir / "host-baseline.json"
    baseline = json.loads(baseline_path.read_text())
    lines: list[str] = []
    if cluster.settings.network_policy:
        _make_kube_router_create_an_ipset(cluster, baseline)

    t0 = time.monotonic()
    cluster.stop(lines.append)
    down_s = time.monotonic() - t0
    assert _leftovers(cluster, baseline) == {}, "\n".join(lines)
    assert not baseline_path.exists()
    assert (cluster.state_dir / "pki" / "ca.pem").exists(), "down must keep the state for a warm up"

    t0 = time.monotonic()
    info = cluster.create(lines.append)
    up_s = time.monotonic() - t0
    assert info.running
    states = {c.name: c.state for c in info.components}
    assert states[f"node/{cluster.settings.node_name}"] == "ready" and states["coredns"] == "ready", states
    subprocess.run(["kubectl", "--kubeconfig", str(cluster.kubeconfig), "delete", "namespace", LIFECYCLE_NS,
                    "--ignore-not-found", "--wait=false"], capture_output=True, check=False)  # fmt: skip
    with capsys.disabled():
        print(f"\n[lifecycle] down {down_s:.1f}s, warm up (incl. CoreDNS) {up_s:.1f}s")
