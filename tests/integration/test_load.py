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


MY_LOCUSTFILE = '''
from locust import HttpUser, constant, task


class CheckoutUser(HttpUser):
    wait_time = constant(0.1)

    @task
    def checkout(self):
        self.client.get("/", name="/checkout")


class BrowseUser(HttpUser):
    wait_time = constant(1)

    @task
    def browse(self):
        self.client.get("/")
'''


def test_a_projects_own_locustfile_follows_the_kits_stages(tmp_path: Path) -> None:
    # A user class the kit does not ship, in a file without a LoadTestShape: the kit's stages still
    # drive it (3 users, then 1, then stop), and the hits it makes land on the server.
    locustfile = tmp_path / "my_locustfile.py"
    locustfile.write_text(MY_LOCUSTFILE)
    with MockMetricsProcess(tmp_path / "mm.log") as mm:
        before = _gauge(mm.url, "total_hit_count")
        run = LocustRun(mm.url, "CheckoutUser", [Stage(4, 3, 10), Stage(7, 1, 10)], tmp_path / "load",
                        locustfile=locustfile)  # fmt: skip
        run.start()
        rc = run.wait(timeout=60)
        after = _gauge(mm.url, "total_hit_count")
    assert rc == 0, (tmp_path / "load" / "locust.log").read_text()
    hist = run.history()
    assert max(s.users for s in hist) == 3 and hist[-1].users <= 1  # the stages, not Locust's defaults
    stats = (tmp_path / "load" / "load_stats.csv").read_text().splitlines()
    checkout = next(line for line in stats if ",/checkout," in line)
    sent = int(checkout.split(",")[2])
    assert sent > 10
    assert after - before == pytest.approx(sent, abs=3)  # every hit Locust counted, and only those


def test_a_projects_locustfile_is_checked_before_starting(tmp_path: Path) -> None:
    locustfile = tmp_path / "my_locustfile.py"
    locustfile.write_text(MY_LOCUSTFILE)
    with pytest.raises(LoadError, match=r"unknown user class 'HitUser' in .*my_locustfile.py: pick one of "
                                        r"CheckoutUser, BrowseUser"):
        LocustRun("http://127.0.0.1:1", "HitUser", [Stage(1, 1)], tmp_path, locustfile=locustfile)
    locustfile.write_text("class Broken(:\n")
    with pytest.raises(LoadError, match=r"my_locustfile.py:1: "):
        LocustRun("http://127.0.0.1:1", "Broken", [Stage(1, 1)], tmp_path, locustfile=locustfile)
