"""Synthetic exporter for the adapter benchmark: one counter per pod, plus static filler series.

Two listeners, because they need different scrape intervals:

* ``pods``: ``http_requests_total{namespace="bench",pod="bench-<i>"}`` for every pod, increasing
  at ``1 + i % 10`` per second so ``rate()`` is non-zero and differs per pod (scraped every 1-2 s);
* ``filler``: ``bench_filler_<j>_total{namespace="bench",pod=...,idx=...}`` constant counters that
  only exist so the adapters' series discovery has ``--series`` series to index (the memory
  figure). Rendered once; scraped slowly, since the values never change.
  With ``--mix``, the filler is :func:`mix_text` instead: cluster-like ``container_*`` series over
  many pods and namespaces (the discovery benchmark).
* ``kubelet`` (only with ``--kubelet SPEC.json``): what a kubelet's ``/metrics/resource`` says for
  the pods and nodes the spec lists (see :func:`kubelet_text`), for the metrics.k8s.io differential
  (``bench.resource_diff``).

Run as ``python -m bench.exporter --pods 1000 --filler 99000``; it prints one line
``bench-exporter pods=http://127.0.0.1:P filler=http://127.0.0.1:Q`` once both listen.
Only the standard library, so its cost stays out of the measured processes' way.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["filler_text", "kubelet_text", "mix_text", "pod_name", "pods_text", "sample_line"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
NAMESPACE = "bench"
POD_METRIC = "http_requests_total"
FILLER_PREFIX = "bench_filler_"


def pod_name(i: int) -> str:
    return f"bench-{i}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def sample_line(metric: str, labels: Iterable[tuple[str, str]], value: float) -> str:
    """One exposition-format sample line (labels in the given order, values escaped)."""
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
    # Every digit: ``:g`` keeps 6, too few for a counter or a byte count.
    if not math.isfinite(value):
        text = f"{value:g}"
    else:
        text = str(int(value)) if value == int(value) else repr(value)
    return f"{metric}{{{body}}} {text}" if body else f"{metric} {text}"


def pods_text(n_pods: int, elapsed_s: float, namespace: str = NAMESPACE) -> str:
    """The pods listener's exposition at ``elapsed_s`` seconds after start."""
    lines = [f"# HELP {POD_METRIC} Synthetic requests per pod.", f"# TYPE {POD_METRIC} counter"]
    for i in range(n_pods):
        value = float(int((1 + i % 10) * elapsed_s))
        lines.append(sample_line(POD_METRIC, (("namespace", namespace), ("pod", pod_name(i))), value))
    return "\n".join(lines) + "\n"


def filler_text(total: int, n_pods: int, n_metrics: int = 50, namespace: str = NAMESPACE) -> str:
    """``total`` filler series spread over ``n_metrics`` metric names and ``n_pods`` pods.

    Every series is unique by its ``idx`` label; metric names are grouped (all samples of one
    name together, each with its TYPE line), as the exposition format requires.
    """
    if total < 0 or n_pods < 1 or n_metrics < 1:
        raise ValueError("filler needs total >= 0, n_pods >= 1 and n_metrics >= 1")
    n_metrics = min(n_metrics, total) or 1
    by_metric: list[list[str]] = [[] for _ in range(n_metrics)]
    for idx in range(total):
        j = idx % n_metrics
        metric = f"{FILLER_PREFIX}{j}_total"
        labels = (("namespace", namespace), ("pod", pod_name(idx % n_pods)), ("idx", str(idx)))
        by_metric[j].append(sample_line(metric, labels, float(idx % 1000)))
    out: list[str] = []
    for j, samples in enumerate(by_metric):
        if samples:
            out.append(f"# TYPE {FILLER_PREFIX}{j}_total counter")
            out.extend(samples)
    return ("\n".join(out) + "\n") if out else ""


MIX_PREFIX = "container_"


