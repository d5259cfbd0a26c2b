"""Our adapter vs prometheus-adapter v0.12.0, side by side in one run, on one machine.

    .venv/bin/python -m bench.adapter_bench [--pods 100,1000,10000] [--duration 10] [--concurrency 16]
                                            [--series 100000] [--peer/--no-peer] [--profile-ours DIR]
    .venv/bin/python -m bench.adapter_bench --discovery 10k,100k[,1M]   # discovery memory only

One run brings up everything on loopback, measures, prints a table and the request-cost curve
(req/s, p50, p99, CPU per request against N, both adapters side by side) and writes
``reports/bench/adapter-<timestamp>.json`` and ``.png`` (the curve), then tears everything down
(also on Ctrl-C):

1. a control plane (etcd + kube-apiserver from the harness, no node), namespace ``bench`` and
   N Pending Pods ``bench-<i>`` (``app=bench``);
2. a synthetic exporter (``http_requests_total`` per pod, plus filler counters up to ``--series``
   series) and a real Prometheus scraping it;
3. our adapter and the peer, built by ``scripts/build-peer.sh``, with the same rule, Prometheus,
   serving certificate, relist interval and **delegated authn/authz on both**: the load client
   acts like the kube-aggregator (front-proxy client certificate + ``X-Remote-User/Group``);
4. per N: fixed-concurrency load on ``.../namespaces/bench/pods/*/http_requests`` (v1beta1 and
   v1beta2), every answer checked (HTTP 200, N items); throughput, p50, p99, CPU per request;
5. memory (VmRSS, VmHWM) after discovery settled over ``--series`` series.

Variants (``--variants``, on by default) show what the defaults hide: ours with ``--cache-ttl 0``
(no result reuse, coalescing only) and the peer with upstream's default client QPS (5/s), which
throttles its per-request pod LIST. The headline peer runs with ``--peer-client-qps`` (1000) so
the comparison is against its serving path, not its throttle.

Numbers are ratios for this machine at this moment: the load average is recorded with each run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from bench.adapters import (
    AdapterProcess,
    CommonArgs,
    cpu_seconds,
    memory_kib,
    ours_argv,
    peer_argv,
    rule_config,
)
from bench.curves import curves_json, format_curve, plot_curves
from bench.load import Check, check_body, run_load
from bench.report import Row, format_table, write_json
from bench.stats import LoadResult, bursts, pool
from harness import procs
from harness.errors import HarnessError
from harness.progress import Progress

if TYPE_CHECKING:  # imported where used: the run's pieces load only when a run starts
    from bench.pods import PodFactory
    from bench.prom import BenchPrometheus
    from harness.certs import CertPair
    from harness.cluster.pki import PKI

REPO = Path(__file__).resolve().parents[1]
PEER_VERSION = "v0.12.0"
GROUP = "/apis/custom.metrics.k8s.io"
METRIC = "http_requests"
#: What the kube-aggregator would assert for the HPA controller; system:masters passes the SAR.
REMOTE_USER = "bench-hpa-controller"
REMOTE_GROUPS = ("system:masters",)
#: How long a 401/403 may last at start-up before the run gives up on that adapter.
AUTH_GRACE_S = 30.0
#: A second in which an idle adapter burns more CPU than this belongs to a relist burst.
RELIST_BURST_S = 0.02


class BenchError(RuntimeError):
    """A setup step failed; the message says which and what to look at."""


# ------------------------------------------------------------------------------------------ CLI


def _pod_counts(text: str) -> list[int]:
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--pods {text!r}: pass comma-separated integers, e.g. 100,1000"
        ) from None
    if not counts or any(c < 1 for c in counts):
        raise argparse.ArgumentTypeError(f"--pods {text!r}: every count must be >= 1")
    return sorted(set(counts))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.adapter_bench",
        description="Benchmark our adapter against prometheus-adapter in one run (prints ratios).",
    )
    p.add_argument(
        "--pods", type=_pod_counts, default=[100, 1000, 10000], help="pod counts (default 100,1000,10000)"
    )
    p.add_argument("--duration", type=float, default=10.0, help="seconds of load per run (default 10)")
    p.add_argument(
        "--durations",
        type=_durations,
        default=None,
        help="seconds of load per pod count, smallest count first (e.g. 10,10,60 for 100,1000,10000: "
        "the peer needs seconds per answer at 10,000 pods, so a short window may see none complete)",
    )
    p.add_argument("--rounds", type=int, default=2, help="rounds per N, order alternated, samples pooled (2)")
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each run (1)")
    p.add_argument("--concurrency", type=int, default=16, help="concurrent requests (default 16)")
    p.add_argument(
        "--series",
        type=int,
        default=100_000,
        help="total series the adapters discover, filler included (default 100000)",
    )
    p.add_argument(
        "--peer",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"build and run prometheus-adapter {PEER_VERSION} (default on)",
    )
    p.add_argument(
        "--variants",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run ours with --cache-ttl 0 and the peer with its default client QPS",
    )
    p.add_argument(
        "--peer-client-qps",
        type=float,
        default=1000.0,
        help="the headline peer's --client-qps (burst 2x); upstream default is 5",
    )
    p.add_argument("--relist", default="30s", help="--metrics-relist-interval of both (default 30s)")
    p.add_argument(
        "--settle",
        type=float,
        default=None,
        help="seconds of idle (memory, relist CPU) after discovery (default: two relists)",
    )
    p.add_argument(
        "--discovery",
        default=None,
        metavar="SIZES",
        help="instead of the load run: discovery memory and relist CPU of both adapters over each "
        "series count, e.g. 10k,100k (1M on demand: minutes of loading); see bench.discovery_bench",
    )
    p.add_argument("--ready-timeout", type=float, default=300.0, help="max seconds for an adapter to serve")
    p.add_argument("--out", type=Path, default=REPO / "reports" / "bench", help="where the JSON goes")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (logs) for debugging")
    p.add_argument(
        "--profile-ours",
        type=Path,
        default=None,
        metavar="DIR",
        help="run ours under cProfile, one DIR/ours-N-VERSION-rR.prof per load run (slows ours down)",
    )
    args = p.parse_args(argv)
    if args.duration <= 0 or args.concurrency < 1 or args.rounds < 1:
        p.error("--duration must be > 0, --concurrency and --rounds >= 1")
    if args.discovery is not None:
        from bench.discovery_bench import parse_sizes

        try:
            args.discovery = parse_sizes(args.discovery)
        except ValueError as exc:
            p.error(str(exc))
    if args.durations is not None and len(args.durations) != len(args.pods):
        p.error(f"--durations has {len(args.durations)} entries; pass one per pod count {args.pods}")
    return args


def _durations(text: str) -> list[float]:
    try:
        out = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--durations {text!r}: pass comma-separated seconds") from None
    if not out or any(d <= 0 for d in out):
        raise argparse.ArgumentTypeError(f"--durations {text!r}: every duration must be > 0")
    return out


def duration_for(args: argparse.Namespace, n: int) -> float:
    """Seconds of load at ``n`` pods: its ``--durations`` entry, else ``--duration``."""
    if args.durations is None:
        return float(args.duration)
    return args.durations[args.pods.index(n)]


def _seconds(duration: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    if not m:
        raise SystemExit(f"--relist {duration!r}: use a single Go-style duration such as 30s or 1m")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


# --------------------------------------------------------------------------------------- targets


@dataclass
class Target:
    key: str
    label: str
    proc: AdapterProcess
    port: int
    versions: list[str]
    started: float = 0.0
    ready_s: float | None = None
    failed: str | None = None
    memory: dict[str, dict[str, int]] = field(default_factory=dict)
    idle_cpu_pct: float | None = None
    #: Mean CPU seconds of one complete relist burst seen while idle (None: none seen whole).
    relist_cpu_s: float | None = None

    @property
    def base(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def url(self, version: str) -> str:
        return f"{self.base}{GROUP}/{version}/namespaces/bench/pods/*/{METRIC}"


def _client_tls(serving_ca: Path, client_cert: Path, client_key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(serving_ca))
    ctx.load_cert_chain(str(client_cert), str(client_key))
    return ctx


def _headers() -> list[tuple[str, str]]:
    """The aggregator's identity headers: one ``X-Remote-Group`` header per group (never joined)."""
    return [("X-Remote-User", REMOTE_USER), *(("X-Remote-Group", g) for g in REMOTE_GROUPS)]


