"""End-to-end scenarios: the real HPA controller scaling through the real aggregator.

Every assertion reads what Kubernetes did (HPA status, Deployment replicas, APIService conditions,
``kubectl get --raw`` through the aggregator); nothing calls the adapter directly except the
security scenario's anonymous request, which is the point of that test. Each scenario leaves
``timeseries.csv``, ``plot.png``, ``events.txt``, ``hpa.json`` and ``timings.json`` in its report
folder, and diagnostics when it fails.
"""

from __future__ import annotations

import base64
import json
import math
import os
import ssl
import statistics
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness import hpa, manifests
from harness.incluster_load import load_for
from harness.kubectl import Kubectl, KubectlError
from harness.load import Stage, served_rps
from harness.report import quantity
from harness.stack import ADAPTER_NS, ADAPTER_SERVICE, DEMO_NS, MONITORING_NS, RATE_WINDOW, Stack
from harness.waits import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

# Load sizes; override on slower or faster machines.
HIT_USERS = int(os.environ.get("HPA_KIT_HIT_USERS", "40"))
WORK_USERS = int(os.environ.get("HPA_KIT_WORK_USERS", "12"))
PRODUCE_USERS = int(os.environ.get("HPA_KIT_PRODUCE_USERS", "2"))
#: BurnUsers and the CPU milliseconds each /burn spends: 1 user x ~9 req/s x (5 ms + HTTP) ~ 80m,
#: 3-4 pods at the 25m (50 % of 50m) target; the requests of 8 pods still fit a 2-core node.
BURN_USERS = int(os.environ.get("HPA_KIT_BURN_USERS", "1"))
BURN_MS = int(os.environ.get("HPA_KIT_BURN_MS", "5"))
CONSUME_RATE = 5.0  # jobs/s per replica: MOCKMETRICS_CONSUME_RATE in manifests/base/mockmetrics/queue.yaml


def hpa_status(kubectl: Kubectl, name: str) -> dict[str, Any]:
    return hpa.hpa_spec_status(kubectl, DEMO_NS, name)[1]


def wait_condition(
    kubectl: Kubectl, name: str, kind: str, want: str, *, timeout: float, reason_prefix: str = ""
) -> dict[str, Any]:
    return hpa.wait_condition(
        kubectl, DEMO_NS, name, kind, want, timeout=timeout, reason_prefix=reason_prefix
    )


def wait_replicas(
    kubectl: Kubectl, deployment: str, ok: Callable[[int], bool], what: str, *, timeout: float
) -> int:
    return hpa.wait_replicas(kubectl, DEMO_NS, deployment, ok, what, timeout=timeout)


def replicas(kubectl: Kubectl, deployment: str) -> int:
    return hpa.replicas(kubectl, DEMO_NS, deployment)


def set_prometheus_replicas(kubectl: Kubectl, replicas: int) -> None:
    """Scale Prometheus through its CR (the operator owns the StatefulSet and would undo a direct scale)."""
    patch = json.dumps({"spec": {"replicas": replicas}})
    kubectl.run("-n", MONITORING_NS, "patch", "prometheus", "hpa-kit", "--type=merge", "-p", patch)


def write_timings(out: Path, **timings: object) -> None:
    (out / "timings.json").write_text(json.dumps(timings, indent=2))
    print(f"timings: {timings}")


def other_values(kubectl: Kubectl, hpas: list[str]) -> dict[str, float]:
    """What the adapter serves, through the aggregator, for the other scenarios' HPAs."""
    out = {}
    for name in hpas:
        spec, _ = hpa.hpa_spec_status(kubectl, DEMO_NS, name)
        out[name] = hpa.served_value(kubectl, DEMO_NS, spec)[0]
    return out


# --- 1-4: scaling on each metric type -------------------------------------------------------------


@dataclass(frozen=True)
class Scaling:
    """One scale-out scenario: which HPA, which load, what must happen, how to check it directly."""

    hpa: str
    metric_type: str
    metric: str
    user_class: str
    users: int
    min_peak: int
    #: The same object's metric, as a PromQL query of its own straight to Prometheus.
    direct: str
    #: The rule's window: the metric is steady only once it has filled with load.
    window_s: float
    #: Absolute error allowed near zero (the relative one is VALUE_ERROR).
    floor: float
    #: How the load generator's own count predicts the direct value (None: it does not).
    from_load: Callable[[float, int], float] | None = None
    scale_in: bool = True
    work_ms: int = 300
    #: How far the served value may be from the direct one (relative); see RESOURCE_VALUE_ERROR.
    value_error: float = 0.10


