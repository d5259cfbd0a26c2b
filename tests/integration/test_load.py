"""Locust as a subprocess drives real load into a real mockmetrics process."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.load import LoadError, LocustRun, Stage
from harness.mockproc import MockMetricsProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _gauge(url: str, name: str) -> float:
    for fam in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=5).text):
        for s in fam.samples:
            if s.name == name:
                return s.value
    raise AssertionError(f"{name} not exposed")


def test_staged_hit_load_raises_hits_and_writes_history(tmp_path: Path) -> None:
    with MockMetricsProcess(tmp_path / "mm.log") as mm:
        before = _gauge(mm.url, "total_hit_count")
        run = LocustRun(mm.url, "HitUser", [Stage(4, 2, 10), Stage(8, 4, 10)], tmp_path / "load")
        run.start()
        rc = run.wait(timeout=60)
        after = _gauge(mm.url, "total_hit_count")
    assert rc == 0, (tmp_path / "load" / "locust.log").read_text()
    # 2-4 users at ~10 req/s each for 8 s: far more than 20 hits unless the load never ran.
    assert after - before > 20
    hist = run.history()
    assert hist, "Locust wrote no stats history"
    assert max(s.users for s in hist) == 4
    assert any(s.rps > 0 for s in hist)


def test_stop_ends_a_long_run_early(tmp_path: Path) -> None:
    with MockMetricsProcess(tmp_path / "mm.log") as mm:
        run = LocustRun(mm.url, "WorkUser", [Stage(300, 2, 5)], tmp_path / "load", work_ms=50).start()
        assert run.running
        run.stop()
        assert not run.running


def test_bad_runs_are_refused_before_starting(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="unknown user class"):
        LocustRun("http://127.0.0.1:1", "NoSuchUser", [Stage(1, 1)], tmp_path)
    with pytest.raises(LoadError, match="increasing"):
        LocustRun("http://127.0.0.1:1", "HitUser", [Stage(5, 1), Stage(2, 1)], tmp_path)
