"""The reference install's NetworkPolicies (issue 12), over every overlay's build.

Every namespace the kit runs pods in denies ingress by default; each allow names its ports and its
peers, and the peers select pods the kit really runs. render() swaps the API server placeholder for
the cluster's addresses. Whether a CNI enforces them is tests/e2e/test_netpol.py's question.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from harness import manifests

pytestmark = pytest.mark.skipif(
    shutil.which(os.environ.get("KUBECTL", "kubectl")) is None, reason="needs kubectl"
)

POD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "Prometheus")
NAMESPACE_LABEL = "kubernetes.io/metadata.name"


@pytest.fixture(scope="module")
def built() -> dict[str, list[dict[str, Any]]]:
    return {name: manifests.build(name) for name in manifests.OVERLAYS}


def _policies(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == "NetworkPolicy"]


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert not selector.get("matchExpressions"), "the kit's policies use matchLabels only"
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def _pods(objs: list[dict[str, Any]]) -> list[tuple[str, dict[str, str], set[str]]]:
    """(namespace, pod labels, named container ports) of every pod the build runs.

    The Prometheus Operator labels its Prometheus pods like the kit's ``prometheus`` Service selects
    them and names their port ``web``.
    """
    out = []
    for o in objs:
        ns = o["metadata"].get("namespace", "")
        if o["kind"] == "Prometheus":
            svc = next(s for s in objs if s["kind"] == "Service" and s["metadata"]["name"] == "prometheus")
            out.append((ns, dict(svc["spec"]["selector"]), {"web"}))
        elif o["kind"] in POD_KINDS:
            tpl = o["spec"]["template"]
            ports = {
                p["name"] for c in tpl["spec"]["containers"] for p in c.get("ports") or [] if "name" in p
            }
            out.append((ns, dict(tpl["metadata"].get("labels") or {}), ports))
    return out


@pytest.mark.parametrize("overlay", manifests.OVERLAYS)
def test_every_pod_namespace_denies_ingress_by_default(
    built: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    objs = built[overlay]
    pod_namespaces = {ns for ns, _, _ in _pods(objs)}
    assert pod_namespaces >= {"monitoring", "custom-metrics", "hpa-demo"}
    deny = {
        p["metadata"]["namespace"]
        for p in _policies(objs)
        if p["spec"]["podSelector"] == {}
        and p["spec"].get("policyTypes") == ["Ingress"]
        and not p["spec"].get("ingress")
    }
    assert pod_namespaces <= deny, f"{overlay}: no default-deny ingress in {sorted(pod_namespaces - deny)}"


@pytest.mark.parametrize("overlay", manifests.OVERLAYS)
def test_every_allow_names_ports_and_peers_the_kit_runs(
    built: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    objs = built[overlay]
    pods = _pods(objs)
    allows = [p for p in _policies(objs) if p["spec"].get("ingress")]
    assert len(allows) == 4, [p["metadata"]["name"] for p in allows]
    for pol in allows:
        ns, name = pol["metadata"]["namespace"], pol["metadata"]["name"]
        targets = [
            (lbl, ports)
            for pns, lbl, ports in pods
            if pns == ns and _selects(pol["spec"]["podSelector"], lbl)
        ]
        assert targets, f"{ns}/{name} selects no pod of the build"
        assert pol["spec"]["podSelector"] != {}, f"{ns}/{name}: an allow must not select the whole namespace"
        for rule in pol["spec"]["ingress"]:
            assert rule.get("ports"), f"{ns}/{name}: every allow names its ports"
            assert rule.get("from"), f"{ns}/{name}: every allow names its peers (none would mean anyone)"
            for port in rule["ports"]:
                assert port.get("protocol") == "TCP" and port.get("port"), f"{ns}/{name}: {port}"
                named = port["port"]
                # sidecar-http exists only with the resource-metrics component's cpu-sidecar
                if named != "sidecar-http" or overlay in ("resource-metrics", "test"):
                    assert any(named in p for _, p in targets), (
                        f"{ns}/{name}: no selected pod has port {named}"
                    )
            for peer in rule["from"]:
                if "ipBlock" in peer:
                    assert peer["ipBlock"] == {"cidr": manifests.APISERVER_CIDR_PLACEHOLDER}, (ns, name, peer)
                    continue
                peer_ns = (
                    (peer.get("namespaceSelector") or {}).get("matchLabels", {}).get(NAMESPACE_LABEL, ns)
                )
                assert set(
                    peer.get("namespaceSelector", {"matchLabels": {NAMESPACE_LABEL: ns}})["matchLabels"]
                ) == {NAMESPACE_LABEL}, f"{ns}/{name}: peers name their namespace"
                assert peer.get("podSelector", {}).get("matchLabels"), f"{ns}/{name}: a peer names its pods"
                assert any(pns == peer_ns and _selects(peer["podSelector"], lbl) for pns, lbl, _ in pods), (
                    f"{ns}/{name}: peer {peer} selects no pod of the build"
                )


def _peer_name(peer: dict[str, Any]) -> str:
    if "ipBlock" in peer:
        return str(peer["ipBlock"]["cidr"])
    ns = (peer.get("namespaceSelector") or {}).get("matchLabels", {}).get(NAMESPACE_LABEL, "same")
    return f"{ns}/{peer['podSelector']['matchLabels']['app.kubernetes.io/name']}"


def test_who_may_connect_where(built: dict[str, list[dict[str, Any]]]) -> None:
    """The issue's matrix, read back from the build: target -> (port, peers)."""
    got = {}
    for pol in _policies(built["default"]):
        for rule in pol["spec"].get("ingress") or []:
            peers = sorted(_peer_name(peer) for peer in rule["from"])
            got[pol["metadata"]["name"]] = (sorted(p["port"] for p in rule["ports"]), peers)
    api = manifests.APISERVER_CIDR_PLACEHOLDER
    assert got == {
        "prometheus-ingress": (["web"], [api, "custom-metrics/hpa-kit-adapter"]),
        "adapter-ingress": (["https"], [api]),
        "mockmetrics-ingress": (["http", "sidecar-http"], ["monitoring/prometheus", "same/locust"]),
        "locust-master-ingress": (["comm"], ["same/locust"]),
    }


