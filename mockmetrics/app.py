"""The mockmetrics HTTP app: routes, request accounting, lifecycle and ``main()``.

Routes (all answers are JSON except ``/metrics``):

=====================  ==========  ===================================================================
route                  methods     effect
=====================  ==========  ===================================================================
``/``                  GET         one hit: ``total_hit_count`` += 1
``/work?ms=200``       GET         hold one pool worker for ``ms`` (0..60000); waits in the bounded
                                   queue when all workers are busy; 503 when that queue is full
``/produce?n=K``       POST        add K jobs (1..1000000) to this replica's job queue
``/queue``             GET         job queue state
``/burn?ms=20``        GET         spend ``ms`` (0..10000) of CPU time in one of ``--burn-threads``
                                   threads; waits like ``/work`` when all are busy; 503 when full
``/hold?mb=M&seconds=S`` POST      keep M MiB (0..4096) resident for S seconds (0..3600); 503 above
                                   ``--max-hold-mb`` in total; ``GET /hold`` shows what is held
``/scale/up``          GET, POST   dial: ``total_hit_count`` rises by ``--dial-step`` per second
``/scale/down``        GET, POST   dial: falls by ``--dial-step`` per second, never below 0
``/scale/stop``        GET, POST   dial: hold the value
``/scale/set?value=V`` GET, POST   dial: jump to V (>= 0), mode unchanged
``/scale/``            GET         dial mode, value and step
``/healthz``           GET         200 while the process lives (liveness)
``/readyz``            GET         200 once started, 503 while draining (readiness)
``/metrics``           GET         Prometheus text exposition (see :mod:`mockmetrics.metrics`)
=====================  ==========  ===================================================================

Shutdown (SIGTERM or SIGINT): ``/readyz`` turns 503 at once, the listener stays open for
``--drain-delay`` seconds (so Kubernetes can remove the endpoint before connections are refused), then
stops accepting; in-flight and queued requests get up to ``--shutdown-timeout`` seconds to finish; the
process exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import math
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import asdict, dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, disable_created_metrics

from mockmetrics.burn import HoldRefused, MemoryHold, burn_cpu
from mockmetrics.config import Settings, configure_logging, parse_settings
from mockmetrics.dial import MODES, Dial
from mockmetrics.metrics import UNMATCHED_PATH, Metrics
from mockmetrics.pool import PoolFull, WorkerPool
from mockmetrics.queue import MAX_PRODUCE, JobQueue

log = logging.getLogger("mockmetrics")

MAX_WORK_MS = 60_000
MAX_BURN_MS = 10_000
MAX_HOLD_MB = 4096
MAX_HOLD_S = 3600
DEFAULT_WORK_MS = 100
CONSUMER_TICK_S = 0.1
"""How often the background consumer advances the queue. Scrapes advance it too, so this only bounds how
stale ``GET /queue``-free periods can get; it does not affect the consume rate."""


@dataclass
class Lifecycle:
    """Readiness as seen by ``/readyz``."""

    started: bool = False
    draining: bool = False


SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", WorkerPool)
QUEUE = web.AppKey("queue", JobQueue)
DIAL = web.AppKey("dial", Dial)
METRICS = web.AppKey("metrics", Metrics)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
BURN_POOL = web.AppKey("burn_pool", WorkerPool)
BURN_EXECUTOR = web.AppKey("burn_executor", ThreadPoolExecutor)
HOLD = web.AppKey("hold", MemoryHold)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


def _query_number(request: web.Request, name: str, default: float, lo: float, hi: float) -> float:
    """A numeric query parameter in [lo, hi]; raises ValueError with a message for the client."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number from {lo:g} to {hi:g}, got {raw!r}") from None
    if not math.isfinite(value) or not lo <= value <= hi:
        raise ValueError(f"{name} must be a number from {lo:g} to {hi:g}, got {raw!r}")
    return value


