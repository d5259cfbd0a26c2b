"""N emulated HPAs, each reading its own metric every 15 s through the kube-apiserver aggregator, as
the HPA controller does: ours vs prometheus-adapter v0.12.0, one after the other, side by side.

    .venv/bin/python -m bench hpas [--hpas 10,100,1000] [--minutes 5] [--pods-per-hpa 2] [--no-peer]

One control plane (etcd + kube-apiserver on loopback, no node), namespace ``hpas`` with
``hpas x pods-per-hpa`` Pending Pods; Pod ``bench-<i>`` belongs to HPA ``h<i // pods-per-hpa>``
(label ``hpa=h<j>``): every HPA has its own object set. The exporter serves
``http_requests_total`` for every Pod and a real Prometheus scrapes it every second.

Per adapter (ours, then the peer built by ``scripts/build-peer.sh``; same rule, certificate,
relist and delegated authn/authz) and per N: the adapter is started, ``custom.metrics.k8s.io`` is
pointed at it (an ExternalName Service, ``bench.aggregated``), and N clients each GET
``/apis/custom.metrics.k8s.io/v1beta2/namespaces/hpas/pods/*/http_requests?labelSelector=hpa=h<j>``
every 15 s from a random phase, through kube-apiserver with the admin certificate. A sync is OK
when it is HTTP 200 with exactly ``pods-per-hpa`` items. Reported: syncs, errors, p50/p99 sync
latency, adapter and kube-apiserver CPU per sync (``/proc``), adapter VmRSS at the end.

Like every benchmark here, numbers are ratios on one shared machine; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench.adapter_bench import PEER_VERSION, build_peer, git_rev
from bench.adapters import (
    AdapterProcess,
    CommonArgs,
    cpu_seconds,
    memory_kib,
    ours_argv,
    peer_argv,
    rule_config,
)
from bench.aggregated import Aggregator, parallel, serving_cert
from bench.curves import save_panels
from bench.load import check_body
from bench.report import Row, format_table, write_json
from bench.soak import wait_exporter_address
from bench.stats import percentile

__all__ = ["PLOT_PANELS", "SyncResult", "main", "plot_hpas", "run"]

REPO = Path(__file__).resolve().parents[1]
NS = "hpas"
SERVICE = "hpas-adapter"
METRIC = "http_requests"


@dataclass
class SyncResult:
    target: str
    hpas: int
    duration_s: float
    syncs: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    p50_ms: float | None = None
    p99_ms: float | None = None
    adapter_cpu_s: float | None = None
    apiserver_cpu_s: float | None = None
    #: The emulating client's own CPU (this process, one asyncio thread): near the run's length, the
    #: client itself is the bottleneck and the latencies measure it, not the adapter.
    client_cpu_s: float | None = None
    load_avg_end: float | None = None
    #: p99 of the syncs that started in each minute of the run: where in time the tail sits.
    p99_by_minute_ms: list[float] = field(default_factory=list)
    rss_end_kib: int | None = None
    failed: str | None = None

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def client_busy(self) -> float | None:
        """The share of one core the emulating client used over the run."""
        if self.client_cpu_s is None or not self.duration_s:
            return None
        return self.client_cpu_s / self.duration_s

    def per_sync_ms(self, cpu_s: float | None) -> float | None:
        return None if cpu_s is None or not self.syncs else 1000.0 * cpu_s / self.syncs

    def to_json(self) -> dict[str, Any]:
        return {
            **self.__dict__,
            "client_busy": self.client_busy,
            "adapter_cpu_ms_per_sync": self.per_sync_ms(self.adapter_cpu_s),
            "apiserver_cpu_ms_per_sync": self.per_sync_ms(self.apiserver_cpu_s),
        }


#: What the N-HPA plot shows: (label, value of a result, y axis).
PLOT_PANELS: tuple[tuple[str, Any, str], ...] = (
    ("p99 sync latency", lambda r: r.p99_ms, "ms"),
    ("adapter CPU per sync", lambda r: r.per_sync_ms(r.adapter_cpu_s), "ms"),
    ("kube-apiserver CPU per sync", lambda r: r.per_sync_ms(r.apiserver_cpu_s), "ms"),
    ("failed syncs", lambda r: r.error_count, "count"),
)


def plot_hpas(results: list[SyncResult], path: Path, *, title: str = "") -> Path:
    """One panel per :data:`PLOT_PANELS` entry against N (log x), one line per adapter; a run that
    failed or a value not measured is left out of its line, never drawn as zero."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PLOT_PANELS), figsize=(4.2 * len(PLOT_PANELS), 3.8))
    for ax, (name, value, unit) in zip(axes, PLOT_PANELS, strict=True):
        for target in dict.fromkeys(r.target for r in results):
            pts = sorted((r.hpas, value(r)) for r in results
                         if r.target == target and not r.failed and value(r) is not None)  # fmt: skip
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=target)
        ax.set_xscale("log")
        ax.set_xlabel("HPAs, each syncing every 15 s")
        ax.set_ylabel(unit)
        ax.set_title(name)
        ax.grid(True, which="both", alpha=0.3)
    return save_panels(fig, axes, path, title=title)