#: How far the adapter's value may be from the direct query's, and the load generator's count from
#: Prometheus' (different clocks and windows: Locust averages ~10 s, rate() its rule's window).
VALUE_ERROR = 0.10
#: The kubelet stamps its /metrics/resource samples with its own stats time, refreshed every 10-15 s
#: per container and scraped up to 5 s later: a sample lands in Prometheus *backdated*, so the answer
#: for a given instant changes after the fact, and rate()[1m] over those few samples jumps by 10-30 %
#: between two readings seconds apart (seen on kind: 37 -> 43 -> 45 -> 39 % within 15 s, the HPA's
#: own readings likewise). The adapter's answer and the direct one, taken moments apart, then differ
#: by up to ~20 % with neither being wrong. The differential against prometheus-adapter and the
#: integration test (static data) hold the adapter to exact agreement; here 25 % is allowed.
RESOURCE_VALUE_ERROR = 0.25
LOAD_ERROR = 0.20
#: Jobs (the queue moves ~20 jobs/s between two reads a moment apart).
QUEUE_FLOOR = 25.0

NS_SEL = f'namespace="{DEMO_NS}"'
PM_STATUS_FPM = f'pm_status{{{NS_SEL},service="fpm"'


def cpu_utilization(pod_regex: str, container: str, request_cores: float = 0.05) -> str:
    """Mean CPU utilization (percent of the 50m request) of the pods, from the kubelet's own series.

    Only pods alive now (their working-set gauge is present: a deleted pod's series is marked stale
    at once), not those whose CPU counter still lingers in the [1m] range after deletion."""
    sel = f'{NS_SEL},pod=~"{pod_regex}",container="{container}",metrics_path="/metrics/resource"'
    usage = f"sum by (pod) (rate(container_cpu_usage_seconds_total{{{sel}}}[1m]))"
    alive = f"sum by (pod) (container_memory_working_set_bytes{{{sel}}})"
    return f"100 * avg({usage} and on (pod) {alive}) / {request_cores}"


