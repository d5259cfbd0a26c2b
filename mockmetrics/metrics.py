"""The Prometheus registry and every metric mockmetrics exposes.

Names are a contract with the Prometheus rules and adapter configs in ``manifests/``; change them only
together. No metric carries pod-specific labels: Prometheus adds ``namespace``/``pod``/``service`` from
service discovery, and the adapter maps those to Kubernetes objects.

================================  =======  ============================================================
name                              type     meaning
================================  =======  ============================================================
``total_hit_count``               gauge    ``GET /`` hits, moved further by the dial. A Gauge on purpose:
                                           prometheus-client would expose a Counter as ``..._total``,
                                           and the seed rules expect exactly ``total_hit_count``.
``http_requests_total``           counter  every request, labels ``path`` (route template, bounded) and
                                           ``code`` (status as a string)
``pm_status``                     gauge    ``state="active processes"|"idle processes"|"total processes"``
                                           of the PHP-FPM-like worker pool
``pm_queue_waiting``              gauge    requests waiting for a pool worker
``queue_depth``                   gauge    jobs waiting in this replica's job queue
``queue_jobs_produced_total``     counter  jobs ever added to this replica's queue
``queue_jobs_consumed_total``     counter  jobs ever consumed by this replica
================================  =======  ============================================================

A dedicated :class:`CollectorRegistry` (not the global one) keeps the exposition to exactly these series
and lets tests build several apps in one process.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mockmetrics.dial import Dial
from mockmetrics.pool import WorkerPool
from mockmetrics.queue import JobQueue

UNMATCHED_PATH = "unmatched"
"""``path`` label for requests no route matched (404/405): raw URLs would make cardinality unbounded."""


class StateCollector(Collector):
    """Reads pool, queue and dial state at scrape time.

    Collecting on demand (rather than setting gauges whenever something changes) means a scrape can never
    see a stale value, and the queue and dial -- which move with time, not events -- are advanced to the
    moment of the scrape.
    """

    def __init__(self, pool: WorkerPool, queue: JobQueue, dial: Dial) -> None:
        self._pool = pool
        self._queue = queue
        self._dial = dial

    def collect(self) -> Iterator[Metric]:
        hits = GaugeMetricFamily(
            "total_hit_count",
            "Hits on GET / plus the dial's drift; a gauge so the name has no _total suffix.",
        )
        hits.add_metric([], self._dial.value())
        yield hits

        status = GaugeMetricFamily(
            "pm_status", "Worker pool status, like php-fpm's pool status page.", labels=["state"]
        )
        status.add_metric(["active processes"], self._pool.active)
        status.add_metric(["idle processes"], self._pool.idle)
        status.add_metric(["total processes"], self._pool.workers)
        yield status

        waiting = GaugeMetricFamily("pm_queue_waiting", "Requests waiting for a free pool worker.")
        waiting.add_metric([], self._pool.waiting)
        yield waiting

        snap = self._queue.snapshot()
        depth = GaugeMetricFamily("queue_depth", "Jobs waiting in this replica's job queue.")
        depth.add_metric([], snap.depth)
        yield depth
        yield CounterMetricFamily(
            "queue_jobs_produced", "Jobs ever added to this replica's job queue.", value=snap.produced
        )
        yield CounterMetricFamily(
            "queue_jobs_consumed", "Jobs ever consumed from this replica's job queue.", value=snap.consumed
        )


INITIALIZED_PATHS = ("/", "/work", "/produce")


class Metrics:
    """Owns the registry; the app records requests here and renders ``/metrics`` from it."""

    def __init__(self, pool: WorkerPool, queue: JobQueue, dial: Dial) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "http_requests",  # exposed as http_requests_total
            "HTTP requests by route template and status code.",
            labelnames=["path", "code"],
            registry=self.registry,
        )
        # Export the load-bearing series at 0 from the start: a series that only appears with the first
        # request makes rate() empty while idle, and an HPA on it reports "no metrics returned".
        for path in INITIALIZED_PATHS:
            self.http_requests.labels(path=path, code="200")
        self.registry.register(StateCollector(pool, queue, dial))

    def observe_request(self, path: str, code: int) -> None:
        """Count one finished request."""
        self.http_requests.labels(path=path, code=str(code)).inc()

    def render(self) -> bytes:
        """The text exposition of everything in the registry."""
        return generate_latest(self.registry)