async def _wait_serving(
    t: Target, version: str, n: int, tls: ssl.SSLContext, timeout: float, progress: Progress
) -> float:
    """Poll until ``t`` answers the metric with exactly ``n`` items; returns the seconds waited."""
    t0 = time.monotonic()
    last = "no answer yet"
    next_note = t0 + 15
    async with httpx.AsyncClient(verify=tls, headers=_headers(), timeout=30) as client:
        while time.monotonic() - t0 < timeout:
            if not t.proc.running():
                raise BenchError(
                    f"{t.label} exited (code {t.proc.proc and t.proc.proc.returncode}); "
                    f"log {t.proc.log_path}:\n{t.proc.log_tail()}"
                )
            try:
                r = await client.get(t.url(version))
                problem = check_body(r.status_code, r.content, n, full=True)
                if problem is None:
                    return time.monotonic() - t0
                last = f"{problem}: {r.text[:300]}"
                # Auth config loads asynchronously at start-up (the peer's requestheader CA comes
                # from a configmap informer): a refusal that outlasts the grace period is final.
                if r.status_code in (401, 403) and time.monotonic() - t0 > AUTH_GRACE_S:
                    raise BenchError(
                        f"{t.label} refused the benchmark client ({last}); check the "
                        f"front-proxy cert / X-Remote-* headers. Log {t.proc.log_path}"
                    )
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > next_note:
                progress(f"  {t.label} {version}: not serving {n} items yet ({last[:120]})")
                next_note = time.monotonic() + 15
            await asyncio.sleep(0.5)
    raise BenchError(
        f"{t.label} did not serve {n} items of {METRIC} within {timeout:.0f}s "
        f"(last: {last}); log {t.proc.log_path}:\n{t.proc.log_tail()}"
    )


# ------------------------------------------------------------------------------------ the run


