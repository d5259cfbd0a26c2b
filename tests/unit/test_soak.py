"""bench.soak's verdict and bench.hpas' arguments: the pure parts (the run itself is
tests/integration/test_soak.py)."""

from __future__ import annotations

import argparse

import pytest

from bench.hpas import _hpa_counts
from bench.soak import SoakConfig, SoakResult, _check_all, _read_gauges


def _passing() -> SoakResult:
    return SoakResult(
        config={"rss_bound_pct": 5.0, "minutes": 2, "rate": 10, "warmup_s": 40},
        requests=100,
        ok=97,
        in_window={"http-503": 3},
        restart_window=(60.0, 78.0),
        restart_s=8.0,
        rss_warm_kib=80_000,
        rss_end_kib=81_000,
        baseline={"open_connections": 3, "asyncio_tasks": 12},
        after={"open_connections": 1, "asyncio_tasks": 11},
        adapter_served_200=99,
    )


def test_503s_inside_the_restart_window_pass_and_are_counted() -> None:
    res = _passing()
    assert res.problems() == []
    assert res.restart_503 == 3 and res.failed_requests == 0
    assert "3 x 503" in res.summary() and "verdict: PASS" in res.summary()


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        ({"failures": {"http-503": 1}}, "1 failed requests"),
        ({"in_window": {"http-503": 3, "timeout": 1}}, "1 failed requests"),
        ({"rss_end_kib": 84_000}, "RSS grew 5.0 %"),
        ({"after": {"open_connections": 4, "asyncio_tasks": 11}}, "open_connections: 4 after"),
        ({"after": {"open_connections": 1, "asyncio_tasks": 30}}, "asyncio_tasks: 30 after"),
        ({"after": {"open_connections": None, "asyncio_tasks": 11}}, "not read from the adapter"),
        ({"adapter_served_200": 50}, "the adapter counted 50"),
        ({"restart_window": None}, "Prometheus was not restarted"),
    ],
)
def test_each_bound_fails_the_verdict(change: dict[str, object], expect: str) -> None:
    res = _passing()
    for k, v in change.items():
        setattr(res, k, v)
    problems = res.problems()
    assert any(expect in p for p in problems), problems
    assert "verdict: FAIL" in res.summary()


def test_short_mode_fits_the_test_budget() -> None:
    cfg = SoakConfig.short()
    assert cfg.duration_s <= 150 and cfg.warmup < cfg.restart_at < cfg.duration_s - 30
    assert SoakConfig(minutes=30).warmup == 300 and SoakConfig(minutes=30).rss_bound_pct == 10


def test_gauges_are_read_from_the_adapter_exposition() -> None:
    text = (
        "# TYPE hpakit_adapter_open_connections gauge\nhpakit_adapter_open_connections 2.0\n"
        "# TYPE hpakit_adapter_asyncio_tasks gauge\nhpakit_adapter_asyncio_tasks 11.0\n"
        "# TYPE hpakit_adapter_request_duration_seconds histogram\n"
        'hpakit_adapter_request_duration_seconds_count{route="a",code="200"} 5.0\n'
        'hpakit_adapter_request_duration_seconds_count{route="b",code="200"} 2.0\n'
        'hpakit_adapter_request_duration_seconds_count{route="a",code="503"} 9.0\n'
    )
    assert _read_gauges(text) == {"open_connections": 2.0, "asyncio_tasks": 11.0, "served_200": 7.0}


def test_churning_read_needs_at_least_the_stable_pods() -> None:
    body = b'{"kind":"MetricValueList",' + b'"describedObject":{},' * 12 + b"}"
    assert _check_all(200, body, 10) is None
    assert _check_all(200, body, 13) == "items-12<13"
    assert _check_all(503, b"", 10) == "http-503"


def test_hpa_counts_are_checked() -> None:
    assert _hpa_counts("100,10,100") == [10, 100]
    for bad in ("", "a", "0,10"):
        with pytest.raises(argparse.ArgumentTypeError):
            _hpa_counts(bad)
