"""Discovery memory and relist CPU: ours vs prometheus-adapter over 10k, 100k (and 1M) series.

    .venv/bin/python -m bench.adapter_bench --discovery 10k,100k [--relist 30s] [--settle 75]

For each size, on one control plane (both adapters need one for their resource mapping):

1. the exporter serves that many cluster-like series (``bench.exporter --mix``: ``container_*``
   counters and gauges over pods ``app-<p>`` in 8 namespaces, two containers each) plus the
   ``http_requests_total`` pod counters, and a fresh real Prometheus scrapes them; how long the
   load took is recorded;
2. ours and the peer start fresh with the same two broad rules (``{__name__=~"^.*_total$",...}``
   and ``{__name__=~"^container_.*",...}``), and each is timed to its first correct answer;
3. RSS right then, after ``--settle`` seconds of idle relisting (steady VmRSS), the peak (VmHWM)
   and the CPU of one relist (complete bursts of per-second CPU) are read from /proc;
4. everything of that size is stopped before the next one.

Prints one table per size (ratio = ours/peer) and writes ``reports/bench/discovery-<ts>.json``
(+ ``.png`` with matplotlib). 1M series needs ~2 GB of Prometheus head and minutes to scrape:
it runs only when asked for (``--discovery 1M``). Ours runs with ``--prometheus-timeout 120s``
(the peer has no client timeout): at 1M Prometheus itself takes over a minute to start answering
``/api/v1/series`` on 2 cores, longer than our 10 s default.

"CPU per relist, burst" is the mean of complete bursts of per-second CPU while idle (as in the
load run); "CPU per relist interval, all" is all CPU while settling spread over the relist
intervals that fit in it (nothing split off, idle work included; it understates when a relist
takes longer than the interval, as at 1M).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import adapter_bench as ab
from bench.adapters import AdapterProcess, CommonArgs, memory_kib, ours_argv, peer_argv, rule_config
from bench.report import Row, format_table, ratio, write_json
from bench.stats import bursts
from harness.progress import Progress

#: Pods with the ``http_requests_total`` counter (what the readiness probe asks for).
PODS = 10
MIX_METRICS = 200

DISCOVERY_RULES = rule_config() + """\
- seriesQuery: '{__name__=~"^container_.*",namespace!="",pod!=""}'
  seriesFilters:
  - isNot: "^container_.*_total$"
  resources:
    overrides:
      namespace: {resource: "namespace"}
      pod: {resource: "pod"}
  name:
    matches: "^container_(.*)$"
    as: "container_${1}"
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
"""


def parse_sizes(text: str) -> list[int]:
    """``10k,100k,1M`` -> [10000, 100000, 1000000]."""
    out: list[int] = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*([kKmM]?)\s*", part)
        if not m:
            raise ValueError(f"--discovery {text!r}: pass sizes like 10k,100k,1M")
        n = int(m.group(1)) * {"": 1, "k": 1000, "m": 1_000_000}[m.group(2).lower()]
        if n <= PODS:
            raise ValueError(f"--discovery {text!r}: each size must exceed {PODS} series")
        out.append(n)
    return sorted(set(out))


def _label(n: int) -> str:
    return f"{n // 1_000_000}M" if n % 1_000_000 == 0 else f"{n // 1000}k" if n % 1000 == 0 else str(n)


@dataclass
class SizeResult:
    series: int
    load_s: float = 0.0
    prometheus_series: float | None = None
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)


def run(args: Any) -> int:
    progress = Progress(stream=sys.stderr, prefix="bench discovery: ")
    sizes: list[int] = args.discovery
    relist_s = ab._seconds(args.relist)
    settle_s = args.settle if args.settle is not None else 2.5 * relist_s
    started_at = datetime.now()
    start_load = tuple(round(x, 2) for x in os.getloadavg())
    tmp = Path(tempfile.mkdtemp(prefix="hpa-kit-discovery-"))
    progress(f"sizes {[_label(n) for n in sizes]}; temp dir {tmp}; load average {start_load}")
    results: list[SizeResult] = []
    with contextlib.ExitStack() as stack, ab._signals_as_interrupt():
        if args.keep_tmp:
            stack.callback(lambda: progress(f"kept {tmp} (--keep-tmp)"))
        else:
            stack.callback(shutil.rmtree, tmp, True)
        peer_bin, peer_status = ab._peer(args, progress)
        cp = ab._start_control_plane(stack, tmp, PODS, progress)
        serving, tls = ab._certificates(tmp, cp.pki, progress)
        config = tmp / "rules.yaml"
        config.write_text(DISCOVERY_RULES)
        for n in sizes:
            with contextlib.ExitStack() as size_stack:
                results.append(
                    _one_size(
                        size_stack,
                        tmp / _label(n),
                        n,
                        args,
                        config,
                        cp,
                        serving,
                        tls,
                        peer_bin,
                        settle_s,
                        progress,
                    )
                )
        _report(args, sizes, results, started_at, start_load, peer_bin, peer_status, settle_s)
    return 0


def _one_size(
    stack: contextlib.ExitStack,
    tmp: Path,
    n: int,
    args: Any,
    config: Path,
    cp: Any,
    serving: Any,
    tls: Any,
    peer_bin: Path | None,
    settle_s: float,
    progress: Progress,
) -> SizeResult:
    from bench.prom import BenchPrometheus
    from harness.localprom import Target as PromTarget

    tmp.mkdir(parents=True)
    res = SizeResult(n)
    filler = n - PODS
    t0 = time.monotonic()
    exporter_log = tmp / "exporter.log"
    exporter = AdapterProcess(
        "exporter",
        [sys.executable, "-m", "bench.exporter", "--pods", str(PODS), "--filler", str(filler), "--mix",
         "--filler-metrics", str(MIX_METRICS)],
        exporter_log,
        env={"PYTHONPATH": str(ab.REPO)},
    ).start()  # fmt: skip
    stack.callback(exporter.stop)
    urls = None
    while urls is None:
        m = re.search(r"pods=http://(\S+) filler=http://(\S+)", exporter_log.read_text(errors="replace"))
        if m:
            urls = m.group(1), m.group(2)
        elif not exporter.running() or time.monotonic() - t0 > 600:
            raise ab.BenchError(f"exporter did not start:\n{exporter.log_tail()}")
        else:
            time.sleep(0.2)
    # The filler never changes: scrape it rarely, with time enough for a large page.
    filler_every = "10s" if n <= 200_000 else "60s"
    prom = BenchPrometheus(
        [PromTarget(urls[0], job="bench-pods"), PromTarget(urls[1], job="bench-filler")],
        scrape_interval="2s",
        data_dir=tmp / "prometheus",
        job_intervals={"bench-filler": filler_every},
    )
    stack.callback(prom.stop)
    with progress.step(f"{_label(n)}: exporter + prometheus loading {n} series"):
        prom.start(timeout=120)
        prom.wait_for_targets_up(600)
        prom.wait_for_count('http_requests_total{namespace="bench"}', PODS, 120, progress)
        prom.wait_for_head_series(n, 1800, progress)
    res.load_s = time.monotonic() - t0
    res.prometheus_series = prom.head_series()
    progress(
        f"{_label(n)}: loaded in {res.load_s:.1f}s ({res.prometheus_series or 0:.0f} series in Prometheus)"
    )
    time.sleep(2.5)  # rate() needs two samples of the pod counters

    common = CommonArgs(config, prom.url, cp.kubeconfig, serving.cert, serving.key, args.relist)
    env = {"PYTHONPATH": str(ab.REPO)}
    targets: list[ab.Target] = []
    port_avoid: list[int] = []
    from harness import procs as hprocs

    def add(key: str, label: str, argv: list[str], extra_env: dict[str, str] | None) -> None:
        targets.append(ab.Target(key, label, AdapterProcess(key, argv, tmp / f"{key}.log", env=extra_env),
                                 port_avoid[-1], ["v1beta1"]))  # fmt: skip

    port_avoid.append(hprocs.free_port("127.0.0.1"))
    add("ours", "ours", [*ours_argv(common, port_avoid[-1]), "--prometheus-timeout", "120s"], env)
    if peer_bin is not None:
        port_avoid.append(hprocs.free_port("127.0.0.1", avoid=port_avoid))
        add(
            "peer", "peer", peer_argv(peer_bin, common, port_avoid[-1], client_qps=args.peer_client_qps), None
        )
    for t in targets:
        stack.callback(t.proc.stop)
        t.proc.start()
        t.started = time.monotonic()
    with progress.step(f"{_label(n)}: adapters discovering"):
        asyncio.run(
            ab._wait_all(targets, PODS, first=True, tls=tls, timeout=args.ready_timeout, progress=progress)
        )
    for t in targets:
        if not t.failed:
            t.memory["first_answer"] = memory_kib(t.proc.pid)
    live = [t for t in targets if not t.failed]
    relists, cpu_totals = _settle(live, settle_s, progress)
    relist_s = ab._seconds(args.relist)
    for t in targets:
        res.targets[t.key] = {
            "label": t.label,
            "failed": t.failed,
            "ready_s": t.ready_s,
            "memory_kib": t.memory,
            "relist_cpu_s": t.relist_cpu_s,
            "relists_seen": relists.get(t.key, 0),
            # All CPU while settling, per relist interval: idle work included, nothing split off.
            "cpu_per_interval_s": (
                cpu_totals[t.key] * relist_s / settle_s if cpu_totals.get(t.key) is not None else None
            ),
            "log_tail": t.proc.log_tail(5) if t.failed else None,
        }
    return res


def _settle(
    live: list[ab.Target], settle_s: float, progress: Progress
) -> tuple[dict[str, int], dict[str, float]]:
    """Per-second CPU of each adapter while it only relists; memory at the end. Returns how many
    complete relists (bursts) each showed, and each one's total CPU seconds while settling."""
    deltas = ab.sample_cpu(live, settle_s, note_every=15,
                           note=lambda elapsed, _d: progress(f"  settling {elapsed:.0f}/{settle_s:.0f}s"))
    seen: dict[str, int] = {}
    totals = {k: sum(v) for k, v in deltas.items()}
    for t in live:
        runs = bursts(deltas[t.key], ab.RELIST_BURST_S)
        t.relist_cpu_s = sum(runs) / len(runs) if runs else None
        seen[t.key] = len(runs)
        t.memory["settled"] = memory_kib(t.proc.pid)
        mem = t.memory["settled"]
        rss, hwm = mem.get("rss", 0) / 1024, mem.get("hwm", 0) / 1024
        cpu = "n/a" if t.relist_cpu_s is None else f"{t.relist_cpu_s:.2f}s"
        progress(
            f"  {t.label}: VmRSS {rss:.1f} MiB, VmHWM {hwm:.1f} MiB, relist CPU {cpu} ({len(runs)} relists)"
        )
    return seen, totals


