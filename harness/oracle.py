"""An independent oracle for the HPA: what the controller should decide, from numbers it did not see.

The scenarios used to pass whenever replicas rose. The oracle lets them assert the quantities: the
metric value comes from a PromQL query written for the scenario (straight to Prometheus, not through
the adapter), and the replica count comes from the controller's own rules applied to that value:

* usage ratio = value / target; inside the tolerance (default 0.1) the controller keeps the current
  count;
* ``Object`` / ``External`` with a ``Value`` target: ``ceil(ratio x ready pods)``;
* ``Object`` / ``External`` with an ``AverageValue`` target: the ratio is value / (target x current),
  and outside the tolerance the count is ``ceil(value / target)``;
* ``Pods`` (always ``AverageValue``): ratio = mean over ready pods / target, count
  ``ceil(ratio x pods with a value)``;
* ``Resource`` / ``ContainerResource`` with a ``Utilization`` target: the value is the utilization in
  percent (usage summed over the pods, divided by their requests summed), ratio = value / target, count
  ``ceil(ratio x pods with a value)``; with an ``AverageValue`` target, as ``Pods``;
* several metrics: the largest count; the result clamped to [minReplicas, maxReplicas].

What it leaves out, on purpose: the scale-up/scale-down rate limits and stabilization windows of
``behavior`` (a scenario compares only in a steady state, where they do not bind) and the
missing/not-ready pod rebalancing of Pods metrics (scenarios compare once every pod is ready).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_TOLERANCE", "RESOURCE_KINDS", "MetricReading", "desired_replicas", "replicas_for",
           "target_of", "within"]

DEFAULT_TOLERANCE = 0.1
#: Metrics read from metrics.k8s.io, per pod, against the pods' requests.
RESOURCE_KINDS = ("Resource", "ContainerResource")


@dataclass(frozen=True)
class MetricReading:
    """One metric of an HPA as the oracle sees it.

    ``kind``: ``Object``, ``Pods``, ``External``, ``Resource`` or ``ContainerResource``;
    ``target_type``: ``Value``, ``AverageValue`` or (resource kinds) ``Utilization``; ``value``: for
    Object/External the object's (or the summed external) value, for Pods the mean over the pods that
    have one, for a Utilization target the utilization in percent; ``pods_with_value``: per-pod
    kinds only, how many pods reported.
    """

    kind: str
    target_type: str
    target: float
    value: float
    pods_with_value: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("Object", "Pods", "External", *RESOURCE_KINDS):
            raise ValueError(f"metric kind {self.kind!r}: the oracle knows Object, Pods, External, "
                             "Resource and ContainerResource")
        if self.target_type not in ("Value", "AverageValue", "Utilization"):
            raise ValueError(f"target type {self.target_type!r}: Value, AverageValue or Utilization")
        if self.kind == "Pods" and self.target_type != "AverageValue":
            raise ValueError("Pods metrics only take AverageValue targets")
        if self.kind in RESOURCE_KINDS and self.target_type == "Value":
            raise ValueError(f"{self.kind} metrics take Utilization or AverageValue targets")
        if self.target_type == "Utilization" and self.kind not in RESOURCE_KINDS:
            raise ValueError("only Resource and ContainerResource metrics take Utilization targets")
        if not self.target > 0:
            raise ValueError(f"target must be > 0, got {self.target}")


def replicas_for(m: MetricReading, current: int, ready: int, tolerance: float = DEFAULT_TOLERANCE) -> int:
    """The count the controller computes for one metric (before min/max and behavior)."""
    if current <= 0:
        raise ValueError("current replicas must be > 0: a scaled-to-zero target is not autoscaled")
    if m.kind == "Pods" or m.kind in RESOURCE_KINDS:
        ratio = m.value / m.target
        if abs(ratio - 1.0) <= tolerance:
            return current
        return math.ceil(ratio * m.pods_with_value)
    if m.target_type == "AverageValue":
        ratio = m.value / (m.target * current)
        if abs(ratio - 1.0) <= tolerance:
            return current
        return math.ceil(m.value / m.target)
    ratio = m.value / m.target
    if abs(ratio - 1.0) <= tolerance:
        return current
    return math.ceil(ratio * ready)


def desired_replicas(
    metrics: Sequence[MetricReading],
    *,
    current: int,
    ready: int | None = None,
    min_replicas: int = 1,
    max_replicas: int,
    tolerance: float = DEFAULT_TOLERANCE,
) -> int:
    """What ``status.desiredReplicas`` should settle at for these readings (steady state)."""
    if not metrics:
        raise ValueError("no metrics: nothing to decide on")
    ready = current if ready is None else ready
    proposal = max(replicas_for(m, current, ready, tolerance) for m in metrics)
    return max(min_replicas, min(max_replicas, proposal))


def within(value: float, reference: float, *, rel: float, abs_: float = 0.0) -> bool:
    """``value`` is within ``rel`` (fraction) of ``reference``, or within ``abs_`` of it."""
    return abs(value - reference) <= max(abs_, rel * abs(reference))


def target_of(hpa_spec: Mapping[str, Any]) -> tuple[str, str, float]:
    """(kind, target type, target) of an HPA spec's first metric."""
    from harness.report import quantity

    metric = (hpa_spec.get("metrics") or [{}])[0]
    kind = str(metric.get("type"))
    key = kind[0].lower() + kind[1:]  # containerResource
    target = (metric.get(key) or {}).get("target") or {}
    ttype = str(target.get("type"))
    field = {"AverageValue": "averageValue", "Utilization": "averageUtilization"}.get(ttype, "value")
    raw = target.get(field)
    value = quantity(str(raw)) if raw is not None else None
    if value is None:
        raise ValueError(f"HPA metric {metric!r} has no {ttype} target the oracle can read")
    return kind, ttype, value