@contextlib.contextmanager
def _signals_as_interrupt() -> Iterator[None]:
    """SIGTERM and SIGINT both unwind the run (so every cleanup callback runs).

    SIGINT is set explicitly because a shell starts background jobs with SIGINT ignored, and
    Python then never installs its own KeyboardInterrupt handler.
    """

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def build_peer(progress: Progress) -> tuple[Path | None, str]:
    """Build (or reuse the cached) prometheus-adapter ``PEER_VERSION`` with scripts/build-peer.sh.

    Returns ``(binary, status)``: the binary's path and ``"built"``, or ``None`` and why the build
    failed, so a caller runs without the peer and reports the reason instead of stopping. The
    script's output goes to ``progress`` line by line. Used by the adapter, hpas and resource-diff
    benches.
    """
    script = REPO / "scripts" / "build-peer.sh"
    progress(f"peer: building prometheus-adapter {PEER_VERSION} ({script.name}; cached after the first run)")
    # Its lines go to ``progress`` as they come (procs.run only returns at the end): a Popen.
    proc = subprocess.Popen(
        [str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PEER_VERSION": PEER_VERSION},
    )
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip())
        progress(f"  {line.rstrip()}")
    if proc.wait() != 0:
        return None, "build failed: " + " | ".join(lines[-5:])
    path = procs.run([script, "--print-path"], timeout=60, check=False).stdout.strip()
    if not path or not Path(path).is_file():
        return None, f"build reported success but {path or 'no path'} is missing"
    return Path(path), "built"


def _loadavg() -> tuple[float, float, float]:
    return os.getloadavg()


def git_rev() -> str | None:
    """The repository's short HEAD commit for a bench report, or None without git (or a checkout)."""
    try:
        out = procs.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], timeout=5, check=False)
        return out.stdout.strip() or None
    except HarnessError:  # no git, or it hung
        return None


def run(args: argparse.Namespace) -> int:
    """The whole benchmark; every process it started is stopped on the way out (also on Ctrl-C)."""
    progress = Progress(stream=sys.stderr, prefix="bench: ")
    plan = _plan(args)
    tmp = Path(tempfile.mkdtemp(prefix="hpa-kit-bench-"))
    progress(f"temp dir {tmp}; load average {_loadavg()}; {os.cpu_count()} CPUs")
    with contextlib.ExitStack() as stack, _signals_as_interrupt():
        if args.keep_tmp:
            stack.callback(lambda: progress(f"kept {tmp} (--keep-tmp)"))
        else:
            stack.callback(shutil.rmtree, tmp, True)
        peer_bin, peer_status = _peer(args, progress)
        cp = _start_control_plane(stack, tmp, args.pods[0], progress)
        serving, tls = _certificates(tmp, cp.pki, progress)
        pods_url, filler_url = _start_exporter(stack, tmp, plan, progress)
        prom = _start_prometheus(stack, tmp, pods_url, filler_url, plan, progress)
        common = _common_args(tmp, args, prom.url, cp.kubeconfig, serving)
        targets = _start_adapters(stack, tmp, args, common, peer_bin, progress)
        live = _first_answers(targets, args, tls, progress)
        _settle(live, plan.settle_s, args, progress)
        runs = _load(targets, cp, tls, args, progress)
        results = _pooled(runs)
        _end_memory(targets)
        _report(args, plan, targets, results, runs, peer_bin, peer_status)
        progress("cleaning up")
    return 0


@dataclass
class Plan:
    """What a run derives from its arguments before it starts anything."""

    started_at: datetime
    start_load: tuple[float, ...]
    max_n: int
    #: Filler series the exporter adds to the pod counters to reach ``--series``.
    filler: int
    settle_s: float
    notes: list[str]


def _plan(args: argparse.Namespace) -> Plan:
    start_load = tuple(round(x, 2) for x in _loadavg())
    started_at = datetime.now()
    notes: list[str] = []
    max_n = max(args.pods)
    filler = max(0, args.series - max_n)
    if args.series < max_n:
        notes.append(f"--series {args.series} < {max_n} pods: no filler series")
    relist_s = _seconds(args.relist)
    settle_s = 2 * relist_s if args.settle is None else args.settle
    return Plan(started_at, start_load, max_n, filler, settle_s, notes)


def _peer(args: argparse.Namespace, progress: Progress) -> tuple[Path | None, str]:
    """(binary, status) of the peer: None when it is not measured (``--no-peer``, build failed)."""
    if not args.peer:
        return None, "disabled (--no-peer)"
    peer_bin, peer_status = build_peer(progress)
    if peer_bin is None:
        progress(f"peer: UNAVAILABLE ({peer_status}); measuring ours alone, no ratios")
    return peer_bin, peer_status


@dataclass
class BenchCluster:
    """1. The control plane both adapters list Pods from, with the first N Pods in it."""

    kubeconfig: Path
    pki: PKI
    apiserver_pid: int | None
    pods: PodFactory


