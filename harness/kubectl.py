"""kubectl, the one way the harness runs it: one kubeconfig and context, errors that carry the command.

The cluster under test hands one out (``Cluster.kubectl()``); the install, the load runners, the HPA
vocabulary and the tests all take it. ``$KUBECTL`` picks the binary.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.procs import terminate

__all__ = ["Kubectl", "KubectlError"]


class KubectlError(HarnessError):
    """A kubectl command failed; the message holds the command, its exit code and its stderr's tail."""


@dataclass
class Kubectl:
    """kubectl against one kubeconfig and context; errors carry the command and its stderr."""

    kubeconfig: Path
    #: The kubeconfig's context to use; None uses its current context.
    context: str | None = None
    binary: str = field(default_factory=lambda: os.environ.get("KUBECTL", "kubectl"))

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def argv(self, *args: str) -> list[str]:
        """The full command line for ``kubectl ARGS`` against this kubeconfig and context."""
        return [self.binary, *(("--context", self.context) if self.context else ()), *args]

    def run(self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 120) -> str:
        argv = self.argv(*args)
        proc = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, env=self.env(), timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise KubectlError(
                f"`kubectl {' '.join(args)}` failed ({proc.returncode}): {proc.stderr.strip()[-800:]}"
            )
        return proc.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json"))

    def raw(self, path: str) -> Any:
        return json.loads(self.run("get", "--raw", path))

    @contextlib.contextmanager
    def port_forward(self, namespace: str, target: str, port: int, *, timeout: float = 30) -> Iterator[int]:
        """``kubectl port-forward`` ``target`` (``pod/NAME``) to a free local port; yields that port.

        For talking to one pod directly from this host on any provider: kind's and remote clusters'
        pod IPs are not routable from here (on this VM, traffic to them even meets a TLS proxy).
        """
        argv = self.argv("-n", namespace, "port-forward", "--address=127.0.0.1", target, f":{port}")
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=self.env())
        try:
            assert proc.stdout is not None
            deadline = time.monotonic() + timeout
            seen: list[str] = []
            local = 0
            while not local:
                line = proc.stdout.readline()
                if not line or time.monotonic() > deadline:
                    raise KubectlError(f"`kubectl {' '.join(argv[1:])}` did not forward: "
                                     f"{' '.join(seen)[-400:]}")
                seen.append(line.strip())
                m = re.search(r"Forwarding from 127\.0\.0\.1:(\d+)", line)
                local = int(m.group(1)) if m else 0
            yield local
        finally:
            terminate(proc, timeout=10)
