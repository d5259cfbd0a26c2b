"""Fixed-concurrency HTTP load against one adapter URL, checking every answer.

``concurrency`` workers share one keep-alive httpx client and loop until the deadline; a short
warm-up (TLS handshakes, first caches) is excluded from the numbers. A request counts in the
window it *completes* in (throughput = completions in the window / window length), so a server
slower than the window still yields samples instead of none. A response counts as OK only
when it is HTTP 200, a ``MetricValueList`` and holds exactly the expected number of items; any
other answer is an error of a named kind, never a latency sample.

Counting items by parsing 300 KB of JSON per response would make the client the bottleneck on 2
cores, so every response is checked by counting ``"describedObject"`` keys (one per item) in the
raw bytes, and every ``full_check_every``-th response is also parsed in full as a cross-check.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from bench.stats import LoadResult, summarize

__all__ = ["Check", "check_body", "run_load"]

_ITEM_KEY = b'"describedObject"'


@dataclass(frozen=True)
class Check:
    """What a good answer looks like."""

    expect_items: int
    full_check_every: int = 50


def check_body(status: int, body: bytes, expect_items: int, full: bool) -> str | None:
    """None when the answer is right, else a short error kind (``http-404``, ``items-97``...)."""
    if status != 200:
        return f"http-{status}"
    if b'"MetricValueList"' not in body[:400]:
        return "not-a-MetricValueList"
    if full:
        try:
            items = json.loads(body)["items"]
        except (ValueError, KeyError, TypeError):
            return "bad-json"
        n = len(items)
    else:
        n = body.count(_ITEM_KEY)
    if n != expect_items:
        return f"items-{n}"
    return None


async def run_load(
    target: str,
    url: str,
    *,
    duration_s: float,
    concurrency: int,
    check: Check,
    verify: ssl.SSLContext,
    headers: Sequence[tuple[str, str]] = (),
    warmup_s: float = 1.0,
    timeout_s: float = 30.0,
) -> LoadResult:
    """Drive ``url`` with ``concurrency`` workers for ``warmup_s + duration_s`` seconds."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    errors: list[str] = []
    counter = 0
    async with httpx.AsyncClient(
        verify=verify, headers=list(headers), limits=limits, timeout=timeout_s
    ) as client:
        loop_start = time.perf_counter()
        measure_from = loop_start + warmup_s
        deadline = measure_from + duration_s

        async def worker() -> None:
            nonlocal counter
            while True:
                t0 = time.perf_counter()
                if t0 >= deadline:
                    return
                counter += 1
                full = counter % check.full_check_every == 1
                try:
                    resp = await client.get(url)
                    problem = check_body(resp.status_code, resp.content, check.expect_items, full)
                except httpx.TimeoutException:
                    problem = "timeout"
                except httpx.HTTPError as exc:
                    problem = type(exc).__name__
                t1 = time.perf_counter()
                if not measure_from <= t1 <= deadline:
                    continue  # completed during warm-up, or after the window closed
                if problem is None:
                    latencies.append(t1 - t0)
                else:
                    errors.append(problem)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return summarize(target, url, concurrency, duration_s, latencies, errors)
