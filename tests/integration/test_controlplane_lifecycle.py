"""Supervision behaviour of the local provider, shown on a throwaway control plane (no root needed)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import procs
from harness.cluster.binaries import CONTROL_PLANE, missing
from harness.cluster.local import LocalCluster
from harness.cluster.settings import LocalSettings

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        bool(missing(list(CONTROL_PLANE))),
        reason="etcd/kube-apiserver not built: run scripts/build-binaries.sh",
    ),
]


@pytest.fixture()
def cp(tmp_path: Path) -> Iterator[LocalCluster]:
    c = LocalCluster(LocalSettings(name="cp-life", state_root=tmp_path, with_node=False, build=False))
    yield c
    c.delete(lambda _m: None)
    assert not c.state_dir.exists()


def test_second_up_is_a_noop_that_reports_state(cp: LocalCluster) -> None:
    cp.create(lambda _m: None)
    pids = {c: procs.load_record(cp.pid_dir, c).pid for c in cp.components()}  # type: ignore[union-attr]
    lines: list[str] = []
    info = cp.create(lines.append)
    assert info.running
    assert any("already running" in line for line in lines), lines
    assert {c: procs.load_record(cp.pid_dir, c).pid for c in cp.components()} == pids  # type: ignore[union-attr]


def test_crashed_component_is_reported_and_restarted_once(cp: LocalCluster) -> None:
    cp.create(lambda _m: None)
    rec = procs.load_record(cp.pid_dir, "kube-apiserver")
    assert rec is not None
    os.kill(rec.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while procs.alive(rec) and time.monotonic() < deadline:
        time.sleep(0.1)
    states = {c.name: c.state for c in cp.info().components}
    assert states == {"etcd": "running", "kube-apiserver": "crashed"}
    lines: list[str] = []
    info = cp.create(lines.append)
    assert info.running
    warning = [line for line in lines if line.startswith("WARNING: kube-apiserver")]
    assert warning and "restarting it once" in warning[0], lines
    assert procs.load_record(cp.pid_dir, "kube-apiserver").pid != rec.pid  # type: ignore[union-attr]


def test_component_that_cannot_start_fails_with_name_and_log_tail(cp: LocalCluster) -> None:
    cp.state_dir.mkdir(parents=True)
    (cp.state_dir / "etcd").write_text("x\n")  # a file where etcd wants its data dir
    with pytest.raises(procs.ComponentError) as err:
        cp.create(lambda _m: None)
    assert err.value.component == "etcd"
    text = str(err.value)
    assert text.startswith("etcd: exited before it was ready")
    assert "last 30 lines of" in text and "etcd.log" in text
    assert "not a directory" in text  # etcd's own error, from the log tail


def test_down_keeps_state_and_up_is_warm(cp: LocalCluster) -> None:
    cp.create(lambda _m: None)
    ca = (cp.state_dir / "pki" / "ca.pem").read_bytes()
    kubeconfig = cp.kubeconfig.read_bytes()
    cp.stop(lambda _m: None)
    assert not cp.running()
    assert all(c.state == "stopped" for c in cp.info().components)
    cp.create(lambda _m: None)
    assert cp.running()
    assert (cp.state_dir / "pki" / "ca.pem").read_bytes() == ca, "warm up must keep the PKI"
    assert cp.kubeconfig.read_bytes() == kubeconfig, "kubeconfigs handed out earlier keep working"
