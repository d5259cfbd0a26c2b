"""Unit tests for mockmetrics: pool, job queue, dial, flags, and the app in-process.

The queue and dial take an injected clock, so time is moved by hand and nothing sleeps.
"""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from mockmetrics.app import create_app
from mockmetrics.burn import HoldRefused, MemoryHold, burn_cpu
from mockmetrics.config import Settings, parse_settings
from mockmetrics.dial import Dial
from mockmetrics.pool import Admission, PoolFull, WorkerPool
from mockmetrics.queue import MAX_PRODUCE, JobQueue


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float) -> None:
        self.now += seconds


# --------------------------------------------------------------------------- pool


async def test_pool_runs_immediately_while_workers_are_free() -> None:
    pool = WorkerPool(workers=3, max_queue=2)
    assert pool.admission() is Admission.RUN
    for expected in (1, 2, 3):
        await asyncio.wait_for(pool.acquire(), timeout=1)
        assert pool.active == expected
    assert pool.idle == 0
    assert pool.admission() is Admission.QUEUE


async def test_pool_queue_bound_then_reject() -> None:
    pool = WorkerPool(workers=1, max_queue=2)
    await pool.acquire()
    waiters = [asyncio.create_task(pool.acquire()) for _ in range(2)]
    await asyncio.sleep(0)  # let both reach the queue
    assert pool.waiting == 2
    assert pool.admission() is Admission.REJECT
    with pytest.raises(PoolFull, match="max_queue=2"):
        await pool.acquire()
    assert pool.active == 1
    assert pool.waiting == 2
    for task in waiters:
        task.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    assert pool.waiting == 0
    assert pool.active == 1


async def test_pool_max_queue_zero_rejects_when_busy() -> None:
    pool = WorkerPool(workers=1, max_queue=0)
    assert pool.try_acquire()
    assert not pool.try_acquire()
    assert pool.admission() is Admission.REJECT
    with pytest.raises(PoolFull):
        await pool.acquire()


async def test_pool_release_hands_slot_to_oldest_waiter_without_dipping() -> None:
    pool = WorkerPool(workers=1, max_queue=5)
    await pool.acquire()
    order: list[int] = []

    async def waiter(i: int) -> None:
        await pool.acquire()
        order.append(i)

    tasks = [asyncio.create_task(waiter(i)) for i in range(3)]
    await asyncio.sleep(0)
    assert pool.waiting == 3
    for expected_waiting in (2, 1, 0):
        pool.release()
        assert pool.active == 1  # handed over, never 0 in between
        assert pool.waiting == expected_waiting
        # A newcomer cannot overtake queued requests.
        assert not pool.try_acquire()
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2]
    pool.release()
    assert pool.active == 0
    assert pool.admission() is Admission.RUN


async def test_pool_cancelled_waiter_leaves_queue() -> None:
    pool = WorkerPool(workers=1, max_queue=2)
    await pool.acquire()
    first = asyncio.create_task(pool.acquire())
    second = asyncio.create_task(pool.acquire())
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert pool.waiting == 1
    pool.release()  # must go to `second`, not to the cancelled one
    await asyncio.wait_for(second, timeout=1)
    assert pool.active == 1
    assert pool.waiting == 0


async def test_pool_slot_releases_on_error() -> None:
    pool = WorkerPool(workers=2, max_queue=0)
    with pytest.raises(RuntimeError, match="boom"):
        async with pool.slot():
            assert pool.active == 1
            raise RuntimeError("boom")
    assert pool.active == 0


def test_pool_rejects_bad_arguments_and_unbalanced_release() -> None:
    with pytest.raises(ValueError, match="workers"):
        WorkerPool(workers=0, max_queue=1)
    with pytest.raises(ValueError, match="max_queue"):
        WorkerPool(workers=1, max_queue=-1)
    with pytest.raises(RuntimeError, match="without a matching acquire"):
        WorkerPool(workers=1, max_queue=0).release()


# --------------------------------------------------------------------------- job queue


def test_queue_consumes_at_fixed_rate() -> None:
    clock = FakeClock()
    q = JobQueue(consume_rate=5, clock=clock)
    assert q.produce(50) == 50
    clock.tick(1.0)
    q.advance()
    assert (q.depth, q.consumed, q.produced) == (45, 5, 50)
    # Fractional progress carries over small ticks: 10 x 0.1 s at 5/s is 5 jobs.
    for _ in range(10):
        clock.tick(0.1)
        q.advance()
    assert q.consumed == 10
    assert q.depth == 40


def test_queue_never_goes_negative_and_idle_consumer_banks_nothing() -> None:
    clock = FakeClock()
    q = JobQueue(consume_rate=5, clock=clock)
    q.produce(3)
    clock.tick(100)
    q.advance()
    assert (q.depth, q.consumed) == (0, 3)
    clock.tick(100)  # a long idle period
    q.advance()
    q.produce(20)
    assert q.depth == 20  # nothing consumed "in advance"
    clock.tick(1.0)
    snap = q.snapshot()
    assert snap.depth == 15
    assert snap.consumed == 8