@web.middleware
async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count every request in ``http_requests_total{path,code}``.

    ``path`` is the matched route's template (``/work``, not ``/work?ms=5``), or ``unmatched`` for
    404/405, so arbitrary URLs cannot blow up the series count.
    """
    resource = request.match_info.route.resource
    path = resource.canonical if resource is not None else UNMATCHED_PATH
    metrics = request.app[METRICS]
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        metrics.observe_request(path, exc.status)
        raise
    except Exception:
        metrics.observe_request(path, 500)
        raise
    metrics.observe_request(path, response.status)
    return response


async def index(request: web.Request) -> web.Response:
    """One hit: what load generators request to raise ``total_hit_count``."""
    value = request.app[DIAL].hit()
    return web.json_response({"total_hit_count": value})


async def work(request: web.Request) -> web.Response:
    """Hold one pool worker for ``ms`` milliseconds, so ``active processes`` equals real in-flight work."""
    try:
        ms = _query_number(request, "ms", DEFAULT_WORK_MS, 0, MAX_WORK_MS)
    except ValueError as exc:
        return _error(400, str(exc))
    pool = request.app[POOL]
    queued_at = time.monotonic()
    try:
        async with pool.slot():
            started = time.monotonic()
            await asyncio.sleep(ms / 1000)
    except PoolFull as exc:
        return _error(503, f"{exc}; retry later or raise --workers/--max-queue", **{"Retry-After": "1"})
    return web.json_response(
        {"ms": ms, "waited_ms": round((started - queued_at) * 1000, 1), "workers": pool.workers}
    )


async def burn(request: web.Request) -> web.Response:
    """Spend ``ms`` of CPU time in a burn thread: real container CPU usage for Resource HPAs."""
    try:
        ms = _query_number(request, "ms", 20, 0, MAX_BURN_MS)
    except ValueError as exc:
        return _error(400, str(exc))
    pool = request.app[BURN_POOL]
    try:
        async with pool.slot():
            loop = asyncio.get_running_loop()
            cpu_s = await loop.run_in_executor(request.app[BURN_EXECUTOR], burn_cpu, ms)
    except PoolFull as exc:
        return _error(503, f"{exc}; retry later or raise --burn-threads/--max-queue", **{"Retry-After": "1"})
    return web.json_response({"ms": ms, "cpu_ms": round(cpu_s * 1000, 2)})


async def hold(request: web.Request) -> web.Response:
    """``POST``: keep memory resident for a while; ``GET``: what is held now."""
    holder = request.app[HOLD]
    if request.method == "GET":
        return web.json_response({"held_bytes": holder.held_bytes, "max_bytes": holder.max_bytes})
    try:
        mb = _query_number(request, "mb", 16, 0, MAX_HOLD_MB)
        seconds = _query_number(request, "seconds", 60, 0, MAX_HOLD_S)
    except ValueError as exc:
        return _error(400, str(exc))
    try:
        held = holder.hold(mb, seconds)
    except HoldRefused as exc:
        return _error(503, str(exc), **{"Retry-After": "5"})
    return web.json_response({"held_bytes": held, "max_bytes": holder.max_bytes, "seconds": seconds})


async def produce(request: web.Request) -> web.Response:
    """Add jobs to this replica's queue (the backlog behind the external metric)."""
    raw = request.query.get("n", "1")
    try:
        n = int(raw)
    except ValueError:
        return _error(400, f"n must be an integer from 1 to {MAX_PRODUCE}, got {raw!r}")
    queue = request.app[QUEUE]
    try:
        queue.produce(n)
    except ValueError as exc:
        return _error(400, str(exc))
    return web.json_response(asdict(queue.snapshot()))


async def queue_state(request: web.Request) -> web.Response:
    """The job queue as of now."""
    return web.json_response(asdict(request.app[QUEUE].snapshot()))


def _dial_json(dial: Dial) -> dict[str, object]:
    return {"mode": dial.mode, "value": dial.value(), "step": dial.step}