def _mib(res: SizeResult, key: str, when: str, what: str) -> float | None:
    t = res.targets.get(key)
    if not t or t["failed"]:
        return None
    v = t["memory_kib"].get(when, {}).get(what)
    return None if v is None else v / 1024


def _rows(res: SizeResult) -> list[Row]:
    def cpu(key: str, what: str = "relist_cpu_s") -> float | None:
        t = res.targets.get(key)
        return None if not t or t["failed"] else t[what]

    def ready(key: str) -> float | None:
        t = res.targets.get(key)
        return None if not t or t["failed"] else t["ready_s"]

    def mem(label: str, when: str, what: str) -> Row:
        return Row(label, _mib(res, "ours", when, what), _mib(res, "peer", when, what), "lower")

    return [
        mem("RSS right after discovery (MiB)", "first_answer", "rss"),
        mem("steady RSS, relisting (MiB)", "settled", "rss"),
        mem("peak RSS VmHWM (MiB)", "settled", "hwm"),
        Row("CPU per relist, burst (s)", cpu("ours"), cpu("peer"), "lower", "{:.2f}"),
        Row(
            "CPU per relist interval, all (s)",
            cpu("ours", "cpu_per_interval_s"),
            cpu("peer", "cpu_per_interval_s"),
            "lower",
            "{:.2f}",
        ),
        Row("start to first answer (s)", ready("ours"), ready("peer"), "lower"),
    ]