def _start_control_plane(
    stack: contextlib.ExitStack, tmp: Path, first_n: int, progress: Progress
) -> BenchCluster:
    from harness.cluster.local import LocalCluster
    from harness.cluster.settings import LocalSettings

    cluster = LocalCluster(
        LocalSettings(name="hpa-kit-bench", state_root=tmp / "cp", with_node=False, build=False)
    )
    # Registered before create(): a half-started control plane is torn down too.
    stack.callback(lambda: cluster.delete(progress.child("control-plane: ")))
    with progress.step("control plane (etcd + kube-apiserver, harness.cluster)"):
        cluster.create(progress.child("control-plane: "))
    pki = cluster.pki()
    kubeconfig = cluster.kubeconfig
    from harness import procs as hprocs

    apiserver_rec = hprocs.load_record(cluster.pid_dir, "kube-apiserver")
    apiserver_pid = apiserver_rec.pid if apiserver_rec else None

    from bench.pods import PodFactory

    pods = PodFactory(kubeconfig)
    stack.callback(pods.close)
    pods.ensure_namespace()
    with progress.step(f"{first_n} Pods in namespace bench"):
        pods.ensure_pods(first_n)
    return BenchCluster(kubeconfig, pki, apiserver_pid, pods)


def _certificates(tmp: Path, pki: PKI, progress: Progress) -> tuple[CertPair, ssl.SSLContext]:
    """The adapters' serving certificate, and the client TLS context (front-proxy client cert)."""
    from harness.certs import ensure_ca, issue_cert

    certs = tmp / "certs"
    ca = ensure_ca(certs, "bench-serving-ca", "hpa-kit-bench-serving-ca")
    serving = issue_cert(certs, "serving", ca, "localhost", hosts=["127.0.0.1", "localhost"])
    tls = _client_tls(ca.cert, pki.front_proxy_client.cert, pki.front_proxy_client.key)
    progress("serving certificate issued (cfssl); clients use the front-proxy client cert")
    return serving, tls


def _start_exporter(
    stack: contextlib.ExitStack, tmp: Path, plan: Plan, progress: Progress
) -> tuple[str, str]:
    """2. The synthetic exporter; returns its pod-counter and filler scrape addresses."""
    max_n, filler = plan.max_n, plan.filler
    exporter_log = tmp / "exporter.log"
    exporter = AdapterProcess(
        "exporter",
        [sys.executable, "-m", "bench.exporter", "--pods", str(max_n), "--filler", str(filler)],
        exporter_log,
        env={"PYTHONPATH": str(REPO)},
    ).start()
    stack.callback(exporter.stop)
    pods_url = filler_url = ""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not pods_url:
        m = re.search(r"pods=http://(\S+) filler=http://(\S+)", exporter_log.read_text(errors="replace"))
        if m:
            pods_url, filler_url = m.group(1), m.group(2)
        elif not exporter.running():
            raise BenchError(f"exporter exited:\n{exporter.log_tail()}")
        else:
            time.sleep(0.2)
    if not pods_url:
        raise BenchError(f"exporter did not report its ports:\n{exporter.log_tail()}")
    progress(f"exporter: {max_n} pod counters at {pods_url}, {filler} filler series at {filler_url}")
    return pods_url, filler_url


def _start_prometheus(
    stack: contextlib.ExitStack, tmp: Path, pods_url: str, filler_url: str, plan: Plan, progress: Progress
) -> BenchPrometheus:
    """2. A real Prometheus scraping the exporter, returned once every series has two samples."""
    from bench.prom import BenchPrometheus
    from harness.localprom import Target as PromTarget

    max_n, filler = plan.max_n, plan.filler
    prom_targets = [PromTarget(pods_url, job="bench-pods")]
    if filler:
        prom_targets.append(PromTarget(filler_url, job="bench-filler"))
    prom = BenchPrometheus(
        prom_targets,
        scrape_interval="1s",
        data_dir=tmp / "prometheus",
        job_intervals={"bench-filler": "10s"},
    )
    stack.callback(prom.stop)
    with progress.step(f"prometheus {prom.url} (pods every 1s, filler every 10s, honor_labels)"):
        prom.start()
        prom.wait_for_targets_up(60)
        prom.wait_for_count('http_requests_total{namespace="bench"}', max_n, 60, progress)
        if filler:
            prom.wait_for_count('{__name__=~"bench_filler_.+_total"}', filler, 180, progress)
    # rate() over 1m needs at least two samples per series.
    time.sleep(2.5)
    return prom


def _common_args(
    tmp: Path, args: argparse.Namespace, prometheus_url: str, kubeconfig: Path, serving: CertPair
) -> CommonArgs:
    """3. What both adapters are given alike: the rule file (written here), Prometheus, certs."""
    config = tmp / "rules.yaml"
    config.write_text(rule_config())
    return CommonArgs(
        config=config,
        prometheus_url=prometheus_url,
        kubeconfig=kubeconfig,
        tls_cert=serving.cert,
        tls_key=serving.key,
        relist=args.relist,
    )


