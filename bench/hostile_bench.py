"""The adapter under hostile connections: memory and legitimate latency, limits on vs off, one run.

    .venv/bin/python -m bench.hostile_bench [--hostile 2000] [--duration 15] [--flood-rate 50]
        [--sources 1,50] [--modes before,on --baseline-src DIR]

Everything runs on loopback; no Prometheus, no cluster. For each mode (``on``: the adapter's default
connection limits; ``off``: every limit set out of reach by flag; ``before``: the default limits of
the adapter found in ``--baseline-src``, e.g. ``git archive main adapter | tar -x -C DIR``, to
compare a change against) and each attacker source count in ``--sources``, the run starts the
adapter with the static provider and delegated authn/authz against a tiny in-process fake
kube-apiserver (TokenReview, SubjectAccessReview), then for ``--duration`` seconds:

* ``--hostile`` connections from a separate attacker process, half never starting TLS, half
  sending request headers one byte a second; each reconnects one second after it is closed (an
  attacker keeps the pressure on). They come from ``S`` loopback addresses (127.1.0.1, ...: one
  source, or many, spread round-robin), the legitimate clients from 127.0.0.1;
* a flood of requests with bad bearer tokens (``--flood-rate`` per second, keep-alive);
* a legitimate client (valid token, one pooled keep-alive connection opened before the attack, as
  the kube-aggregator) asking for a metric back to back: p50/p99 latency and errors;
* every half second a legitimate request on a **new** connection (what the aggregator does when
  it needs one more connection or its idle one was closed): how many got through, their p99.

It prints the adapter's peak RSS (VmHWM) and RSS at the end, the latencies, the refusals and
evictions the adapter counted on /metrics, and the on/off and before/on ratios. Numbers are for
this machine at this moment (the load average is printed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import re
import shutil
import socket
import ssl
import sys
import tempfile
import time
from asyncio import sslproto
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path

import httpx
from aiohttp import web

from bench.adapters import AdapterProcess, memory_kib
from bench.stats import percentile

METRIC_PATH = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/p1/static_metric"
GOOD_TOKEN = "good-token"
#: ``off``: every limit out of reach.
LIMITS_OFF = [
    "--max-connections", "0", "--tls-handshake-timeout", "1h", "--request-header-timeout", "1h",
    "--idle-timeout", "1h", "--max-request-header-bytes", str(1 << 30),
    "--max-request-body-bytes", str(1 << 30),
]  # fmt: skip
LIMIT_384MI_KIB = 384 * 1024
NEW_CONNECTION_INTERVAL = 0.5
MODES = ("before", "on", "off")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.hostile_bench", description=__doc__.split("\n")[0])
    p.add_argument("--hostile", type=int, default=2000, help="slow/idle connections (default 2000)")
    p.add_argument("--duration", type=float, default=15.0, help="seconds of attack per mode (default 15)")
    p.add_argument(
        "--flood-rate", type=float, default=50.0, help="bad-token requests per second (default 50)"
    )
    p.add_argument(
        "--modes",
        default="on,off",
        help="comma-separated, in order: before (--baseline-src's adapter, default limits), on "
        "(default limits), off (no limits) (default on,off)",
    )
    p.add_argument("--extra-on", default="", help="extra adapter flags for 'on', space-separated")
    p.add_argument(
        "--sources",
        default="1",
        help="comma-separated attacker source-address counts, one run per mode each (default 1)",
    )
    p.add_argument(
        "--baseline-src",
        type=Path,
        default=None,
        metavar="DIR",
        help="a directory holding the adapter package to run as mode 'before'",
    )
    args = p.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not args.modes or set(args.modes) - set(MODES):
        p.error("--modes takes before, on and/or off")
    try:
        args.sources = [int(x) for x in args.sources.split(",") if x.strip()]
    except ValueError:
        p.error(f"--sources {args.sources!r}: comma-separated whole numbers, e.g. 1,50")
    if not args.sources or not all(1 <= n <= 250 * 250 for n in args.sources):
        p.error("--sources takes counts from 1 to 62500")
    if "before" in args.modes and (
        args.baseline_src is None or not (args.baseline_src / "adapter" / "__main__.py").is_file()
    ):
        p.error(
            "--modes before needs --baseline-src DIR with DIR/adapter/__main__.py "
            "(e.g. mkdir DIR && git archive main adapter | tar -x -C DIR)"
        )
    if args.hostile < 0 or args.duration <= 0 or args.flood_rate < 0:
        p.error("--hostile >= 0, --duration > 0, --flood-rate >= 0")
    return args


def mode_flags(mode: str, extra_on: str = "") -> list[str]:
    """The adapter's connection-limit flags for a mode ('before' runs with its own defaults)."""
    if mode == "off":
        return list(LIMITS_OFF)
    return extra_on.split() if mode == "on" else []


