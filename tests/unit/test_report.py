"""Report helpers: quantity parsing for plots, HPA status extraction, PNG output."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.report import Sample, _condition, _metric_of, plot_samples, quantity


@pytest.mark.parametrize(("text", "value"), [("1500m", 1.5), ("100", 100.0), ("2k", 2000.0), ("5u", 5e-6)])
def test_quantity(text: str, value: float) -> None:
    assert quantity(text) == pytest.approx(value)


def test_metric_and_conditions_from_hpa_status() -> None:
    spec = {"metrics": [{"type": "Object", "object": {"target": {"type": "Value", "value": "100"}}}]}
    status = {
        "currentMetrics": [{"type": "Object", "object": {"current": {"value": "250500m"}}}],
        "conditions": [{"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound"}],
    }
    assert _metric_of(status, spec) == (250.5, 100.0)
    assert _condition(status, "ScalingActive") == "True/ValidMetricFound"
    assert _condition(status, "AbleToScale") is None


def test_plot_writes_png(tmp_path: Path) -> None:
    samples = [
        Sample(float(t), 1 + t // 10, 1 + t // 12, 1, float(t * 10), 100.0, t, float(t), "True/x", None)
        for t in range(30)
    ]
    path = plot_samples(samples, tmp_path / "plot.png", title="demo")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_draws_marks_and_the_direct_reading(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    samples = [Sample(float(t), 2, 2, 2, 95.0, 100.0, 10, 190.0, "True/x", None, direct_value=97.0)
               for t in range(10)]  # fmt: skip
    drawn: list[object] = []
    real_savefig = plt.Figure.savefig

    def spy(fig: plt.Figure, *args: object, **kw: object) -> None:
        drawn.append(fig)
        real_savefig(fig, *args, **kw)  # type: ignore[arg-type]

    plt.Figure.savefig = spy  # type: ignore[method-assign]
    try:
        plot_samples(samples, tmp_path / "p.png", title="t", marks=[(3.0, "load start"), (7.0, "load stop")])
    finally:
        plt.Figure.savefig = real_savefig  # type: ignore[method-assign]
    [fig] = drawn
    ax_load, ax_metric, _ = fig.axes  # type: ignore[attr-defined]
    assert [t.get_text() for t in ax_load.texts] == ["load start", "load stop"]
    assert "Prometheus, direct" in [line.get_label() for line in ax_metric.lines]
    assert sum(1 for line in ax_metric.lines if list(line.get_xdata()) in ([3.0, 3.0], [7.0, 7.0])) == 2


@pytest.mark.parametrize(
    ("metric", "per_replica"),
    [
        ({"type": "Object", "object": {"target": {"type": "AverageValue", "averageValue": "100"}}}, True),
        ({"type": "Object", "object": {"target": {"type": "Value", "value": "100"}}}, False),
        ({"type": "External", "external": {"target": {"type": "AverageValue", "averageValue": "5"}}}, True),
        ({"type": "Pods", "pods": {"target": {"type": "AverageValue", "averageValue": "5"}}}, False),
    ],
)
def test_direct_reading_is_shown_in_the_statuss_unit(metric: dict, per_replica: bool) -> None:
    from harness.report import _per_replica

    assert _per_replica({"metrics": [metric]}) is per_replica


def test_metric_of_a_utilization_target_is_in_percent() -> None:
    """The HPA's currentMetrics carry both averageValue (21m) and averageUtilization (42): with a
    Utilization target the plot compares percent with percent."""
    spec = {"metrics": [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]}
    status = {"currentMetrics": [{"type": "Resource", "resource": {
        "name": "cpu", "current": {"averageValue": "21m", "averageUtilization": 42}}}]}
    assert _metric_of(status, spec) == (42.0, 50.0)


def _ramp(t: float, *, direct: float | None, served: float | None, desired: int, ready: int) -> Sample:
    return Sample(t, desired, ready, ready, 50.0, 100.0, 10, 20.0, "True/x", None,
                  direct_value=direct, served_value=served)  # fmt: skip


def test_scale_up_budget_splits_load_start_to_first_ready_replica_by_stage() -> None:
    from harness.report import format_budget, scale_up_budget

    # load starts at 10 s; Prometheus crosses 110 (target 100 + 10 %) at 31, the adapter at 37, the
    # controller wants 2 at 43, the second pod is Ready at 55. One sample every 3 s.
    samples = []
    for t in range(1, 70, 3):
        direct = 50.0 if t < 31 else 150.0
        served = 50.0 if t < 37 else 150.0
        desired = 1 if t < 43 else 2
        ready = 1 if t < 55 else 2
        samples.append(_ramp(float(t), direct=direct, served=served, desired=desired, ready=ready))
    budget = scale_up_budget(samples, [(10.0, "load start")])
    assert budget["parts"] == {"prometheus": 21.0, "adapter": 6.0, "hpa": 6.0, "rollout": 12.0}
    assert budget["first_ready_s"] == 45.0 and budget["resolution_s"] == 3.0
    assert format_budget(budget).endswith("= 45s to the first new Ready replica (+-3s per stage)")


def test_scale_up_budget_says_what_it_could_not_split() -> None:
    from harness.report import scale_up_budget

    # no served readings: the adapter's time is in the hpa stage; no scale-out at all: incomplete.
    samples = [_ramp(float(t), direct=150.0 if t > 20 else 50.0, served=None, desired=1 if t < 40 else 2,
                     ready=1) for t in range(0, 60, 5)]  # fmt: skip
    budget = scale_up_budget(samples, [(5.0, "load start")])
    assert budget["parts"] == {"prometheus": 20.0, "hpa": 15.0}
    assert budget["first_ready_s"] is None
    assert any("adapter: not recorded" in n for n in budget["notes"])
    assert any("rollout: never crossed" in n for n in budget["notes"])
    assert scale_up_budget(samples, [])["notes"] == ["no 'load start' mark or no samples"]
