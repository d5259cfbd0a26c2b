"""Latency statistics of one load run: percentiles, throughput, error counts.

Pure functions over recorded samples, so they are unit-tested without any server.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LoadResult", "bursts", "percentile", "pool", "summarize"]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between closest ranks.

    Same definition as ``numpy.percentile(..., method="linear")``: p50 of [1, 2, 3, 4] is 2.5.
    An empty input has no percentile: NaN, which the report prints as "n/a" instead of a fake 0.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q!r} out of range: pass a value in [0, 100]")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    lo = math.floor(rank)
    hi = math.ceil(rank)
    if lo == hi:
        return float(ordered[lo])
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo))


def bursts(deltas: Sequence[float], threshold: float) -> list[float]:
    """CPU of each complete burst in a series of per-interval CPU deltas (e.g. one per second).

    A burst is a run of consecutive deltas above ``threshold``; its value is the run's sum. Runs
    touching either end of the series are dropped: they may have started before sampling began or
    go on after it ended. This is how one relist's cost is read off an otherwise idle process.
    """
    out: list[float] = []
    run: list[float] = []
    start = 0
    for i, d in enumerate([*deltas, 0.0]):
        if d > threshold:
            if not run:
                start = i
            run.append(d)
        elif run:
            if start > 0 and i < len(deltas):
                out.append(sum(run))
            run = []
    return out


@dataclass
class LoadResult:
    """What one target answered during one fixed-concurrency run."""

    target: str
    url: str
    concurrency: int
    duration_s: float
    requests: int
    ok: int
    errors: int
    rps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    error_kinds: dict[str, int] = field(default_factory=dict)
    #: CPU seconds the serving process (and, separately, kube-apiserver) used during the run.
    cpu_s: float | None = None
    apiserver_cpu_s: float | None = None
    loadavg: tuple[float, float, float] | None = None
    #: What was asked: the pod count N and the API version (set by the driver).
    pods: int | None = None
    version: str = ""
    round_no: int = 0  # 1-based; 0 = pooled over all rounds
    #: The raw successful latencies, kept for pooling rounds; not written to JSON.
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def cpu_ms_per_request(self) -> float:
        if self.cpu_s is None or not self.ok:
            return math.nan
        return 1000.0 * self.cpu_s / self.ok

    @property
    def apiserver_cpu_ms_per_request(self) -> float:
        """kube-apiserver CPU per answered request: what an adapter that LISTs per request costs."""
        if self.apiserver_cpu_s is None or not self.ok:
            return math.nan
        return 1000.0 * self.apiserver_cpu_s / self.ok

    def to_json(self) -> dict[str, Any]:
        doc = dict(self.__dict__)
        doc.pop("latencies_ms")
        doc["cpu_ms_per_request"] = self.cpu_ms_per_request
        doc["apiserver_cpu_ms_per_request"] = self.apiserver_cpu_ms_per_request
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in doc.items()}


def summarize(
    target: str,
    url: str,
    concurrency: int,
    duration_s: float,
    latencies_s: Sequence[float],
    errors: Sequence[str],
) -> LoadResult:
    """Fold per-request samples into a :class:`LoadResult`.

    ``latencies_s`` are the successful requests only (an error's latency says nothing about the
    server's speed; a fast 500 must not improve p50); ``errors`` is one short kind per failure.
    Throughput counts successful requests per wall-clock second of the measured window.
    """
    if duration_s <= 0:
        raise ValueError(f"duration {duration_s!r} must be positive")
    ms = [x * 1000.0 for x in latencies_s]
    ok = len(ms)
    return LoadResult(
        target=target,
        url=url,
        concurrency=concurrency,
        duration_s=duration_s,
        requests=ok + len(errors),
        ok=ok,
        errors=len(errors),
        rps=ok / duration_s,
        p50_ms=percentile(ms, 50),
        p99_ms=percentile(ms, 99),
        mean_ms=(sum(ms) / ok) if ok else math.nan,
        max_ms=max(ms) if ms else math.nan,
        error_kinds=dict(Counter(errors).most_common()),
        latencies_ms=ms,
    )


def _sum_or_none(values: Sequence[float | None]) -> float | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def _mean_loadavg(loads: Sequence[tuple[float, float, float]]) -> tuple[float, float, float] | None:
    if not loads:
        return None
    n = len(loads)
    return (
        round(sum(x[0] for x in loads) / n, 2),
        round(sum(x[1] for x in loads) / n, 2),
        round(sum(x[2] for x in loads) / n, 2),
    )


def pool(results: Sequence[LoadResult]) -> LoadResult:
    """Merge the rounds of one (target, N, version) into one result.

    Latency samples are pooled before taking percentiles (a p99 of p99s is not a p99), counts and
    CPU seconds add up, throughput is total completions over total measured time, and the load
    average is the rounds' mean.
    """
    if not results:
        raise ValueError("nothing to pool")
    first = results[0]
    ms = [x for r in results for x in r.latencies_ms]
    duration = sum(r.duration_s for r in results)
    kinds: Counter[str] = Counter()
    for r in results:
        kinds.update(r.error_kinds)
    loads = [r.loadavg for r in results if r.loadavg is not None]
    ok = len(ms)
    return LoadResult(
        target=first.target,
        url=first.url,
        concurrency=first.concurrency,
        duration_s=duration,
        requests=sum(r.requests for r in results),
        ok=ok,
        errors=sum(r.errors for r in results),
        rps=ok / duration,
        p50_ms=percentile(ms, 50),
        p99_ms=percentile(ms, 99),
        mean_ms=(sum(ms) / ok) if ok else math.nan,
        max_ms=max(ms) if ms else math.nan,
        error_kinds=dict(kinds.most_common()),
        cpu_s=_sum_or_none([r.cpu_s for r in results]),
        apiserver_cpu_s=_sum_or_none([r.apiserver_cpu_s for r in results]),
        loadavg=_mean_loadavg(loads),
        pods=first.pods,
        version=first.version,
        round_no=0,
        latencies_ms=ms,
    )
