"""Report helpers: quantity parsing for plots, HPA status extraction, PNG output."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.report import Sample, _condition, _metric_of, _quantity, plot_samples


@pytest.mark.parametrize(("text", "value"), [("1500m", 1.5), ("100", 100.0), ("2k", 2000.0), ("5u", 5e-6)])
def test_quantity(text: str, value: float) -> None:
    assert _quantity(text) == pytest.approx(value)


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