def _hpa_counts(text: str) -> list[int]:
    try:
        counts = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"--hpas {text!r}: comma-separated integers, e.g. 10,100") from None
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError(f"--hpas {text!r}: every count must be >= 1")
    return counts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench hpas", description=__doc__.split("\n")[0])
    p.add_argument(
        "--hpas", type=_hpa_counts, default=[10, 100, 1000], help="HPA counts (default 10,100,1000)"
    )
    p.add_argument(
        "--minutes", type=float, default=5.0, help="minutes per adapter and N (default 5; 1 = a quick look)"
    )
    p.add_argument("--pods-per-hpa", type=int, default=2, help="Pods each HPA reads (default 2)")
    p.add_argument(
        "--interval", type=float, default=15.0, help="seconds between one HPA's syncs (default 15)"
    )
    p.add_argument("--peer", action=argparse.BooleanOptionalAction, default=True, help="also run the peer")
    p.add_argument(
        "--peer-client-qps", type=float, default=None,
        help="the peer's --client-qps (burst 2x); default: upstream's (5 QPS / burst 10, as it deploys)",
    )  # fmt: skip
    p.add_argument("--relist", default="30s", help="--metrics-relist-interval of both (default 30s)")
    p.add_argument("--out", type=Path, default=REPO / "reports" / "bench", help="where the JSON goes")
    args = p.parse_args(argv)
    if args.minutes <= 0 or args.interval <= 0 or args.pods_per_hpa < 1:
        p.error("--minutes and --interval must be > 0, --pods-per-hpa >= 1")
    return args


