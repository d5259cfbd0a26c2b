"""Fixtures for the end-to-end scenarios: the installed stack, report folders, API clients.

The stack is installed once per session on the cluster the root conftest provides (``--provider``).
Each scenario gets a report folder under ``reports/<run>/<scenario>/``; when a scenario fails, the
stack's diagnostics (pods, events, APIServices, every container's log) land in it too.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from harness.kubectl import Kubectl
from harness.progress import Progress
from harness.stack import Stack

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def report_root() -> Path:
    root = Path(os.environ.get("HPA_KIT_REPORTS", REPO / "reports")) / time.strftime("e2e-%Y%m%d-%H%M%S")
    root.mkdir(parents=True, exist_ok=True)
    print(f"\ne2e report folder: {root}")
    return root


@pytest.fixture(scope="session")
def stack(
    cluster: object, kubeconfig: Path, report_root: Path, progress_for: Callable[[str], Progress]
) -> Iterator[Stack]:
    # Passing the cluster makes the install build and load every image it runs (operator, Prometheus,
    # config-reloader, adapter, mockmetrics, Locust) where the cluster cannot pull: a fresh cluster
    # holds none of them.
    st = Stack(kubeconfig=kubeconfig, work_dir=report_root / "stack", overlay="test",
               cluster=cluster, progress=progress_for(""))  # type: ignore[arg-type]
    try:
        st.install(timeout=float(os.environ.get("HPA_KIT_STACK_TIMEOUT", "600")))
    except Exception:
        st.diagnostics(report_root / "stack" / "diagnostics")
        raise
    yield st
    # Leave the cluster as the session found it: a later session (or the cluster's own tests, which
    # need the metrics APIService group free) starts clean. HPA_KIT_KEEP_STACK=1 keeps it to debug.
    if os.environ.get("HPA_KIT_KEEP_STACK", "") != "1":
        st.uninstall()


@pytest.fixture(scope="session")
def kube_api(kubeconfig: Path) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(kubeconfig))


@pytest.fixture(scope="session")
def kubectl(kubeconfig: Path) -> Kubectl:
    return Kubectl(kubeconfig)


@pytest.fixture
def scenario_dir(request: pytest.FixtureRequest, report_root: Path) -> Iterator[Path]:
    path = report_root / request.node.name
    path.mkdir(parents=True, exist_ok=True)
    yield path


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    if report.when == "call" and report.failed and "stack" in item.funcargs:
        st: Stack = item.funcargs["stack"]  # type: ignore[assignment]
        out = st.diagnostics(Path(item.funcargs.get("scenario_dir", st.work_dir)) / "diagnostics")  # type: ignore[arg-type]
        report.sections.append(("hpa-kit diagnostics", f"component state and logs dumped to {out}"))
    return report