def test_queue_internal_producer() -> None:
    clock = FakeClock()
    q = JobQueue(consume_rate=0, produce_rate=3, clock=clock)
    clock.tick(2.0)
    assert q.snapshot().depth == 6
    assert q.produced == 6


def test_queue_balanced_rates_keep_depth_small() -> None:
    clock = FakeClock()
    q = JobQueue(consume_rate=5, produce_rate=5, clock=clock)
    for _ in range(1000):
        clock.tick(0.1)
        q.advance()
        assert q.depth <= 1
    # 1000 float ticks of 0.1 s: allow one job of rounding either way.
    assert 499 <= q.produced <= 500
    assert q.produced - q.consumed <= 1


def test_queue_clock_going_backwards_changes_nothing() -> None:
    clock = FakeClock()
    q = JobQueue(consume_rate=5, clock=clock)
    q.produce(10)
    clock.tick(-5)
    q.advance()
    assert q.depth == 10


@pytest.mark.parametrize("n", [0, -1, MAX_PRODUCE + 1, 1.5, True])
def test_queue_rejects_bad_produce_and_changes_nothing(n: object) -> None:
    q = JobQueue(consume_rate=1, clock=FakeClock())
    with pytest.raises(ValueError, match="n must be an integer"):
        q.produce(n)  # type: ignore[arg-type]
    assert (q.depth, q.produced) == (0, 0)


@pytest.mark.parametrize("kwargs", [{"consume_rate": -1}, {"consume_rate": 1, "produce_rate": float("nan")}])
def test_queue_rejects_bad_rates(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="rate must be"):
        JobQueue(clock=FakeClock(), **kwargs)


@given(
    rate=st.floats(min_value=0, max_value=100),
    steps=st.lists(
        st.tuples(st.floats(min_value=0, max_value=10), st.integers(min_value=0, max_value=1000)), max_size=50
    ),
)
def test_queue_conservation_property(rate: float, steps: list[tuple[float, int]]) -> None:
    clock = FakeClock()
    q = JobQueue(consume_rate=rate, clock=clock)
    elapsed = 0.0
    for dt, n in steps:
        clock.tick(dt)
        elapsed += dt
        if n:
            q.produce(n)
        q.advance()
        assert q.depth >= 0
        assert q.depth == q.produced - q.consumed
        assert q.consumed <= rate * elapsed + 1e-6


# --------------------------------------------------------------------------- dial


def test_dial_up_stop_down_with_floor() -> None:
    clock = FakeClock()
    dial = Dial(step=10, clock=clock)
    assert (dial.mode, dial.value()) == ("stop", 0.0)
    clock.tick(5)
    assert dial.value() == 0.0  # stopped: holds

    dial.set_mode("up")
    clock.tick(2)
    assert dial.value() == pytest.approx(20)
    dial.hit()  # hits add on top of the drift
    clock.tick(0.5)
    assert dial.value() == pytest.approx(26)

    dial.set_mode("stop")
    clock.tick(100)
    assert dial.value() == pytest.approx(26)

    dial.set_mode("down")
    clock.tick(1)
    assert dial.value() == pytest.approx(16)
    clock.tick(60)
    assert dial.value() == 0.0  # floored, never negative
    dial.hit()
    assert dial.value() == pytest.approx(1)  # counts up from the floor, not from a negative debt
    clock.tick(0.05)
    assert dial.value() == pytest.approx(0.5)


def test_dial_hits_count_exactly_when_stopped() -> None:
    clock = FakeClock()
    dial = Dial(step=10, clock=clock)
    for _ in range(25):
        dial.hit()
        clock.tick(0.01)
    assert dial.value() == 25


def test_dial_set_value_and_bad_input() -> None:
    clock = FakeClock()
    dial = Dial(step=1, clock=clock)
    dial.set_value(500)
    assert dial.value() == 500
    with pytest.raises(ValueError, match="mode must be one of up, down, stop"):
        dial.set_mode("sideways")
    with pytest.raises(ValueError, match="value must be"):
        dial.set_value(-1)
    with pytest.raises(ValueError, match="step must be"):
        Dial(step=-1, clock=clock)
    assert (dial.mode, dial.value()) == ("stop", 500)


# --------------------------------------------------------------------------- flags


def test_settings_defaults_env_and_flag_precedence() -> None:
    assert parse_settings([], environ={}) == Settings()
    env = {"MOCKMETRICS_PORT": "9000", "MOCKMETRICS_WORKERS": "8", "MOCKMETRICS_LOG_LEVEL": "debug"}
    s = parse_settings(["--workers", "2", "--consume-rate", "2.5"], environ=env)
    assert (s.port, s.workers, s.consume_rate, s.log_level) == (9000, 2, 2.5, "DEBUG")
    assert s.max_queue == 32
    assert s.dial_step == 10.0
    assert s.shutdown_timeout == 10.0


