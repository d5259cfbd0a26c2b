"""The host firewall of the local node (issue 12): what the guards load and where their jumps sit.

``iptables`` is replaced by a small in-memory model of the guards' table (mangle), so the tests see
exactly the argv the guards run and the chain layout that results, without root.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from harness.cluster import hostnet

KUBE_PROXY_FORWARD = "-A FORWARD -m comment --comment kubernetes-forwarding-rules -j KUBE-FORWARD"


class FakeIptables:
    """The mangle table as rule strings per chain, driven by the argv the guards run (which must
    name it: the filter table's top belongs to kube-router, see hostnet.GUARD_TABLE)."""

    def __init__(self) -> None:
        self.chains: dict[str, list[str]] = {"INPUT": [], "FORWARD": [KUBE_PROXY_FORWARD], "OUTPUT": []}
        self.argvs: list[list[str]] = []

    def __call__(self, argv: list[str]) -> tuple[int, str]:
        assert argv[:3] == ["iptables", "-t", "mangle"], argv
        argv = ["iptables", *argv[3:]]
        self.argvs.append(argv)
        op, chain, rest = argv[1], argv[2], argv[3:]
        rules = self.chains.get(chain)
        if op == "-N":
            if rules is not None:
                return 1, ""
            self.chains[chain] = []
            return 0, ""
        assert rules is not None, f"no chain {chain}"
        if op == "-F":
            rules.clear()
        elif op == "-A":
            rules.append(" ".join(["-A", chain, *rest]))
        elif op == "-I":
            rules.insert(int(rest[0]) - 1, " ".join(["-A", chain, *rest[1:]]))
        elif op == "-D":
            rule = " ".join(["-A", chain, *rest])
            if rule not in rules:
                return 1, ""
            rules.remove(rule)
        elif op == "-S":
            return 0, "".join(f"{r}\n" for r in [f"-N {chain}", *rules])
        else:
            raise AssertionError(f"unexpected iptables call {argv}")
        return 0, ""


@pytest.fixture
def ipt(monkeypatch: pytest.MonkeyPatch) -> FakeIptables:
    fake = FakeIptables()

    def run(argv: list[str], *, check: bool = True, **_: Any) -> str:
        rc, out = fake(argv)
        if check and rc:
            raise RuntimeError(f"{argv} failed")
        return out

    def sp_run(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        rc, out = fake(argv)
        return subprocess.CompletedProcess(argv, rc, out, "")

    monkeypatch.setattr(hostnet, "run", run)
    monkeypatch.setattr(hostnet.procs, "run", sp_run)
    return fake


def test_ingress_guard_rules_are_pinned() -> None:
    assert hostnet.ingress_guard_rules("hpakit0", "10.244.0.1") == {
        # routed into the bridge from anywhere but the bridge: pod IPs, ClusterIPs, NodePorts
        ("FORWARD", "HPAKIT-INGRESS"): [
            ["-i", "hpakit0", "-j", "RETURN"],
            ["-o", "hpakit0", "-j", "DROP"],
        ],
        # the node (bridge) address: only pods and the host itself
        ("INPUT", "HPAKIT-INPUT"): [
            ["-i", "hpakit0", "-j", "RETURN"],
            ["-i", "lo", "-j", "RETURN"],
            ["-d", "10.244.0.1/32", "-j", "DROP"],
        ],
    }


def test_ingress_guard_closes_listed_ports_on_every_address() -> None:
    rules = hostnet.ingress_guard_rules("hpakit0", "10.244.0.1", closed_ports=(20244,))
    assert rules[("INPUT", "HPAKIT-INPUT")] == [
        ["-i", "hpakit0", "-j", "RETURN"],
        ["-i", "lo", "-j", "RETURN"],
        ["-p", "tcp", "--dport", "20244", "-j", "DROP"],  # kube-router's health port binds ":20244"
        ["-d", "10.244.0.1/32", "-j", "DROP"],
    ]


def test_ingress_guard_loads_its_chains_above_kube_proxy(ipt: FakeIptables) -> None:
    hostnet.ensure_ingress_guard("hpakit0", "10.244.0.1")
    assert ipt.chains["FORWARD"] == ["-A FORWARD -j HPAKIT-INGRESS", KUBE_PROXY_FORWARD]
    assert ipt.chains["INPUT"] == ["-A INPUT -j HPAKIT-INPUT"]
    assert ipt.chains["HPAKIT-INGRESS"] == [
        "-A HPAKIT-INGRESS -i hpakit0 -j RETURN",
        "-A HPAKIT-INGRESS -o hpakit0 -j DROP",
    ]
    assert ipt.chains["HPAKIT-INPUT"] == [
        "-A HPAKIT-INPUT -i hpakit0 -j RETURN",
        "-A HPAKIT-INPUT -i lo -j RETURN",
        "-A HPAKIT-INPUT -d 10.244.0.1/32 -j DROP",
    ]
    # the kit's own chains only: nothing is added to or flushed from a chain it does not own
    touched = {a[2] for a in ipt.argvs if a[1] in ("-N", "-F", "-A")}
    assert touched == {"HPAKIT-INGRESS", "HPAKIT-INPUT"}


def test_guards_share_the_top_without_moving_each_other(ipt: FakeIptables) -> None:
    """Both guards above kube-proxy's jumps; re-asserting them (after kube-proxy starts) is idempotent
    and deletes no jump, so there is no moment without a guard."""
    hostnet.ensure_egress_guard("hpakit0", "10.244.0.0/16")
    hostnet.ensure_ingress_guard("hpakit0", "10.244.0.1")
    layout = ["-A FORWARD -j HPAKIT-INGRESS", "-A FORWARD -j HPAKIT-EGRESS", KUBE_PROXY_FORWARD]
    assert ipt.chains["FORWARD"] == layout
    ipt.argvs.clear()
    hostnet.ensure_egress_guard("hpakit0", "10.244.0.0/16")
    hostnet.ensure_ingress_guard("hpakit0", "10.244.0.1")
    assert ipt.chains["FORWARD"] == layout
    assert not [a for a in ipt.argvs if a[1] in ("-D", "-I") and a[2] in ("FORWARD", "INPUT")]


def test_a_guard_below_kube_proxy_is_moved_back_on_top(ipt: FakeIptables) -> None:
    ipt.chains["INPUT"] = ["-A INPUT -j KUBE-FIREWALL", "-A INPUT -j HPAKIT-INPUT"]
    ipt.chains["HPAKIT-INPUT"] = []
    hostnet.ensure_ingress_guard("hpakit0", "10.244.0.1")
    assert ipt.chains["INPUT"] == ["-A INPUT -j HPAKIT-INPUT", "-A INPUT -j KUBE-FIREWALL"]


def test_down_removes_the_ingress_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    save = "\n".join(
        [
            "*filter",
            ":INPUT ACCEPT [0:0]",
            ":FORWARD ACCEPT [0:0]",
            ":HPAKIT-INGRESS - [0:0]",
            ":HPAKIT-INPUT - [0:0]",
            "-A INPUT -j HPAKIT-INPUT",
            "-A FORWARD -j HPAKIT-INGRESS",
            "-A HPAKIT-INGRESS -o hpakit0 -j DROP",
            "-A HPAKIT-INPUT -d 10.244.0.1/32 -j DROP",
            "COMMIT",
            "",
        ]
    )
    scripts: list[str] = []
    monkeypatch.setattr(hostnet, "_save", lambda family: save if family == "ipv4" else "")
    monkeypatch.setattr(hostnet, "run", lambda argv, *, input=None, **kw: scripts.append(input or ""))
    assert hostnet.iptables_cleanup(set()) == 2
    for line in (
        "-D INPUT -j HPAKIT-INPUT",
        "-D FORWARD -j HPAKIT-INGRESS",
        "-X HPAKIT-INPUT",
        "-X HPAKIT-INGRESS",
    ):
        assert line in scripts[0].splitlines()


def test_guards_stay_out_of_the_filter_table_kube_router_reorders(ipt: FakeIptables) -> None:
    """kube-router re-inserts its jumps at position 1 of filter's INPUT/FORWARD/OUTPUT on every sync
    and ACCEPTs what a policy allows there; a guard in filter would end up below it and be bypassed.
    Every guard command names the mangle table (the fake refuses anything else)."""
    hostnet.ensure_egress_guard("hpakit0", "10.244.0.0/16")
    hostnet.ensure_ingress_guard("hpakit0", "10.244.0.1")
    assert hostnet.GUARD_TABLE == "mangle"
    assert ipt.chains["HPAKIT-EGRESS"][-1] == "-A HPAKIT-EGRESS -i hpakit0 -j DROP"  # REJECT is filter-only


def test_down_destroys_only_the_ipsets_it_created(monkeypatch: pytest.MonkeyPatch) -> None:
    sets = ["KUBE-DST-AAA", "KUBE-SRC-BBB", "TMP-CCC", "inet6:KUBE-SRC-DDD", "KUBE-SRC-OLD", "docker-set"]
    destroyed: list[str] = []

    def sp_run(argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        if argv[:3] == ["ipset", "list", "-n"]:
            return subprocess.CompletedProcess(argv, 0, "\n".join(sets) + "\n", "")
        assert argv[:2] == ["ipset", "destroy"], argv
        destroyed.append(argv[2])
        return subprocess.CompletedProcess(argv, 1 if argv[2] == "TMP-CCC" else 0, "", "in use")

    monkeypatch.setattr(hostnet.procs, "run", sp_run)
    assert hostnet.ipset_cleanup({"KUBE-SRC-OLD"}) == ["TMP-CCC"]
    assert destroyed == ["KUBE-DST-AAA", "KUBE-SRC-BBB", "TMP-CCC", "inet6:KUBE-SRC-DDD"]
