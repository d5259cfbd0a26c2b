"""Settings of the local cluster: network ranges, ports and the controller-manager's HPA tuning.

They are persisted in the cluster's state dir (``cluster.json``) on the first ``up`` so that
``status``/``down`` from another process, and the next warm ``up``, use exactly the same values.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["HPASettings", "LocalSettings", "default_state_root", "parse_duration"]

_DURATION = re.compile(r"^(\d+(\.\d+)?(ms|s|m|h))+$")


def parse_duration(value: str) -> str:
    """Validate a Go duration such as ``5s`` or ``1m30s`` and return it unchanged."""
    value = str(value).strip()
    if not _DURATION.match(value):
        raise ValueError(f"invalid duration {value!r}: use a Go duration like 5s, 30s or 1m30s")
    return value


def default_state_root() -> Path:
    """``$HPA_KIT_STATE`` or ``~/.local/state/hpa-kit``."""
    env = os.environ.get("HPA_KIT_STATE")
    return Path(env).expanduser() if env else Path.home() / ".local" / "state" / "hpa-kit"


@dataclass
class HPASettings:
    """kube-controller-manager HPA flags; the upstream defaults are far too slow for tests."""

    sync_period: str = "5s"  # upstream 15s
    downscale_stabilization: str = "30s"  # upstream 5m
    cpu_initialization_period: str = "30s"  # upstream 5m
    initial_readiness_delay: str = "10s"  # upstream 30s
    tolerance: float = 0.1

    def __post_init__(self) -> None:
        for f in (
            "sync_period",
            "downscale_stabilization",
            "cpu_initialization_period",
            "initial_readiness_delay",
        ):
            setattr(self, f, parse_duration(getattr(self, f)))
        if not 0 <= float(self.tolerance) < 1:
            raise ValueError(f"invalid HPA tolerance {self.tolerance!r}: pass a fraction in [0, 1)")

    def flags(self) -> list[str]:
        return [
            f"--horizontal-pod-autoscaler-sync-period={self.sync_period}",
            f"--horizontal-pod-autoscaler-downscale-stabilization={self.downscale_stabilization}",
            f"--horizontal-pod-autoscaler-cpu-initialization-period={self.cpu_initialization_period}",
            f"--horizontal-pod-autoscaler-initial-readiness-delay={self.initial_readiness_delay}",
            f"--horizontal-pod-autoscaler-tolerance={self.tolerance}",
        ]


@dataclass
class LocalSettings:
    """Everything that shapes one local cluster."""

    name: str = "hpa-kit"
    state_root: Path = field(default_factory=default_state_root)
    #: False: etcd + kube-apiserver only (the ``control_plane`` fixture); no root needed.
    with_node: bool = True
    hpa: HPASettings = field(default_factory=HPASettings)
    node_name: str = ""  # default: the cluster name
    pod_cidr: str = "10.244.0.0/16"
    node_ip: str = "10.244.0.1"  # the bridge's address: reachable from pods and the host
    bridge: str = "hpakit0"
    service_cidr: str = "10.96.0.0/16"
    kubernetes_service_ip: str = "10.96.0.1"
    dns_ip: str = "10.96.0.10"
    cluster_domain: str = "cluster.local"
    #: kube-apiserver listens here; for a node cluster the node IP, so pods reach it via the bridge.
    apiserver_address: str = ""
    apiserver_port: int = 0  # 0: 6443 for a node cluster, a free port otherwise
    etcd_client_port: int = 0  # 0: 2379 if free, else a free port
    etcd_peer_port: int = 0
    controller_manager_port: int = 0  # 0: 10257 if free
    scheduler_port: int = 0  # 0: 10259 if free
    #: Upstream DNS servers CoreDNS forwards to (default: the host's non-loopback nameservers).
    dns_upstreams: list[str] = field(default_factory=list)
    #: Reject forwarded traffic from the pod bridge to anything but the pod network.
    egress_guard: bool = True
    #: Drop traffic from other interfaces (other hosts) to the pods, services and node address.
    ingress_guard: bool = True
    #: Enforce NetworkPolicies: run kube-router (firewall only) on the host (harness/cluster/flags.py).
    network_policy: bool = True
    kube_router_health_port: int = 20244
    #: Point containerd's registry traffic at a dead loopback proxy (images come from archives only).
    block_registry_pulls: bool = True
    #: Build missing binaries on ``up`` (``HPA_KIT_BUILD=0`` disables).
    build: bool = field(default_factory=lambda: os.environ.get("HPA_KIT_BUILD", "1") != "0")
    #: Extra images (names as in harness.images) imported into containerd on ``up``.
    images: list[str] = field(default_factory=list)
    #: Log verbosity of the Kubernetes components.
    verbosity: int = 1

    def __post_init__(self) -> None:
        if not re.match(r"^[a-z0-9]([a-z0-9-]{0,40}[a-z0-9])?$", self.name):
            raise ValueError(
                f"invalid cluster name {self.name!r}: use lower-case letters, digits and '-' (max 42)"
            )
        self.state_root = Path(self.state_root).expanduser()
        if isinstance(self.hpa, dict):
            self.hpa = HPASettings(**self.hpa)
        if not self.node_name:
            self.node_name = self.name
        if not self.apiserver_address:
            self.apiserver_address = self.node_ip if self.with_node else "127.0.0.1"

    @property
    def state_dir(self) -> Path:
        return self.state_root / "clusters" / self.name

    def to_json(self) -> str:
        data: dict[str, Any] = dataclasses.asdict(self)
        data["state_root"] = str(self.state_root)
        data.pop("build", None)
        return json.dumps(data, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, **overrides: Any) -> LocalSettings:
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**data)
