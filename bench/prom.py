"""A real Prometheus for the benchmark: the harness' LocalPrometheus with per-job scrape settings.

The pod counters are scraped every second (``rate()`` over 1m needs fresh samples); the ~100k
filler series never change, so they are scraped every few seconds, which keeps Prometheus'
ingestion from eating the CPU the adapters are measured on. ``honor_labels`` keeps the exporter's
``namespace``/``pod`` labels as exported, like a pod-level scrape would.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from harness.localprom import LocalPrometheus, LocalPrometheusError
from harness.waits import wait_for

__all__ = ["BenchPrometheus"]


class BenchPrometheus(LocalPrometheus):
    """``job_intervals`` maps job name to its scrape interval (default: ``scrape_interval``)."""

    def __init__(self, *args: Any, job_intervals: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.job_intervals = dict(job_intervals or {})

    def _config(self) -> dict[str, Any]:
        doc = super()._config()
        for job in doc["scrape_configs"]:
            interval = self.job_intervals.get(job["job_name"], self.scrape_interval)
            job["scrape_interval"] = interval
            job["scrape_timeout"] = interval
            job["honor_labels"] = True
        return doc

    def scalar(self, promql: str) -> float | None:
        """The value of a one-sample instant query (None when it returned nothing)."""
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def wait_for_count(self, selector: str, want: int, timeout: float, progress: Any = None) -> float:
        """Wait until ``count(selector)`` reaches ``want``; returns the seconds it took."""
        t0 = time.monotonic()
        last: float | None = None
        next_note = t0 + 10
        while time.monotonic() - t0 < timeout:
            try:
                last = self.scalar(f"count({selector})")
            except (OSError, ValueError, KeyError):
                last = None
            if last is not None and last >= want:
                return time.monotonic() - t0
            if progress and time.monotonic() > next_note:
                progress(f"  prometheus: count({selector}) = {last or 0:.0f} of {want} ...")
                next_note = time.monotonic() + 10
            time.sleep(0.5)
        raise LocalPrometheusError(
            f"count({selector}) reached {last} of {want} within {timeout:.0f}s: is the exporter up and "
            f"scraped? see {self.log_path}\n{self.log_tail(10)}"
        )

    def head_series(self) -> int:
        """Series in Prometheus' head block (``/api/v1/status/tsdb``): cheap at any size, unlike
        a ``count()`` over a million series."""
        return int(self._get("/api/v1/status/tsdb")["data"]["headStats"]["numSeries"])

    def wait_for_head_series(self, want: int, timeout: float, progress: Any = None) -> float:
        """Wait until the head holds at least ``want`` series; returns the seconds it took."""
        t0 = time.monotonic()

        def loaded() -> tuple[bool, str]:
            have = self.head_series()
            return have >= want, f"{have} of {want} series in the head"

        wait_for(f"prometheus to hold {want} series", loaded, timeout=timeout, interval=1.0,
                 hint="is the exporter up and scraped?", progress=progress,
                 error=lambda _kind, msg: self._fail(msg))  # fmt: skip
        return time.monotonic() - t0
