"""The HPA vocabulary scenarios are written in: conditions, replicas, metric values, the oracle's verdict.

Everything here reads what Kubernetes did or serves, through the same paths the HPA controller uses:
the HPA's status, the Deployment's scale, and the metrics APIs *through the aggregator*
(:func:`served_value`). :func:`oracle_check` puts one observation next to an independent reading (a
PromQL query the scenario writes itself, straight to Prometheus) and the controller's own rules
(:mod:`harness.oracle`), and says whether the adapter served the right value and the controller
decided what the formula says.
"""

from __future__ import annotations

import statistics
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.kubectl import Kubectl
from harness.oracle import (
    DEFAULT_TOLERANCE,
    RESOURCE_KINDS,
    MetricReading,
    desired_replicas,
    target_of,
    within,
)
from harness.report import Recorder, quantity
from harness.stack import match_labels
from harness.waits import wait_for

__all__ = [
    "Observation",
    "condition",
    "current_metrics",
    "expect_scale_in",
    "expect_scale_out",
    "hold_until_steady",
    "hpa_spec_status",
    "observe",
    "oracle_check",
    "recorded",
    "replicas",
    "resource_value",
    "served_value",
    "settle_at_min",
    "wait_condition",
    "wait_replicas",
    "within",
]


def hpa_spec_status(kubectl: Kubectl, namespace: str, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    obj = kubectl.get("hpa", name, namespace=namespace)
    return obj.get("spec") or {}, obj.get("status") or {}


def condition(status: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """The HPA condition ``kind`` (``ScalingActive``, ``AbleToScale``, ``ScalingLimited``), or ``{}``."""
    for cond in status.get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return {}


def wait_condition(
    kubectl: Kubectl, namespace: str, hpa: str, kind: str, want: str, *, timeout: float,
    reason_prefix: str = "", progress: Callable[[str], None] | None = print,
) -> dict[str, Any]:  # fmt: skip
    """Wait until the HPA's condition ``kind`` has status ``want`` (and a reason with that prefix)."""

    def probe() -> tuple[bool, str]:
        cond = condition(hpa_spec_status(kubectl, namespace, hpa)[1], kind)
        ok = cond.get("status") == want and str(cond.get("reason", "")).startswith(reason_prefix)
        return ok, f"{kind}={cond.get('status')} reason={cond.get('reason')} {cond.get('message', '')[:160]}"

    wait_for(f"HPA {hpa} {kind}={want}", probe, timeout=timeout, interval=2,
             hint=f"kubectl -n {namespace} describe hpa {hpa}", progress=progress)  # fmt: skip
    return condition(hpa_spec_status(kubectl, namespace, hpa)[1], kind)


def replicas(kubectl: Kubectl, namespace: str, deployment: str) -> int:
    return int(kubectl.get("deployment", deployment, namespace=namespace)["spec"].get("replicas", 1))


def wait_replicas(
    kubectl: Kubectl, namespace: str, deployment: str, ok: Callable[[int], bool], what: str, *,
    timeout: float, progress: Callable[[str], None] | None = print,
) -> int:  # fmt: skip
    """Wait until the Deployment's ``spec.replicas`` (what the HPA set) satisfies ``ok``; returns it."""

    def probe() -> tuple[bool, str]:
        dep = kubectl.get("deployment", deployment, namespace=namespace)
        n = dep["spec"].get("replicas", 1)
        ready = (dep.get("status") or {}).get("readyReplicas", 0)
        return ok(n), f"spec.replicas={n} ready={ready}"

    wait_for(f"{deployment} {what}", probe, timeout=timeout, interval=2,
             hint=f"kubectl -n {namespace} describe hpa {deployment}", progress=progress)  # fmt: skip
    return replicas(kubectl, namespace, deployment)


def _target(kubectl: Kubectl, namespace: str, hpa: str) -> tuple[str, int, int]:
    """The HPA's scale target (a Deployment's name), minReplicas and maxReplicas."""
    spec, _ = hpa_spec_status(kubectl, namespace, hpa)
    ref = spec.get("scaleTargetRef") or {}
    if ref.get("kind") != "Deployment":
        raise ValueError(f"HPA {namespace}/{hpa} scales a {ref.get('kind')}: only Deployments are supported")
    return str(ref["name"]), int(spec.get("minReplicas", 1)), int(spec["maxReplicas"])


def settle_at_min(
    kubectl: Kubectl, namespace: str, hpa: str, *, timeout: float = 600,
    progress: Callable[[str], None] | None = print,
) -> None:  # fmt: skip
    """Wait until the HPA reads its metric (ScalingActive=True) and its target sits at minReplicas:
    the starting point of a scale-out scenario."""
    deployment, low, _ = _target(kubectl, namespace, hpa)
    wait_condition(kubectl, namespace, hpa, "ScalingActive", "True", timeout=timeout, progress=progress)
    wait_replicas(kubectl, namespace, deployment, lambda n: n == low, f"at minReplicas={low}",
                  timeout=timeout, progress=progress)  # fmt: skip


def expect_scale_out(
    kubectl: Kubectl, namespace: str, hpa: str, *, above: int | None = None, within: float = 300,
    progress: Callable[[str], None] | None = print,
) -> tuple[int, float]:  # fmt: skip
    """Wait until the HPA scales its target above ``above`` (default: minReplicas) within ``within``
    seconds; returns (replicas, seconds it took). Fails naming the HPA's conditions otherwise."""
    deployment, low, _ = _target(kubectl, namespace, hpa)
    floor = low if above is None else above
    t0 = time.monotonic()
    n = wait_replicas(kubectl, namespace, deployment, lambda n: n > floor, f"scale out above {floor}",
                      timeout=within, progress=progress)  # fmt: skip
    return n, time.monotonic() - t0


def expect_scale_in(
    kubectl: Kubectl, namespace: str, hpa: str, *, to: int | None = None, within: float = 480,
    progress: Callable[[str], None] | None = print,
) -> float:  # fmt: skip
    """Wait until the HPA brings its target down to ``to`` (default: minReplicas) within ``within``
    seconds (mind the scale-down stabilization window); returns the seconds it took."""
    deployment, low, _ = _target(kubectl, namespace, hpa)
    goal = low if to is None else to
    t0 = time.monotonic()
    wait_replicas(kubectl, namespace, deployment, lambda n: n == goal, f"scale in to {goal}",
                  timeout=within, progress=progress)  # fmt: skip
    return time.monotonic() - t0


def current_metrics(kubectl: Kubectl, namespace: str, hpa: str) -> list[dict[str, Any]]:
    """The HPA's ``status.currentMetrics``: what the controller last read for each metric."""
    return list(hpa_spec_status(kubectl, namespace, hpa)[1].get("currentMetrics") or [])


@contextmanager
def recorded(
    kube: Any, namespace: str, hpa: str, out: Path, load: Any = None, *,
    direct: Callable[[], float] | None = None, target: str | None = None, interval: float = 3,
) -> Iterator[Recorder]:  # fmt: skip
    """Record the HPA (and its target ``target``, default: the HPA's name) while the block runs.

    ``kube`` is a :class:`~harness.kubectl.Kubectl` (or, as before, a bare ``kubernetes`` ApiClient).
    With a Kubectl, every sample also holds what the adapter serves for the HPA's metric at that
    moment, and ``budget.json`` splits load start -> first new Ready replica into its stages
    (:func:`harness.report.scale_up_budget`). ``load`` (a ``LocustRun`` or ``InClusterLocust``, not
    started) is started on entry and stopped on exit, both marked on the plot. On exit
    ``timeseries.csv``, ``plot.png``, ``budget.json`` and ``events.txt`` are written into ``out``.
    """
    served = None
    if isinstance(kube, Kubectl):
        kubectl, api = kube, kube.api
        spec = hpa_spec_status(kubectl, namespace, hpa)[0]

        def served() -> float:
            return served_value(kubectl, namespace, spec)[0]
    else:
        api = kube
    rec = Recorder(api, namespace, hpa, target or hpa, out, interval=interval,
                   load=load.history if load is not None else None, direct=direct, served=served)  # fmt: skip
    rec.start()
    try:
        if load is not None:
            load.start()  # in-cluster load returns once its pods run: the mark comes after
            rec.mark("load start")
        yield rec
    finally:
        if load is not None:
            load.stop()
            if "load stop" not in (label for _, label in rec.marks):
                rec.mark("load stop")
        rec.finish()


def _selector(kubectl: Kubectl, namespace: str, deployment: str) -> str:
    dep = kubectl.get("deployment", deployment, namespace=namespace)
    return match_labels((dep["spec"].get("selector") or {}).get("matchLabels"))


def served_value(kubectl: Kubectl, namespace: str, spec: Mapping[str, Any]) -> tuple[float, int]:
    """The value of the HPA's first metric as the adapter serves it through the aggregator.

    Returns ``(value, items)``: Object -> the object's value; Pods -> the mean over the pods of the
    scale target that have one (``items`` of them); External -> the sum over the series, as the
    controller computes them; Resource/ContainerResource -> :func:`resource_value`. Raises when the
    API answers with an error (no value is a failure).
    """
    metric = (spec.get("metrics") or [{}])[0]
    kind = metric.get("type")
    if kind in RESOURCE_KINDS:
        return resource_value(kubectl, namespace, spec)
    body = metric.get(str(kind).lower()) or {}
    name = body["metric"]["name"]
    mls = match_labels((body["metric"].get("selector") or {}).get("matchLabels"))
    query = {"metricLabelSelector": mls} if mls else {}
    base = f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{namespace}"
    if kind == "Object":
        obj = body["describedObject"]
        resource = {"Service": "services", "Deployment": "deployments.apps", "Pod": "pods"}.get(
            obj["kind"], obj["kind"].lower() + "s"
        )
        path = f"{base}/{resource}/{obj['name']}/{name}"
    elif kind == "Pods":
        target = spec["scaleTargetRef"]["name"]
        query["labelSelector"] = _selector(kubectl, namespace, target)
        path = f"{base}/pods/*/{name}"
    elif kind == "External":
        query = {"labelSelector": mls} if mls else {}
        path = f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{name}"
    else:
        raise ValueError(f"served_value does not read {kind} metrics")
    if query:
        path += "?" + urllib.parse.urlencode(query)
    items = kubectl.raw(path)["items"]
    values = [quantity(i["value"]) or 0.0 for i in items]
    if not values:
        raise AssertionError(f"{path} returned no items")
    if kind == "Pods":
        return statistics.fmean(values), len(values)
    return (sum(values) if kind == "External" else values[0]), len(values)


def resource_value(kubectl: Kubectl, namespace: str, spec: Mapping[str, Any]) -> tuple[float, int]:
    """A Resource/ContainerResource metric as the controller computes it from metrics.k8s.io.

    The scale target's pods' usage (every container, or the one ``container`` names) from
    ``metrics.k8s.io`` through the aggregator, and their requests from the pods' specs: a
    ``Utilization`` target gives ``100 x sum(usage) / sum(requests)`` over the pods that have metrics,
    an ``AverageValue`` target the mean usage per pod. Returns ``(value, pods with metrics)``.
    """
    metric = (spec.get("metrics") or [{}])[0]
    kind = metric["type"]
    body = metric["resource" if kind == "Resource" else "containerResource"]
    resource, container = body["name"], body.get("container")
    selector = _selector(kubectl, namespace, spec["scaleTargetRef"]["name"])
    query = urllib.parse.urlencode({"labelSelector": selector})
    usage_items = kubectl.raw(f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods?{query}")["items"]
    listed = kubectl.get("pods", namespace=namespace, selector=selector)["items"]
    pods = {p["metadata"]["name"]: p for p in listed}
    usage = requests = 0.0
    counted = 0
    for item in usage_items:
        pod = pods.get(item["metadata"]["name"])
        if pod is None:
            continue
        wanted = [c for c in item["containers"] if container in (None, c["name"])]
        if not wanted:
            continue
        specs = {c["name"]: c for c in pod["spec"]["containers"]}
        usage += sum(quantity(c["usage"].get(resource)) or 0.0 for c in wanted)
        requests += sum(quantity(((specs.get(c["name"]) or {}).get("resources") or {}).get("requests", {})
                                  .get(resource)) or 0.0 for c in wanted)
        counted += 1
    if not counted:
        raise AssertionError(f"metrics.k8s.io has no {resource} usage for pods {selector} in {namespace}")
    if body["target"]["type"] == "Utilization":
        if not requests:
            raise AssertionError(f"pods {selector} request no {resource}: Utilization is undefined")
        return 100.0 * usage / requests, counted
    return usage / counted, counted


@dataclass
class Observation:
    """One look at an HPA, its served metric and the independent reading, taken together."""

    t: float
    current: int
    desired: int
    ready: int
    served: float
    served_items: int
    direct: float
    spec: dict[str, Any] = field(repr=False, default_factory=dict)
    #: The direct readings taken just before and just after the adapter's (None: only ``direct``).
    #: A fast-moving metric (a queue) changes while the adapter answers; its value lies in between.
    direct_span: tuple[float, float] | None = field(repr=False, default=None)

    def served_matches(self, *, rel: float, floor: float) -> bool:
        """The served value agrees with the direct reading(s) taken around it."""
        lo, hi = self.direct_span or (self.direct, self.direct)
        lo, hi = min(lo, hi), max(lo, hi)
        return lo - max(rel * abs(lo), floor) <= self.served <= hi + max(rel * abs(hi), floor)


#: How old an answer of the adapter may be: its result cache (``--cache-ttl``: the adapter's default
#: 5 s bounds the install's 2 s).
SERVED_AGE_S = 5.0


def observe(
    kubectl: Kubectl, namespace: str, hpa: str, direct: Callable[[], float], t: float = 0.0,
    direct_at: Callable[[float], float] | None = None,
) -> Observation:  # fmt: skip
    """Read the HPA and the adapter's value through the aggregator, with the direct value read just
    before and just after the adapter's (``direct`` is their mean, ``direct_span`` their range).

    ``direct_at(unix_time)``, when given, is the same query evaluated at a past time: the reading as
    of :data:`SERVED_AGE_S` ago joins the span, because the adapter may answer from its result cache
    (a metric like ``max_over_time`` can step within those seconds; seen on kind: served 0.62 while
    both fresh readings said 0.69)."""
    spec, status = hpa_spec_status(kubectl, namespace, hpa)
    readings = [direct_at(time.time() - SERVED_AGE_S)] if direct_at is not None else []
    before = direct()
    served, items = served_value(kubectl, namespace, spec)
    after = direct()
    readings += [before, after]
    dep = kubectl.get("deployment", spec["scaleTargetRef"]["name"], namespace=namespace)
    ready = int((dep.get("status") or {}).get("readyReplicas") or 0)
    return Observation(
        t=t, current=int(status.get("currentReplicas") or 0), desired=int(status.get("desiredReplicas") or 0),
        ready=ready, served=served, served_items=items, direct=(before + after) / 2, spec=spec,
        direct_span=(min(readings), max(readings)),
    )  # fmt: skip


def hold_until_steady(
    kubectl: Kubectl, namespace: str, hpa: str, direct: Callable[[], float], *, since: float,
    window_s: float, floor: float, hold_s: float = 30, timeout: float = 480, interval: float = 5,
    direct_at: Callable[[float], float] | None = None,
) -> list[Observation]:  # fmt: skip
    """Observe every ``interval`` s until the HPA is steady; returns every observation, steady ones last.

    Steady: the metric's window (``window_s``, e.g. the rule's ``[1m]``) has filled since the load
    started at ``since`` (a ``time.monotonic()``), and for the last ``hold_s`` seconds the replicas
    held (current = desired = ready), the ``direct`` value stayed within 10 % (plus ``floor``) of
    itself, and (Resource/ContainerResource) every pod had a served value. Raises AssertionError with
    the last observations when it is not steady in ``timeout``.
    """
    history: list[Observation] = []
    deadline = time.monotonic() + timeout
    while True:
        obs = observe(kubectl, namespace, hpa, direct, t=time.monotonic() - since, direct_at=direct_at)
        history.append(obs)
        recent = [o for o in history if obs.t - o.t <= hold_s]
        values = [o.direct for o in recent]
        # Resource metrics: a new pod is measured only once the kubelet has two samples of it (15-30 s
        # after it starts), which moves the average inside a "steady" window: every pod must be.
        measured = target_of(obs.spec)[0] not in RESOURCE_KINDS or all(
            o.served_items == o.current for o in recent)
        steady = (
            obs.t >= window_s + hold_s
            and recent[0].t <= obs.t - (hold_s - interval)
            and all(o.current == o.desired == o.ready == obs.current for o in recent)
            and max(values) - min(values) <= 0.1 * max(values) + floor
            and measured
        )
        if steady:
            return history
        if time.monotonic() > deadline:
            tail = "\n  ".join(str(o) for o in history[-6:])
            raise AssertionError(f"HPA {namespace}/{hpa} not steady within {timeout:.0f}s of load:\n  {tail}")
        time.sleep(interval)


def oracle_range(
    spec: Mapping[str, Any], low: float, high: float, *, current: int, ready: int, pods: int,
    tolerance: float = DEFAULT_TOLERANCE,
) -> set[int]:  # fmt: skip
    """Every replica count the controller may rightly choose for a value somewhere in [low, high].

    The decision is monotone in the value, so the set is every count between the decisions at the two
    ends. A band (not a point) because the reading has noise and because the controller's scale-down
    stabilization keeps the highest recommendation of its window: pass the lowest and the highest
    value seen over that window.
    """
    kind, ttype, target = target_of(spec)
    lo_r, hi_r = spec.get("minReplicas", 1), spec["maxReplicas"]

    def decide(v: float) -> int:
        reading = MetricReading(kind, ttype, target, max(0.0, v), pods_with_value=pods)
        return desired_replicas([reading], current=current, ready=ready, min_replicas=lo_r,
                                max_replicas=hi_r, tolerance=tolerance)  # fmt: skip

    a, b = decide(low), decide(high)
    return set(range(min(a, b), max(a, b) + 1))


def band(values: list[float], *, rel: float, floor: float) -> tuple[float, float]:
    """[min - error, max + error] of ``values``, the error being ``rel`` of the value or ``floor``."""
    lo, hi = min(values), max(values)
    return lo - max(rel * abs(lo), floor), hi + max(rel * abs(hi), floor)


def stabilization_s(spec: Mapping[str, Any], default: float = 300.0) -> float:
    """The HPA's scale-down stabilization window (its behavior, else the controller's default)."""
    window = ((spec.get("behavior") or {}).get("scaleDown") or {}).get("stabilizationWindowSeconds")
    return float(default if window is None else window)


def oracle_check(history: list[Observation], *, rel: float, floor: float = 0.0) -> list[str]:
    """What is wrong with the newest observation in ``history`` (empty when nothing).

    * the value the adapter served is within ``rel`` (or ``floor`` absolute) of the direct reading;
    * the controller's desired count is one the oracle allows for the direct readings over the
      stabilization window before it (see :func:`oracle_range`).
    """
    obs = history[-1]
    problems = []
    if not obs.served_matches(rel=rel, floor=floor):
        said = (f"{obs.direct_span[0]:.3f} just before and {obs.direct_span[1]:.3f} just after"
                if obs.direct_span else f"{obs.direct:.3f}")  # fmt: skip
        problems.append(
            f"t={obs.t:.0f}s: adapter served {obs.served:.3f}, Prometheus says {said} directly "
            f"(allowed {rel:.0%} or {floor})"
        )
    window = stabilization_s(obs.spec) + 10  # + one sync period and the recorder's own lag
    recent = [o.direct for o in history if obs.t - o.t <= window]
    low, high = band(recent, rel=rel, floor=floor)
    allowed = oracle_range(obs.spec, low, high, current=obs.current, ready=obs.ready, pods=obs.served_items)
    if obs.desired not in allowed:
        problems.append(
            f"t={obs.t:.0f}s: controller wants {obs.desired} replicas at {obs.current}; the oracle allows "
            f"{sorted(allowed)} for direct values {low:.3f}..{high:.3f} over the last {window:.0f}s"
        )
    return problems


def expected_replicas(spec: Mapping[str, Any], value: float, *, current: int, pods: int = 0,
                      rel: float = 0.0) -> set[int]:  # fmt: skip
    """The oracle's replica counts for a value from another source (e.g. the load generator's rate)."""
    return oracle_range(spec, value * (1 - rel), value * (1 + rel), current=current, ready=current,
                        pods=pods or current)  # fmt: skip
