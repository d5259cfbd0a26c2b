"""The reference install's NetworkPolicies, enforced (issue 12 item 8): local provider only.

The local node runs kube-router (firewall only) as its NetworkPolicy enforcer; kind's bridge CNI
enforces nothing, so there the policies are applied but this module skips. Connections are made
from throwaway pods this module creates: the host's Python runs inside a pod's network namespace
(``nsenter -n``), so each attempt leaves from that pod's IP. Targets are the stack's own pods, by
pod IP, and nothing outside the cluster's bridge is contacted.

kube-router programs a new pod's rules asynchronously (a new source pod may not be in a policy's
allowed set yet, and a target may be reachable until its chain exists), so every expectation is
first awaited (up to ``SETTLE_S``) and then must hold for ``REPEAT`` further attempts in a row.
Without the policies, or without the enforcer, every "refused" expectation times out and fails.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from harness.cluster.configs import SANDBOX_IMAGE
from harness.kubectl import Kubectl
from harness.report import quantity
from harness.stack import ADAPTER_NS, DEMO_NS, MONITORING_NS, Stack
from harness.waits import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

PROBE_NS = "hpakit-t-netpol"
SETTLE_S = 90.0
REPEAT = 3
CONNECT_TIMEOUT_S = 3.0

# Runs inside a pod's network namespace. REFUSED: no TCP connection (the verdict a policy gives);
# CONNECTED: connected, but no HTTP answer (TLS port, or method CONNECT: connect only); HTTP <status>.
_CLIENT = """
import http.client, sys
host, port, method, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
c = http.client.HTTPConnection(host, port, timeout=float(sys.argv[5]))
try:
    c.connect()
except Exception as exc:
    sys.exit(print("REFUSED", type(exc).__name__, exc))
if method == "CONNECT":
    sys.exit(print("CONNECTED"))
try:
    c.request(method, path)
    print("HTTP", c.getresponse().status)
except Exception as exc:
    print("CONNECTED", type(exc).__name__, exc)
"""


@pytest.fixture(scope="module")
def enforced(cluster: Any, stack: Stack) -> Any:
    if cluster.provider != "local":
        pytest.skip(
            "specific to the local provider: only its node enforces NetworkPolicy (kube-router); "
            "the kind provider's bridge CNI does not, so there the policies are applied but not enforced"
        )
    states = {c.name: c.state for c in cluster.component_states()}
    assert states.get("kube-router") == "running", f"the NetworkPolicy enforcer is not running: {states}"
    return cluster


def _pod_pid(cluster: Any, kubectl: Kubectl, namespace: str, name: str) -> int:
    """PID of the first container of a running pod (its task in the node's containerd)."""
    pod = kubectl.json("-n", namespace, "get", "pod", name)
    cid = pod["status"]["containerStatuses"][0]["containerID"].split("://", 1)[1]
    out = subprocess.run(
        ["ctr", "-a", str(cluster.paths.containerd_sock), "-n", "k8s.io", "tasks", "ls"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] == cid:
            return int(parts[1])
    raise AssertionError(f"no containerd task for {namespace}/{name} ({cid})")


def _start_pod(kubectl: Kubectl, namespace: str, name: str, labels: dict[str, str]) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "containers": [{"name": "pause", "image": SANDBOX_IMAGE, "imagePullPolicy": "Never"}],
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": False,
        },
    }
    kubectl.apply([pod])
    kubectl.run(
        "-n", namespace, "wait", "--for=condition=Ready", f"pod/{name}", "--timeout=120s", timeout=150
    )