def p99_by_minute(latencies: list[tuple[float, float]]) -> list[float]:
    """p99 (ms) of the syncs started in each whole minute of the run, from ``(start_s, seconds)``."""
    minutes: dict[int, list[float]] = {}
    for start, seconds in latencies:
        minutes.setdefault(int(start // 60), []).append(seconds)
    return [percentile(minutes[m], 99) * 1000 for m in sorted(minutes)]


def pod_index(hpa: int, m: int, per: int) -> int:
    return hpa * per + m


async def _emulate(
    agg: Aggregator, n: int, per: int, interval: float, duration: float, seed: int = 15
) -> tuple[list[float], dict[str, int], int]:
    """N HPA clients, each syncing every ``interval`` from a random phase; (latencies, errors, syncs).

    Each latency is ``(start, seconds)``: ``start`` is when the sync began, from the run's start, so a
    tail can be placed in time (a stall at one moment, or spread over the run)."""
    rng = random.Random(seed)
    phases = [rng.uniform(0, interval) for _ in range(n)]
    latencies: list[tuple[float, float]] = []
    errors: dict[str, int] = {}
    syncs = 0
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(verify=agg.client_tls(), timeout=30, limits=limits) as client:
        t0, p0 = time.monotonic(), time.perf_counter()
        end = t0 + duration

        async def hpa(j: int) -> None:
            nonlocal syncs
            url = agg.pods_url(NS, METRIC, f"hpa=h{j}")
            k = 0
            while (due := t0 + phases[j] + k * interval) < end:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                s = time.perf_counter()
                try:
                    r = await client.get(url)
                    kind = check_body(r.status_code, r.content, per, True)
                except httpx.TimeoutException:
                    kind = "timeout"
                except httpx.HTTPError as exc:
                    kind = type(exc).__name__
                syncs += 1
                if kind is None:
                    latencies.append((s - p0, time.perf_counter() - s))
                else:
                    errors[kind] = errors.get(kind, 0) + 1
                # A sync that outlasted its interval does not queue the slots it overran: as in the
                # controller's resync, the next sync is at the next slot (``syncs`` drops below N x
                # duration / interval).
                k = max(k + 1, math.ceil((time.monotonic() - t0 - phases[j]) / interval))

        await asyncio.gather(*(hpa(j) for j in range(n)))
    return latencies, errors, syncs


async def _wait_serving(agg: Aggregator, n: int, per: int, proc: AdapterProcess, timeout: float) -> None:
    """Until the first and the last HPA's selectors answer with all their Pods, through kube-apiserver."""
    deadline = time.monotonic() + timeout
    last = ""
    async with httpx.AsyncClient(verify=agg.client_tls(), timeout=30) as c:
        while time.monotonic() < deadline:
            if not proc.running():
                raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}")
            try:
                problems = []
                for j in {0, n - 1}:
                    r = await c.get(agg.pods_url(NS, METRIC, f"hpa=h{j}"))
                    if (p := check_body(r.status_code, r.content, per, True)) is not None:
                        problems.append(f"h{j}: {p} {r.text[:150]}")
                if not problems:
                    return
                last = "; ".join(problems)
            except httpx.HTTPError as exc:
                last = repr(exc)
            await asyncio.sleep(1)
    raise RuntimeError(
        f"{proc.name} not serving through the aggregator in {timeout:.0f}s: {last}\n{proc.log_tail()}"
    )


def _measure(
    key: str, argv: list[str], port: int, n: int, args: argparse.Namespace, ctx: dict[str, Any], progress: Any
) -> SyncResult:
    agg: Aggregator = ctx["agg"]
    work: Path = ctx["work"]
    res = SyncResult(key, n, args.minutes * 60)
    proc = AdapterProcess(key, argv, work / f"{key}-{n}.log", env={"PYTHONPATH": str(REPO)}).start()
    try:
        agg.register(NS, SERVICE, port, ctx["ca"], timeout=120, progress=progress)
        asyncio.run(_wait_serving(agg, n, args.pods_per_hpa, proc, 300))
        c0, a0, k0 = cpu_seconds(proc.pid), cpu_seconds(ctx["apiserver_pid"]), time.process_time()
        progress(f"{key}: {n} HPAs every {args.interval:g}s for {args.minutes:g} min ...")
        lat, errors, syncs = asyncio.run(_emulate(agg, n, args.pods_per_hpa, args.interval, res.duration_s))
        c1, a1, k1 = cpu_seconds(proc.pid), cpu_seconds(ctx["apiserver_pid"]), time.process_time()
        res.client_cpu_s, res.load_avg_end = k1 - k0, os.getloadavg()[0]
        res.rss_end_kib = memory_kib(proc.pid).get("rss")
        res.syncs, res.ok, res.errors = syncs, len(lat), errors
        res.p99_by_minute_ms = p99_by_minute(lat)
        res.adapter_cpu_s = None if c0 is None or c1 is None else c1 - c0
        res.apiserver_cpu_s = None if a0 is None or a1 is None else a1 - a0
        seconds = sorted(d for _, d in lat)
        if seconds:
            res.p50_ms, res.p99_ms = percentile(seconds, 50) * 1000, percentile(seconds, 99) * 1000
        progress(
            f"  {key} N={n}: {syncs} syncs (of {n * int(res.duration_s // args.interval)} slots), "
            f"{res.error_count} errors {errors or ''}, "
            f"p50 {res.p50_ms or 0:.1f} ms, p99 {res.p99_ms or 0:.1f} ms, "
            f"adapter {res.per_sync_ms(res.adapter_cpu_s) or 0:.2f} CPU-ms/sync, "
            f"client {100 * (res.client_busy or 0):.0f} % of a core, load average {res.load_avg_end:.1f}; "
            f"p99 by minute (ms): {', '.join(f'{v:.0f}' for v in res.p99_by_minute_ms)}"
        )
        if (res.client_busy or 0) > 0.7:
            progress(f"  {key} N={n}: the emulating client was busy {100 * (res.client_busy or 0):.0f} % of "
                     "the run: its own queueing is in these latencies")  # fmt: skip
    except RuntimeError as exc:
        res.failed = str(exc)
        progress(f"  {key} N={n}: FAILED: {str(exc)[:500]}")
    finally:
        proc.stop()
    return res


def _rows(results: list[SyncResult], counts: list[int]) -> list[Row]:
    rows: list[Row] = []
    for n in counts:
        o = next((r for r in results if r.target == "ours" and r.hpas == n and not r.failed), None)
        p = next((r for r in results if r.target == "peer" and r.hpas == n and not r.failed), None)

        def g(r: SyncResult | None, f: Any) -> float | None:
            return None if r is None else f(r)

        tag = f"N={n}"
        rows += [
            Row(f"{tag} syncs", g(o, lambda r: r.syncs), g(p, lambda r: r.syncs), "higher", "{:.0f}"),
            Row(
                f"{tag} errors",
                g(o, lambda r: r.error_count),
                g(p, lambda r: r.error_count),
                "lower",
                "{:.0f}",
            ),
            Row(f"{tag} p50 sync latency (ms)", g(o, lambda r: r.p50_ms), g(p, lambda r: r.p50_ms), "lower"),
            Row(f"{tag} p99 sync latency (ms)", g(o, lambda r: r.p99_ms), g(p, lambda r: r.p99_ms), "lower"),
            Row(
                f"{tag} adapter CPU (ms/sync)",
                g(o, lambda r: r.per_sync_ms(r.adapter_cpu_s)),
                g(p, lambda r: r.per_sync_ms(r.adapter_cpu_s)),
                "lower",
                "{:.2f}",
            ),
            Row(
                f"{tag} kube-apiserver CPU (ms/sync)",
                g(o, lambda r: r.per_sync_ms(r.apiserver_cpu_s)),
                g(p, lambda r: r.per_sync_ms(r.apiserver_cpu_s)),
                "lower",
                "{:.2f}",
            ),
            Row(
                f"{tag} emulating client busy (% of a core)",
                g(o, lambda r: 100 * (r.client_busy or 0)),
                g(p, lambda r: 100 * (r.client_busy or 0)),
                "lower",
                "{:.0f}",
            ),
            Row(
                f"{tag} adapter VmRSS at the end (MiB)",
                g(o, lambda r: (r.rss_end_kib or 0) / 1024),
                g(p, lambda r: (r.rss_end_kib or 0) / 1024),
                "lower",
            ),
        ]
    return rows


def run(args: argparse.Namespace) -> int:
    from bench.exporter import pod_name
    from bench.prom import BenchPrometheus
    from harness import procs as hprocs
    from harness.cluster.controlplane import control_plane
    from harness.localprom import Target as PromTarget
    from harness.progress import Progress

    progress = Progress(stream=sys.stderr, prefix="hpas: ")
    started = datetime.now()
    load_start = os.getloadavg()
    peer_bin, peer_status = build_peer(progress) if args.peer else (None, "disabled (--no-peer)")
    results: list[SyncResult] = []
    per, max_n = args.pods_per_hpa, max(args.hpas)
    with tempfile.TemporaryDirectory(prefix="hpa-kit-hpas-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        cp = stack.enter_context(
            control_plane(work / "cp", "hpa-kit-hpas", progress.child("control-plane: "))
        )
        rec = hprocs.load_record(cp.cluster.pid_dir, "kube-apiserver")
        agg = Aggregator(cp.server, cp.ca, cp.admin)
        agg.namespace(NS)
        with progress.step(f"{max_n * per} Pods in namespace {NS} ({per} per HPA)"):
            parallel(
                lambda i: agg.create_pod(NS, pod_name(i), {"hpa": f"h{i // per}"}), list(range(max_n * per))
            )
        exporter = AdapterProcess(
            "exporter",
            [sys.executable, "-m", "bench.exporter", "--pods", str(max_n * per), "--namespace", NS],
            work / "exporter.log",
            env={"PYTHONPATH": str(REPO)},
        ).start()
        stack.callback(exporter.stop)
        target = wait_exporter_address(exporter)
        prom = BenchPrometheus([PromTarget(target, job="hpas")], scrape_interval="1s", data_dir=work / "prom")
        stack.callback(prom.stop)
        with progress.step("prometheus"):
            prom.start()
            prom.wait_for_count(f'http_requests_total{{namespace="{NS}"}}', max_n * per, 60, progress)
        ca, serving = serving_cert(work / "certs", NS, SERVICE)
        config = work / "rules.yaml"
        config.write_text(rule_config())
        common = CommonArgs(config, prom.url, cp.kubeconfig, serving.cert, serving.key, relist=args.relist)
        ctx = {"agg": agg, "work": work, "ca": ca, "apiserver_pid": rec.pid if rec else None}
        time.sleep(2.5)  # rate() over 1m needs two samples per series
        for n in args.hpas:
            port = hprocs.free_port()
            results.append(_measure("ours", ours_argv(common, port), port, n, args, ctx, progress))
            if peer_bin is not None:
                port = hprocs.free_port()
                argv = peer_argv(peer_bin, common, port, client_qps=args.peer_client_qps)
                results.append(_measure("peer", argv, port, n, args, ctx, progress))
        with contextlib.suppress(Exception):
            agg.unregister()
    qps = "upstream default 5" if args.peer_client_qps is None else f"{args.peer_client_qps:g}"
    table = format_table(
        _rows(results, args.hpas),
        ours_label="ours",
        peer_label="peer",
        title=f"{args.interval:g}s HPA syncs for {args.minutes:g} min: ours vs prometheus-adapter "
        f"{PEER_VERSION} (client-qps {qps})  (ratio = ours/peer)",
    )
    print()
    print(table)
    for r in results:
        if r.failed:
            print(f"{r.target} N={r.hpas} FAILED: {r.failed[:300]}")
    end_load = tuple(round(x, 2) for x in os.getloadavg())
    print(f"peer: {peer_status}; load average at start {tuple(round(x, 2) for x in load_start)}, "
          f"at end {end_load} ({os.cpu_count()} CPUs, shared)")  # fmt: skip
    doc = {
        "benchmark": "hpas",
        "started_at": started.isoformat(timespec="seconds"),
        "git_rev": git_rev(),
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "peer": {"version": PEER_VERSION, "status": peer_status, "client_qps": args.peer_client_qps},
        "loadavg": {"start": load_start, "end": os.getloadavg()},
        "results": [r.to_json() for r in results],
        "table": table,
    }
    out = write_json(args.out / f"hpas-{started:%Y%m%d-%H%M%S}.json", doc)
    print(f"results: {out}")
    try:
        png = plot_hpas(results, out.with_suffix(".png"), title=f"{args.minutes:g} min per adapter and N")
        print(f"plot: {png}")
    except ImportError:
        print("plot: skipped (matplotlib is not installed: the [harness] extra has it)")
    return 0 if not any(r.failed for r in results) else 1


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