def _set_mode(mode: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        dial = request.app[DIAL]
        dial.set_mode(mode)
        log.info("dial %s at %.3f (step %g/s)", mode, dial.value(), dial.step)
        return web.json_response(_dial_json(dial))

    handler.__doc__ = f"Dial: switch to {mode!r}."
    return handler


async def scale_set(request: web.Request) -> web.Response:
    """Dial: jump ``total_hit_count`` to ``value``."""
    if request.query.get("value", "") == "":
        return _error(400, "value is required, e.g. /scale/set?value=100")
    try:
        value = _query_number(request, "value", 0, 0, 1e15)
    except ValueError as exc:
        return _error(400, str(exc))
    dial = request.app[DIAL]
    dial.set_value(value)
    return web.json_response(_dial_json(dial))


async def scale_state(request: web.Request) -> web.Response:
    """Dial: current mode and value."""
    return web.json_response(_dial_json(request.app[DIAL]))


async def healthz(request: web.Request) -> web.Response:
    """Liveness: answering at all is the signal."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: 503 while draining so the Service stops sending new traffic."""
    state = request.app[LIFECYCLE]
    if state.draining:
        return web.json_response({"status": "draining"}, status=503)
    if not state.started:
        return web.json_response({"status": "starting"}, status=503)
    return web.json_response({"status": "ready"})


async def metrics_endpoint(request: web.Request) -> web.Response:
    """Prometheus scrape target."""
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _stop_burning(app: web.Application) -> None:
    app[BURN_EXECUTOR].shutdown(wait=False, cancel_futures=True)
    app[HOLD].release()


async def _mark_started(app: web.Application) -> None:
    app[LIFECYCLE].started = True


async def _run_consumer(app: web.Application) -> AsyncIterator[None]:
    """The background consumer: keeps the queue moving even when nobody scrapes or asks."""
    queue = app[QUEUE]

    async def tick() -> None:
        while True:
            queue.advance()
            await asyncio.sleep(CONSUMER_TICK_S)

    task = asyncio.create_task(tick(), name="mockmetrics-consumer")
    yield
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task


def create_app(settings: Settings, clock: Callable[[], float] = time.monotonic) -> web.Application:
    """Build the app; ``clock`` drives the queue and the dial (tests may pass a fake one)."""
    pool = WorkerPool(settings.workers, settings.max_queue)
    queue = JobQueue(settings.consume_rate, settings.produce_rate, clock=clock)
    dial = Dial(settings.dial_step, clock=clock)
    app = web.Application(middlewares=[count_requests])
    app[SETTINGS] = settings
    app[POOL] = pool
    app[QUEUE] = queue
    app[DIAL] = dial
    app[METRICS] = Metrics(pool, queue, dial)
    app[LIFECYCLE] = Lifecycle()
    app[BURN_POOL] = WorkerPool(settings.burn_threads, settings.max_queue)
    app[BURN_EXECUTOR] = ThreadPoolExecutor(settings.burn_threads, thread_name_prefix="burn")
    app[HOLD] = MemoryHold(settings.max_hold_mb * 1024 * 1024, clock=clock)

    app.router.add_get("/", index)
    app.router.add_get("/work", work)
    app.router.add_post("/produce", produce)
    app.router.add_get("/queue", queue_state)
    app.router.add_get("/burn", burn)
    app.router.add_route("POST", "/hold", hold)
    app.router.add_get("/hold", hold)
    for mode in MODES:
        handler = _set_mode(mode)
        app.router.add_route("GET", f"/scale/{mode}", handler)
        app.router.add_route("POST", f"/scale/{mode}", handler)
    app.router.add_route("GET", "/scale/set", scale_set)
    app.router.add_route("POST", "/scale/set", scale_set)
    app.router.add_get("/scale/", scale_state)
    app.router.add_get("/scale", scale_state)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)

    app.on_startup.append(_mark_started)
    app.on_cleanup.append(_stop_burning)
    app.cleanup_ctx.append(_run_consumer)
    return app


async def serve(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT, then drain gracefully."""
    app = create_app(settings)
    access_log = logging.getLogger("aiohttp.access") if settings.log_level == "DEBUG" else None
    runner = web.AppRunner(
        app, handle_signals=False, access_log=access_log, shutdown_timeout=settings.shutdown_timeout
    )
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    host, port = runner.addresses[0][:2]
    log.info("mockmetrics listening on http://%s:%d %s", host, port, settings.describe())

    await stop.wait()
    app[LIFECYCLE].draining = True
    pool = app[POOL]
    log.info("signal received: readyz now 503; closing listener in %gs", settings.drain_delay)
    if settings.drain_delay > 0:
        await asyncio.sleep(settings.drain_delay)
    log.info(
        "listener closed; waiting up to %gs for %d active and %d queued /work requests",
        settings.shutdown_timeout,
        pool.active,
        pool.waiting,
    )
    await runner.cleanup()
    log.info("stopped")


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point ``mockmetrics``."""
    settings = parse_settings(argv)
    configure_logging(settings.log_level)
    # Counters would otherwise add *_created series; nothing here needs them and they clutter rules.
    disable_created_metrics()
    try:
        asyncio.run(serve(settings))
    except OSError as exc:
        log.error(
            "cannot listen on %s:%d: %s; pick another --port/MOCKMETRICS_PORT or free the port",
            settings.host,
            settings.port,
            exc,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