def attacker_source(slot: int, sources: int) -> str:
    """The loopback address attacker ``slot`` connects from: ``sources`` distinct ones, round-robin,
    all in 127.1.0.0/16 (the legitimate clients use 127.0.0.1)."""
    k = slot % sources
    return f"127.1.{k // 250}.{k % 250 + 1}"


def gate_counts(metrics_text: str) -> tuple[int, int]:
    """(refused, evicted) connections from the adapter's /metrics (0 when a counter is absent)."""
    refused = evicted = 0.0
    for name, label, value in re.findall(
        r'^hpakit_adapter_connections_(closed|evicted)_total\{(?:reason|state)="([^"]+)"\} (\S+)$',
        metrics_text,
        re.M,
    ):
        if name == "evicted":
            evicted += float(value)
        elif label in ("over_limit", "per_source_limit"):
            refused += float(value)
    return int(refused), int(evicted)


@dataclass
class Result:
    mode: str
    sources: int = 1
    latencies: list[float] = field(default_factory=list)  # seconds, legitimate pooled requests
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)  # pooled errors by status or exception
    new_error_kinds: dict[str, int] = field(default_factory=dict)  # the same, new connections
    new_ok: int = 0
    new_total: int = 0
    new_latencies: list[float] = field(default_factory=list)  # seconds, successful new-connection ones
    flood_sent: int = 0
    hostile_connects: int = 0
    refused: int = 0
    evicted: int = 0
    hwm_kib: int = 0
    rss_kib: int = 0

    def summary(self) -> dict[str, float | int | str]:
        return {
            "mode": self.mode,
            "sources": self.sources,
            "requests": len(self.latencies),
            "errors": self.errors,
            "p50_ms": percentile(self.latencies, 50) * 1000,
            "p99_ms": percentile(self.latencies, 99) * 1000,
            "new_conn_ok": f"{self.new_ok}/{self.new_total}",
            "new_errors": self.new_total - self.new_ok,
            "new_p99_ms": percentile(self.new_latencies, 99) * 1000,
            "refused": self.refused,
            "evicted": self.evicted,
            "hostile_connects": self.hostile_connects,
            "flood_sent": self.flood_sent,
            "peak_rss_mib": self.hwm_kib / 1024,
            "end_rss_mib": self.rss_kib / 1024,
        }


def ratio(a: float, b: float) -> str:
    """``a / b`` as ``1.23x``, or ``n/a``."""
    if not (b and a == a and b == b):
        return "n/a"
    return f"{a / b:.2f}x"


# --------------------------------------------------------------------------------------------
# the fake kube-apiserver (plain HTTP, loopback)
# --------------------------------------------------------------------------------------------


