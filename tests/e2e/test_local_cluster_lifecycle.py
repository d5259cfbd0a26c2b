"""``down`` of the local cluster leaves nothing behind, and the next ``up`` is warm.

Disruptive (it stops the session's cluster and brings it back), so the root conftest runs tests
marked ``disruptive`` after all others.
"""

from __future__ import annotations

import json
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


def test_down_leaves_nothing_and_up_is_warm(cluster: Any, capsys: pytest.CaptureFixture[str]) -> None:
    if cluster.provider != "local":
        pytest.skip("host cleanup is specific to the local provider")
    baseline_path = cluster.state_dir / "host-baseline.json"
    baseline = json.loads(baseline_path.read_text())
    lines: list[str] = []

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
    with capsys.disabled():
        print(f"\n[lifecycle] down {down_s:.1f}s, warm up (incl. CoreDNS) {up_s:.1f}s")
