"""Session fixtures shared by every test layer: the cluster under test and a bare control plane.

Choose the cluster with ``--hpa-kit-provider local|kind|existing`` (alias ``--provider``; env
``HPA_KIT_PROVIDER``; default: kind when Docker answers, else local). ``--hpa-kit-keep-cluster`` (env
``HPA_KIT_KEEP_CLUSTER=1``) leaves the cluster running after the session (a cluster that was already
running before the session is never stopped).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.progress import Progress


def pytest_addoption(parser: pytest.Parser) -> None:
    # Every option is namespaced --hpa-kit-*: pytest-kind-ng (the [kind] extra) registers
    # --cluster-name, --keep-cluster and --kubeconfig itself, and pytest refuses a second option with
    # the same dest. --provider and --existing-kubeconfig stay as aliases: nothing else claims them.
    group = parser.getgroup("hpa-kit")
    group.addoption(
        "--hpa-kit-provider",
        "--provider",
        dest="hpa_kit_provider",
        default=os.environ.get("HPA_KIT_PROVIDER") or None,
        choices=["local", "kind", "existing", "auto"],
        help="cluster provider for e2e tests (env HPA_KIT_PROVIDER; default: best available)",
    )
    group.addoption(
        "--hpa-kit-cluster-name",
        dest="hpa_kit_cluster_name",
        default=os.environ.get("HPA_KIT_CLUSTER_NAME") or os.environ.get("HPA_KIT_CLUSTER") or "hpa-kit",
        help="cluster name (env HPA_KIT_CLUSTER_NAME)",
    )
    group.addoption(
        "--hpa-kit-kubeconfig",
        "--existing-kubeconfig",
        dest="hpa_kit_kubeconfig",
        default=os.environ.get("HPA_KIT_KUBECONFIG") or None,
        help="kubeconfig for --hpa-kit-provider existing (env HPA_KIT_KUBECONFIG, else KUBECONFIG)",
    )
    group.addoption(
        "--hpa-kit-keep-cluster",
        dest="hpa_kit_keep_cluster",
        action="store_true",
        default=os.environ.get("HPA_KIT_KEEP_CLUSTER", "") == "1",
        help="leave the cluster running after the session (env HPA_KIT_KEEP_CLUSTER=1)",
    )


def pytest_configure(config: pytest.Config) -> None:
    global _LIVE
    _LIVE = _LiveStderr(config)
    config.addinivalue_line(
        "markers", "disruptive: restarts or reconfigures the session's cluster (run after all other tests)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run ``disruptive`` tests last, so they cannot break tests that share the session's cluster."""
    items.sort(key=lambda item: item.get_closest_marker("disruptive") is not None)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under ``CI=true`` a skip not in ``tests/allowed_skips.py`` fails the run: a skip is not a pass."""
    if os.environ.get("CI") != "true" or os.environ.get("HPA_KIT_ALLOW_SKIPS") == "1" or exitstatus != 0:
        return
    from tests.allowed_skips import allowed

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    bad = []
    for rep in (reporter.stats.get("skipped", []) if reporter else []):
        message = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        message = message.removeprefix("Skipped: ")
        if allowed(rep.nodeid, message) is None:
            bad.append(f"{rep.nodeid}: {message}")
    if bad:
        if reporter:
            reporter.write_sep("=", "CI: skips not in tests/allowed_skips.py are failures", red=True)
            for line in bad:
                reporter.write_line(f"  {line}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


class _LiveStderr:
    """stderr around pytest's output capture (fd-level capture swallows even ``sys.__stderr__``):
    a cold build or a stack install takes minutes and must show its progress as it happens."""

    def __init__(self, config: pytest.Config) -> None:
        self.capman = config.pluginmanager.getplugin("capturemanager")

    def write(self, text: str) -> int:
        if self.capman is None:
            return sys.stderr.write(text)
        with self.capman.global_and_fixture_disabled():
            n = sys.stderr.write(text)
            sys.stderr.flush()
        return n

    def flush(self) -> None:
        """Each write flushes already."""


_LIVE: _LiveStderr | None = None


def _progress(prefix: str) -> Progress:
    return Progress(stream=_LIVE or sys.__stderr__, prefix=prefix)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def progress_for() -> Callable[[str], Progress]:
    """``progress_for("stack: ")``: a live progress printer for long fixtures (builds, installs)."""
    return _progress


def _skip_reason_local(need: list[str], root: bool) -> str | None:
    from harness.cluster import binaries

    if root and os.geteuid() != 0:
        return "the local provider needs root (it runs containerd and kubelet): run the tests with sudo"
    missing = binaries.missing(need)
    if missing and os.environ.get("HPA_KIT_BUILD", "1") == "0":
        return (
            f"binaries not built ({', '.join(missing)} missing in {binaries.bin_dir()}) and "
            "HPA_KIT_BUILD=0: run scripts/build-binaries.sh"
        )
    return None


@pytest.fixture(scope="session")
def cluster_provider_name(pytestconfig: pytest.Config) -> str:
    from harness.cluster import best_available

    name = pytestconfig.getoption("hpa_kit_provider")
    return best_available() if name in (None, "auto") else str(name)


@pytest.fixture(scope="session")
def cluster(pytestconfig: pytest.Config, cluster_provider_name: str) -> Iterator[object]:
    """The cluster under test, up once per session (a ``harness.cluster.Cluster``)."""
    from harness.cluster import ClusterError, get_provider, provider_class
    from harness.cluster.binaries import CONTROL_PLANE, NODE

    name = cluster_provider_name
    ok, why = provider_class(name).available()
    if not ok:
        pytest.skip(f"{name} provider unavailable: {why}")
    kwargs: dict[str, object] = {}
    if name == "local":
        reason = _skip_reason_local([*CONTROL_PLANE, *NODE], root=True)
        if reason:
            pytest.skip(reason)
    if name == "existing" and pytestconfig.getoption("hpa_kit_kubeconfig"):
        kwargs["kubeconfig"] = pytestconfig.getoption("hpa_kit_kubeconfig")
    c = get_provider(name, cluster_name=pytestconfig.getoption("hpa_kit_cluster_name"), **kwargs)
    progress = _progress(f"{name}: ")
    was_running = c.running()
    try:
        c.create(progress)
    except ClusterError as exc:
        pytest.fail(f"cluster {c.name} ({name}) did not come up:\n{exc}", pytrace=False)
    yield c
    if was_running or pytestconfig.getoption("hpa_kit_keep_cluster"):
        progress(f"leaving cluster {c.name} running (kubeconfig {c.kubeconfig})")
        return
    c.stop(progress)


@pytest.fixture(scope="session")
def kubeconfig(cluster: object) -> Path:
    """Admin kubeconfig of the cluster under test."""
    return cluster.kubeconfig  # type: ignore[attr-defined,no-any-return]


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """etcd + kube-apiserver on loopback (no node, no root), separate from ``cluster``; starts in seconds.

    Yields a ``harness.cluster.controlplane.ControlPlane``: kubeconfig, server, CA, admin cert,
    front-proxy CA + client cert and the requestheader settings the apiserver runs with.
    """
    from harness.cluster import ClusterError
    from harness.cluster.binaries import CONTROL_PLANE
    from harness.cluster.controlplane import start

    reason = _skip_reason_local(list(CONTROL_PLANE), root=False)
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("control-plane")
    progress = _progress("control-plane: ")
    try:
        cp = start(root, progress=progress)
    except ClusterError as exc:
        pytest.fail(f"control plane did not come up:\n{exc}", pytrace=False)
    yield cp
    if os.environ.get("HPA_KIT_KEEP_CLUSTER", "") == "1":
        progress(f"leaving control plane running (kubeconfig {cp.kubeconfig})")
        return
    cp.cluster.delete(progress)