def fake_kube_app() -> web.Application:
    async def configmap(request: web.Request) -> web.Response:
        return web.json_response({"data": {}})

    async def apis(request: web.Request) -> web.Response:
        return web.json_response({"kind": "APIGroupList", "groups": []})

    async def core(request: web.Request) -> web.Response:
        kinds = [("pods", "Pod", True), ("services", "Service", True), ("namespaces", "Namespace", False)]
        return web.json_response(
            {
                "resources": [
                    {"name": n, "singularName": n[:-1], "namespaced": ns, "kind": k} for n, k, ns in kinds
                ]
            }
        )

    async def pods(request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") == "true":
            resp = web.StreamResponse()
            await resp.prepare(request)
            await asyncio.sleep(3600)
            return resp
        return web.json_response({"metadata": {"resourceVersion": "1"}, "items": []})

    async def tokenreview(request: web.Request) -> web.Response:
        body = await request.json()
        ok = body["spec"]["token"] == GOOD_TOKEN
        user = {"username": "hpa", "groups": ["system:serviceaccounts"]}
        return web.json_response(
            {**body, "status": {"authenticated": True, "user": user} if ok else {"authenticated": False}},
            status=201,
        )

    async def sar(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({**body, "status": {"allowed": True}}, status=201)

    app = web.Application()
    app.router.add_get(
        "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication", configmap
    )
    app.router.add_get("/apis", apis)
    app.router.add_get("/api/v1", core)
    app.router.add_get("/api/v1/pods", pods)
    app.router.add_post("/apis/authentication.k8s.io/v1/tokenreviews", tokenreview)
    app.router.add_post("/apis/authorization.k8s.io/v1/subjectaccessreviews", sar)
    return app


# --------------------------------------------------------------------------------------------
# clients
# --------------------------------------------------------------------------------------------


async def hostile(
    port: int, ctx: ssl.SSLContext, slow: bool, source: str, stop: asyncio.Event, res: Result
) -> None:
    """One attacker slot: connect from ``source``, then nothing (idle) or a header byte a second;
    again one second after it is closed."""
    request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Pad: " + b"a" * 10_000
    while not stop.is_set():
        writer = None
        try:
            if slow:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", port, ssl=ctx, server_hostname="localhost", ssl_handshake_timeout=30,
                    local_addr=(source, 0),
                )  # fmt: skip
            else:
                reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
            res.hostile_connects += 1
            i = 0
            while not stop.is_set():
                if slow and i < len(request):
                    writer.write(request[i : i + 1])
                    i += 1
                with contextlib.suppress(TimeoutError):
                    if await asyncio.wait_for(reader.read(4096), 1.0) == b"":
                        break
        except (OSError, ssl.SSLError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            if writer is not None:
                writer.transport.abort()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


def _attack(port: int, ca: str, n: int, seconds: float, sources: int, connects: Synchronized[int]) -> None:
    """The attacker process: ``n`` :func:`hostile` slots from ``sources`` addresses for ``seconds``
    (own event loop and CPU)."""
    sslproto.SSLProtocol.max_size = 16 * 1024  # the attacker's own buffers (asyncio: 256 KiB each)
    ctx = ssl.create_default_context(cafile=ca)

    async def run() -> None:
        res = Result("attacker")
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(hostile(port, ctx, i % 2 == 1, attacker_source(i, sources), stop, res))
            for i in range(n)
        ]
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.wait(tasks, timeout=5)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        connects.value = res.hostile_connects

    asyncio.run(run())


def start_attacker(
    port: int, ca: Path, n: int, seconds: float, sources: int
) -> tuple[BaseProcess, Synchronized[int]]:
    mp = multiprocessing.get_context("spawn")
    connects = mp.Value("i", 0)
    proc = mp.Process(target=_attack, args=(port, str(ca), n, seconds, sources, connects), daemon=True)
    proc.start()
    return proc, connects


def finish_attacker(attacker: tuple[BaseProcess, Synchronized[int]]) -> int:
    proc, connects = attacker
    proc.join(15)
    if proc.is_alive():
        proc.kill()
        proc.join()
    return int(connects.value)


async def flood(url: str, ctx: ssl.SSLContext, rate: float, stop: asyncio.Event, res: Result) -> None:
    if rate <= 0:
        return
    async with httpx.AsyncClient(verify=ctx, timeout=5, limits=httpx.Limits(max_connections=4)) as c:
        n = 0
        start = time.monotonic()
        while not stop.is_set():
            n += 1
            with contextlib.suppress(httpx.HTTPError):
                await c.get(url + METRIC_PATH, headers={"Authorization": f"Bearer bad-{n}"})
            res.flood_sent += 1
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)