SCALING = [
    # Object metric: total_hit_count rate of the `hits` Service, 100 hits/s per replica; 1 -> N -> 1.
    Scaling(
        "hits", "Object", "total_hit_count", "HitUser", HIT_USERS, min_peak=3,
        direct=f'sum(rate(total_hit_count{{{NS_SEL},service="hits"}}[{RATE_WINDOW}]))',
        window_s=30, floor=2.0, from_load=lambda rps, pods: rps,
    ),
    # Pods metric fpm_active_rate = active / total processes: slow concurrent requests scale out.
    # Not asserted back to 1 here: its max_over_time[2m] window holds the value for two minutes.
    Scaling(
        "fpm", "Pods", "fpm_active_rate", "WorkUser", WORK_USERS, min_peak=2, scale_in=False, work_ms=500,
        direct=(
            f"avg(max by (pod) (max_over_time({PM_STATUS_FPM},state=\"active processes\"}}[2m]))"
            f" / max by (pod) (max_over_time({PM_STATUS_FPM},state=\"total processes\"}}[2m])))"
        ),
        window_s=120, floor=0.05,
    ),
    # Pods metric http_requests (rate of http_requests_total), 10 req/s average per pod.
    Scaling(
        "requests", "Pods", "http_requests", "HitUser", max(4, HIT_USERS // 8), min_peak=2,
        direct=(f'avg(sum by (pod) (rate(http_requests_total{{{NS_SEL},service="requests",path="/"}}'
                f'[{RATE_WINDOW}])))'),
        window_s=30, floor=1.0, from_load=lambda rps, pods: rps / pods,
    ),
    # Resource metric: CPU utilization (usage / 100m request) through metrics.k8s.io, target 50 %.
    Scaling(
        "cpu", "Resource", "cpu", "BurnUser", BURN_USERS, min_peak=2,
        direct=cpu_utilization("cpu-[a-z0-9]+-[a-z0-9]+", "mockmetrics"), window_s=60, floor=5.0,
        value_error=RESOURCE_VALUE_ERROR,
    ),
    # ContainerResource: only the `app` container of two; the idle sidecar must not be averaged in.
    # Scale-in is the `cpu` scenario's to prove (same controller path); this one saves those minutes.
    Scaling(
        "cpu-sidecar", "ContainerResource", "cpu", "BurnUser", BURN_USERS, min_peak=2, scale_in=False,
        direct=cpu_utilization("cpu-sidecar-[a-z0-9]+-[a-z0-9]+", "app"), window_s=60, floor=5.0,
        value_error=RESOURCE_VALUE_ERROR,
    ),
]  # fmt: skip
OTHER_HPAS = ["hits", "fpm", "requests", "queue"]


@pytest.mark.parametrize("case", SCALING, ids=[c.hpa for c in SCALING])
def test_scaling_on_metric(
    case: Scaling, stack: Stack, cluster: object, kubectl: Kubectl, scenario_dir: Path
) -> None:
    """Load -> scale out -> hold until steady, then the quantities: the adapter's value against a
    direct PromQL query of the same object, the controller's decision against the oracle, the load
    generator's own count against Prometheus, the other scenarios' metrics untouched; stop -> 1."""
    name = case.hpa
    hpa.settle_at_min(kubectl, DEMO_NS, name)
    others = [h for h in OTHER_HPAS if h != name]
    before = other_values(kubectl, others)
    stages = [Stage(1200, case.users, max(1, case.users // 2))]
    run = load_for(cluster, kubectl, DEMO_NS, name, case.user_class, stages, scenario_dir / "load",
                   work_ms=case.work_ms, env={"HPA_KIT_BURN_MS": str(BURN_MS)})  # fmt: skip
    direct = lambda: stack.promql(case.direct)  # noqa: E731
    with hpa.recorded(kubectl, DEMO_NS, name, scenario_dir, run, direct=direct) as rec:
        t0 = time.monotonic()
        wait_replicas(kubectl, name, lambda n: n > 1, "first scale-up", timeout=300)
        first_up = time.monotonic() - t0
        history = hpa.hold_until_steady(kubectl, DEMO_NS, name, direct, since=t0, window_s=case.window_s,
                                        floor=case.floor,
                                        direct_at=lambda ts: stack.promql(case.direct, at=ts))  # fmt: skip
        steady_s = time.monotonic() - t0
        rec.mark("steady")
        rps = served_rps(run.history(), 60)
        during = other_values(kubectl, others)
        run.stop()
        rec.mark("load stop")
        to_one = None
        if case.scale_in:
            t1 = time.monotonic()
            wait_replicas(kubectl, name, lambda n: n == 1, "scale back to 1", timeout=480)
            to_one = time.monotonic() - t1
    final = history[-1]
    steady = [i for i, o in enumerate(history) if final.t - o.t <= 30]
    problems = [
        p for i in steady for p in hpa.oracle_check(history[: i + 1], rel=case.value_error, floor=case.floor)
    ]
    errors = [abs(history[i].served - history[i].direct) / max(history[i].direct, case.floor)
              for i in steady]  # fmt: skip
    expected_direct = case.from_load(rps, final.served_items) if case.from_load else None
    write_timings(
        scenario_dir,
        wall_s=round(time.monotonic() - t0, 1),
        load_start_to_first_scale_up_s=round(first_up, 1),
        load_start_to_steady_s=round(steady_s, 1),
        steady_replicas=final.current,
        steady_direct_value=round(final.direct, 3),
        steady_served_value=round(final.served, 3),
        max_served_vs_direct_error=round(max(errors), 3),
        load_successful_rps=round(rps, 1),
        load_predicted_value=None if expected_direct is None else round(expected_direct, 3),
        oracle_replicas_for_load=None if expected_direct is None else sorted(
            hpa.expected_replicas(final.spec, expected_direct, current=final.current, rel=LOAD_ERROR)),
        others_before=before, others_during=during,
        load_stop_to_one_replica_s=None if to_one is None else round(to_one, 1),
        scale_up_budget=json.loads((scenario_dir / "budget.json").read_text()),
    )  # fmt: skip
    assert not problems, "\n".join(problems)
    assert final.current >= case.min_peak, f"steady at {final.current} replicas, expected >= {case.min_peak}"
    if expected_direct is not None:
        assert hpa.within(final.direct, expected_direct, rel=LOAD_ERROR, abs_=case.floor), (
            f"Prometheus says {final.direct:.2f} but the load generator's {rps:.1f} successful req/s "
            f"predict {expected_direct:.2f}: the metric does not count the traffic that was sent"
        )
        allowed = hpa.expected_replicas(final.spec, expected_direct, current=final.current, rel=LOAD_ERROR)
        assert final.current in allowed, (
            f"steady at {final.current} replicas; {rps:.1f} req/s of load call for {sorted(allowed)}"
        )
    for other, value in during.items():
        assert value <= before[other] + case.floor * 2, (
            f"loading {name} moved {other}'s metric from {before[other]:.3f} to {value:.3f}: "
            "the metric is not bound to its own object"
        )
    current = hpa_status(kubectl, name)["currentMetrics"][0]
    assert current["type"] == case.metric_type
    if case.metric_type == "Resource":
        assert current["resource"]["name"] == case.metric
    elif case.metric_type == "ContainerResource":
        assert (current["containerResource"]["name"], current["containerResource"]["container"]) == (
            case.metric, "app")
    else:
        assert current[case.metric_type.lower()]["metric"]["name"] == case.metric


def test_external_metric_queue_depth_settles_near_produce_over_consume(
    stack: Stack, cluster: object, kubectl: Kubectl, scenario_dir: Path
) -> None:
    """External metric queue_depth: replicas settle within one of produced rate / per-replica rate."""
    hpa.settle_at_min(kubectl, DEMO_NS, "queue")
    stages = [Stage(900, PRODUCE_USERS, PRODUCE_USERS)]
    run = load_for(
        cluster,
        kubectl,
        DEMO_NS,
        "queue",
        "ProduceUser",
        stages,
        scenario_dir / "load",
        think_time=(0.1, 0.1),
    )
    observed: list[int] = []
    rates: list[float] = []
    history: list[hpa.Observation] = []
    depth = f'sum(queue_depth{{{NS_SEL},service="queue"}})'
    produced_q = f'sum(rate(queue_jobs_produced_total{{{NS_SEL},service="queue"}}[1m]))'
    with hpa.recorded(kubectl, DEMO_NS, "queue", scenario_dir, run, direct=lambda: stack.promql(depth)):
        t0 = time.monotonic()
        wait_replicas(kubectl, "queue", lambda n: n > 1, "first scale-up", timeout=300)
        first_up = time.monotonic() - t0
        # Watch for 4 minutes; the last 2 are the settled phase.
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            history.append(hpa.observe(kubectl, DEMO_NS, "queue", lambda: stack.promql(depth),
                                       t=time.monotonic() - t0,
                                       direct_at=lambda ts: stack.promql(depth, at=ts)))  # fmt: skip
            if time.monotonic() > deadline - 120:
                observed.append(history[-1].current)
                rates.append(stack.promql(produced_q))
            time.sleep(5)
    # The queue drains and refills as replicas change: the value moves by ~20 jobs/s, so the adapter's
    # reading and the direct one taken a moment apart may differ by a few seconds' worth of jobs, and
    # the adapter may answer from its 5 s result cache (direct_at: the reading from then; a kind run
    # saw served 122 while the fresh readings said 148).
    settled_from = history[-1].t - 120
    problems = [p for i, o in enumerate(history) if o.t >= settled_from
                for p in hpa.oracle_check(history[: i + 1], rel=VALUE_ERROR, floor=QUEUE_FLOOR)]  # fmt: skip
    assert rates, "Prometheus had no produce rate for the queue service"
    spread = stack.prometheus_api(
        "/api/v1/query?query=count(rate(queue_jobs_produced_total%7Bservice%3D%22queue%22%7D%5B1m%5D)%20%3E%200)"
    )["data"]["result"]
    receiving = int(float(spread[0]["value"][1])) if spread else 0
    assert receiving >= 2, f"production reached {receiving} pod(s): the load is not spread over the replicas"
    produced = statistics.median(rates)
    expected = produced / CONSUME_RATE
    settled = statistics.median(observed)
    write_timings(
        scenario_dir,
        wall_s=round(time.monotonic() - t0, 1),
        load_start_to_first_scale_up_s=round(first_up, 1),
        produced_per_s=round(produced, 2),
        expected_replicas=round(expected, 2),
        settled_replicas_median=settled,
        settled_min=min(observed),
        settled_max=max(observed),
        oracle_problems=len(problems),
    )
    assert not problems, "\n".join(problems)
    assert abs(settled - expected) <= 1 or settled == math.ceil(expected), (
        f"replicas settled at {settled} (range {min(observed)}-{max(observed)}), expected {expected:.1f} "
        f"= {produced:.1f} jobs/s / {CONSUME_RATE} per replica"
    )


# --- 5: discovery through the aggregator ---------------------------------------------------------


def test_discovery_through_the_aggregator(stack: Stack, kubectl: Kubectl) -> None:
    group = kubectl.raw("/apis/custom.metrics.k8s.io")
    assert {v["version"] for v in group["versions"]} >= {"v1beta1", "v1beta2"}
    resources = {r["name"] for r in kubectl.raw("/apis/custom.metrics.k8s.io/v1beta2")["resources"]}
    for expected in ("pods/http_requests", "pods/fpm_active_rate", "services/total_hit_count"):
        assert expected in resources, f"{expected} not in discovery: {sorted(resources)[:30]}"
    external = {r["name"] for r in kubectl.raw("/apis/external.metrics.k8s.io/v1beta1")["resources"]}
    assert "queue_depth" in external

    pods = kubectl.get("pods", namespace=DEMO_NS, selector="hpa-kit/scenario=requests")["items"]
    names = {p["metadata"]["name"] for p in pods if p["status"].get("phase") == "Running"}

    def probe() -> tuple[bool, str]:
        got = kubectl.raw(
            f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{DEMO_NS}/pods/*/http_requests"
            "?labelSelector=hpa-kit%2Fscenario%3Drequests"
        )
        items = {i["describedObject"]["name"] for i in got["items"]}
        return items == names, f"items {sorted(items)} vs running pods {sorted(names)}"

    wait_for("one item per pod from pods/*/http_requests", probe, timeout=120, interval=3)
    got = kubectl.raw(
        f"/apis/custom.metrics.k8s.io/v1beta1/namespaces/{DEMO_NS}/services/hits/total_hit_count"
    )
    assert got["kind"] == "MetricValueList" and got["items"][0]["metricName"] == "total_hit_count"


def test_kubectl_top_and_metrics_k8s_io_through_the_aggregator(
    stack: Stack, kubectl: Kubectl, scenario_dir: Path
) -> None:
    """metrics.k8s.io from the adapter's resourceRules: `kubectl top` lists the demo pods and the
    node, and the served quantities are the kubelet's own as Prometheus has them (read just before
    and just after the aggregator's answer)."""
    assert "v1beta1.metrics.k8s.io" in stack.apiservices, "the test overlay registers metrics.k8s.io"
    running = {p["metadata"]["name"] for p in kubectl.get(
        "pods", namespace=DEMO_NS, selector="app.kubernetes.io/name=mockmetrics",
        fields="status.phase=Running")["items"]}  # fmt: skip
    nodes = {n["metadata"]["name"] for n in kubectl.get("nodes")["items"]}
    tops: dict[str, str] = {}

    def listed() -> tuple[bool, str]:
        tops["pods"] = kubectl.run("top", "pods", "-n", DEMO_NS)
        tops["nodes"] = kubectl.run("top", "nodes")
        pods = {line.split()[0] for line in tops["pods"].splitlines()[1:]}
        shown = {line.split()[0] for line in tops["nodes"].splitlines()[1:]}
        missing = (running - pods) | (nodes - shown)
        return not missing, f"not in kubectl top yet: {sorted(missing)}"

    wait_for("kubectl top lists every running demo pod and the node", listed, timeout=180, interval=5)
    (scenario_dir / "kubectl-top.txt").write_text(tops["pods"] + "\n" + tops["nodes"])
    print(tops["pods"] + "\n" + tops["nodes"])

    pod = sorted(p for p in running if p.startswith("hits-"))[0]
    sel = f'{NS_SEL},pod="{pod}",container="mockmetrics",metrics_path="/metrics/resource"'
    queries = {
        "memory": f"sum(container_memory_working_set_bytes{{{sel}}})",
        "cpu": f"sum(rate(container_cpu_usage_seconds_total{{{sel}}}[1m]))",
    }
    got, spans = _read_between(
        stack, queries, lambda: kubectl.raw(f"/apis/metrics.k8s.io/v1beta1/namespaces/{DEMO_NS}/pods/{pod}")
    )
    assert got["kind"] == "PodMetrics" and got["window"] == "1m0s"
    usage = next(c for c in got["containers"] if c["name"] == "mockmetrics")["usage"]
    for resource, rel, floor in (("memory", 0.05, 64 * 1024), ("cpu", 0.25, 0.003)):
        served = quantity(usage[resource]) or 0.0
        lo, hi = spans[resource]
        assert lo - max(rel * lo, floor) <= served <= hi + max(rel * hi, floor), (
            f"{pod} {resource}: metrics.k8s.io serves {usage[resource]} ({served:g}) but the kubelet's "
            f"series in Prometheus say {lo:g}..{hi:g}")

    node = sorted(nodes)[0]
    node_sel = f'node="{node}",metrics_path="/metrics/resource"'
    direct = {"memory": f"sum(node_memory_working_set_bytes{{{node_sel}}})"}
    got, spans = _read_between(
        stack, direct, lambda: kubectl.raw(f"/apis/metrics.k8s.io/v1beta1/nodes/{node}")
    )
    served_node = quantity(got["usage"]["memory"])
    lo, hi = spans["memory"]
    assert served_node is not None and lo * 0.95 <= served_node <= hi * 1.05, (
        f"node {node}: served memory {served_node} vs Prometheus {lo}..{hi}")


def _read_between(
    stack: Stack, queries: dict[str, str], read: Callable[[], Any]
) -> tuple[Any, dict[str, tuple[float, float]]]:
    """``read()`` (an answer of the adapter) with, per query, the range of what Prometheus said from
    the adapter's result-cache age (:data:`hpa.SERVED_AGE_S`) before it until just after it: a
    cached answer is up to that old (seen on kind: a node's memory served 7 % above both fresh
    readings, because the scrape between them had moved it)."""
    start = time.time() - hpa.SERVED_AGE_S
    readings = {k: [stack.promql(q, at=start), stack.promql(q)] for k, q in queries.items()}
    got = read()
    for k, q in queries.items():
        readings[k].append(stack.promql(q))
    return got, {k: (min(v), max(v)) for k, v in readings.items()}


# --- 6: security ---------------------------------------------------------------------------------


def _adapter_pod(kubectl: Kubectl) -> str:
    pods = kubectl.get("pods", namespace=ADAPTER_NS, selector="app.kubernetes.io/name=hpa-kit-adapter")[
        "items"
    ]
    return "pod/" + next(p["metadata"]["name"] for p in pods if p["status"].get("phase") == "Running")


def _https_status(url: str, ca_file: Path, token: str | None = None) -> tuple[int, dict[str, Any]]:
    ctx = ssl.create_default_context(cafile=str(ca_file))
    ctx.check_hostname = False  # 127.0.0.1 is not a SAN; the chain is still verified against our CA
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def test_security_default_install_is_verified_and_refuses_strangers(
    stack: Stack, kubectl: Kubectl, tmp_path: Path
) -> None:
    for name in (
        "v1beta1.custom.metrics.k8s.io",
        "v1beta2.custom.metrics.k8s.io",
        "v1beta1.external.metrics.k8s.io",
    ):
        spec = kubectl.get("apiservice", name)["spec"]
        assert spec.get("caBundle") and not spec.get("insecureSkipTLSVerify"), name
    findings = manifests.detect_insecure(kubeconfig=stack.kubeconfig)
    assert not findings, findings
    assert not kubectl.get("clusterrolebindings", selector="hpa-kit/insecure")["items"]

    path = f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{DEMO_NS}/services/hits/total_hit_count"
    ca = stack.certs_dir / "ca.pem"
    kubectl.run("-n", DEMO_NS, "create", "serviceaccount", "no-rbac", check=False)
    token = kubectl.run("-n", DEMO_NS, "create", "token", "no-rbac", "--duration=10m").strip()
    # Straight to the adapter pod (a port-forward carries the bytes; TLS ends at the adapter).
    with kubectl.port_forward(ADAPTER_NS, _adapter_pod(kubectl), 6443) as port:
        url = f"https://127.0.0.1:{port}{path}"
        code, body = _https_status(url, ca)
        assert code == 401 and body.get("kind") == "Status", (code, body)
        code, body = _https_status(url, ca, token)
        assert code == 403 and "no-rbac" in body.get("message", ""), (code, body)
    # Through the aggregator as that ServiceAccount alone (no admin client certificate alongside).
    cfg = kubectl.json("config", "view", "--raw", "--minify")["clusters"][0]["cluster"]
    ca_file = tmp_path / "cluster-ca.pem"
    ca_file.write_bytes(base64.b64decode(cfg["certificate-authority-data"]))
    as_sa = ("--kubeconfig=/dev/null", f"--server={cfg['server']}", f"--certificate-authority={ca_file}",
             f"--token={token}")  # fmt: skip
    with pytest.raises(KubectlError, match=r"(?i)forbidden"):
        kubectl.run(*as_sa, "get", "--raw", path)


# --- 7: faults -------------------------------------------------------------------------------------


def test_faults_prometheus_down_then_adapter_pod_deleted(
    stack: Stack, cluster: object, kubectl: Kubectl, scenario_dir: Path
) -> None:
    hpa.settle_at_min(kubectl, DEMO_NS, "hits")
    run = load_for(
        cluster, kubectl, DEMO_NS, "hits", "HitUser", [Stage(900, HIT_USERS, 10)], scenario_dir / "load"
    )
    metric_path = f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{DEMO_NS}/services/hits/total_hit_count"
    with hpa.recorded(kubectl, DEMO_NS, "hits", scenario_dir, run) as rec:
        wait_replicas(kubectl, "hits", lambda n: n > 1, "scaled out under load", timeout=300)
        held = replicas(kubectl, "hits")

        set_prometheus_replicas(kubectl, 0)
        rec.mark("Prometheus stopped")
        t_down = time.monotonic()
        cond = wait_condition(
            kubectl, "hits", "ScalingActive", "False", timeout=180, reason_prefix="FailedGet"
        )
        with pytest.raises(KubectlError, match=r"(?i)ServiceUnavailable|503"):
            kubectl.run("get", "--raw", metric_path)
        while time.monotonic() - t_down < 60:
            assert replicas(kubectl, "hits") >= held, "HPA scaled down without a metric"
            time.sleep(5)
        adapter = kubectl.get("deployment", ADAPTER_SERVICE, namespace=ADAPTER_NS)["status"]
        assert adapter.get("readyReplicas", 0) >= 1, "adapter went unready while Prometheus was down"

        set_prometheus_replicas(kubectl, 1)
        rec.mark("Prometheus back")
        t_up = time.monotonic()
        wait_condition(kubectl, "hits", "ScalingActive", "True", timeout=300)
        recovered_s = time.monotonic() - t_up

        kubectl.run(
            "-n", ADAPTER_NS, "delete", "pod", "-l", "app.kubernetes.io/name=hpa-kit-adapter", "--wait=false"
        )
        t_del = time.monotonic()
        rec.mark("adapter pod deleted")
        wait_for("APIService available after adapter pod deletion", stack._apiservices_available, timeout=300)
        wait_condition(kubectl, "hits", "ScalingActive", "True", timeout=300)
        resumed_s = time.monotonic() - t_del
    write_timings(
        scenario_dir,
        held_replicas=held,
        scaling_active_false_reason=cond.get("reason"),
        prometheus_back_to_scaling_active_s=round(recovered_s, 1),
        adapter_deleted_to_scaling_active_s=round(resumed_s, 1),
    )


def test_security_insecure_shortcut_is_detected_on_a_live_cluster(stack: Stack, kubectl: Kubectl) -> None:
    """The tutorial shortcut (anonymous bound to cluster-admin) is reported by the harness, live.

    The binding is never created: a server-side dry run returns it as the apiserver would store it
    (admission and defaulting applied), and the audit runs on the live RBAC plus that object. A run
    killed half-way therefore cannot leave the cluster open to unauthenticated requests.
    """
    name = "hpa-kit-e2e-anonymous-admin"
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:anonymous"}],
    }
    assert not stack.warn_insecure()
    dry_run = kubectl.run("apply", "--dry-run=server", "-o", "json", "-f", "-", stdin=json.dumps(binding))
    stored = json.loads(dry_run)
    assert stored["kind"] == "ClusterRoleBinding" and stored["metadata"]["name"] == name, stored
    live = manifests.live_objects(kubeconfig=stack.kubeconfig, context=stack.context)
    findings = manifests.detect_insecure([*live, stored])
    assert any(name in f and "CRITICAL" in f for f in findings), findings
    assert not kubectl.run("get", "clusterrolebinding", name, "--ignore-not-found", "-o", "name").strip()
    assert not stack.warn_insecure()
