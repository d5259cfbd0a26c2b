"""mockmetrics as a real process: metrics respond to real HTTP load, and shutdown is graceful.

Each test starts ``python -m mockmetrics`` on 127.0.0.1 with port 0 (the bound port is read from the
start-up log line, so parallel runs never collide), waits on ``/readyz`` by polling, drives it with httpx,
and reads ``/metrics`` with prometheus-client's own parser -- the same text Prometheus would scrape.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.procs import terminate
from harness.waits import Unresolvable, wait_for_async

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0  # a cold Python start on a busy 2-core machine can take several seconds
ACTIVE = ("state", "active processes")
TOTAL = ("state", "total processes")

Labels = tuple[tuple[str, str], ...]


@dataclass
class Scrape:
    """One parsed ``/metrics`` answer: sample name -> labels -> value, plus family name -> type."""

    samples: dict[str, dict[Labels, float]]
    types: dict[str, str]

    def value(self, name: str, **labels: str) -> float:
        return self.samples[name][tuple(sorted(labels.items()))]


def parse_metrics(text: str) -> Scrape:
    samples: dict[str, dict[Labels, float]] = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return Scrape(samples, types)


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    log_path: Path
    base_url: str

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _spawn(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOCKMETRICS_")}
    env["PYTHONUNBUFFERED"] = "1"
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "mockmetrics", *args],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def _wait_ready(proc: subprocess.Popen[bytes], log_path: Path) -> str:
    base_url: str | None = None
    async with httpx.AsyncClient(timeout=2.0) as client:

        async def ready() -> tuple[bool, str]:
            nonlocal base_url
            if proc.poll() is not None:
                raise Unresolvable(f"exited with {proc.returncode} during start")
            if base_url is None:
                match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", log_path.read_text())
                base_url = match.group(1) if match else None
            if base_url is None:
                return False, "no 'listening on' line yet"
            status = (await client.get(f"{base_url}/readyz")).status_code
            return status == 200, f"/readyz: HTTP {status}"

        await wait_for_async(
            "mockmetrics ready", ready, timeout=START_TIMEOUT_S, interval=0.05, progress=None,
            error=lambda _k, msg: pytest.fail.Exception(f"{msg}:\n{log_path.read_text()}"),
        )  # fmt: skip
    assert base_url is not None
    return base_url


def _stop(proc: subprocess.Popen[bytes]) -> None:
    terminate(proc)


@pytest.fixture
async def start_server(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    """Factory: ``await start_server("--workers", "2")`` -> a ready :class:`Server`; stopped afterwards."""
    procs: list[subprocess.Popen[bytes]] = []

    async def start(*flags: str) -> Server:
        log_path = tmp_path / f"mockmetrics-{len(procs)}.log"
        proc = _spawn(["--host", "127.0.0.1", "--port", "0", *flags], log_path)
        procs.append(proc)
        base_url = await _wait_ready(proc, log_path)
        return Server(proc, log_path, base_url)

    yield start
    for proc in procs:
        _stop(proc)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30.0, limits=httpx.Limits(max_connections=200)) as c:
        yield c


async def scrape(client: httpx.AsyncClient, server: Server) -> Scrape:
    resp = await client.get(f"{server.base_url}/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    return parse_metrics(resp.text)


async def poll_until(
    client: httpx.AsyncClient,
    server: Server,
    done: Callable[[Scrape], bool],
    what: str,
    timeout: float = 10.0,
) -> list[Scrape]:
    """Scrape repeatedly until ``done``; returns every scrape taken (for never-exceeded checks)."""
    seen: list[Scrape] = []

    async def probe() -> tuple[bool, str]:
        seen.append(await scrape(client, server))
        return done(seen[-1]), f"last scrape: {seen[-1].samples}"

    await wait_for_async(what, probe, timeout=timeout, interval=0.02, progress=None,
                         error=lambda _k, msg: pytest.fail.Exception(msg))  # fmt: skip
    return seen


# --------------------------------------------------------------------------- tests


async def test_active_processes_follow_real_inflight_work(start_server, client) -> None:
    server = await start_server("--workers", "4")
    before = await scrape(client, server)
    assert before.samples["pm_status"][(ACTIVE,)] == 0
    assert before.samples["pm_status"][(TOTAL,)] == 4

    concurrency = 3
    work = [
        asyncio.create_task(client.get(f"{server.base_url}/work", params={"ms": "1500"}))
        for _ in range(concurrency)
    ]
    during = await poll_until(
        client, server, lambda s: s.samples["pm_status"][(ACTIVE,)] == concurrency, "3 active processes"
    )
    assert max(s.samples["pm_status"][(ACTIVE,)] for s in during) == concurrency
    assert during[-1].value("pm_queue_waiting") == 0
    responses = await asyncio.gather(*work)
    assert [r.status_code for r in responses] == [200] * concurrency

    after = await scrape(client, server)
    assert after.samples["pm_status"][(ACTIVE,)] == 0
    assert after.samples["pm_status"][(TOTAL,)] == 4
    assert after.value("http_requests_total", path="/work", code="200") == concurrency


async def test_pool_saturates_queues_then_rejects_with_503(start_server, client) -> None:
    server = await start_server("--workers", "2", "--max-queue", "1")
    url = f"{server.base_url}/work"
    running = [asyncio.create_task(client.get(url, params={"ms": "2000"})) for _ in range(2)]
    await poll_until(client, server, lambda s: s.samples["pm_status"][(ACTIVE,)] == 2, "2 active")
    queued = asyncio.create_task(client.get(url, params={"ms": "10"}))
    saturated = await poll_until(client, server, lambda s: s.value("pm_queue_waiting") == 1, "1 waiting")
    assert saturated[-1].samples["pm_status"][(ACTIVE,)] == 2  # never more than --workers

    rejected = await client.get(url, params={"ms": "10"})
    assert rejected.status_code == 503
    assert rejected.headers["retry-after"] == "1"
    assert "--max-queue" in rejected.json()["error"]

    assert [r.status_code for r in await asyncio.gather(*running, queued)] == [200, 200, 200]
    final = await scrape(client, server)
    assert final.value("http_requests_total", path="/work", code="503") == 1
    assert final.value("http_requests_total", path="/work", code="200") == 3
    assert final.samples["pm_status"][(ACTIVE,)] == 0
    assert final.value("pm_queue_waiting") == 0


async def test_total_hit_count_counts_hits_exactly_under_its_exact_name(start_server, client) -> None:
    server = await start_server()
    hits = 40
    responses = await asyncio.gather(*(client.get(f"{server.base_url}/") for _ in range(hits)))
    assert all(r.status_code == 200 for r in responses)

    metrics = await scrape(client, server)
    assert metrics.types["total_hit_count"] == "gauge"
    assert metrics.samples["total_hit_count"] == {(): float(hits)}
    assert not any(name.startswith("total_hit_count_") for name in metrics.samples)
    assert f"\ntotal_hit_count {float(hits)}\n" in (await client.get(f"{server.base_url}/metrics")).text
    assert metrics.value("http_requests_total", path="/", code="200") == hits
    # No pod-specific labels: Prometheus adds namespace/pod/service itself.
    for series in metrics.samples.values():
        for labels in series:
            assert {k for k, _ in labels} <= {"path", "code", "state"}


async def test_produced_jobs_raise_queue_depth_and_drain(start_server, client) -> None:
    server = await start_server("--consume-rate", "40")
    bad = await client.post(f"{server.base_url}/produce", params={"n": "-5"})
    assert bad.status_code == 400
    assert "n must be an integer" in bad.json()["error"]

    resp = await client.post(f"{server.base_url}/produce", params={"n": "60"})
    assert resp.status_code == 200
    assert resp.json()["depth"] == 60
    first = await scrape(client, server)
    assert 0 < first.value("queue_depth") <= 60
    assert first.value("queue_jobs_produced_total") == 60

    history = await poll_until(client, server, lambda s: s.value("queue_depth") == 0, "queue drained")
    depths = [s.value("queue_depth") for s in history]
    assert depths == sorted(depths, reverse=True)  # only ever falls while nothing is produced
    drained = history[-1]
    assert drained.value("queue_jobs_consumed_total") == 60
    assert drained.value("queue_jobs_produced_total") == 60


async def test_dial_up_hold_down(start_server, client) -> None:
    server = await start_server("--dial-step", "200")
    assert (await client.get(f"{server.base_url}/scale/")).json() == {
        "mode": "stop",
        "value": 0.0,
        "step": 200.0,
    }

    assert (await client.post(f"{server.base_url}/scale/up")).json()["mode"] == "up"
    rising = await poll_until(client, server, lambda s: s.value("total_hit_count") >= 100, "dial up to 100")
    values = [s.value("total_hit_count") for s in rising]
    assert values == sorted(values)

    held = (await client.get(f"{server.base_url}/scale/stop")).json()
    assert held["mode"] == "stop"
    assert held["value"] >= 100
    await asyncio.sleep(0.3)  # an observation window: a held value must not move during it
    assert (await scrape(client, server)).value("total_hit_count") == held["value"]

    assert (await client.post(f"{server.base_url}/scale/down")).status_code == 200
    falling = await poll_until(client, server, lambda s: s.value("total_hit_count") == 0, "dial down to 0")
    assert all(s.value("total_hit_count") >= 0 for s in falling)
    state = (await client.get(f"{server.base_url}/scale/")).json()
    assert state["mode"] == "down"
    assert state["value"] == 0


async def test_sigterm_drains_inflight_work_and_exits_zero(start_server, client) -> None:
    server = await start_server("--drain-delay", "1.5", "--shutdown-timeout", "10")
    inflight = asyncio.create_task(client.get(f"{server.base_url}/work", params={"ms": "3000"}))
    await poll_until(client, server, lambda s: s.samples["pm_status"][(ACTIVE,)] == 1, "1 active")

    server.proc.send_signal(signal.SIGTERM)

    async def not_ready() -> tuple[bool, str]:
        status = (await client.get(f"{server.base_url}/readyz")).status_code
        return status == 503, f"/readyz: HTTP {status}"

    await wait_for_async("readyz to turn 503 after SIGTERM", not_ready, timeout=5, interval=0.02,
                         progress=None)  # fmt: skip
    assert (await client.get(f"{server.base_url}/healthz")).status_code == 200

    resp = await inflight
    assert resp.status_code == 200
    assert resp.json()["ms"] == 3000
    returncode = await asyncio.to_thread(server.proc.wait, 20)
    assert returncode == 0, server.log()
    assert "stopped" in server.log()


async def test_shutdown_timeout_bounds_a_stuck_drain(start_server, client) -> None:
    server = await start_server("--shutdown-timeout", "0.5")
    inflight = asyncio.create_task(client.get(f"{server.base_url}/work", params={"ms": "60000"}))
    await poll_until(client, server, lambda s: s.samples["pm_status"][(ACTIVE,)] == 1, "1 active")
    server.proc.send_signal(signal.SIGTERM)
    returncode = await asyncio.to_thread(server.proc.wait, 20)  # far less than the 60 s of work
    assert returncode == 0, server.log()
    with pytest.raises(httpx.TransportError):
        await inflight


@pytest.fixture
def busy_port() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


def _proc_cpu_s(pid: int) -> float:
    """utime + stime of a process from /proc (the kernel's count, not the app's own report)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def test_burn_spends_the_cpu_time_the_load_asks_for(start_server, client) -> None:
    """40 requests x 50 ms must cost the process ~2 CPU-seconds, as the kernel counts it."""
    server = await start_server("--burn-threads", "2")
    before = _proc_cpu_s(server.proc.pid)
    sem = asyncio.Semaphore(4)

    async def one() -> httpx.Response:
        async with sem:
            return await client.get(f"{server.base_url}/burn", params={"ms": "50"})

    responses = await asyncio.gather(*(one() for _ in range(40)))
    spent = _proc_cpu_s(server.proc.pid) - before
    assert [r.status_code for r in responses] == [200] * 40
    assert all(r.json()["cpu_ms"] >= 50 for r in responses)
    assert 2.0 <= spent <= 2.0 * 1.5 + 0.5, f"{spent:.2f} CPU-s for 40 x 50 ms"
    bad = await client.get(f"{server.base_url}/burn", params={"ms": "-1"})
    assert bad.status_code == 400 and "ms must be a number from 0 to 10000" in bad.json()["error"]
    m = await scrape(client, server)
    assert m.value("http_requests_total", path="/burn", code="200") == 40


