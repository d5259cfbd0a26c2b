"""Record what an HPA did over time and leave a report: CSV, PNG plot, events and conditions.

A scenario starts a :class:`Recorder` before it applies load; the recorder samples the HPA's
status, the Deployment's replicas and the load generator every ``interval`` seconds in a thread.
At the end :meth:`Recorder.finish` writes ``timeseries.csv``, ``plot.png`` (load, metric value and
replicas on one time axis), ``hpa.json`` (final status and conditions) and ``events.txt``.
"""

from __future__ import annotations

import csv
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from harness.load import LoadSample

LOAD_STALE_S = 10.0


@dataclass
class Sample:
    t: float  # seconds since the recorder started
    desired_replicas: int | None
    current_replicas: int | None
    ready_replicas: int | None
    metric_value: float | None
    metric_target: float | None
    load_users: int | None
    load_rps: float | None
    scaling_active: str | None
    able_to_scale: str | None
    #: The same metric from an independent PromQL query, in the unit the HPA's status shows.
    direct_value: float | None = None
    #: What the adapter serves for the HPA's metric right now, through the aggregator, in the same unit
    #: (the HPA's own status only changes when the controller syncs).
    served_value: float | None = None


def quantity(text: str | None) -> float | None:
    """Kubernetes quantity -> float (plots and test comparisons; the adapter serves exact values)."""
    if text is None:
        return None
    suffixes = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
                "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}  # fmt: skip
    for suf in sorted(suffixes, key=len, reverse=True):
        if text.endswith(suf):
            return float(text[: -len(suf)]) * suffixes[suf]
    return float(text)


def _metric_of(status: dict[str, Any], spec: dict[str, Any]) -> tuple[float | None, float | None]:
    """(current value, target) of the HPA's first metric, whatever its type."""
    current = (status.get("currentMetrics") or [{}])[0]
    target_spec = (spec.get("metrics") or [{}])[0]
    value = target = None
    utilization = any("averageUtilization" in ((target_spec.get(k) or {}).get("target") or {})
                      for k in ("resource", "containerResource"))
    for kind in ("object", "pods", "external", "resource", "containerResource"):
        if kind in current:
            cur = current[kind].get("current") or {}
            # A Utilization target is compared in percent: plot that, not the raw averageValue.
            if utilization and cur.get("averageUtilization") is not None:
                value = float(cur["averageUtilization"])
            else:
                value = quantity(cur.get("averageValue") or cur.get("value"))
            if value is None and cur.get("averageUtilization") is not None:
                value = float(cur["averageUtilization"])
        if kind in target_spec:
            tgt = target_spec[kind].get("target") or {}
            target = quantity(tgt.get("averageValue") or tgt.get("value"))
            if target is None and tgt.get("averageUtilization") is not None:
                target = float(tgt["averageUtilization"])
    return value, target


def _condition(status: dict[str, Any], kind: str) -> str | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == kind:
            return f"{cond.get('status')}/{cond.get('reason')}"
    return None


