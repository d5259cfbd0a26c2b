"""Run mockmetrics as a real local process (integration tests, benchmarks, the load smoke test).

The process binds 127.0.0.1 on a free port (``--port 0``); the port is read from its start-up line
(``mockmetrics listening on http://HOST:PORT``), so parallel runs never collide.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx

from harness import procs
from harness.waits import Unresolvable, wait_for

_LISTENING = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")


class MockMetricsProcess:
    """``with MockMetricsProcess(log_path, "--workers", "2") as mm: httpx.get(mm.url + "/")``."""

    def __init__(self, log_path: Path, *flags: str, start_timeout: float = 30.0) -> None:
        self.log_path = log_path
        self.flags = flags
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> MockMetricsProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOCKMETRICS_")}
        env["PYTHONUNBUFFERED"] = "1"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            # Long-running (a server the tests talk to): a Popen, not procs.run.
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mockmetrics", "--host", "127.0.0.1", "--port", "0", *self.flags],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        def ready() -> tuple[bool, str]:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise Unresolvable(f"mockmetrics exited with {self.proc.returncode} during start")
            if not self.url and (m := _LISTENING.search(self.log())):
                self.url = m.group(1)
            if not self.url:
                return False, "no 'listening' line in its log yet"
            status = httpx.get(f"{self.url}/readyz", timeout=2).status_code
            return status == 200, f"/readyz: HTTP {status}"

        def error(_kind: str, msg: str) -> RuntimeError:
            self.stop()
            return RuntimeError(f"{msg}; log {self.log_path}:\n{self.log()}")

        wait_for("mockmetrics ready", ready, timeout=self.start_timeout, interval=0.05, progress=None,
                 error=error)  # fmt: skip
        return self

    def stop(self) -> None:
        if self.proc is not None:
            procs.terminate(self.proc)

    def __enter__(self) -> MockMetricsProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