def test_anonymous_fallback_keeps_the_adapter_policy(built: dict[str, list[dict[str, Any]]]) -> None:
    """Its docs tell users to pair it with the adapter NetworkPolicy: the overlay ships it."""
    names = {
        (p["metadata"]["namespace"], p["metadata"]["name"]) for p in _policies(built["anonymous-fallback"])
    }
    assert {("custom-metrics", "default-deny-ingress"), ("custom-metrics", "adapter-ingress")} <= names


def test_render_puts_the_api_server_in_every_placeholder(tmp_path: Path) -> None:
    out = manifests.render(
        "insecure", ca_bundle="", serving_secret_yaml=None, out_dir=tmp_path / "b",
        apiserver_cidrs=["10.244.0.1", "fd00::1/128"],
    )  # fmt: skip
    objs = manifests.load_objects(manifests.kustomize(out))
    assert manifests.apiserver_placeholder_paths(objs) == {}
    blocks = {
        p["metadata"]["name"]: [
            peer["ipBlock"]["cidr"] for r in p["spec"]["ingress"] for peer in r["from"] if "ipBlock" in peer
        ]
        for p in _policies(objs)
        if p["spec"].get("ingress")
    }
    assert blocks == {
        "prometheus-ingress": ["10.244.0.1/32", "fd00::1/128"],
        "adapter-ingress": ["10.244.0.1/32", "fd00::1/128"],
        "mockmetrics-ingress": [],
        "locust-master-ingress": [],
    }
    # the adapter peer of Prometheus is kept next to them
    prom = next(p for p in _policies(objs) if p["metadata"]["name"] == "prometheus-ingress")
    assert len(prom["spec"]["ingress"][0]["from"]) == 3


def test_render_without_addresses_keeps_the_placeholder_that_matches_nothing(tmp_path: Path) -> None:
    out = manifests.render("insecure", ca_bundle="", serving_secret_yaml=None, out_dir=tmp_path / "b")
    paths = manifests.apiserver_placeholder_paths(manifests.load_objects(manifests.kustomize(out)))
    assert paths == {
        ("monitoring", "prometheus-ingress"): ["/spec/ingress/0/from/1"],
        ("custom-metrics", "adapter-ingress"): ["/spec/ingress/0/from/0"],
    }


def test_render_rejects_a_bad_address(tmp_path: Path) -> None:
    with pytest.raises(manifests.ManifestError, match="not an address or CIDR"):
        manifests.render(
            "insecure",
            ca_bundle="",
            serving_secret_yaml=None,
            out_dir=tmp_path / "b",
            apiserver_cidrs=["apiserver"],
        )


class _Slices:
    def __init__(self, addresses: list[list[str]]) -> None:
        self.items = [{"endpoints": [{"addresses": a} for a in addresses]}] if addresses else []
        self.calls: list[tuple[str, ...]] = []

    def json(self, *args: str) -> dict[str, Any]:
        self.calls.append(args)
        return {"items": self.items}


def test_stack_names_the_api_server_from_its_endpointslices(tmp_path: Path) -> None:
    from harness.stack import Stack, StackError

    st = Stack(kubeconfig=tmp_path / "kc", work_dir=tmp_path, certs_override=tmp_path)
    st.kubectl = _Slices([["10.244.0.1"], ["10.244.0.1", "fd00::1"]])  # type: ignore[assignment]
    assert st.apiserver_cidrs() == ["10.244.0.1/32", "fd00::1/128"]
    assert st.kubectl.calls == [
        ("-n", "default", "get", "endpointslices", "-l", "kubernetes.io/service-name=kubernetes")
    ]
    st.kubectl = _Slices([])  # type: ignore[assignment]
    with pytest.raises(StackError, match="no API server address"):
        st.apiserver_cidrs()