def _report(
    args: Any,
    sizes: list[int],
    results: list[SizeResult],
    started_at: datetime,
    start_load: tuple[float, ...],
    peer_bin: Path | None,
    peer_status: str,
    settle_s: float,
) -> None:
    tables = []
    for res in results:
        table = format_table(
            _rows(res),
            ours_label="ours",
            peer_label="peer",
            title=f"discovery over {_label(res.series)} series (Prometheus loaded in {res.load_s:.0f}s); "
            f"ratio = ours/peer",
        )
        tables.append(table)
        print()
        print(table)
    end_load = tuple(round(x, 2) for x in os.getloadavg())
    print(f"\npeer: {peer_status}; machine: {os.cpu_count()} CPUs, load {start_load} -> {end_load}")
    doc = {
        "benchmark": "discovery",
        "started_at": started_at.isoformat(timespec="seconds"),
        "git_rev": ab.git_rev(),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_start": start_load,
            "loadavg_end": end_load,
        },
        "config": {
            "sizes": sizes,
            "relist": args.relist,
            "settle_s": settle_s,
            "rules": DISCOVERY_RULES,
            "pods_with_counter": PODS,
            "mix_metrics": MIX_METRICS,
        },
        "peer": {
            "version": ab.PEER_VERSION,
            "status": peer_status,
            "binary": str(peer_bin) if peer_bin else None,
        },
        "sizes": [
            {
                "series": r.series,
                "load_s": r.load_s,
                "prometheus_series": r.prometheus_series,
                "targets": r.targets,
                "ratios": {row.metric: ratio(row.ours, row.peer) for row in _rows(r)},
            }
            for r in results
        ],
        "tables": tables,
    }
    out = write_json(args.out / f"discovery-{started_at:%Y%m%d-%H%M%S}.json", doc)
    print(f"results: {out}")
    png = _plot(results, out.with_suffix(".png"))
    print(f"plot: {png}" if png else "plot: skipped (matplotlib is not installed)")


def _plot(results: list[SizeResult], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    xs = [r.series for r in results]
    panels = [
        ("steady RSS (MiB)", lambda r, k: _mib(r, k, "settled", "rss")),
        ("peak RSS VmHWM (MiB)", lambda r, k: _mib(r, k, "settled", "hwm")),
        ("CPU per relist (s)", lambda r, k: (r.targets.get(k) or {}).get("relist_cpu_s")),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(13, 4))
    for ax, (title, get) in zip(axes, panels, strict=True):
        for key in ("ours", "peer"):
            ys = [get(r, key) for r in results]
            pts = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=key)
        ax.set_xscale("log")
        ax.set_xlabel("series discovered")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
