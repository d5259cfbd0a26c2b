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
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from harness import manifests
from harness.incluster_load import InClusterLocust, load_for
from harness.load import LocustRun, Stage
from harness.report import Recorder
from harness.stack import ADAPTER_NS, ADAPTER_SERVICE, DEMO_NS, MONITORING_NS, Kubectl, Stack, StackError
from harness.waits import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

# Load sizes; override on slower or faster machines.
HIT_USERS = int(os.environ.get("HPA_KIT_HIT_USERS", "40"))
WORK_USERS = int(os.environ.get("HPA_KIT_WORK_USERS", "12"))
PRODUCE_USERS = int(os.environ.get("HPA_KIT_PRODUCE_USERS", "2"))
CONSUME_RATE = 5.0  # jobs/s per replica: MOCKMETRICS_CONSUME_RATE in manifests/base/mockmetrics/queue.yaml


def hpa_status(kubectl: Kubectl, name: str) -> dict[str, Any]:
    return kubectl.json("-n", DEMO_NS, "get", "hpa", name).get("status") or {}


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    for cond in status.get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return {}


def wait_condition(
    kubectl: Kubectl, hpa: str, kind: str, want: str, *, timeout: float, reason_prefix: str = ""
) -> dict[str, Any]:
    def probe() -> tuple[bool, str]:
        cond = condition(hpa_status(kubectl, hpa), kind)
        ok = cond.get("status") == want and str(cond.get("reason", "")).startswith(reason_prefix)
        return ok, f"{kind}={cond.get('status')} reason={cond.get('reason')} {cond.get('message', '')[:160]}"

    wait_for(
        f"HPA {hpa} {kind}={want}",
        probe,
        timeout=timeout,
        interval=2,
        hint=f"kubectl -n {DEMO_NS} describe hpa {hpa}",
    )
    return condition(hpa_status(kubectl, hpa), kind)


def wait_replicas(
    kubectl: Kubectl, deployment: str, ok: Callable[[int], bool], what: str, *, timeout: float
) -> int:
    def probe() -> tuple[bool, str]:
        dep = kubectl.json("-n", DEMO_NS, "get", "deployment", deployment)
        n = dep["spec"].get("replicas", 1)
        ready = (dep.get("status") or {}).get("readyReplicas", 0)
        return ok(n), f"spec.replicas={n} ready={ready}"

    wait_for(
        f"{deployment} {what}",
        probe,
        timeout=timeout,
        interval=2,
        hint=f"kubectl -n {DEMO_NS} describe hpa {deployment}",
    )
    return int(kubectl.json("-n", DEMO_NS, "get", "deployment", deployment)["spec"].get("replicas", 1))


def replicas(kubectl: Kubectl, deployment: str) -> int:
    return int(kubectl.json("-n", DEMO_NS, "get", "deployment", deployment)["spec"].get("replicas", 1))


@contextmanager
def recorded(
    kube_api: Any, name: str, out: Path, run: LocustRun | InClusterLocust | None
) -> Iterator[Recorder]:
    rec = Recorder(kube_api, DEMO_NS, name, name, out, interval=3, load=run.history if run else None)
    rec.start()
    try:
        yield rec
    finally:
        if run is not None:
            run.stop()
        rec.finish()


def set_prometheus_replicas(kubectl: Kubectl, replicas: int) -> None:
    """Scale Prometheus through its CR (the operator owns the StatefulSet and would undo a direct scale)."""
    patch = json.dumps({"spec": {"replicas": replicas}})
    kubectl.run("-n", MONITORING_NS, "patch", "prometheus", "hpa-kit", "--type=merge", "-p", patch)


def write_timings(out: Path, **timings: float | int | str | None) -> None:
    (out / "timings.json").write_text(json.dumps(timings, indent=2))
    print(f"timings: {timings}")


def settle_at_min(kubectl: Kubectl, name: str, timeout: float = 600) -> None:
    """Scenarios start from 1 replica and a working metric pipeline."""
    wait_condition(kubectl, name, "ScalingActive", "True", timeout=timeout)
    wait_replicas(kubectl, name, lambda n: n == 1, "back at 1 replica", timeout=timeout)