def _start_adapters(
    stack: contextlib.ExitStack,
    tmp: Path,
    args: argparse.Namespace,
    common: CommonArgs,
    peer_bin: Path | None,
    progress: Progress,
) -> list[Target]:
    """3. Start ours, the peer and (``--variants``) their variants, each on a free port."""
    from harness import procs as hprocs

    targets: list[Target] = []
    env = {"PYTHONPATH": str(REPO)}

    def add(
        key: str,
        label: str,
        argv_for: Callable[[int], list[str]],
        versions: list[str],
        extra_env: dict[str, str] | None = None,
    ) -> None:
        port = hprocs.free_port("127.0.0.1", avoid=[t.port for t in targets])
        proc = AdapterProcess(key, argv_for(port), tmp / f"{key}.log", env=extra_env)
        targets.append(Target(key, label, proc, port, versions))

    add(
        "ours",
        "ours",
        lambda port: _maybe_profiled(ours_argv(common, port), args),
        ["v1beta1", "v1beta2"],
        env,
    )
    if args.variants:
        add(
            "ours-ttl0",
            "ours --cache-ttl 0",
            lambda port: ours_argv(common, port, cache_ttl="0s"),
            ["v1beta1"],
            env,
        )
    if peer_bin is not None:
        binary = peer_bin
        add(
            "peer",
            f"peer (client-qps {args.peer_client_qps:g})",
            lambda port: peer_argv(binary, common, port, client_qps=args.peer_client_qps),
            ["v1beta1", "v1beta2"],
        )
        if args.variants:
            add(
                "peer-qps5",
                "peer (default client-qps 5)",
                lambda port: peer_argv(binary, common, port),
                ["v1beta1"],
            )
    for t in targets:
        stack.callback(t.proc.stop)
        t.proc.start()
        t.started = time.monotonic()
        progress(f"started {t.label} (pid {t.proc.pid}, {t.base}, log {t.proc.log_path.name})")
    return targets


def _maybe_profiled(argv: list[str], args: argparse.Namespace) -> list[str]:
    """``python -m adapter ...`` as ``python -m bench.profiled ...`` under ``--profile-ours``."""
    if args.profile_ours is None:
        return argv
    assert argv[1:3] == ["-m", "adapter"], argv
    return [argv[0], "-m", "bench.profiled", "--out", str(args.profile_ours / "ours"), "--", *argv[3:]]