async def legit(client: httpx.AsyncClient, url: str, stop: asyncio.Event, res: Result) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        try:
            r = await client.get(url + METRIC_PATH)
            ok, kind = r.status_code == 200, f"HTTP {r.status_code}"
        except httpx.HTTPError as err:
            ok, kind = False, f"{type(err).__name__}: {err}"[:120]
        if ok:
            res.latencies.append(time.perf_counter() - t)
        else:
            res.errors += 1
            res.error_kinds[kind] = res.error_kinds.get(kind, 0) + 1
            await asyncio.sleep(0.05)


async def new_connections(url: str, ctx: ssl.SSLContext, stop: asyncio.Event, res: Result) -> None:
    headers = {"Authorization": f"Bearer {GOOD_TOKEN}"}
    while not stop.is_set():
        res.new_total += 1
        kind = ""
        try:
            async with httpx.AsyncClient(verify=ctx, timeout=3) as c:
                t = time.perf_counter()
                r = await c.get(url + METRIC_PATH, headers=headers)
                if r.status_code == 200:
                    res.new_latencies.append(time.perf_counter() - t)
                    res.new_ok += 1
                else:
                    kind = f"HTTP {r.status_code}"
        except httpx.HTTPError as err:
            kind = f"{type(err).__name__}: {err}"[:120]
        if kind:
            res.new_error_kinds[kind] = res.new_error_kinds.get(kind, 0) + 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), NEW_CONNECTION_INTERVAL)


# --------------------------------------------------------------------------------------------
# one mode
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run_mode(
    mode: str, sources: int, args: argparse.Namespace, d: Path, certs: tuple[Path, Path, Path]
) -> Result:
    cert, key, ca = certs
    res = Result(mode, sources)
    fake = web.AppRunner(fake_kube_app())
    await fake.setup()
    kport = free_port()
    await web.TCPSite(fake, "127.0.0.1", kport).start()
    kubeconfig = d / f"kubeconfig-{mode}-{sources}"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{kport}"}}],
        "users": [{"name": "a", "user": {"token": "t"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "a"}}],
    }))  # fmt: skip
    port, mport = free_port(), free_port()
    # -P: the adapter package comes from PYTHONPATH (the baseline's for 'before'), not the cwd.
    argv = [
        sys.executable, "-P", "-m", "adapter", "serve", "--bind-address", "127.0.0.1",
        "--secure-port", str(port), "--metrics-bind-address", f"127.0.0.1:{mport}",
        "--tls-cert-file", str(cert), "--tls-private-key-file", str(key), "--provider", "static",
        "--kubeconfig", str(kubeconfig), "--log-level", "warning", *mode_flags(mode, args.extra_on),
    ]  # fmt: skip
    src = args.baseline_src if mode == "before" else Path(__file__).resolve().parents[1]
    name = f"adapter-{mode}-{sources}"
    proc = AdapterProcess(name, argv, d / f"{name}.log", env={"PYTHONPATH": str(src)}).start()
    ctx = ssl.create_default_context(cafile=str(ca))
    url = f"https://127.0.0.1:{port}"
    stop = asyncio.Event()
    try:
        async with httpx.AsyncClient(
            verify=ctx, timeout=10, headers={"Authorization": f"Bearer {GOOD_TOKEN}"},
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=3600),
        ) as pooled:  # fmt: skip
            deadline = time.monotonic() + 30
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if (await pooled.get(url + METRIC_PATH)).status_code == 200:
                        break
                if not proc.running() or time.monotonic() > deadline:
                    raise SystemExit(f"adapter ({mode}) did not become ready:\n{proc.log_tail()}")
                await asyncio.sleep(0.2)
            base = memory_kib(proc.pid)
            print(
                f"[{mode}, {sources} attacker source(s)] adapter ready, RSS {base.get('rss', 0) / 1024:.0f} "
                "MiB; attacking",
                flush=True,
            )
            attacker = start_attacker(port, ca, args.hostile, args.duration + 2, sources)
            tasks = [
                asyncio.create_task(flood(url, ctx, args.flood_rate, stop, res)),
                asyncio.create_task(legit(pooled, url, stop, res)),
                asyncio.create_task(new_connections(url, ctx, stop, res)),
            ]
            await asyncio.sleep(args.duration)
            mem = memory_kib(proc.pid)
            res.hwm_kib, res.rss_kib = mem.get("hwm", 0), mem.get("rss", 0)
            with contextlib.suppress(httpx.HTTPError):
                async with httpx.AsyncClient(timeout=5) as plain:
                    res.refused, res.evicted = gate_counts(
                        (await plain.get(f"http://127.0.0.1:{mport}/metrics")).text
                    )
            stop.set()
            await asyncio.wait(tasks, timeout=10)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            res.hostile_connects = await asyncio.to_thread(finish_attacker, attacker)
    finally:
        stop.set()
        proc.stop()
        await fake.cleanup()
    return res


