"""This repository's own test rules, on top of hpa-kit's pytest plugin (``harness.pytest_plugin``).

The plugin (installed with the package, entry point ``pytest11``) provides the options
(``--hpa-kit-provider`` ...), the ``cluster``, ``stack``, ``kubectl``, ``kube_api``, ``load`` and
report fixtures, live progress and the disruptive-last ordering. Here: the CI rule on skips and the
bare ``control_plane`` the adapter's integration tests run against.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from harness.pytest_plugin import live_progress, local_skip_reason


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


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """etcd + kube-apiserver on loopback (no node, no root), separate from ``cluster``; starts in seconds.

    Yields a ``harness.cluster.controlplane.ControlPlane``: kubeconfig, server, CA, admin cert,
    front-proxy CA + client cert and the requestheader settings the apiserver runs with.
    """
    from harness.cluster import ClusterError
    from harness.cluster.binaries import CONTROL_PLANE
    from harness.cluster.controlplane import start

    reason = local_skip_reason(list(CONTROL_PLANE), root=False)
    if reason:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("control-plane")
    progress = live_progress("control-plane: ")
    try:
        cp = start(root, progress=progress)
    except ClusterError as exc:
        pytest.fail(f"control plane did not come up:\n{exc}", pytrace=False)
    yield cp
    if os.environ.get("HPA_KIT_KEEP_CLUSTER", "") == "1":
        progress(f"leaving control plane running (kubeconfig {cp.kubeconfig})")
        return
    cp.cluster.delete(progress)