@pytest.mark.parametrize(
    ("argv", "env", "expected"),
    [
        (["--workers", "0"], {}, "argument --workers: expected an integer from 1 to 10000, got 0"),
        (["--port", "70000"], {}, "argument --port"),
        (["--consume-rate", "-1"], {}, "argument --consume-rate"),
        (["--log-level", "loud"], {}, "expected one of DEBUG, INFO"),
        ([], {"MOCKMETRICS_MAX_QUEUE": "lots"}, "environment variable MOCKMETRICS_MAX_QUEUE='lots'"),
    ],
)
def test_settings_bad_input_names_what_to_fix(
    argv: list[str], env: dict[str, str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_settings(argv, environ=env)
    assert exc.value.code == 2
    assert expected in capsys.readouterr().err


# --------------------------------------------------------------------------- app, in process


def _families(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


async def test_app_routes_validate_and_count_by_template() -> None:
    clock = FakeClock()
    app = create_app(Settings(workers=2, max_queue=1, consume_rate=5, dial_step=10), clock=clock)
    async with TestClient(TestServer(app)) as client:
        for bad in ("-1", "60001", "abc", "nan"):
            resp = await client.get("/work", params={"ms": bad})
            assert resp.status == 400
            assert "ms must be a number from 0 to 60000" in (await resp.json())["error"]
        assert (await client.get("/work", params={"ms": "0"})).status == 200
        assert (await client.get("/work", params={"ms": "1"})).status == 200

        resp = await client.post("/produce", params={"n": "zero"})
        assert resp.status == 400
        resp = await client.post("/produce", params={"n": "7"})
        assert (await resp.json())["depth"] == 7
        clock.tick(1.0)
        assert (await (await client.get("/queue")).json())["depth"] == 2

        assert (await client.get("/does/not/exist")).status == 404
        assert (await client.post("/scale/sideways")).status == 404
        assert (await client.post("/scale/up")).status == 200
        clock.tick(3)
        state = await (await client.get("/scale/")).json()
        assert state == {"mode": "up", "value": pytest.approx(30), "step": 10.0}
        assert (await client.get("/scale/set", params={"value": "-3"})).status == 400
        assert (await client.get("/readyz")).status == 200

        metrics = _families(await (await client.get("/metrics")).text())
    requests = metrics["http_requests_total"]
    assert requests[(("code", "400"), ("path", "/work"))] == 4
    assert requests[(("code", "200"), ("path", "/work"))] == 2
    assert requests[(("code", "404"), ("path", "unmatched"))] == 2
    assert requests[(("code", "200"), ("path", "/scale/up"))] == 1
    assert not any("ms=" in dict(labels)["path"] for labels in requests)
    # The dial's 3 s tick also moved the queue clock: 7 jobs at 5/s are all consumed by now.
    assert metrics["queue_depth"][()] == 0
    assert metrics["queue_jobs_produced_total"][()] == 7
    assert metrics["queue_jobs_consumed_total"][()] == 7
    assert metrics["total_hit_count"][()] == pytest.approx(30)
    assert metrics["pm_status"][(("state", "total processes"),)] == 2


def test_request_series_exist_at_zero_before_any_request() -> None:
    """An idle pod must still have http_requests_total series, or rate() is empty and the HPA blind."""
    from prometheus_client.parser import text_string_to_metric_families

    from mockmetrics.dial import Dial
    from mockmetrics.metrics import INITIALIZED_PATHS, Metrics
    from mockmetrics.pool import WorkerPool
    from mockmetrics.queue import JobQueue

    metrics = Metrics(WorkerPool(2, 2), JobQueue(1.0), Dial(1.0))
    samples = {
        s.labels["path"]: s.value
        for fam in text_string_to_metric_families(metrics.render().decode())
        for s in fam.samples
        if s.name == "http_requests_total"
    }
    assert samples == {p: 0.0 for p in INITIALIZED_PATHS}


# --------------------------------------------------------------------------- burn and hold


def test_burn_cpu_spends_cpu_time_not_wall_time() -> None:
    spent = burn_cpu(30)
    assert 0.030 <= spent < 0.060


def test_memory_hold_is_bounded_and_expires_on_its_clock() -> None:
    now = [0.0]
    holder = MemoryHold(3 << 20, clock=lambda: now[0])
    assert holder.hold(2, seconds=10) == 2 << 20
    with pytest.raises(HoldRefused, match="--max-hold-mb"):
        holder.hold(2, seconds=10)
    assert holder.held_bytes == 2 << 20  # a refused hold changes nothing
    assert holder.hold(1, seconds=5) == 3 << 20
    now[0] = 5.0
    assert holder.held_bytes == 2 << 20
    now[0] = 10.0
    assert holder.held_bytes == 0
