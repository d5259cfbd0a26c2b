"""Kubectl.get / Kubectl.raw against a real kube-apiserver: the same objects kubectl shows, without a fork.

Each read is checked against kubectl's own answer for the same object (the independent source), and
the failure paths carry the API's status code.
"""

from __future__ import annotations

import uuid

import pytest

from harness import procs
from harness.kubectl import KubeApiError, Kubectl, KubectlError

pytestmark = pytest.mark.integration


@pytest.fixture
def kc(control_plane) -> Kubectl:  # type: ignore[no-untyped-def]
    return Kubectl(control_plane.kubeconfig)


def _apply(kc: Kubectl, doc: dict) -> None:
    kc.apply([doc])


def test_get_reads_what_kubectl_reads_and_filters_by_label_and_field(kc: Kubectl) -> None:
    ns = f"reads-{uuid.uuid4().hex[:8]}"
    _apply(kc, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    for name, tier in (("a", "web"), ("b", "web"), ("c", "db")):
        _apply(kc, {"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name, "namespace": ns, "labels": {"tier": tier}},
                    "data": {"k": name}})  # fmt: skip
    procs.count_forks()
    try:
        before = procs.fork_counts()
        one = kc.get("cm", "a", namespace=ns)
        web = kc.get("configmaps", namespace=ns, selector="tier=web")
        by_name = kc.get("configmaps", namespace=ns, fields="metadata.name=c")
        cluster_scoped = kc.get("namespace", ns)
        raw_b = kc.raw(f"/api/v1/namespaces/{ns}/configmaps/b")
        reads = procs.fork_counts()
        forked = kc.json("-n", ns, "get", "configmap", "a")
        forked_web = kc.json("-n", ns, "get", "cm", "-l", "tier=web")["items"]
        # Five reads, no fork; the counter sees the two kubectl runs after them, so zero is not blind.
        assert reads.get("kubectl", 0) - before.get("kubectl", 0) == 0
        assert procs.fork_counts().get("kubectl", 0) - reads.get("kubectl", 0) == 2

        assert one["metadata"]["uid"] == forked["metadata"]["uid"] and one["data"] == {"k": "a"}
        assert sorted(i["metadata"]["name"] for i in web["items"]) == ["a", "b"]
        assert sorted(i["metadata"]["name"] for i in forked_web) == ["a", "b"]
        assert [i["metadata"]["name"] for i in by_name["items"]] == ["c"]
        assert cluster_scoped["status"]["phase"] == "Active"
        assert raw_b["data"] == {"k": "b"}
    finally:
        kc.run("delete", "namespace", ns, "--wait=false")


def test_a_missing_object_is_a_404_not_a_message_to_match(kc: Kubectl) -> None:
    with pytest.raises(KubeApiError) as err:
        kc.get("deployment", "nope", namespace="default")
    assert err.value.status == 404
    assert "nope" in str(err.value) and "/apis/apps/v1/namespaces/default/deployments/nope" in str(err.value)
    with pytest.raises(KubeApiError) as err:
        kc.raw("/apis/no.such.group/v1")
    assert err.value.status == 404


def test_bad_requests_say_what_to_fix(kc: Kubectl) -> None:
    with pytest.raises(KubectlError, match="no API path known for kind 'widgets'"):
        kc.get("widgets")
    with pytest.raises(KubectlError, match="cluster-scoped"):
        kc.get("nodes", namespace="default")
    with pytest.raises(KubectlError, match="name or selector"):
        kc.get("pods", "p", namespace="default", selector="a=b")