def scale_out_and_back(
    *,
    name: str,
    user_class: str,
    users: int,
    min_peak: int,
    stack: Stack,
    cluster: object,
    kubectl: Kubectl,
    kube_api: Any,
    scenario_dir: Path,
    scale_in: bool = True,
    work_ms: int = 300,
) -> dict[str, float | int | None]:
    """Load -> replicas >= min_peak; stop -> back to 1 (when ``scale_in``). Returns timings."""
    settle_at_min(kubectl, name)
    stages = [Stage(900, users, max(1, users // 2))]
    run = load_for(
        cluster, kubectl, DEMO_NS, name, user_class, stages, scenario_dir / "load", work_ms=work_ms
    )
    with recorded(kube_api, name, scenario_dir, run):
        run.start()  # in-cluster load returns once its pods run: the clock starts after
        t0 = time.monotonic()
        wait_replicas(kubectl, name, lambda n: n > 1, "first scale-up", timeout=300)
        first_up = time.monotonic() - t0
        peak = wait_replicas(kubectl, name, lambda n: n >= min_peak, f">= {min_peak} replicas", timeout=420)
        to_peak = time.monotonic() - t0
        run.stop()
        to_one = None
        if scale_in:
            t1 = time.monotonic()
            wait_replicas(kubectl, name, lambda n: n == 1, "scale back to 1", timeout=480)
            to_one = time.monotonic() - t1
    assert peak >= min_peak
    timings = {
        "wall_s": round(time.monotonic() - t0, 1),
        "load_start_to_first_scale_up_s": round(first_up, 1),
        "load_start_to_peak_s": round(to_peak, 1),
        "peak_replicas": peak,
        "load_stop_to_one_replica_s": None if to_one is None else round(to_one, 1),
    }
    write_timings(scenario_dir, **timings)
    return timings


# --- 1-4: scaling on each metric type -------------------------------------------------------------


@dataclass(frozen=True)
class Scaling:
    """One scale-out scenario: which HPA, which load, what must happen."""

    hpa: str
    metric_type: str
    metric: str
    user_class: str
    users: int
    min_peak: int
    scale_in: bool = True
    work_ms: int = 300


SCALING = [
    # Object metric: total_hit_count rate of the `hits` Service, 100 hits/s per replica; 1 -> >=3 -> 1.
    Scaling("hits", "Object", "total_hit_count", "HitUser", HIT_USERS, min_peak=3),
    # Pods metric fpm_active_rate = active / total processes: slow concurrent requests scale out.
    # Not asserted back to 1 here: its max_over_time[2m] window holds the value for two minutes.
    Scaling(
        "fpm", "Pods", "fpm_active_rate", "WorkUser", WORK_USERS, min_peak=2, scale_in=False, work_ms=500
    ),
    # Pods metric http_requests (rate of http_requests_total), 10 req/s average per pod.
    Scaling("requests", "Pods", "http_requests", "HitUser", max(4, HIT_USERS // 8), min_peak=2),
]


@pytest.mark.parametrize("case", SCALING, ids=[c.hpa for c in SCALING])
def test_scaling_on_metric(
    case: Scaling, stack: Stack, cluster: object, kubectl: Kubectl, kube_api: Any, scenario_dir: Path
) -> None:
    scale_out_and_back(
        name=case.hpa,
        user_class=case.user_class,
        users=case.users,
        min_peak=case.min_peak,
        stack=stack,
        cluster=cluster,
        kubectl=kubectl,
        kube_api=kube_api,
        scenario_dir=scenario_dir,
        scale_in=case.scale_in,
        work_ms=case.work_ms,
    )
    current = hpa_status(kubectl, case.hpa)["currentMetrics"][0]
    assert current["type"] == case.metric_type
    assert current[case.metric_type.lower()]["metric"]["name"] == case.metric


def test_external_metric_queue_depth_settles_near_produce_over_consume(
    stack: Stack, cluster: object, kubectl: Kubectl, kube_api: Any, scenario_dir: Path
) -> None:
    """External metric queue_depth: replicas settle within one of produced rate / per-replica rate."""
    settle_at_min(kubectl, "queue")
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
    with recorded(kube_api, "queue", scenario_dir, run):
        run.start()
        t0 = time.monotonic()
        wait_replicas(kubectl, "queue", lambda n: n > 1, "first scale-up", timeout=300)
        first_up = time.monotonic() - t0
        # Watch for 4 minutes; the last 2 are the settled phase.
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if time.monotonic() > deadline - 120:
                observed.append(replicas(kubectl, "queue"))
                res = stack.prometheus_api(
                    "/api/v1/query?query=sum(rate(queue_jobs_produced_total%7Bservice%3D%22queue%22%7D%5B1m%5D))"
                )["data"]["result"]
                if res:
                    rates.append(float(res[0]["value"][1]))
            time.sleep(5)
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
    )
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

    pods = kubectl.json("-n", DEMO_NS, "get", "pods", "-l", "hpa-kit/scenario=requests")["items"]
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


# --- 6: security ---------------------------------------------------------------------------------


def _adapter_pod_url(kubectl: Kubectl, path: str) -> str:
    pods = kubectl.json("-n", ADAPTER_NS, "get", "pods", "-l", "app.kubernetes.io/name=hpa-kit-adapter")[
        "items"
    ]
    ip = next(p["status"]["podIP"] for p in pods if p["status"].get("podIP"))
    return f"https://{ip}:6443{path}"


def _https_status(url: str, ca_file: Path, token: str | None = None) -> tuple[int, dict[str, Any]]:
    ctx = ssl.create_default_context(cafile=str(ca_file))
    ctx.check_hostname = False  # pod IP is not a SAN; the chain is still verified against our CA
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
        spec = kubectl.json("get", "apiservice", name)["spec"]
        assert spec.get("caBundle") and not spec.get("insecureSkipTLSVerify"), name
    findings = manifests.detect_insecure(kubeconfig=stack.kubeconfig)
    assert not findings, findings
    assert not kubectl.json("get", "clusterrolebindings", "-l", "hpa-kit/insecure")["items"]

    path = f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{DEMO_NS}/services/hits/total_hit_count"
    ca = stack.certs_dir / "ca.pem"
    code, body = _https_status(_adapter_pod_url(kubectl, path), ca)
    assert code == 401 and body.get("kind") == "Status", (code, body)

    kubectl.run("-n", DEMO_NS, "create", "serviceaccount", "no-rbac", check=False)
    token = kubectl.run("-n", DEMO_NS, "create", "token", "no-rbac", "--duration=10m").strip()
    code, body = _https_status(_adapter_pod_url(kubectl, path), ca, token)
    assert code == 403 and "no-rbac" in body.get("message", ""), (code, body)
    # Through the aggregator as that ServiceAccount alone (no admin client certificate alongside).
    cfg = kubectl.json("config", "view", "--raw", "--minify")["clusters"][0]["cluster"]
    ca_file = tmp_path / "cluster-ca.pem"
    ca_file.write_bytes(base64.b64decode(cfg["certificate-authority-data"]))
    as_sa = ("--kubeconfig=/dev/null", f"--server={cfg['server']}", f"--certificate-authority={ca_file}",
             f"--token={token}")  # fmt: skip
    with pytest.raises(StackError, match=r"(?i)forbidden"):
        kubectl.run(*as_sa, "get", "--raw", path)


# --- 7: faults -------------------------------------------------------------------------------------


def test_faults_prometheus_down_then_adapter_pod_deleted(
    stack: Stack, cluster: object, kubectl: Kubectl, kube_api: Any, scenario_dir: Path
) -> None:
    settle_at_min(kubectl, "hits")
    run = load_for(
        cluster, kubectl, DEMO_NS, "hits", "HitUser", [Stage(900, HIT_USERS, 10)], scenario_dir / "load"
    )
    metric_path = f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{DEMO_NS}/services/hits/total_hit_count"
    with recorded(kube_api, "hits", scenario_dir, run):
        run.start()
        wait_replicas(kubectl, "hits", lambda n: n > 1, "scaled out under load", timeout=300)
        held = replicas(kubectl, "hits")

        set_prometheus_replicas(kubectl, 0)
        t_down = time.monotonic()
        cond = wait_condition(
            kubectl, "hits", "ScalingActive", "False", timeout=180, reason_prefix="FailedGet"
        )
        with pytest.raises(StackError, match=r"(?i)ServiceUnavailable|503"):
            kubectl.run("get", "--raw", metric_path)
        while time.monotonic() - t_down < 60:
            assert replicas(kubectl, "hits") >= held, "HPA scaled down without a metric"
            time.sleep(5)
        adapter = kubectl.json("-n", ADAPTER_NS, "get", "deployment", ADAPTER_SERVICE)["status"]
        assert adapter.get("readyReplicas", 0) >= 1, "adapter went unready while Prometheus was down"

        set_prometheus_replicas(kubectl, 1)
        t_up = time.monotonic()
        wait_condition(kubectl, "hits", "ScalingActive", "True", timeout=300)
        recovered_s = time.monotonic() - t_up

        kubectl.run(
            "-n", ADAPTER_NS, "delete", "pod", "-l", "app.kubernetes.io/name=hpa-kit-adapter", "--wait=false"
        )
        t_del = time.monotonic()
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
    """The tutorial shortcut (anonymous bound to cluster-admin) is reported by the harness, live."""
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "hpa-kit-e2e-anonymous-admin"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:anonymous"}],
    }
    assert not stack.warn_insecure()
    kubectl.run("apply", "-f", "-", stdin=json.dumps(binding))
    try:
        findings = stack.warn_insecure()
    finally:
        kubectl.run("delete", "clusterrolebinding", "hpa-kit-e2e-anonymous-admin", "--ignore-not-found")
    assert any("hpa-kit-e2e-anonymous-admin" in f and "CRITICAL" in f for f in findings), findings
    assert not stack.warn_insecure()
