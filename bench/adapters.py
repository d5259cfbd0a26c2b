"""The two adapters under test as local processes: how each is started, and what it costs.

Both get the same rule file, the same Prometheus, the same control plane, the same serving
certificate and the same auth path: **delegated authentication and authorization on both**. The
load client presents the control plane's front-proxy client certificate with ``X-Remote-User`` /
``X-Remote-Group`` headers, exactly what the kube-aggregator sends; each adapter reads the
requestheader CA and allowed names from ``kube-system/extension-apiserver-authentication`` and
asks the kube-apiserver a SubjectAccessReview (both cache allowed answers for 10 s).

Memory and CPU come from ``/proc/PID/status`` (VmRSS, VmHWM) and ``/proc/PID/stat`` (utime +
stime): what the kernel charges the process, independent of each runtime's own accounting.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "AdapterProcess",
    "CommonArgs",
    "cpu_seconds",
    "memory_kib",
    "ours_argv",
    "peer_argv",
    "rule_config",
]

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def rule_config() -> str:
    """The rule both adapters run: every ``*_total`` counter per pod as a rate.

    ``http_requests_total`` becomes ``http_requests``; the filler counters become
    ``bench_filler_<j>``, so discovery has to index every filler series too (the memory figure).
    """
    return """\
rules:
- seriesQuery: '{__name__=~"^.*_total$",namespace!="",pod!=""}'
  resources:
    overrides:
      namespace: {resource: "namespace"}
      pod: {resource: "pod"}
  name:
    matches: "^(.*)_total$"
    as: "${1}"
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)'
"""


@dataclass(frozen=True)
class CommonArgs:
    """What both adapters are pointed at."""

    config: Path
    prometheus_url: str
    kubeconfig: Path
    tls_cert: Path
    tls_key: Path
    relist: str = "30s"


def ours_argv(c: CommonArgs, port: int, *, cache_ttl: str | None = None) -> list[str]:
    """Our adapter, delegated authn/authz, access log off (the peer logs no requests at --v=0)."""
    argv = [
        sys.executable, "-m", "adapter", "serve",
        "--bind-address", "127.0.0.1", "--secure-port", str(port),
        "--tls-cert-file", str(c.tls_cert), "--tls-private-key-file", str(c.tls_key),
        "--provider", "prometheus", "--config", str(c.config),
        "--prometheus-url", c.prometheus_url,
        "--metrics-relist-interval", c.relist,
        "--kubeconfig", str(c.kubeconfig),
        "--authn-mode", "delegated", "--authz-mode", "delegated",
        "--log-level", "warning",
    ]  # fmt: skip
    if cache_ttl is not None:
        argv += ["--cache-ttl", cache_ttl]
    return argv


def peer_argv(binary: Path, c: CommonArgs, port: int, *, client_qps: float | None = None) -> list[str]:
    """prometheus-adapter with delegated authn/authz against the same control plane.

    ``client_qps=None`` keeps upstream's client-side throttle (client-go's 5 QPS / burst 10, what
    its own deployment manifest runs); the peer LISTs the pods on every request, so that throttle
    caps it near 5 req/s. A number raises QPS and burst, measuring the serving path instead.
    """
    argv = [
        str(binary),
        "--bind-address=127.0.0.1", f"--secure-port={port}",
        f"--tls-cert-file={c.tls_cert}", f"--tls-private-key-file={c.tls_key}",
        f"--config={c.config}",
        f"--prometheus-url={c.prometheus_url}",
        f"--metrics-relist-interval={c.relist}",
        f"--lister-kubeconfig={c.kubeconfig}",
        f"--authentication-kubeconfig={c.kubeconfig}",
        f"--authorization-kubeconfig={c.kubeconfig}",
        "--v=0",
    ]  # fmt: skip
    if client_qps is not None:
        argv += [f"--client-qps={client_qps:g}", f"--client-burst={int(client_qps * 2)}"]
    return argv


def memory_kib(pid: int) -> dict[str, int]:
    """``{"rss": VmRSS, "hwm": VmHWM}`` in KiB ({} when the process is gone)."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out["rss"] = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                out["hwm"] = int(line.split()[1])
    except OSError:
        return {}
    return out


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds ``pid`` has used so far (None when it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name may contain spaces
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime (fields 14, 15)


@dataclass
class AdapterProcess:
    """One adapter subprocess in its own session; stopped (whole group) by :meth:`stop`."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: dict[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> AdapterProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            # Long-running (the adapter under benchmark): a Popen, not procs.run.
            self.proc = subprocess.Popen(
                list(self.argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1", **(self.env or {})},
            )  # fmt: skip
        return self

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.name} was not started")
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the process group we created, SIGKILL it if it lingers."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