@contextlib.contextmanager
def _profiling(t: Target, args: argparse.Namespace, name: str) -> Iterator[None]:
    """Profile ours over one load run (SIGUSR1 on, SIGUSR1 off) and name the file after the run."""
    if args.profile_ours is None or t.key != "ours":
        yield
        return
    before = set(args.profile_ours.glob("ours-*.prof"))
    os.kill(t.proc.pid, signal.SIGUSR1)
    try:
        yield
    finally:
        os.kill(t.proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            new = set(args.profile_ours.glob("ours-*.prof")) - before
            if new:
                new.pop().rename(args.profile_ours / f"{name}.prof")
                break
            time.sleep(0.1)


async def _wait_all(
    targets: list[Target], n: int, *, first: bool, tls: ssl.SSLContext, timeout: float, progress: Progress
) -> None:
    """Wait until every target serves ``n`` items in each of its versions; one that does not is
    marked failed (``t.failed``), never raised. ``first``: record the time to the first answer."""

    async def one(t: Target) -> None:
        if t.failed:
            return
        try:
            for v in t.versions:
                waited = await _wait_serving(t, v, n, tls, timeout, progress)
                if first and v == t.versions[0]:
                    t.ready_s = time.monotonic() - t.started
                    progress(f"{t.label}: serving {n} items after {t.ready_s:.1f}s from start")
                elif not first:
                    progress(f"{t.label} {v}: serving {n} items (waited {waited:.1f}s)")
        except BenchError as exc:
            t.failed = str(exc)
            progress(f"{t.label}: FAILED: {exc}")

    await asyncio.gather(*(one(t) for t in targets))


def _first_answers(
    targets: list[Target], args: argparse.Namespace, tls: ssl.SSLContext, progress: Progress
) -> list[Target]:
    """3. Discovery: wait for every adapter's first correct answer; the ones serving (ours must)."""
    first_n = args.pods[0]
    with progress.step(f"adapters discovering {args.series} series and serving {first_n} pods"):
        asyncio.run(
            _wait_all(targets, first_n, first=True, tls=tls, timeout=args.ready_timeout, progress=progress)
        )
    live = [t for t in targets if not t.failed]
    if not any(t.key == "ours" for t in live):
        raise BenchError(f"our adapter never served: {targets[0].failed}")
    return live


def sample_cpu(
    live: list[Target], seconds: float, *, note_every: float,
    note: Callable[[float, dict[str, list[float]]], None],
    start: dict[str, float | None] | None = None,
) -> dict[str, list[float]]:
    """Each adapter's CPU seconds used in every 1 s step for ``seconds`` (a relist shows as a burst:
    :func:`bursts`); ``note(elapsed, deltas so far)`` every ``note_every`` seconds. ``start`` is the
    CPU reading to count from (read now when not given)."""
    last = dict(start) if start is not None else {t.key: cpu_seconds(t.proc.pid) for t in live}
    deltas: dict[str, list[float]] = {t.key: [] for t in live}
    t0 = time.monotonic()
    next_note = t0 + note_every
    while time.monotonic() - t0 < seconds:
        time.sleep(1.0)
        for t in live:
            now = cpu_seconds(t.proc.pid)
            if now is not None and last[t.key] is not None:
                deltas[t.key].append(now - (last[t.key] or 0.0))
            last[t.key] = now
        if time.monotonic() >= next_note:
            note(time.monotonic() - t0, deltas)
            next_note += note_every
    return deltas


def _settle(live: list[Target], settle_s: float, args: argparse.Namespace, progress: Progress) -> None:
    """5a. Memory and idle CPU (per relist, too) of each adapter after discovery settled."""
    progress(
        f"settling {settle_s:.0f}s (relists every {args.relist} over {args.series} series) "
        "to read memory and idle CPU"
    )
    cpu0 = {t.key: cpu_seconds(t.proc.pid) for t in live}

    def note(elapsed: float, deltas: dict[str, list[float]]) -> None:
        used = ", ".join(f"{k} {sum(v):.2f}s" for k, v in deltas.items())
        progress(f"  settling: {elapsed:.0f}/{settle_s:.0f}s, CPU used: {used}")

    deltas = sample_cpu(live, settle_s, note_every=10, note=note, start=cpu0)
    for t in live:
        relists = bursts(deltas[t.key], RELIST_BURST_S)
        t.relist_cpu_s = sum(relists) / len(relists) if relists else None
    for t in live:
        c1 = cpu_seconds(t.proc.pid)
        c0 = cpu0.get(t.key)
        if c0 is not None and c1 is not None:
            t.idle_cpu_pct = 100.0 * (c1 - c0) / settle_s
        t.memory["settled"] = memory_kib(t.proc.pid)
        mem = t.memory["settled"]
        rss, hwm = mem.get("rss", 0) / 1024, mem.get("hwm", 0) / 1024
        per_relist = "n/a" if t.relist_cpu_s is None else f"{t.relist_cpu_s:.2f}s"
        progress(
            f"{t.label}: VmRSS {rss:.1f} MiB, VmHWM {hwm:.1f} MiB, "
            f"idle CPU {t.idle_cpu_pct or 0:.1f}% of a core, CPU per relist {per_relist}"
        )


def _load(
    targets: list[Target], cp: BenchCluster, tls: ssl.SSLContext, args: argparse.Namespace, progress: Progress
) -> list[LoadResult]:
    """4. Load per N (more Pods for each further N): every round, every version, every target."""
    runs: list[LoadResult] = []
    for step, n in enumerate(args.pods):
        if step > 0:
            with progress.step(f"{n} Pods in namespace bench"):
                cp.pods.ensure_pods(n)
            asyncio.run(
                _wait_all(targets, n, first=False, tls=tls, timeout=args.ready_timeout, progress=progress)
            )
        for rnd in range(1, args.rounds + 1):
            order = _round_order(targets, step, rnd)
            for version in ("v1beta1", "v1beta2"):
                for t in order:
                    if version in t.versions and not t.failed:
                        runs.append(_measure(t, n, version, rnd, args, tls, cp.apiserver_pid, progress))
    return runs


def _round_order(targets: list[Target], step: int, rnd: int) -> list[Target]:
    """The targets still serving, ours first or last: alternated between rounds and steps, so slow
    drift of the shared machine (and the adapters' 30 s relists) hits both sides alike."""
    order = [t for t in targets if not t.failed]
    order.sort(key=lambda t: t.key.startswith("ours") == bool((step + rnd) % 2))
    return order


def _measure(
    t: Target,
    n: int,
    version: str,
    rnd: int,
    args: argparse.Namespace,
    tls: ssl.SSLContext,
    apiserver_pid: int | None,
    progress: Progress,
) -> LoadResult:
    """One fixed-concurrency run against ``t``, with its and the apiserver's CPU over it."""
    la = _loadavg()
    c0, a0 = cpu_seconds(t.proc.pid), cpu_seconds(apiserver_pid) if apiserver_pid else None
    progress(
        f"N={n} {version} {t.label} round {rnd}/{args.rounds}: {args.concurrency} concurrent "
        f"for {duration_for(args, n):g}s (load {la[0]:.2f}) ..."
    )
    with _profiling(t, args, f"ours-{n}-{version}-r{rnd}"):
        r = asyncio.run(
            run_load(
                t.key,
                t.url(version),
                duration_s=duration_for(args, n),
                concurrency=args.concurrency,
                check=Check(n),
                verify=tls,
                headers=_headers(),
                warmup_s=args.warmup,
            )
        )
    c1, a1 = cpu_seconds(t.proc.pid), cpu_seconds(apiserver_pid) if apiserver_pid else None
    r.cpu_s = (c1 - c0) if c0 is not None and c1 is not None else None
    r.apiserver_cpu_s = (a1 - a0) if a0 is not None and a1 is not None else None
    r.loadavg, r.pods, r.version, r.round_no = la, n, version, rnd
    extra = f", errors {r.error_kinds}" if r.errors else ""
    progress(
        f"  -> {r.rps:.1f} req/s, p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms, "
        f"{r.ok} ok / {r.errors} errors, {r.cpu_ms_per_request:.2f} CPU-ms/req{extra}"
    )
    return r


def _pooled(runs: list[LoadResult]) -> list[LoadResult]:
    """One result per (target, N, version), its rounds' samples pooled, in the order first run."""
    return [
        pool([r for r in runs if (r.target, r.pods, r.version) == key])
        for key in dict.fromkeys((r.target, r.pods, r.version) for r in runs)
    ]


def _end_memory(targets: list[Target]) -> None:
    """5b. Memory of every adapter still serving after all load."""
    for t in targets:
        if not t.failed and t.proc.running():
            t.memory["end"] = memory_kib(t.proc.pid)


def _report(
    args: argparse.Namespace,
    plan: Plan,
    targets: list[Target],
    results: list[LoadResult],
    runs: list[LoadResult],
    peer_bin: Path | None,
    peer_status: str,
) -> None:
    """6. Print the tables and the machine's load, and write the JSON report."""
    end_load = _loadavg()
    peer_status = _final_peer_status(targets, peer_bin, peer_status)
    table, variants, peer_qps5 = _tables(targets, results, args)
    print()
    print(table)
    if variants:
        print()
        print(variants)
    if peer_qps5:
        print()
        print(peer_qps5)
    curve_text = _curve_text(results, args)
    print()
    print(curve_text)
    print()
    print(f"peer: {peer_status}")
    print(
        f"machine: {os.cpu_count()} CPUs, load average at start {plan.start_load} "
        f"at end {tuple(round(x, 2) for x in end_load)} (other work shares this machine)"
    )
    for note in plan.notes:
        print(f"note: {note}")

    doc = {
        "benchmark": "adapter",
        "started_at": plan.started_at.isoformat(timespec="seconds"),
        "git_rev": git_rev(),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_start": plan.start_load,
            "loadavg_end": end_load,
        },
        "config": {
            "pods": args.pods,
            "duration_s": args.duration,
            "durations_s": {str(n): duration_for(args, n) for n in args.pods},
            "warmup_s": args.warmup,
            "concurrency": args.concurrency,
            "series": args.series,
            "filler_series": plan.filler,
            "relist": args.relist,
            "settle_s": plan.settle_s,
            "peer_client_qps": args.peer_client_qps,
            "rule": rule_config(),
            "auth": "delegated authn+authz on both; client = front-proxy "
            f"cert + X-Remote-User {REMOTE_USER} groups {list(REMOTE_GROUPS)}",
        },
        "peer": {
            "version": PEER_VERSION,
            "status": peer_status,
            "binary": str(peer_bin) if peer_bin else None,
        },
        "targets": [
            {
                "key": t.key,
                "label": t.label,
                "argv": [str(a) for a in t.proc.argv],
                "ready_s": t.ready_s,
                "failed": t.failed,
                "memory_kib": t.memory,
                "idle_cpu_pct": t.idle_cpu_pct,
                "relist_cpu_s": t.relist_cpu_s,
            }
            for t in targets
        ],
        "results": [r.to_json() for r in results],
        "runs": [r.to_json() for r in runs],
        "table": table,
        "variants_table": variants,
        "peer_default_qps": peer_qps5,
        "notes": plan.notes,
        "curve_table": curve_text,
        "curves": curves_json(results, args.pods, [t.key for t in targets]),
    }
    stem = args.out / f"adapter-{plan.started_at:%Y%m%d-%H%M%S}"
    out = write_json(stem.with_suffix(".json"), doc)
    print(f"results: {out}")
    png = _curve_png(results, targets, args, plan, stem.with_suffix(".png"))
    if png:
        print(f"curve plot: {png}")


