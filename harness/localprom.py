"""A real Prometheus on loopback for tests: static targets that look like Kubernetes pods.

Integration tests of the adapter need Prometheus' real series/query semantics (staleness, rate,
label matching, POST forms), so this runs the actual binary (Debian's ``/usr/bin/prometheus``)
on a free 127.0.0.1 port with a throw-away TSDB. Each target can carry static labels such as
``namespace``/``pod``/``service``, which is what Kubernetes service discovery would attach.

Every wait has a timeout and failures include the tail of Prometheus' log file.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.errors import HarnessError
from harness.waits import Unresolvable, wait_for

DEFAULT_BINARY = "/usr/bin/prometheus"


class LocalPrometheusError(HarnessError):
    pass


@dataclass(frozen=True)
class Target:
    """One scrape target (``host:port``) with the labels Prometheus should attach to its series."""

    address: str
    labels: Mapping[str, str] = field(default_factory=dict)
    job: str = "mock"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_target(t: str | Target) -> Target:
    return t if isinstance(t, Target) else Target(t)


class LocalPrometheus:
    """Start/stop a Prometheus scraping ``targets``; usable as a (sync) context manager."""

    def __init__(
        self,
        targets: Sequence[str | Target] = (),
        *,
        scrape_interval: str = "1s",
        data_dir: Path | None = None,
        port: int | None = None,
        binary: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.targets = [_as_target(t) for t in targets]
        self.scrape_interval = scrape_interval
        self._own_dir = data_dir is None
        self.base_dir = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="localprom-"))
        self.port = port or _free_port()
        self.binary = binary or shutil.which("prometheus") or DEFAULT_BINARY
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.base_dir / "prometheus.log"
        self.config_path = self.base_dir / "prometheus.yml"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- config ---------------------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        jobs: dict[str, list[dict[str, Any]]] = {}
        for t in self.targets:
            jobs.setdefault(t.job, []).append({"targets": [t.address], "labels": dict(t.labels)})
        return {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval},
            "scrape_configs": [
                {
                    "job_name": job,
                    "scrape_interval": self.scrape_interval,
                    "scrape_timeout": self.scrape_interval,
                    "static_configs": static,
                }
                for job, static in jobs.items()
            ],
        }

    def _write_config(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self._config(), sort_keys=False))

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> LocalPrometheus:
        if self.proc is not None and self.proc.poll() is None:
            return self
        if not Path(self.binary).exists():
            raise LocalPrometheusError(
                f"prometheus binary not found at {self.binary}; apt-get install prometheus"
            )
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        argv = [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.base_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=1h",
            "--log.level=info",
            *self.extra_args,
        ]
        log = self.log_path.open("ab")
        try:
            # Long-running (a server the tests talk to): a Popen, not procs.run.
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        finally:
            log.close()
        self.wait_ready(timeout)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (then SIGKILL) our own process; keeps the data dir for a restart."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def kill(self) -> None:
        """SIGKILL: simulate a crash."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)

    def restart(self, timeout: float = 30.0) -> None:
        """Start again on the same port and data dir (e.g. after :meth:`kill`)."""
        self.stop()
        # The TSDB lock of a killed process is released with its fds; the port may linger briefly.
        def port_free() -> tuple[bool, str]:
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", self.port))
            return True, f"port {self.port} free"

        wait_for(f"port {self.port} to be free", port_free, timeout=10, interval=0.1, progress=None,
                 error=lambda _k, msg: self._fail(msg))  # fmt: skip
        self.start(timeout)

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> LocalPrometheus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # --- diagnostics ----------------------------------------------------------------------------

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _fail(self, problem: str) -> LocalPrometheusError:
        return LocalPrometheusError(
            f"local prometheus at {self.url}: {problem}\n--- log tail ({self.log_path}) ---\n"
            f"{self.log_tail()}"
        )

    # --- HTTP helpers (sync, stdlib: usable from any test without an event loop) ------------------

    def _get(self, path: str, params: Mapping[str, str] | None = None, timeout: float = 5.0) -> Any:
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read())

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> tuple[bool, str]:
            if self.proc is not None and self.proc.poll() is not None:
                raise Unresolvable(f"exited with code {self.proc.returncode} during start-up")
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as resp:
                return resp.status == 200, f"/-/ready: HTTP {resp.status}"

        wait_for("ready", ready, timeout=timeout, interval=0.1, progress=None,
                 error=lambda _k, msg: self._fail(msg))  # fmt: skip

    def reload(self, targets: Sequence[str | Target] | None = None, timeout: float = 10.0) -> None:
        """Rewrite the scrape config (optionally with new targets) and POST /-/reload."""
        if targets is not None:
            self.targets = [_as_target(t) for t in targets]
        self._write_config()
        req = urllib.request.Request(self.url + "/-/reload", method="POST")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                if resp.status != 200:
                    raise self._fail(f"reload answered HTTP {resp.status}")
        except urllib.error.URLError as err:
            raise self._fail(f"reload failed: {err}") from None

    def query(self, promql: str) -> list[dict[str, Any]]:
        doc = self._get("/api/v1/query", {"query": promql})
        return (
            list(doc["data"]["result"]) if doc["data"]["resultType"] == "vector" else [doc["data"]["result"]]
        )

    def wait_for_series(self, query: str, timeout: float = 30.0, *, count: int = 1) -> list[dict[str, Any]]:
        """Wait until instant ``query`` returns at least ``count`` samples; returns them."""
        result: list[dict[str, Any]] = []

        def enough() -> tuple[bool, str]:
            nonlocal result
            result = self.query(query)
            return len(result) >= count, f"{len(result)} sample(s): {result!r}"[:300]

        wait_for(f"query {query!r} to return {count} sample(s)", enough, timeout=timeout, interval=0.2,
                 progress=None, error=lambda _k, msg: self._fail(msg))  # fmt: skip
        return result

    def targets_health(self) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/targets")["data"]["activeTargets"])

    def wait_for_targets_up(self, timeout: float = 30.0) -> None:
        """Wait until every configured target has been scraped successfully."""

        def up() -> tuple[bool, str]:
            health = self.targets_health()
            summary = ", ".join(
                f"{t.get('scrapeUrl')}={t.get('health')} {t.get('lastError', '')}" for t in health
            )
            done = len(health) >= len(self.targets) and all(t.get("health") == "up" for t in health)
            return done, summary or "none discovered"

        wait_for("targets all up", up, timeout=timeout, interval=0.2, progress=None,
                 error=lambda _k, msg: self._fail(msg))  # fmt: skip