def mix_text(total: int, n_metrics: int = 200, n_namespaces: int = 8, containers: int = 2) -> str:
    """``total`` series shaped like a cluster's container metrics (the discovery benchmark).

    ``n_metrics`` names ``container_<kind>_<j>`` (counters end in ``_total``, a quarter carry an
    extra ``device`` label), each over the same pods x ``containers`` containers; pods ``app-<p>``
    spread over ``n_namespaces`` namespaces ``team-<k>``. Series are unique by their natural
    labels (no synthetic id): the pod count grows with ``total`` (total / (n_metrics x containers)).
    """
    if total < 0 or n_metrics < 1 or n_namespaces < 1 or containers < 1:
        raise ValueError("mix needs total >= 0, n_metrics, n_namespaces and containers >= 1")
    n_metrics = min(n_metrics, total) or 1
    per_metric = -(-total // n_metrics)
    out: list[str] = []
    made = 0
    for j in range(n_metrics):
        counter = j % 2 == 0
        metric = f"{MIX_PREFIX}{'fs_reads' if j % 4 == 0 else 'cpu' if counter else 'memory'}_{j}"
        metric += "_total" if counter else "_bytes"
        out.append(f"# TYPE {metric} {'counter' if counter else 'gauge'}")
        for i in range(min(per_metric, total - made)):
            pod, c = divmod(i, containers)
            labels = [
                ("namespace", f"team-{pod % n_namespaces}"),
                ("pod", f"app-{pod}"),
                ("container", f"c{c}"),
            ]
            if j % 4 == 0:
                labels.append(("device", "/dev/vda"))
            out.append(sample_line(metric, labels, float(i % 1000)))
        made += min(per_metric, total - made)
    return ("\n".join(out) + "\n") if made else ""


KUBELET_CPU = "container_cpu_usage_seconds_total"
KUBELET_MEMORY = "container_memory_working_set_bytes"
NODE_CPU = "node_cpu_usage_seconds_total"
NODE_MEMORY = "node_memory_working_set_bytes"


def kubelet_text(spec: dict[str, Any], elapsed_s: float) -> str:
    """Kubelet-like resource series at ``elapsed_s`` seconds after start.

    ``spec`` is ``{"pods": [{"namespace", "pod", "containers": {name: {"cpu": cores,
    "memory": bytes}}}], "nodes": {name: {"cpu": cores, "memory": bytes}}}``. CPU is a counter
    growing at ``cpu`` cores (so ``rate()`` gives ``cpu`` back), memory a constant gauge. A key left
    out of a container's or node's entry means that series is absent: how the differential makes
    a container with CPU but no memory, or a node without data.
    """
    families: dict[str, tuple[str, list[str]]] = {
        KUBELET_CPU: ("counter", []),
        KUBELET_MEMORY: ("gauge", []),
        NODE_CPU: ("counter", []),
        NODE_MEMORY: ("gauge", []),
    }
    for pod in spec.get("pods", []):
        for container, usage in sorted(pod.get("containers", {}).items()):
            labels = (("namespace", pod["namespace"]), ("pod", pod["pod"]), ("container", container))
            if "cpu" in usage:
                families[KUBELET_CPU][1].append(
                    sample_line(KUBELET_CPU, labels, float(usage["cpu"]) * elapsed_s)
                )
            if "memory" in usage:
                families[KUBELET_MEMORY][1].append(
                    sample_line(KUBELET_MEMORY, labels, float(usage["memory"]))
                )
    for node, usage in sorted(spec.get("nodes", {}).items()):
        if "cpu" in usage:
            families[NODE_CPU][1].append(
                sample_line(NODE_CPU, (("node", node),), float(usage["cpu"]) * elapsed_s)
            )
        if "memory" in usage:
            families[NODE_MEMORY][1].append(
                sample_line(NODE_MEMORY, (("node", node),), float(usage["memory"]))
            )
    out: list[str] = []
    for metric, (kind, samples) in families.items():
        if samples:
            out.append(f"# TYPE {metric} {kind}")
            out.extend(samples)
    return ("\n".join(out) + "\n") if out else ""


def _handler(render: Callable[[], bytes]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            body = render()
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # a scrape per second would drown the log

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.exporter", description=__doc__.split("\n")[0])
    parser.add_argument("--pods", type=int, required=True, help="number of pods with http_requests_total")
    parser.add_argument("--filler", type=int, default=0, help="number of static filler series")
    parser.add_argument("--filler-metrics", type=int, default=50, help="distinct filler metric names")
    parser.add_argument(
        "--mix",
        action="store_true",
        help="filler as cluster-like container_* series over pods and namespaces (mix_text)",
    )
    parser.add_argument(
        "--kubelet", default=None, help="JSON spec of kubelet-like resource series (kubelet_text)"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--namespace", default=NAMESPACE, help=f"the pods' namespace label (default {NAMESPACE})"
    )
    args = parser.parse_args(argv)
    if args.pods < 1:
        parser.error("--pods must be >= 1")

    start = time.monotonic()
    if not args.filler:
        filler = b""
    elif args.mix:
        filler = mix_text(args.filler, args.filler_metrics).encode()
    else:
        filler = filler_text(args.filler, args.pods, args.filler_metrics).encode()
    pods_server = ThreadingHTTPServer(
        (args.host, 0),
        _handler(lambda: pods_text(args.pods, time.monotonic() - start, args.namespace).encode()),
    )
    filler_server = ThreadingHTTPServer((args.host, 0), _handler(lambda: filler))
    servers = [pods_server, filler_server]
    kubelet_note = ""
    if args.kubelet:
        with open(args.kubelet) as f:
            spec = json.load(f)
        kubelet_server = ThreadingHTTPServer(
            (args.host, 0), _handler(lambda: kubelet_text(spec, time.monotonic() - start).encode())
        )
        servers.append(kubelet_server)
        kubelet_note = f" kubelet=http://{args.host}:{kubelet_server.server_address[1]}"
    for server in servers:
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print(
        f"bench-exporter pods=http://{args.host}:{pods_server.server_address[1]} "
        f"filler=http://{args.host}:{filler_server.server_address[1]} "
        f"filler_bytes={len(filler)}{kubelet_note}",
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
