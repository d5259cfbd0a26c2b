"""What the local provider's readiness probes answer for what the API (and CoreDNS) tell them.

Written before the probes moved out of ``LocalCluster``; the answers are the ones it gave then.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cluster import probes
from harness.cluster.local import LocalCluster
from harness.cluster.settings import LocalSettings

STARTED = 1_800_000_000.0  # the kubelet's start (epoch seconds) in its pid record


class FakeApi:
    """``ApiClient.get_text`` answering one path; anything else is a 404."""

    def __init__(self, path: str, status: int, doc: object = None) -> None:
        self.path, self.status, self.doc = path, status, doc
        self.asked: list[str] = []

    def get_text(self, path: str) -> tuple[int, str]:
        self.asked.append(path)
        if path != self.path:
            return 404, "not found"
        return self.status, json.dumps(self.doc) if self.doc is not None else "oops"


def _cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, api: FakeApi, kubelet: bool = True
) -> LocalCluster:
    c = LocalCluster(LocalSettings(name="probe", state_root=tmp_path))
    monkeypatch.setattr(c, "api", lambda timeout=5.0: api)
    if kubelet:
        c.pid_dir.mkdir(parents=True)
        rec = {"name": "kubelet", "pid": 1, "start_ticks": 1, "argv": [], "log": "", "started_at": STARTED}
        (c.pid_dir / "kubelet.json").write_text(json.dumps(rec))
    return c


def _node(*conditions: dict[str, str]) -> dict[str, object]:
    return {"status": {"conditions": list(conditions)}}


def _stamp(offset: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(STARTED + offset, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


NODE_PATH = "/api/v1/nodes/probe"


@pytest.mark.parametrize(
    ("status", "doc", "kubelet", "expected"),
    [
        (404, None, True, "node not registered yet"),
        (500, None, True, "HTTP 500"),
        (200, _node({"type": "MemoryPressure", "status": "False"}), True, "no Ready condition yet"),
        (
            200,
            _node({"type": "Ready", "status": "False", "message": "PLEG is not healthy"}),
            True,
            "Ready=False: PLEG is not healthy",
        ),
        (
            200,
            _node({"type": "Ready", "status": "True", "lastHeartbeatTime": _stamp(-60)}),
            True,
            "Ready=True is stale (posted before this kubelet started)",
        ),
        (
            200,
            _node({"type": "Ready", "status": "True", "lastHeartbeatTime": "yesterday"}),
            True,
            "Ready=True is stale (posted before this kubelet started)",
        ),
        (200, _node({"type": "Ready", "status": "True", "lastHeartbeatTime": _stamp(5)}), True, True),
        # no pid record (status from another process): a Ready=True cannot be judged stale
        (200, _node({"type": "Ready", "status": "True", "lastHeartbeatTime": _stamp(-60)}), False, True),
    ],
)
def test_node_ready(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    doc: object,
    kubelet: bool,
    expected: bool | str,
) -> None:
    c = _cluster(tmp_path, monkeypatch, FakeApi(NODE_PATH, status, doc), kubelet=kubelet)
    got = c._node_ready()
    assert got[0] if expected is True else got == (False, expected)


DEPLOY_PATH = "/apis/apps/v1/namespaces/kube-system/deployments/coredns"
READY = {"status": {"readyReplicas": 1}}


def test_coredns_not_ready_from_the_deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dns(*args: object, **kwargs: object) -> list[str]:
        raise AssertionError("DNS asked although the deployment is not ready")

    monkeypatch.setattr(probes, "query_a", no_dns)
    c = _cluster(tmp_path, monkeypatch, FakeApi(DEPLOY_PATH, 503))
    assert c._coredns_ready() == (False, "deployment: HTTP 503")
    c = _cluster(tmp_path / "b", monkeypatch, FakeApi(DEPLOY_PATH, 200, {"status": {"conditions": []}}))
    assert c._coredns_ready() == (False, "readyReplicas=0 conditions=[]")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (["10.96.0.1"], True),
        (["10.96.0.2"], "kubernetes.default.svc.cluster.local resolved to ['10.96.0.2'], expected 10.96.0.1"),
        (
            OSError("timed out"),
            "10.96.0.10 does not resolve kubernetes.default.svc.cluster.local yet: timed out",
        ),
    ],
)
def test_coredns_ready_asks_coredns_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answer: object, expected: bool | str
) -> None:
    asked: list[tuple[str, str, float]] = []

    def query_a(server: str, name: str, *, timeout: float) -> list[str]:
        asked.append((server, name, timeout))
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    monkeypatch.setattr(probes, "query_a", query_a)
    c = _cluster(tmp_path, monkeypatch, FakeApi(DEPLOY_PATH, 200, READY))
    got = c._coredns_ready()
    assert got[0] if expected is True else got == (False, expected)
    assert asked == [("10.96.0.10", "kubernetes.default.svc.cluster.local", 1.0)]
