"""What the stack install runs, loads and waits on: images from the rendered objects, fail-fast pods.

Fakes: the cluster (a recorder of load_images) and, where a test proves nothing is applied, kubectl.
render() and cfssl are real.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import images, manifests, podstate
from harness.stack import Stack, StackError
from harness.waits import Unresolvable, wait_for

REPO = Path(__file__).resolve().parents[2]


class FakeCluster:
    provider = "fake"
    context = None

    def __init__(self, pulls_images: bool) -> None:
        self.pulls_images = pulls_images
        self.loaded: list[list[str]] = []

    def load_images(self, names: list[str], progress: Any = print) -> None:
        self.loaded.append(list(names))


class NoKubectl:
    """Any kubectl call fails the test: the install must stop before touching the cluster."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"kubectl.{name} called: something was applied or read from the cluster")


# --------------------------------------------------------------------------------- required images


def test_the_test_overlay_needs_exactly_these_images_and_the_kit_builds_them_all() -> None:
    # Independent source: the pins in scripts/versions.env and the kit's version in pyproject.toml.
    pins, kit = images.read_versions(), images.kit_version()
    po, prom = pins["PROM_OPERATOR_VERSION"], pins["PROMETHEUS_VERSION"]
    want = {
        f"quay.io/prometheus-operator/prometheus-operator:{po}",
        f"quay.io/prometheus-operator/prometheus-config-reloader:{po}",
        f"quay.io/prometheus/prometheus:{prom}",
        f"hpa-kit/adapter:{kit}",
        f"hpa-kit/mockmetrics:{kit}",
        f"hpa-kit/locust:{kit}",
    }
    required = manifests.required_images(manifests.build("test"))
    assert set(required) == want
    assert images.unbuildable(required) == []
    assert "Prometheus monitoring/hpa-kit (run by the Prometheus Operator)" in required[
        f"quay.io/prometheus/prometheus:{prom}"
    ]


def test_required_images_reads_every_pod_template_and_what_the_operator_runs() -> None:
    docs = yaml.safe_load_all("""
kind: CronJob
metadata: {name: cj, namespace: a}
spec: {jobTemplate: {spec: {template: {spec: {containers: [{name: c, image: "cron:1"}]}}}}}
---
kind: StatefulSet
metadata: {name: ss, namespace: a}
spec:
  template:
    spec: {initContainers: [{name: init, image: "init:1"}], containers: [{name: m, image: "main:1"}]}
---
kind: Deployment
metadata: {name: op, namespace: mon}
spec: {template: {spec: {containers: [{name: o, image: "example.org/po/prometheus-operator:v9.9.9"}]}}}
---
apiVersion: monitoring.coreos.com/v1
kind: Prometheus
metadata: {name: p, namespace: mon}
spec: {version: v3.0.0}
---
kind: Service
metadata: {name: s}
spec: {ports: [{port: 80}]}
""")
    got = manifests.required_images([d for d in docs if d])
    assert set(got) == {
        "cron:1", "init:1", "main:1",
        "example.org/po/prometheus-operator:v9.9.9",
        "example.org/po/prometheus-config-reloader:v9.9.9",  # the operator's derived default
        "quay.io/prometheus/prometheus:v3.0.0",  # version only: the operator's default base
    }
    assert got["init:1"] == ["StatefulSet a/ss container init"]


# ------------------------------------------------------------------------------- loading, pre-apply


def _overlay(tmp_path: Path, image: str) -> Path:
    d = tmp_path / "overlay"
    d.mkdir()
    (d / "kustomization.yaml").write_text("resources: [app.yaml]\n")
    (d / "app.yaml").write_text(yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app", "namespace": "demo"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
            "metadata": {"labels": {"a": "b"}},
            "spec": {"containers": [{"name": "web", "image": image}]}}},
    }))  # fmt: skip
    return d


def _stack(tmp_path: Path, overlay: Path, cluster: FakeCluster, **kw: Any) -> Stack:
    st = Stack(kubeconfig=tmp_path / "kubeconfig", work_dir=tmp_path / "work", overlay=str(overlay),
               progress=lambda _: None, certs_override=tmp_path / "certs", cluster=cluster, **kw)  # type: ignore[arg-type]
    st.kubectl = NoKubectl()  # type: ignore[assignment]
    return st


def test_an_image_the_kit_cannot_build_stops_the_install_before_anything_is_applied(tmp_path: Path) -> None:
    cluster = FakeCluster(pulls_images=False)
    st = _stack(tmp_path, _overlay(tmp_path, "example.org/team/web:1.2"), cluster)
    t0 = time.monotonic()
    with pytest.raises(StackError) as err:
        st.install(timeout=600)
    text = str(err.value)
    assert "example.org/team/web:1.2" in text and "Deployment demo/app container web" in text
    assert "Nothing was applied" in text and "hpa-kit load-images" in text
    assert cluster.loaded == []
    assert time.monotonic() - t0 < 30


