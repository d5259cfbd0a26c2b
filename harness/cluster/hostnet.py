"""Host-side plumbing of the local node and its exact undo.

``up`` records what it is about to change (sysctls, which iptables chains and cgroups already
existed) in ``host-baseline.json``; ``down`` restores from that record. Everything here acts only on
names the cluster owns: its bridge, veths attached to it, chains named KUBE-*/CNI-*/HPAKIT-* and ipsets
named KUBE-*/TMP-* (kube-router's) that were not there before, mounts under its own directories,
processes in its own cgroups or talking to its own
containerd socket.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from harness import procs

__all__ = [
    "CGROUP_ROOT",
    "GUARD_TABLE",
    "OWNED_CHAIN",
    "OWNED_IPSET",
    "SYSCTLS",
    "Baseline",
    "delete_bridge",
    "ensure_bridge",
    "ensure_egress_guard",
    "ensure_ingress_guard",
    "ingress_guard_rules",
    "ipset_cleanup",
    "ipsets",
    "iptables_cleanup",
    "kill_cgroup_procs",
    "mounts_under",
    "owned_chains",
    "remove_cgroups",
    "run",
    "unmount_under",
]

#: sysctls the node needs (ip_forward, bridge netfilter) or that kubelet sets itself.
SYSCTLS: dict[str, str | None] = {
    "net.ipv4.ip_forward": "1",
    "net.bridge.bridge-nf-call-iptables": "1",
    "net.bridge.bridge-nf-call-ip6tables": "1",
    # written by kubelet (protectKernelDefaults: false) - restored on down
    "vm.overcommit_memory": None,
    "vm.panic_on_oom": None,
    "kernel.panic": None,
    "kernel.panic_on_oops": None,
    "kernel.keys.root_maxkeys": None,
    "kernel.keys.root_maxbytes": None,
    "net.ipv4.conf.all.route_localnet": None,
}

OWNED_CHAIN = re.compile(r"^(KUBE-|CNI-|HPAKIT-)")
#: kube-router's ipsets (the NetworkPolicy enforcer): KUBE-SRC-/KUBE-DST-, its TMP- swap sets, and
#: their IPv6 twins (``inet6:`` prefix).
OWNED_IPSET = re.compile(r"^(inet6:)?(KUBE-|TMP-)")
#: Where the guards live. Not ``filter``: kube-router moves its jumps to the top of filter's INPUT,
#: FORWARD and OUTPUT on every sync and ACCEPTs traffic a policy allows there, which would bypass a
#: guard below it. ``mangle`` runs before ``filter`` on the same hooks and nobody else uses it here;
#: REJECT exists only in ``filter``, so every guard DROPs.
GUARD_TABLE = "mangle"
CGROUP_ROOT = Path("/sys/fs/cgroup")
EGRESS_CHAIN = "HPAKIT-EGRESS"
#: Forwarded traffic into the pod bridge (pods, ClusterIPs) from any other interface.
INGRESS_CHAIN = "HPAKIT-INGRESS"
#: Traffic to the node (bridge) address arriving on any other interface.
INPUT_CHAIN = "HPAKIT-INPUT"


def run(argv: list[str], *, check: bool = True, input: str | None = None, timeout: float = 30) -> str:
    """Run a host tool, returning stdout; raise RuntimeError with its stderr on failure (also for a
    missing tool or a timeout, whatever ``check``)."""
    return procs.run(argv, input=input, timeout=timeout, check=check, error=RuntimeError).stdout


def _rc(argv: list[str]) -> int:
    """The exit code of a host tool run for its effect only (its output is not wanted)."""
    return procs.run(argv, check=False, error=RuntimeError).returncode


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctl(name: str) -> str | None:
    try:
        return _sysctl_path(name).read_text().strip()
    except OSError:
        return None


def write_sysctl(name: str, value: str) -> None:
    _sysctl_path(name).write_text(value + "\n")


# ------------------------------------------------------------------------------------------ baseline


class Baseline:
    """What the host looked like before the first ``up`` (kept until ``down`` restored it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict = {}
        if path.exists():
            with contextlib.suppress(OSError, ValueError):
                self.data = json.loads(path.read_text())

    @property
    def recorded(self) -> bool:
        return bool(self.data)

    def record(self, bridge: str) -> None:
        """Snapshot the host, unless a snapshot from an earlier, not yet undone ``up`` exists."""
        if self.recorded:
            return
        self.data = {
            "sysctls": {k: read_sysctl(k) for k in SYSCTLS},
            "chains": {f"{fam}/{table}": sorted(chains) for (fam, table), chains in _all_chains().items()},
            "ipsets": ipsets(),
            "cgroups": sorted(str(p) for p in _kubepods_dirs()),
            "var_log_containers": Path("/var/log/containers").exists(),
            "bridge_existed": Path(f"/sys/class/net/{bridge}").exists(),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, indent=1))

    def apply_sysctls(self) -> list[str]:
        """Set the sysctls the node needs; returns the ones the kernel refused (with reasons)."""
        problems = []
        for name, value in SYSCTLS.items():
            if value is None or read_sysctl(name) == value:
                continue
            try:
                write_sysctl(name, value)
            except OSError as exc:
                problems.append(f"{name}={value}: {exc.strerror}")
        return problems

    def restore(self) -> list[str]:
        """Undo sysctls; returns problems. Forget the snapshot afterwards."""
        problems = []
        for name, value in self.data.get("sysctls", {}).items():
            if value is None or read_sysctl(name) == value:
                continue
            try:
                write_sysctl(name, value)
            except OSError as exc:
                problems.append(f"restore {name}={value}: {exc.strerror}")
        return problems

    def preexisting_ipsets(self) -> set[str]:
        return set(self.data.get("ipsets", []))

    def preexisting_chains(self) -> set[str]:
        return {f"{k}/{c}" for k, chains in self.data.get("chains", {}).items() for c in chains}

    def forget(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.data = {}


# -------------------------------------------------------------------------------------------- bridge


def ensure_bridge(bridge: str, node_ip: str, pod_cidr: str, service_cidr: str) -> None:
    """Create the pod bridge with the node IP (gateway) before anything needs that address.

    A route for the service CIDR onto the bridge keeps even an unknown ClusterIP on this machine
    (without it such a packet would follow the default route off the host).
    """
    prefix = pod_cidr.split("/")[1]
    if not Path(f"/sys/class/net/{bridge}").exists():
        run(["ip", "link", "add", "name", bridge, "type", "bridge"])
    addrs = run(["ip", "-o", "-4", "addr", "show", "dev", bridge])
    if f" {node_ip}/" not in addrs:
        run(["ip", "addr", "add", f"{node_ip}/{prefix}", "dev", bridge])
    run(["ip", "link", "set", bridge, "up"])
    run(["ip", "route", "replace", service_cidr, "dev", bridge, "src", node_ip])


def bridge_ports(bridge: str) -> list[str]:
    d = Path(f"/sys/class/net/{bridge}/brif")
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def delete_bridge(bridge: str) -> list[str]:
    """Delete the veths attached to ``bridge`` and the bridge itself; returns what was removed."""
    removed = []
    for port in bridge_ports(bridge):
        if _rc(["ip", "link", "del", port]) == 0:
            removed.append(port)
    if Path(f"/sys/class/net/{bridge}").exists():
        run(["ip", "link", "del", bridge], check=False)
        removed.append(bridge)
    return removed


# ------------------------------------------------------------------------------------------ iptables

_FAMILIES = {"ipv4": ("iptables-save", "iptables-restore"), "ipv6": ("ip6tables-save", "ip6tables-restore")}


def _save(family: str) -> str:
    try:
        return run([_FAMILIES[family][0]], check=False)
    except RuntimeError:  # the tool is missing or hung: no rules known
        return ""


def _parse(save: str) -> dict[str, tuple[list[str], list[str]]]:
    """table -> (chain names, rule lines) from iptables-save output."""
    tables: dict[str, tuple[list[str], list[str]]] = {}
    current = None
    for line in save.splitlines():
        if line.startswith("*"):
            current = line[1:].strip()
            tables[current] = ([], [])
        elif current and line.startswith(":"):
            tables[current][0].append(line[1:].split()[0])
        elif current and line.startswith("-A "):
            tables[current][1].append(line)
    return tables


def _all_chains() -> dict[tuple[str, str], list[str]]:
    out = {}
    for fam in _FAMILIES:
        for table, (chains, _rules) in _parse(_save(fam)).items():
            out[(fam, table)] = chains
    return out


def owned_chains(preexisting: set[str] | None = None) -> dict[str, list[str]]:
    """'family/table' -> chains matching KUBE-/CNI-/HPAKIT- that were not there before ``up``."""
    pre = preexisting or set()
    out: dict[str, list[str]] = {}
    for (fam, table), chains in _all_chains().items():
        mine = [c for c in chains if OWNED_CHAIN.match(c) and f"{fam}/{table}/{c}" not in pre]
        if mine:
            out[f"{fam}/{table}"] = mine
    return out


def iptables_cleanup(preexisting: set[str] | None = None) -> int:
    """Remove every rule jumping to an owned chain, then flush and delete those chains.

    Done with one ``iptables-restore --noflush`` per family and table so it is atomic; returns the
    number of chains deleted.
    """
    pre = preexisting or set()
    deleted = 0
    for fam, (save_cmd, restore_cmd) in _FAMILIES.items():
        for table, (chains, rules) in _parse(_save(fam)).items():
            mine = {c for c in chains if OWNED_CHAIN.match(c) and f"{fam}/{table}/{c}" not in pre}
            # Rules in non-owned chains that reference an owned chain (jumps from FORWARD, OUTPUT, ...).
            refs = []
            for rule in rules:
                parts = rule.split()
                chain = parts[1]
                target = parts[parts.index("-j") + 1] if "-j" in parts else None
                if chain not in mine and target in mine:
                    refs.append("-D" + rule[2:])
            if not mine:
                continue
            script = [
                f"*{table}",
                *refs,
                *(f"-F {c}" for c in sorted(mine)),
                *(f"-X {c}" for c in sorted(mine)),
                "COMMIT",
                "",
            ]
            try:
                run([restore_cmd, "--noflush"], input="\n".join(script))
                deleted += len(mine)
            except RuntimeError:
                # Fall back to one command at a time, ignoring rules that vanished meanwhile.
                tool = save_cmd.replace("-save", "")
                for r in refs:
                    _rc([tool, "-t", table, *_split_rule(r)])
                for c in mine:
                    _rc([tool, "-t", table, "-F", c])
                for c in mine:
                    if _rc([tool, "-t", table, "-X", c]) == 0:
                        deleted += 1
    return deleted


def ipsets() -> list[str]:
    """Names of the host's ipsets ([] when the ``ipset`` tool is missing)."""
    try:
        out = procs.run(["ipset", "list", "-n"], timeout=30, check=False, error=RuntimeError)
    except RuntimeError as exc:
        if isinstance(exc.__cause__, FileNotFoundError):
            return []
        raise
    return sorted(out.stdout.split()) if out.returncode == 0 else []


def ipset_cleanup(preexisting: set[str] | None = None) -> list[str]:
    """Destroy the owned ipsets (:data:`OWNED_IPSET`) that were not there before ``up``; run it after
    :func:`iptables_cleanup` (a set still referenced by a rule cannot be destroyed). Returns the sets
    that could not be destroyed."""
    pre = preexisting or set()
    left = []
    for name in ipsets():
        if not OWNED_IPSET.match(name) or name in pre:
            continue
        if _rc(["ipset", "destroy", name]) != 0:
            left.append(name)
    return left


def _split_rule(rule: str) -> list[str]:
    import shlex

    return shlex.split(rule)


def _load_chain(chain: str, rules: list[list[str]]) -> None:
    """Create ``chain`` (in :data:`GUARD_TABLE`) if needed and make its rules exactly ``rules``."""
    t = ["-t", GUARD_TABLE]
    _rc(["iptables", *t, "-N", chain])
    run(["iptables", *t, "-F", chain])
    for rule in rules:
        run(["iptables", *t, "-A", chain, *rule])


def _keep_on_top(builtin: str, chain: str) -> None:
    """Make sure ``builtin`` jumps to ``chain`` before any rule that is not another guard's jump.

    Only the guards use :data:`GUARD_TABLE` today, but anything that prepends an ACCEPT there later
    would bypass a guard below it. The guards match disjoint traffic, so their order among
    themselves does not matter and re-asserting one never moves another.
    """
    t = ["-t", GUARD_TABLE]
    rules = [r for r in run(["iptables", *t, "-S", builtin], check=False).splitlines() if r.startswith("-A ")]
    ours = f"-A {builtin} -j {chain}"
    for rule in rules:
        if rule == ours:
            return
        parts = rule.split()  # another guard's jump is exactly "-A <builtin> -j HPAKIT-..."
        if not (len(parts) == 4 and parts[2] == "-j" and parts[3].startswith("HPAKIT-")):
            break
    while _rc(["iptables", *t, "-D", builtin, "-j", chain]) == 0:
        pass
    run(["iptables", *t, "-I", builtin, "1", "-j", chain])


def ensure_egress_guard(bridge: str, pod_cidr: str) -> None:
    """Drop traffic forwarded from the pod bridge to anything outside the pod network.

    Pods may talk to each other and to the host (INPUT, not FORWARD); nothing they send is routed
    off this machine. DROP, not REJECT: see :data:`GUARD_TABLE`.
    """
    _load_chain(
        EGRESS_CHAIN,
        [
            ["-i", bridge, "-o", bridge, "-j", "RETURN"],
            ["-i", bridge, "-d", pod_cidr, "-j", "RETURN"],
            ["-i", bridge, "-j", "DROP"],
        ],
    )
    _keep_on_top("FORWARD", EGRESS_CHAIN)


def ingress_guard_rules(
    bridge: str, node_ip: str, closed_ports: Sequence[int] = ()
) -> dict[tuple[str, str], list[list[str]]]:
    """(built-in chain, our chain) -> our chain's rules: nothing from another host reaches the node.

    * FORWARD: a packet routed out of the bridge that did not come in on it is dropped. Every pod IP
      and (through the service route :func:`ensure_bridge` adds, or kube-proxy's DNAT to a pod)
      every ClusterIP and NodePort leaves through the bridge, so this covers the pod and service
      CIDRs; traffic bridged on other bridges (Docker's, kind's) has another ``-o`` and is untouched.
    * INPUT: the node address (where kube-apiserver and the kubelet answer pods) only from the
      bridge and loopback; the host's own connections to it come in on ``lo``. ``closed_ports``:
      TCP ports of node components that listen on every address (kube-router's health port) are
      closed the same way on all of the host's addresses.

    The host reaching pods is unaffected: its packets leave through OUTPUT and the replies arrive on
    the bridge. DROP rather than REJECT: a scan from outside learns nothing.
    """
    return {
        ("FORWARD", INGRESS_CHAIN): [
            ["-i", bridge, "-j", "RETURN"],
            ["-o", bridge, "-j", "DROP"],
        ],
        ("INPUT", INPUT_CHAIN): [
            ["-i", bridge, "-j", "RETURN"],
            ["-i", "lo", "-j", "RETURN"],
            *(["-p", "tcp", "--dport", str(port), "-j", "DROP"] for port in closed_ports),
            ["-d", f"{node_ip}/32", "-j", "DROP"],
        ],
    }


def ensure_ingress_guard(bridge: str, node_ip: str, closed_ports: Sequence[int] = ()) -> None:
    """Drop traffic from other interfaces (other hosts that route to this one) to the pods, the
    services and the node address; see :func:`ingress_guard_rules`. ``down`` removes the chains
    (``HPAKIT-*``) with the rest."""
    for (builtin, chain), rules in ingress_guard_rules(bridge, node_ip, closed_ports).items():
        _load_chain(chain, rules)
        _keep_on_top(builtin, chain)


# ---------------------------------------------------------------------------------- mounts & cgroups


def _unescape(path: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def mounts_under(prefixes: Iterable[Path]) -> list[str]:
    """Mount points at or below any of ``prefixes``, deepest first."""
    roots = [str(Path(p)) for p in prefixes]
    found = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        mp = _unescape(line.split()[4])
        if any(mp == r or mp.startswith(r + "/") for r in roots):
            found.append(mp)
    return sorted(set(found), key=lambda m: (-m.count("/"), m))


def unmount_under(prefixes: Iterable[Path]) -> list[str]:
    """Unmount everything below ``prefixes`` (lazy as a last resort); returns what stays mounted."""
    prefixes = list(prefixes)
    for _ in range(3):
        mps = mounts_under(prefixes)
        if not mps:
            return []
        for mp in mps:
            if _rc(["umount", mp]) != 0:
                _rc(["umount", "-l", mp])
    return mounts_under(prefixes)


def _hierarchies() -> list[Path]:
    if not CGROUP_ROOT.is_dir():
        return []
    return [p for p in CGROUP_ROOT.iterdir() if p.is_dir() and not p.is_symlink()]


def _kubepods_dirs() -> list[Path]:
    return [h / "kubepods" for h in _hierarchies() if (h / "kubepods").is_dir()]


def _cgroup_dirs(root: Path) -> list[Path]:
    """Every directory under ``root`` (itself included), deepest first.

    kubelet removes a container's cgroup at any moment, so a directory listed by its parent may be gone
    when the walk reaches it: os.walk skips such a directory (its onerror is None) where Path.rglob raises.
    """
    dirs = [Path(dirpath) for dirpath, _, _ in os.walk(root)]
    return sorted(dirs, key=lambda p: -len(p.parts))


def kill_cgroup_procs(timeout: float = 10) -> int:
    """SIGKILL every process in the kubelet's ``kubepods`` cgroups (the pods); returns how many."""
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids: set[int] = set()
        for root in _kubepods_dirs():
            for d in _cgroup_dirs(root):
                with contextlib.suppress(OSError, ValueError):
                    pids.update(int(x) for x in (d / "cgroup.procs").read_text().split())
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
        time.sleep(0.2)
    return len(killed)


def remove_cgroups(preexisting: Iterable[str] = ()) -> list[str]:
    """rmdir the ``kubepods`` trees kubelet made (deepest first); returns dirs that stay."""
    pre = set(preexisting)
    stuck = []
    for root in _kubepods_dirs():
        if str(root) in pre:
            continue
        for d in _cgroup_dirs(root):
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                stuck.append(str(d))
    return stuck
