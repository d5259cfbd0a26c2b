"""The order in which ``LocalCluster`` starts and waits for its components, and the argv it starts
each with, with every process, wait and host change replaced by a recorder.

Pins the warm ``up`` overlap: containerd and etcd start together, the API server starts while
containerd comes up, and the image import runs alongside the API server's wait (joined only just
before CoreDNS needs the images).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from harness import procs
from harness.cluster import hostnet, local
from harness.cluster.local import LocalCluster
from tests.unit.test_cluster_flags import BIN, ETCD, NODE, _apiserver, _pki, _settings


def _recorded(with_node: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], dict[str, object]]:
    events: list[str] = []
    argvs: dict[str, object] = {}
    # State dir /st/clusters/pin is never touched: everything that would write there is replaced.
    c = LocalCluster(_settings(with_node))
    fake_pki = _pki(c.state_dir / "pki")
    monkeypatch.setenv("HPA_KIT_BIN_DIR", BIN)
    monkeypatch.setenv("HPA_KIT_CACHE", "/cache")
    rec = procs.ProcessRecord("x", 1, 1, [], "/dev/null")

    def start(component: str, argv: list[str], env: dict[str, str] | None = None) -> procs.ProcessRecord:
        events.append(f"start {component}")
        argvs[component] = argv
        if env is not None:
            argvs[f"{component}-env"] = env
        return rec

    def wait(name: str, r: object, check: Callable[[], object], *a: Any, **kw: Any) -> None:
        events.append(f"wait {name}")

    class Worker:
        def __init__(self, fn: Callable[[], None]) -> None:
            events.append("images: import starts")

        def join(self, progress: object, what: str) -> None:
            events.append(f"{what}: joined")

    patches: dict[str, Any] = {
        "_persist": lambda: None,
        "_resolve_ports": lambda: None,
        "_ensure_pki": lambda: fake_pki,
        "_write_versions": lambda: None,
        "_prepare_host": lambda progress: events.append("prepare host"),
        "_start_if_needed": start,
        "_record": lambda component: rec,
        "_wait": wait,
        "_apply": lambda docs, progress, what: events.append(f"apply {what}"),
        "component_states": lambda: [],
        "info": lambda: "info",
    }
    for name, fn in patches.items():
        monkeypatch.setattr(c, name, fn)
    monkeypatch.setattr(local, "_Worker", Worker)
    monkeypatch.setattr(hostnet, "ensure_egress_guard", lambda *a: events.append("egress guard"))
    monkeypatch.setattr(hostnet, "ensure_ingress_guard", lambda *a: events.append("ingress guard"))
    monkeypatch.setattr(procs, "wait_until", lambda *a, component, **kw: events.append(f"wait {component}"))
    assert c._create_locked(lambda msg: None) == "info"
    return events, argvs


def test_node_cluster_startup_order_and_command_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    events, argvs = _recorded(True, monkeypatch)
    assert events == [
        "prepare host",
        "start containerd",
        "start etcd",
        "wait etcd",
        "start kube-apiserver",
        "wait containerd",
        "images: import starts",
        "wait kube-apiserver",
        "start kube-controller-manager",
        "start kube-scheduler",
        "start kubelet",
        "start kube-proxy",
        "wait kube-controller-manager",
        "wait kube-scheduler",
        "wait kubelet",
        "wait node/pin",
        "wait kube-proxy",
        "start kube-router",
        "egress guard",
        "ingress guard",
        "images: joined",
        "apply CoreDNS",
        "wait kube-router",
        "wait coredns",
    ]
    assert argvs == NODE


def test_control_plane_startup_order_and_command_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    events, argvs = _recorded(False, monkeypatch)
    assert events == ["start etcd", "wait etcd", "start kube-apiserver", "wait kube-apiserver"]
    # node-less: the aggregator resolves Services itself (ExternalName to loopback; test_cluster_flags)
    assert argvs == {"etcd": ETCD, "kube-apiserver": _apiserver("127.0.0.1", aggregator_routing=False)}