def test_preloaded_images_are_taken_as_present(tmp_path: Path) -> None:
    cluster = FakeCluster(pulls_images=False)
    st = _stack(tmp_path, _overlay(tmp_path, "example.org/team/web:1.2"), cluster,
                preloaded=("example.org/team/web:1.2",))  # fmt: skip
    objs = manifests.load_objects(manifests.kustomize(tmp_path / "overlay"))
    assert st.load_images(objs) == ["example.org/team/web:1.2"]
    assert cluster.loaded == [[]]


def test_a_cluster_that_cannot_pull_gets_every_image_the_install_runs(tmp_path: Path) -> None:
    objs = manifests.build("test")
    cluster = FakeCluster(pulls_images=False)
    st = _stack(tmp_path, _overlay(tmp_path, "x:1"), cluster)
    st.load_images(objs)
    assert cluster.loaded == [sorted(manifests.required_images(objs))]
    pulling = FakeCluster(pulls_images=True)
    _stack(tmp_path, tmp_path / "overlay", pulling).load_images(objs)
    assert pulling.loaded == []


def test_a_registry_on_a_cluster_that_cannot_pull_stops_before_anything_is_applied(tmp_path: Path) -> None:
    cluster = FakeCluster(pulls_images=False)
    st = _stack(tmp_path, _overlay(tmp_path, "hpa-kit/adapter:0.1.0"), cluster, registry="127.0.0.1:5000")
    with pytest.raises(StackError, match=r"cannot pull from registry 127\.0\.0\.1:5000: drop --registry"):
        st.install(timeout=600)
    assert cluster.loaded == []


def test_install_with_a_registry_renders_the_kit_images_from_it(tmp_path: Path) -> None:
    """What `hpa-kit install --registry` applies: the overlay's kit image moved to the registry, tag kept;
    a cluster that pulls gets nothing loaded."""
    pulling = FakeCluster(pulls_images=True)
    kit = images.kit_version()
    st = _stack(tmp_path, _overlay(tmp_path, f"hpa-kit/adapter:{kit}"), pulling,
                registry="reg.example.com:5000")
    with pytest.raises(AssertionError, match="something was applied or read"):  # the first cluster call
        st.install(timeout=600)
    objs = manifests.load_objects(manifests.kustomize(st.build_dir))
    assert set(manifests.required_images(objs)) == {f"reg.example.com:5000/hpa-kit/adapter:{kit}"}
    assert pulling.loaded == []
    # the cert-manager it installs for overlays/cert-manager pulls from there too
    assert st.certificate_manager().registry == "reg.example.com:5000"


# ------------------------------------------------------------------------------ fail-fast pod states

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def _pod(reason: str, *, restarts: int = 0, age_s: float = 5, init: bool = False,
         message: str = "") -> dict[str, Any]:
    created = (NOW - dt.timedelta(seconds=age_s)).isoformat().replace("+00:00", "Z")
    cs = {"name": "app", "image": "hpa-kit/app:1", "restartCount": restarts,
          "state": {"waiting": {"reason": reason, "message": message}} if reason else {"running": {}}}
    key = "initContainerStatuses" if init else "containerStatuses"
    return {"metadata": {"name": "app-1", "namespace": "ns", "creationTimestamp": created},
            "status": {key: [cs]}}  # fmt: skip


@pytest.mark.parametrize("reason", sorted(podstate.IMAGE_REASONS))
def test_image_states_are_stuck_at_once(reason: str) -> None:
    [line] = podstate.blockers(_pod(reason, message="pull refused\nmore"), now=NOW)
    assert line.startswith(f"pod ns/app-1 container app image hpa-kit/app:1: {reason} (pull refused)")
    assert "hpa-kit load-images" in line


def test_init_containers_count_too() -> None:
    assert podstate.blockers(_pod("ImagePullBackOff", init=True), now=NOW)


@pytest.mark.parametrize(
    ("pod", "stuck"),
    [
        (_pod("CrashLoopBackOff", restarts=3), False),
        (_pod("CrashLoopBackOff", restarts=4), True),
        (_pod("CreateContainerConfigError", age_s=10), False),  # a Secret applied alongside may lag
        (_pod("CreateContainerConfigError", age_s=60), True),
        (_pod("ContainerCreating"), False),
        (_pod(""), False),
    ],
)
def test_other_states_are_stuck_only_when_they_cannot_resolve(pod: dict[str, Any], stuck: bool) -> None:
    assert bool(podstate.blockers(pod, now=NOW)) is stuck


def test_crash_loop_message_says_how_many_restarts_and_where_to_look() -> None:
    [line] = podstate.blockers(_pod("CrashLoopBackOff", restarts=7), now=NOW)
    assert "CrashLoopBackOff after 7 restarts" in line and "logs app-1 -c app --previous" in line


def test_wait_for_stops_at_once_on_unresolvable() -> None:
    def probe() -> tuple[bool, str]:
        podstate.raise_if_stuck([_pod("ErrImageNeverPull")], "deployment ns/app")
        return False, "not yet"

    t0 = time.monotonic()
    with pytest.raises(Unresolvable) as err:
        wait_for("deployment ns/app", probe, timeout=60, interval=0.01, hint="describe it", progress=None)
    assert time.monotonic() - t0 < 1
    assert "hpa-kit/app:1" in str(err.value) and "ErrImageNeverPull" in str(err.value)
    assert str(err.value).endswith("describe it")