async def test_hold_keeps_memory_resident_then_frees_it(start_server, client) -> None:
    server = await start_server("--max-hold-mb", "96")
    base = _proc_rss_mib(server.proc.pid)
    r = await client.post(f"{server.base_url}/hold", params={"mb": "64", "seconds": "2"})
    assert r.status_code == 200 and r.json()["held_bytes"] == 64 << 20
    assert _proc_rss_mib(server.proc.pid) - base >= 60  # every page written: resident, not lazy
    over = await client.post(f"{server.base_url}/hold", params={"mb": "64", "seconds": "2"})
    assert over.status_code == 503 and "--max-hold-mb" in over.json()["error"]
    await asyncio.sleep(2.2)
    assert (await client.get(f"{server.base_url}/hold")).json()["held_bytes"] == 0
    assert _proc_rss_mib(server.proc.pid) - base < 16  # freed back to the OS


def test_bad_start_up_input_says_what_to_fix(tmp_path: Path, busy_port: int) -> None:
    log_path = tmp_path / "bad-flag.log"
    proc = _spawn(["--workers", "zero"], log_path)
    assert proc.wait(timeout=30) == 2
    assert "argument --workers: expected an integer from 1 to 10000, got 'zero'" in log_path.read_text()

    log_path = tmp_path / "busy.log"
    proc = _spawn(["--host", "127.0.0.1", "--port", str(busy_port)], log_path)
    assert proc.wait(timeout=30) == 1
    assert "pick another --port/MOCKMETRICS_PORT" in log_path.read_text()