def _curve_text(results: list[LoadResult], args: argparse.Namespace) -> str:
    """The pods/* request-cost curve per API version, ours and the peer side by side."""
    versions = [v for v in ("v1beta1", "v1beta2") if any(r.version == v for r in results)]
    return "\n\n".join(
        format_curve(
            results,
            args.pods,
            v,
            title=f"request cost vs pods, pods/*/{METRIC} {v}, {args.concurrency} concurrent "
            "(ratio = ours/peer)",
        )
        for v in versions
    )


def _curve_png(
    results: list[LoadResult], targets: list[Target], args: argparse.Namespace, plan: Plan, path: Path
) -> Path | None:
    """The curve as a PNG next to the JSON; None (with the reason printed) without matplotlib."""
    try:
        return plot_curves(
            results,
            args.pods,
            [(t.key, t.label) for t in targets if not t.failed],
            path,
            title=f"pods/* request cost, {args.concurrency} concurrent, {os.cpu_count()} CPUs, "
            f"load average at start {plan.start_load[0]:.1f}",
        )
    except ImportError as exc:
        print(f"curve plot: skipped ({exc}; install the [harness] extra for matplotlib)")
        return None


def _final_peer_status(targets: list[Target], peer_bin: Path | None, status: str) -> str:
    """A peer that was built but never served reports why it failed instead of "built"."""
    peer_ok = any(t.key == "peer" and not t.failed for t in targets)
    if peer_bin is not None and not peer_ok:
        status = next((f"failed: {t.failed}" for t in targets if t.key == "peer"), status)
    return status


