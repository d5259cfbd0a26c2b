"""``hpa-kit install`` / ``uninstall``: the one-step install a person copying the kit runs.

The real CLI as a subprocess against the session's cluster: uninstall the session's stack (every
APIService and namespace gone), install it again from scratch into a fresh work dir, then read what
the HPA controller reads: APIServices Available and a metric through the aggregator, one item per
running pod, equal to Prometheus' own value. Disruptive (it removes the stack other tests share):
it runs after them and leaves the stack installed and ready.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness import hpa
from harness.kubectl import Kubectl
from harness.stack import ADAPTER_NS, DEMO_NS, MONITORING_NS, RATE_WINDOW, Stack
from harness.waits import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.disruptive, pytest.mark.timeout(1500)]


def _cli(cluster: Any, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("hpa-kit")
    target = ["--provider", cluster.provider, "--name", cluster.name]
    if cluster.provider == "existing":
        target = ["--provider", "existing", "--kubeconfig", str(cluster.kubeconfig)]
        target += ["--context", cluster.context] if cluster.context else []
    proc = subprocess.run([str(exe), *args, *target], capture_output=True, text=True, timeout=timeout)
    print(proc.stderr[-3000:])
    return proc


def test_install_and_uninstall_in_one_step_each(
    cluster: Any, stack: Stack, kubectl: Kubectl, tmp_path: Path
) -> None:
    t0 = time.monotonic()
    # No --work-dir: the CLI's default place is where the session's stack rendered its build too
    # (the per-cluster state dir, beside the certificates).
    assert stack.build_dir.is_dir()
    gone = _cli(cluster, "uninstall", "--overlay", stack.overlay)
    assert gone.returncode == 0, gone.stderr[-2000:]
    uninstall_s = time.monotonic() - t0
    left = kubectl.run("get", "apiservice", "-o", "name").split()
    assert not [a for a in left if a.removeprefix("apiservice.apiregistration.k8s.io/") in stack.apiservices]
    namespaces = kubectl.run("get", "namespace", "-o", "name").split()
    assert not {f"namespace/{ns}" for ns in (ADAPTER_NS, MONITORING_NS, DEMO_NS)} & set(namespaces)

    nothing = _cli(cluster, "uninstall", "--overlay", "default", "--work-dir", str(tmp_path / "never"))
    assert nothing.returncode == 1 and "nothing to uninstall" in nothing.stderr

    t1 = time.monotonic()
    done = _cli(cluster, "install", "--overlay", stack.overlay, "--work-dir", str(tmp_path / "stack"))
    install_s = time.monotonic() - t1
    assert done.returncode == 0, done.stderr[-3000:]
    assert "stack installed and serving metrics" in done.stderr
    for name in stack.apiservices:
        cond = {c["type"]: c for c in kubectl.get("apiservice", name)["status"]["conditions"]}
        assert cond["Available"]["status"] == "True", f"{name}: {cond['Available']}"

    # A metric through the aggregator: one item per running pod of `requests`, equal to Prometheus.
    spec, _ = hpa.hpa_spec_status(kubectl, DEMO_NS, "requests")
    running = kubectl.get("pods", namespace=DEMO_NS, selector="hpa-kit/scenario=requests",
                          fields="status.phase=Running")["items"]  # fmt: skip
    direct = (f'avg(sum by (pod) (rate(http_requests_total{{namespace="{DEMO_NS}",service="requests",'
              f'path="/"}}[{RATE_WINDOW}])))')  # fmt: skip

    def served() -> tuple[bool, str]:
        try:
            value, items = hpa.served_value(kubectl, DEMO_NS, spec)
        except Exception as exc:  # the adapter's first relist may not have seen the new pods yet
            return False, str(exc)[:200]
        return items == len(running), f"{items} item(s) for {len(running)} running pod(s), value {value}"

    wait_for("pods/*/http_requests served through the aggregator", served, timeout=120, interval=3)
    value, _ = hpa.served_value(kubectl, DEMO_NS, spec)
    assert value == pytest.approx(stack.promql(direct), abs=0.05)
    print(f"uninstall {uninstall_s:.0f}s, install {install_s:.0f}s")