def make_certs(d: Path) -> tuple[Path, Path, Path]:
    from harness.certs import ensure_ca, issue_cert

    ca = ensure_ca(d, "serving-ca", "bench-serving-ca")
    pair = issue_cert(d, "serving", ca, "adapter", hosts=["127.0.0.1", "localhost"], usage="server")
    return pair.cert, pair.key, ca.cert


def print_report(results: list[Result]) -> None:
    cols = ["mode", "sources", "requests", "errors", "p50_ms", "p99_ms", "new_conn_ok", "new_p99_ms",
            "refused", "evicted", "hostile_connects", "flood_sent", "peak_rss_mib",
            "end_rss_mib"]  # fmt: skip
    rows = [r.summary() for r in results]
    print("  ".join(f"{c:>12}" for c in cols))
    for row in rows:
        print("  ".join(f"{row[c]:>12.1f}" if isinstance(row[c], float) else f"{row[c]!s:>12}" for c in cols))
    by = {(r.mode, r.sources): r.summary() for r in results}
    for sources in dict.fromkeys(r.sources for r in results):
        for other, base in (("off", "on"), ("before", "on")):
            a, b = by.get((other, sources)), by.get((base, sources))
            if a is None or b is None:
                continue
            print(
                f"{other}/{base}, {sources} source(s): peak RSS "
                f"{ratio(float(a['peak_rss_mib']), float(b['peak_rss_mib']))}, "
                f"p99 {ratio(float(a['p99_ms']), float(b['p99_ms']))}, "
                f"p50 {ratio(float(a['p50_ms']), float(b['p50_ms']))}; new connections ok "
                f"{a['new_conn_ok']} vs {b['new_conn_ok']}, legit errors {a['errors']}+{a['new_errors']} "
                f"vs {b['errors']}+{b['new_errors']} (pooled+new)"
            )
    for r in results:
        if r.error_kinds or r.new_error_kinds:
            print(f"[{r.mode}, {r.sources} source(s)] errors: pooled {r.error_kinds}, "
                  f"new {r.new_error_kinds}")  # fmt: skip
    for r in results:
        over = r.hwm_kib > LIMIT_384MI_KIB
        print(f"[{r.mode}, {r.sources} source(s)] peak RSS {'EXCEEDS' if over else 'within'} the manifests' "
              "384Mi limit")  # fmt: skip


async def amain(args: argparse.Namespace) -> int:
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; hostile={args.hostile} "
          f"duration={args.duration}s flood={args.flood_rate}/s sources={args.sources}",
          flush=True)  # fmt: skip
    d = Path(tempfile.mkdtemp(prefix="hostile-bench-"))
    try:
        certs = make_certs(d)
        results = [
            await run_mode(mode, sources, args, d, certs) for sources in args.sources for mode in args.modes
        ]
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print_report(results)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 2 * args.hostile + 1024))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