def _tables(
    targets: list[Target], results: list[LoadResult], args: argparse.Namespace
) -> tuple[str, str, str]:
    """(headline table, variant table or "", the peer at upstream's default QPS or "")."""
    rows = _rows(targets, results, args)
    table = format_table(
        rows,
        ours_label="ours",
        peer_label="peer",
        title=f"ours vs prometheus-adapter {PEER_VERSION}  (ratio = ours/peer)",
    )
    variant_rows = _variant_rows(targets, results, args)
    variants = (
        format_table(
            variant_rows,
            ours_label="ours ttl0",
            peer_label="peer",
            title="variant: ours --cache-ttl 0 vs the same peer",
        )
        if variant_rows
        else ""
    )
    peer_qps5 = _peer_qps5_lines(results, args)
    return table, variants, peer_qps5


def _find(results: list[LoadResult], key: str, n: int, version: str) -> LoadResult | None:
    for r in results:
        if r.target == key and r.pods == n and r.version == version:
            return r
    return None


def _load_rows(results: list[LoadResult], ours_key: str, peer_key: str, n: int, version: str) -> list[Row]:
    o, p = _find(results, ours_key, n, version), _find(results, peer_key, n, version)
    if o is None and p is None:
        return []

    def g(r: LoadResult | None, attr: str) -> float | None:
        return None if r is None else float(getattr(r, attr))

    tag = f"N={n} {version}"
    return [
        Row(f"{tag} throughput (req/s)", g(o, "rps"), g(p, "rps"), "higher"),
        Row(f"{tag} p50 latency (ms)", g(o, "p50_ms"), g(p, "p50_ms"), "lower"),
        Row(f"{tag} p99 latency (ms)", g(o, "p99_ms"), g(p, "p99_ms"), "lower"),
        Row(
            f"{tag} adapter CPU (ms/request)",
            g(o, "cpu_ms_per_request"),
            g(p, "cpu_ms_per_request"),
            "lower",
            "{:.2f}",
        ),
        Row(
            f"{tag} kube-apiserver CPU (ms/request)",
            g(o, "apiserver_cpu_ms_per_request"),
            g(p, "apiserver_cpu_ms_per_request"),
            "lower",
            "{:.2f}",
        ),
        Row(f"{tag} errors", g(o, "errors"), g(p, "errors"), "lower", "{:.0f}"),
    ]


def _mib(t: Target | None, when: str, field_: str) -> float | None:
    if t is None or t.failed:
        return None
    v = t.memory.get(when, {}).get(field_)
    return None if v is None else v / 1024.0


def _rows(targets: list[Target], results: list[LoadResult], args: argparse.Namespace) -> list[Row]:
    ours = next((t for t in targets if t.key == "ours"), None)
    peer = next((t for t in targets if t.key == "peer"), None)
    rows: list[Row] = []
    for n in args.pods:
        for v in ("v1beta1", "v1beta2"):
            rows += _load_rows(results, "ours", "peer", n, v)
    s = f"{args.series // 1000}k" if args.series >= 1000 else str(args.series)
    rows += [
        Row(
            f"memory VmRSS after discovery, {s} series (MiB)",
            _mib(ours, "settled", "rss"),
            _mib(peer, "settled", "rss"),
            "lower",
        ),
        Row("memory VmRSS after all load (MiB)", _mib(ours, "end", "rss"), _mib(peer, "end", "rss"), "lower"),
        Row("memory peak VmHWM (MiB)", _mib(ours, "end", "hwm"), _mib(peer, "end", "hwm"), "lower"),
        Row(
            f"CPU per relist of {s} series (s)",
            ours.relist_cpu_s if ours else None,
            peer.relist_cpu_s if peer and not peer.failed else None,
            "lower",
            "{:.2f}",
        ),
        Row(
            f"start to first correct answer, N={args.pods[0]} (s)",
            ours.ready_s if ours else None,
            peer.ready_s if peer else None,
            "lower",
        ),
    ]
    return rows


def _variant_rows(targets: list[Target], results: list[LoadResult], args: argparse.Namespace) -> list[Row]:
    if not any(t.key == "ours-ttl0" for t in targets):
        return []
    rows: list[Row] = []
    for n in args.pods:
        rows += _load_rows(results, "ours-ttl0", "peer", n, "v1beta1")
    return rows


def _peer_qps5_lines(results: list[LoadResult], args: argparse.Namespace) -> str:
    lines = []
    for n in args.pods:
        r = _find(results, "peer-qps5", n, "v1beta1")
        if r is not None:
            lines.append(
                f"  N={n} v1beta1: {r.rps:.1f} req/s, p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms, "
                f"{r.errors} errors"
            )
    if not lines:
        return ""
    head = "peer as upstream deploys it (client-go default 5 QPS / burst 10 for its per-request pod LIST):"
    return "\n".join([head, *lines])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.discovery is not None:
            from bench import discovery_bench

            try:
                return discovery_bench.run(args)
            except discovery_bench.ab.BenchError as exc:  # ab is bench.adapter_bench, not __main__
                raise BenchError(str(exc)) from None
        return run(args)
    except KeyboardInterrupt:
        print("bench: interrupted; everything started was stopped and the temp dir removed", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
