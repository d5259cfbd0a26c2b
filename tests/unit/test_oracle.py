"""The HPA oracle against hand-worked examples of the controller's rules (replica_calculator)."""

from __future__ import annotations

import pytest

from harness.oracle import MetricReading, desired_replicas, replicas_for, target_of, within


def test_object_average_value_is_value_over_target() -> None:
    # 390 hits/s on the Service, 100 per replica: ceil(3.9) = 4, whatever the current count.
    m = MetricReading("Object", "AverageValue", 100, 390)
    assert replicas_for(m, current=1, ready=1) == 4
    assert replicas_for(m, current=3, ready=3) == 4
    # 4 replicas serving 390: ratio 390 / 400 = 0.975, inside the tolerance: stays at 4.
    assert replicas_for(m, current=4, ready=4) == 4
    # 5 replicas serving 390: ratio 0.78: down to ceil(3.9) = 4.
    assert replicas_for(m, current=5, ready=5) == 4


def test_tolerance_keeps_the_count() -> None:
    m = MetricReading("Object", "AverageValue", 100, 209)  # ratio 209/200 = 1.045 at 2 replicas
    assert replicas_for(m, current=2, ready=2) == 2
    assert replicas_for(m, current=2, ready=2, tolerance=0.01) == 3


def test_object_value_scales_by_ready_pods() -> None:
    m = MetricReading("Object", "Value", 100, 250)
    assert replicas_for(m, current=2, ready=2) == 5  # ceil(2.5 x 2)
    assert replicas_for(m, current=3, ready=2) == 5  # ready pods, not current


def test_pods_average_value_uses_pods_with_a_value() -> None:
    m = MetricReading("Pods", "AverageValue", 0.5, 0.9, pods_with_value=2)  # ratio 1.8
    assert replicas_for(m, current=2, ready=2) == 4  # ceil(1.8 x 2) = ceil(3.6)


def test_external_average_value_like_object() -> None:
    m = MetricReading("External", "AverageValue", 50, 190)
    assert replicas_for(m, current=1, ready=1) == 4


def test_desired_takes_the_largest_and_clamps() -> None:
    small = MetricReading("Object", "AverageValue", 100, 150)
    big = MetricReading("External", "AverageValue", 50, 2000)
    assert desired_replicas([small, big], current=1, max_replicas=10) == 10
    assert desired_replicas([small], current=1, max_replicas=10) == 2
    assert desired_replicas([MetricReading("Object", "AverageValue", 100, 0)], current=3,
                            min_replicas=1, max_replicas=10) == 1  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "Memory", "target_type": "Value", "target": 1, "value": 1}, "Pods, External, Resource"),
        ({"kind": "Resource", "target_type": "Value", "target": 1, "value": 1}, "Utilization or Average"),
        ({"kind": "Object", "target_type": "Utilization", "target": 1, "value": 1}, "only Resource and"),
        ({"kind": "Pods", "target_type": "Value", "target": 1, "value": 1}, "only take AverageValue"),
        ({"kind": "Object", "target_type": "Value", "target": 0, "value": 1}, "target must be > 0"),
    ],
)
def test_bad_readings_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MetricReading(**kwargs)


def test_target_of_reads_the_spec() -> None:
    target = {"type": "AverageValue", "averageValue": "500m"}
    spec = {"metrics": [{"type": "Pods", "pods": {"metric": {"name": "x"}, "target": target}}]}
    assert target_of(spec) == ("Pods", "AverageValue", 0.5)


def test_resource_utilization_is_percent_of_requests_times_pods() -> None:
    # 3 pods at 80 % of their CPU request against a 50 % target: ceil(80 / 50 x 3) = ceil(4.8) = 5
    m = MetricReading("Resource", "Utilization", 50, 80, pods_with_value=3)
    assert replicas_for(m, current=3, ready=3) == 5
    inside = MetricReading("ContainerResource", "Utilization", 50, 54, pods_with_value=3)
    assert replicas_for(inside, current=3, ready=3) == 3  # within the 10 % tolerance
    target = {"type": "Utilization", "averageUtilization": 50}
    spec = {"metrics": [{"type": "ContainerResource",
                         "containerResource": {"name": "cpu", "container": "app", "target": target}}]}
    assert target_of(spec) == ("ContainerResource", "Utilization", 50)


def test_within() -> None:
    assert within(95, 100, rel=0.1) and not within(85, 100, rel=0.1)
    assert within(0.4, 0, rel=0.1, abs_=0.5)