class Prober:
    """HTTP from inside one pod's network namespace."""

    def __init__(self, pid: int, what: str) -> None:
        self.pid, self.what = pid, what

    def http(self, ip: str, port: int, method: str = "GET", path: str = "/") -> str:
        out = subprocess.run(
            ["nsenter", "-t", str(self.pid), "-n", sys.executable, "-c", _CLIENT,
             ip, str(port), method, path, str(CONNECT_TIMEOUT_S)],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        return (out.stdout.strip() or out.stderr.strip())[-300:]

    def expect(self, ip: str, port: int, *, allowed: bool, method: str = "GET", path: str = "/") -> str:
        """Await the expected outcome, then require it ``REPEAT`` more times; returns the last answer."""
        ok = (lambda r: r.startswith("HTTP")) if allowed else (lambda r: r.startswith("REFUSED"))
        verb = "answers" if allowed else "is refused"
        wait_for(
            f"{method} {ip}:{port}{path} from {self.what} {verb}",
            lambda: (ok(r := self.http(ip, port, method, path)), r),
            timeout=SETTLE_S, interval=2, progress=None,
        )  # fmt: skip
        for _ in range(REPEAT):
            answer = self.http(ip, port, method, path)
            assert ok(answer), (
                f"{method} {ip}:{port}{path} from {self.what}: expected it {verb}, got {answer}"
            )
        return answer


@pytest.fixture(scope="module")
def probes(enforced: Any, kubectl: Kubectl) -> Iterator[dict[str, Prober]]:
    """A pod in a throwaway namespace (anyone) and one labelled as a Locust worker in the demo
    namespace (the load generator)."""
    kubectl.run("delete", "namespace", PROBE_NS, "--ignore-not-found", "--wait=true", timeout=180)
    kubectl.run("-n", DEMO_NS, "delete", "pod", "netpol-load", "--ignore-not-found", "--wait=true")
    kubectl.run("create", "namespace", PROBE_NS)
    try:
        _start_pod(kubectl, PROBE_NS, "anyone", {"app.kubernetes.io/name": "netpol-probe"})
        _start_pod(kubectl, DEMO_NS, "netpol-load",
                   {"app.kubernetes.io/name": "locust", "app.kubernetes.io/component": "worker"})  # fmt: skip
        yield {
            "anyone": Prober(_pod_pid(enforced, kubectl, PROBE_NS, "anyone"), f"a pod in {PROBE_NS}"),
            "load": Prober(_pod_pid(enforced, kubectl, DEMO_NS, "netpol-load"), "a Locust worker pod"),
        }
    finally:
        kubectl.run("-n", DEMO_NS, "delete", "pod", "netpol-load", "--ignore-not-found", "--wait=false")
        kubectl.run("delete", "namespace", PROBE_NS, "--ignore-not-found", "--wait=false")


def _pod_ip(kubectl: Kubectl, namespace: str, selector: str) -> str:
    """The IP of a running pod matching ``selector``."""
    items = kubectl.json(
        "-n", namespace, "get", "pods", "-l", selector, "--field-selector=status.phase=Running"
    )
    pods = [p for p in items["items"] if p["status"].get("podIP")]
    assert pods, f"no running pod {selector} in {namespace}"
    return str(pods[0]["status"]["podIP"])


def _adapter_prober(cluster: Any, kubectl: Kubectl) -> Prober:
    items = kubectl.json("-n", ADAPTER_NS, "get", "pods", "-l", "app.kubernetes.io/name=hpa-kit-adapter",
                         "--field-selector=status.phase=Running")["items"]  # fmt: skip
    assert items, "no running adapter pod"
    name = items[0]["metadata"]["name"]
    return Prober(_pod_pid(cluster, kubectl, ADAPTER_NS, name), f"the adapter pod {name}")


PROM = "app.kubernetes.io/name=prometheus"
ADAPTER = "app.kubernetes.io/name=hpa-kit-adapter"
DEMO = "hpa-kit/scenario=hits"


def test_prometheus_refuses_anyone_but_answers_the_adapter(
    enforced: Any, kubectl: Kubectl, probes: dict[str, Prober]
) -> None:
    prom_ip = _pod_ip(kubectl, MONITORING_NS, PROM)
    query = "/api/v1/query?query=up"
    probes["anyone"].expect(prom_ip, 9090, allowed=False, path=query)
    # The lifecycle API: refused before any HTTP is spoken (were it not, this would stop Prometheus).
    answer = probes["anyone"].expect(prom_ip, 9090, allowed=False, method="POST", path="/-/quit")
    assert answer.startswith("REFUSED"), answer
    assert _adapter_prober(enforced, kubectl).expect(prom_ip, 9090, allowed=True, path=query) == "HTTP 200"


def test_the_adapter_port_is_closed_to_pods(kubectl: Kubectl, probes: dict[str, Prober]) -> None:
    adapter_ip = _pod_ip(kubectl, ADAPTER_NS, ADAPTER)
    # A TCP connect is the question (the port speaks TLS, so plain HTTP would fail either way).
    probes["anyone"].expect(adapter_ip, 6443, allowed=False, method="CONNECT")
    probes["load"].expect(adapter_ip, 6443, allowed=False, method="CONNECT")


def test_demo_apps_answer_the_load_generator_only(kubectl: Kubectl, probes: dict[str, Prober]) -> None:
    demo_ip = _pod_ip(kubectl, DEMO_NS, DEMO)
    probes["anyone"].expect(demo_ip, 8080, allowed=False, path="/metrics")
    assert probes["load"].expect(demo_ip, 8080, allowed=True, path="/metrics") == "HTTP 200"


def test_metrics_still_flow_through_the_aggregator(stack: Stack, kubectl: Kubectl, probes: Any) -> None:
    """With enforcement on, the aggregator still reaches the adapter and the adapter Prometheus:
    APIServices Available and an external metric equal to Prometheus' own answer."""
    for name in stack.apiservices:
        cond = {c["type"]: c for c in kubectl.json("get", "apiservice", name)["status"]["conditions"]}
        assert cond["Available"]["status"] == "True", f"{name}: {cond['Available']}"
    direct = f'sum(queue_depth{{namespace="{DEMO_NS}"}})'
    for _ in range(5):  # the series moves; accept a read bracketed by two direct reads
        before = stack.promql(direct)
        got = kubectl.raw(f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{DEMO_NS}/queue_depth")
        after = stack.promql(direct)
        value = quantity(got["items"][0]["value"])
        assert value is not None
        if min(before, after) - 1e-6 <= value <= max(before, after) + 1e-6:
            return
        time.sleep(2)
    pytest.fail(f"external queue_depth {value} not between Prometheus' {before} and {after}")