@dataclass
class Recorder:
    """Sample an HPA + Deployment (+ optional load source) into a report directory."""

    api: client.ApiClient
    namespace: str
    hpa: str
    deployment: str
    out_dir: Path
    interval: float = 2.0
    load: Callable[[], list[LoadSample]] | None = None
    progress: Callable[[str], None] | None = print
    #: An independent reading of the metric (a scenario's own PromQL query), plotted beside the HPA's.
    direct: Callable[[], float] | None = None
    #: The adapter's answer for the HPA's metric now (``harness.hpa.served_value``), for the budget.
    served: Callable[[], float] | None = None
    samples: list[Sample] = field(default_factory=list)
    #: ``(t, label)``: load start/stop, injected faults; drawn as vertical lines on the plot.
    marks: list[tuple[float, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _t0: float = 0.0

    def start(self) -> Recorder:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"recorder-{self.hpa}", daemon=True)
        self._thread.start()
        return self

    def mark(self, label: str) -> None:
        """Note an event (load started, Prometheus stopped) at the current time, for the plot."""
        self.marks.append((round(time.monotonic() - self._t0, 1), label))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append(self.sample())
            except Exception as exc:  # a flaky read must not kill the recording
                if self.progress:
                    self.progress(f"recorder: sample failed: {exc}")
            self._stop.wait(self.interval)

    def hpa_object(self) -> dict[str, Any]:
        raw: Any = client.AutoscalingV2Api(self.api).read_namespaced_horizontal_pod_autoscaler(
            self.hpa, self.namespace, _preload_content=False
        )  # the raw urllib3 response: plain JSON, no model conversion
        return dict(json.loads(raw.data))

    def sample(self) -> Sample:
        hpa = self.hpa_object()
        status, spec = hpa.get("status") or {}, hpa.get("spec") or {}
        dep = client.AppsV1Api(self.api).read_namespaced_deployment_status(self.deployment, self.namespace)
        value, target = _metric_of(status, spec)
        users = rps = None
        if self.load is not None:
            hist = self.load()
            # Locust stops writing history when it stops: a stale last row means no load now.
            if hist and time.time() - hist[-1].at < LOAD_STALE_S:
                users, rps = hist[-1].users, hist[-1].rps
            else:
                users, rps = 0, 0.0
        direct = served = None
        per_replica = _per_replica(spec) and status.get("currentReplicas")
        if self.direct is not None:
            direct = self.direct()
            if per_replica:
                direct /= status["currentReplicas"]  # as the status shows it (_per_replica)
        if self.served is not None:
            try:
                served = self.served()
            except Exception:  # not served (yet): the budget reads it as not crossed
                served = None
            if served is not None and per_replica:
                served /= status["currentReplicas"]
        s = Sample(
            t=round(time.monotonic() - self._t0, 1),
            desired_replicas=status.get("desiredReplicas"),
            current_replicas=status.get("currentReplicas"),
            ready_replicas=(dep.status.ready_replicas if dep.status else 0) or 0,
            metric_value=value,
            metric_target=target,
            load_users=users,
            load_rps=rps,
            scaling_active=_condition(status, "ScalingActive"),
            able_to_scale=_condition(status, "AbleToScale"),
            direct_value=direct,
            served_value=served,
        )
        if self.progress:
            self.progress(
                f"[{s.t:6.1f}s] {self.hpa}: replicas {s.current_replicas}->{s.desired_replicas} "
                f"(ready {s.ready_replicas}) metric {s.metric_value}/{s.metric_target} "
                f"users {s.load_users} rps {s.load_rps} ScalingActive {s.scaling_active}"
            )
        return s

    def finish(self) -> Path:
        """Stop sampling and write the report; returns the report directory."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 30)
        try:  # the plot ends on the state the scenario asserted, not up to one interval before it
            self.samples.append(self.sample())
        except Exception as exc:
            if self.progress:
                self.progress(f"recorder: final sample failed: {exc}")
        self.write_csv()
        (self.out_dir / "marks.json").write_text(json.dumps(self.marks))
        budget = scale_up_budget(self.samples, self.marks)
        (self.out_dir / "budget.json").write_text(json.dumps(budget, indent=2))
        if self.progress and budget.get("parts"):
            self.progress(f"{self.hpa}: scale-up budget {format_budget(budget)}")
        self.write_plot()
        try:
            (self.out_dir / "hpa.json").write_text(json.dumps(self.hpa_object(), indent=2))
        except Exception as exc:
            (self.out_dir / "hpa.json").write_text(json.dumps({"error": str(exc)}))
        self.write_events()
        return self.out_dir

    def write_csv(self) -> Path:
        path = self.out_dir / "timeseries.csv"
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(Sample.__dataclass_fields__))
            writer.writeheader()
            for s in self.samples:
                writer.writerow(asdict(s))
        return path

    def write_plot(self) -> Path:
        return plot_samples(self.samples, self.out_dir / "plot.png", title=f"{self.namespace}/{self.hpa}",
                            marks=self.marks)  # fmt: skip

    def write_events(self) -> Path:
        path = self.out_dir / "events.txt"
        try:
            events = client.CoreV1Api(self.api).list_namespaced_event(self.namespace)
            lines = [
                f"{e.last_timestamp or e.event_time} {e.type} {e.involved_object.kind}/"
                f"{e.involved_object.name} {e.reason}: {e.message}"
                for e in sorted(events.items, key=lambda e: str(e.last_timestamp or e.event_time))
            ]
            path.write_text("\n".join(lines) + "\n")
        except Exception as exc:
            path.write_text(f"could not list events: {exc}\n")
        return path


#: The HPA controller acts when the usage ratio leaves 1 +- this (``--horizontal-pod-autoscaler-tolerance``).
HPA_TOLERANCE = 0.1

#: The stages of a scale-up, in order, as :func:`scale_up_budget` names them.
BUDGET_STAGES = (
    ("prometheus", "load start -> Prometheus's own reading crosses the scale-out line "
                   "(scrape interval, rate window fill: the install's ServiceMonitor and rule windows)"),
    ("adapter", "-> the adapter serves a value over the line (its result cache and query path: ours)"),
    ("hpa", "-> the HPA controller wants more replicas (its sync period: kube-controller-manager)"),
    ("rollout", "-> a new replica is Ready (scheduling, container start, readiness probe)"),
)  # fmt: skip


def scale_up_budget(
    samples: list[Sample], marks: list[tuple[float, str]], *, tolerance: float = HPA_TOLERANCE
) -> dict[str, Any]:
    """Where the time from load start to the first new Ready replica went, stage by stage.

    Each stage ends at the first sample after the previous stage's end where its signal crossed:
    Prometheus's direct reading, then the adapter's served value, above ``target * (1 + tolerance)``
    (the line the controller scales out at); then desired replicas, then Ready replicas, above the
    count at load start. Times are sample times, so each is exact to one recorder interval. A stage
    whose signal was not recorded (no ``direct``/``served`` reading) is merged into the next one.
    """
    start = next((t for t, label in marks if label == "load start"), None)
    out: dict[str, Any] = {"load_start_s": start, "parts": {}, "first_ready_s": None, "notes": []}
    if start is None or not samples:
        out["notes"].append("no 'load start' mark or no samples")
        return out
    base = next((s for s in samples if s.t >= start), samples[-1])
    base_desired = base.desired_replicas or base.current_replicas or 0
    base_ready = base.ready_replicas or 0

    def over(v: float | None, target: float | None) -> bool:
        return v is not None and target is not None and target > 0 and v > target * (1 + tolerance)

    crossed: dict[str, Callable[[Sample], bool]] = {
        "prometheus": lambda s: over(s.direct_value, s.metric_target),
        "adapter": lambda s: over(s.served_value, s.metric_target),
        "hpa": lambda s: (s.desired_replicas or 0) > base_desired,
        "rollout": lambda s: (s.ready_replicas or 0) > base_ready,
    }
    recorded = {"prometheus": any(s.direct_value is not None for s in samples),
                "adapter": any(s.served_value is not None for s in samples),
                "hpa": True, "rollout": True}  # fmt: skip
    prev_t = start
    for stage, _ in BUDGET_STAGES:
        if not recorded[stage]:
            out["notes"].append(f"{stage}: not recorded; its time is in the next stage")
            continue
        hit = next((s for s in samples if s.t >= prev_t and crossed[stage](s)), None)
        if hit is None:
            out["notes"].append(f"{stage}: never crossed after {prev_t:.1f}s")
            break
        out["parts"][stage] = round(hit.t - prev_t, 1)
        prev_t = hit.t
    else:
        out["first_ready_s"] = round(prev_t - start, 1)
    if len(samples) > 1:
        gaps = [b.t - a.t for a, b in itertools.pairwise(samples)]
        out["resolution_s"] = round(max(gaps), 1)
    return out


def format_budget(budget: dict[str, Any]) -> str:
    parts = " + ".join(f"{k} {v:.0f}s" for k, v in budget.get("parts", {}).items())
    total = budget.get("first_ready_s")
    res = budget.get("resolution_s")
    if total is None or res is None:
        return f"{parts} (incomplete: {'; '.join(budget['notes'])})"
    return f"{parts} = {total:.0f}s to the first new Ready replica (+-{res:.0f}s per stage)"


def _per_replica(spec: dict[str, Any]) -> bool:
    """Object/External metrics with an AverageValue target show value / current replicas in status."""
    metric = (spec.get("metrics") or [{}])[0]
    kind = str(metric.get("type", "")).lower()
    return kind in ("object", "external") and ((metric.get(kind) or {}).get("target") or {}).get(
        "type"
    ) == "AverageValue"


def plot_samples(
    samples: list[Sample], path: Path, *, title: str, marks: list[tuple[float, str]] | None = None
) -> Path:
    """Three stacked panels on one time axis: load, metric vs target (and the direct reading), replicas;
    ``marks`` (load start/stop, faults) as labelled vertical lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s.t for s in samples]
    fig, (ax_load, ax_metric, ax_rep) = plt.subplots(3, 1, sharex=True, figsize=(9, 7))
    ax_load.plot(t, [s.load_rps for s in samples], label="requests/s")
    ax_load.plot(t, [s.load_users for s in samples], label="users", linestyle="--")
    ax_load.set_ylabel("load")
    ax_load.legend(loc="upper right")
    ax_metric.plot(t, [s.metric_value for s in samples], label="metric")
    ax_metric.plot(t, [s.metric_target for s in samples], label="target", linestyle="--")
    if any(s.direct_value is not None for s in samples):
        ax_metric.plot(t, [s.direct_value for s in samples], label="Prometheus, direct", linestyle=":")
    if any(s.served_value is not None for s in samples):
        ax_metric.plot(t, [s.served_value for s in samples], label="adapter, served now", linestyle="-.")
    ax_metric.set_ylabel("metric")
    ax_metric.legend(loc="upper right")
    ax_rep.step(t, [s.desired_replicas for s in samples], where="post", label="desired")
    ax_rep.step(t, [s.current_replicas for s in samples], where="post", label="current")
    ax_rep.step(t, [s.ready_replicas for s in samples], where="post", label="ready", linestyle=":")
    ax_rep.set_ylabel("replicas")
    ax_rep.set_xlabel("seconds")
    ax_rep.legend(loc="upper right")
    for at, label in marks or []:
        for ax in (ax_load, ax_metric, ax_rep):
            ax.axvline(at, color="grey", linewidth=0.8, linestyle="-.")
        ax_load.annotate(label, (at, 1), xycoords=("data", "axes fraction"), rotation=90, fontsize=7,
                         va="top", ha="right")  # fmt: skip
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
