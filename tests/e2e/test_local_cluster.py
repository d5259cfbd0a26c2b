"""The cluster under test works as a Kubernetes cluster must for the kit's scenarios.

Node Ready; real pods from offline-built images; ClusterIP Services resolved by CoreDNS and
load-balanced by kube-proxy; the aggregation layer reaching an in-cluster APIService over verified
TLS; the HPA controller reading a custom metric through it. Runs on any provider (``--provider``);
written for ``local``, where all of this is assembled by the harness itself.
"""

from __future__ import annotations

import json
import re
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.kubectl import KubeApiError, Kubectl
from harness.waits import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REQUESTS = 40


# ----------------------------------------------------------------------------------------- helpers


def failed(_kind: str, msg: str) -> BaseException:
    """``wait_for(..., error=failed)``: a wait that runs out or cannot resolve fails the test with its
    message."""
    return pytest.fail.Exception(msg)


def routed_get(kubectl: Kubectl, path: str, timeout: float = 30) -> Any:
    """GET an aggregated path once the aggregator routes it; its answer (or its KubeApiError).

    Available is set by one aggregator controller and the proxy route installed by another: until the
    route exists the path falls through to a plain 404 (CI on kind saw it right after Available).
    """
    answer: list[Any] = []

    def routed() -> tuple[bool, str]:
        try:
            answer[:] = [kubectl.raw(path)]
        except KubeApiError as exc:
            answer[:] = [exc]
            return exc.status != 404, f"HTTP {exc.status}"
        return True, "ok"

    wait_for(f"the aggregator to route {path}", routed, timeout=timeout, interval=0.5, progress=None,
             error=failed)  # fmt: skip
    if isinstance(answer[0], KubeApiError):
        raise answer[0]
    return answer[0]


def image_ref(alias: str) -> str:
    from harness import images

    for spec in images.default_specs():
        if spec.alias == alias:
            return spec.ref
    raise LookupError(alias)


def describe_on_failure(kubectl: Kubectl, ns: str) -> str:
    pods = kubectl.run("get", "pods", "-n", ns, "-o", "wide", check=False)
    events = kubectl.run("get", "events", "-n", ns, "--sort-by=.lastTimestamp", check=False)
    return f"pods:\n{pods}\nevents:\n{events[-3000:]}"


def load_images(cluster: Any, *aliases: str) -> None:
    """Load the kit's images where the nodes cannot pull; a failure there is a failure, not a skip."""
    if cluster.pulls_images:
        return  # existing clusters pull (the images must be pushed where they can)
    cluster.load_images(list(aliases))


# ---------------------------------------------------------------------------------------- fixtures


def rolled_out(kubectl: Kubectl, ns: str, deploy: str, timeout: int = 180) -> None:
    """Wait for a Deployment's rollout (stops at once on a pod that cannot start); show the namespace
    on failure."""
    from harness.stack import wait_rollout
    from harness.waits import Unresolvable, WaitTimeout

    try:
        wait_rollout(kubectl, ns, deploy, timeout=timeout, progress=lambda _: None)
    except (Unresolvable, WaitTimeout) as exc:
        pytest.fail(f"{deploy} did not roll out: {exc}\n{describe_on_failure(kubectl, ns)}", pytrace=False)


def deployment(
    name: str,
    ns: str,
    labels: dict[str, str],
    container: dict[str, Any],
    *,
    replicas: int = 1,
    **pod_spec: Any,
) -> dict[str, Any]:
    """A Deployment of one container (image pulled only if absent: everything here is imported)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"imagePullPolicy": "IfNotPresent", **container}], **pod_spec},
            },
        },
    }


@pytest.fixture(scope="module")
def ns(kubectl: Kubectl) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    kubectl.run("create", "namespace", name)
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="module")
def mockmetrics(cluster: Any, kubectl: Kubectl, ns: str) -> str:
    """Two mockmetrics replicas behind a ClusterIP Service ``mm``; returns the image reference."""
    load_images(cluster, "mockmetrics")
    image = image_ref("mockmetrics")
    labels = {"app": "mm"}
    kubectl.apply(
        [
            deployment(
                "mm",
                ns,
                labels,
                {
                    "name": "mockmetrics",
                    "image": image,
                    "args": ["--port", "8080"],
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080}, "periodSeconds": 1},
                },
                replicas=2,
            ),
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "mm", "namespace": ns},
                "spec": {
                    "selector": labels,
                    "ports": [{"name": "http", "port": 8080, "targetPort": 8080}],
                },
            },
        ]
    )
    rolled_out(kubectl, ns, "mm", timeout=240)
    return image


# ------------------------------------------------------------------------------------------- tests


def test_node_is_ready(kubectl: Kubectl) -> None:
    nodes = kubectl.get("nodes")["items"]
    assert nodes, "no nodes registered"
    for node in nodes:
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}.get("Ready")
        assert ready == "True", f"node {node['metadata']['name']} not Ready: {node['status']['conditions']}"


def test_two_mockmetrics_pods_ready(kubectl: Kubectl, ns: str, mockmetrics: str) -> None:
    pods = kubectl.get("pods", namespace=ns, selector="app=mm")["items"]
    ready = [
        p
        for p in pods
        if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
    ]
    assert len(ready) == 2, describe_on_failure(kubectl, ns)
    assert len({p["status"]["podIP"] for p in ready}) == 2


def test_a_pod_whose_image_is_not_loaded_fails_fast_with_its_name(kubectl: Kubectl, ns: str) -> None:
    # A fresh machine's stack install once waited out its 600 s timeout on an operator image that was
    # never loaded. The rollout wait must stop within seconds, naming the image and the reason.
    from harness.stack import wait_rollout
    from harness.waits import Unresolvable

    image = f"hpa-kit/never-loaded:{uuid.uuid4().hex[:8]}"
    not_loaded = deployment("not-loaded", ns, {"app": "not-loaded"}, {"name": "app", "image": image})
    kubectl.apply([not_loaded])
    start = time.monotonic()
    with pytest.raises(Unresolvable) as err:
        wait_rollout(kubectl, ns, "not-loaded", timeout=300, progress=lambda _: None)
    elapsed = time.monotonic() - start
    text = str(err.value)
    assert image in text, text
    assert re.search(r"ErrImagePull|ImagePullBackOff|ErrImageNeverPull", text), text
    assert f"pod {ns}/not-loaded-" in text and "container app" in text, text
    assert elapsed < 60, f"took {elapsed:.0f}s to give up; the timeout was 300s"
    kubectl.run("-n", ns, "delete", "deployment", "not-loaded", "--wait=false")


CLIENT = textwrap.dedent("""
    import json, socket, sys, urllib.request
    name, n = sys.argv[1], int(sys.argv[2])
    addr = socket.gethostbyname(name)
    ok = 0
    for _ in range(n):
        with urllib.request.urlopen(f"http://{name}:8080/", timeout=5) as resp:
            json.load(resp)
            ok += 1
    print(json.dumps({"addr": addr, "ok": ok}))
""")


def _hits(kubectl: Kubectl, ns: str, pod: str) -> float:
    # Prometheus text, not JSON (which is all Kubectl.raw decodes): read through kubectl itself.
    text = kubectl.run("get", "--raw", f"/api/v1/namespaces/{ns}/pods/{pod}:8080/proxy/metrics")
    m = re.search(r"^total_hit_count(?:\{[^}]*\})? ([0-9.eE+-]+)$", text, re.M)
    assert m, f"no total_hit_count in {pod}'s /metrics:\n{text[:1000]}"
    return float(m.group(1))


def test_service_resolves_through_coredns_and_balances(kubectl: Kubectl, ns: str, mockmetrics: str) -> None:
    pods = [p["metadata"]["name"] for p in kubectl.get("pods", namespace=ns, selector="app=mm")["items"]]
    before = {p: _hits(kubectl, ns, p) for p in pods}
    fqdn = f"mm.{ns}.svc.cluster.local"
    kubectl.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "client", "namespace": ns},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "client",
                            "image": mockmetrics,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["python3", "-c", CLIENT, fqdn, str(REQUESTS)],
                        }
                    ],
                },
            }
        ]
    )

    seen: dict[str, str | None] = {}

    def finished() -> tuple[bool, str]:
        phase = seen["phase"] = kubectl.get("pod", "client", namespace=ns)["status"].get("phase")
        return phase in ("Succeeded", "Failed"), f"phase {phase}"

    wait_for("the client pod to finish", finished, timeout=120, progress=None, error=failed)
    phase = seen["phase"]
    logs = kubectl.run("logs", "-n", ns, "client", check=False)
    assert phase == "Succeeded", f"client pod {phase}:\n{logs}\n{describe_on_failure(kubectl, ns)}"
    result = json.loads(logs.strip().splitlines()[-1])
    cluster_ip = kubectl.get("service", "mm", namespace=ns)["spec"]["clusterIP"]
    assert result == {"addr": cluster_ip, "ok": REQUESTS}
    after = {p: _hits(kubectl, ns, p) for p in pods}
    delta = {p: after[p] - before[p] for p in pods}
    assert sum(delta.values()) == REQUESTS, delta
    assert all(d > 0 for d in delta.values()), f"kube-proxy sent every request to one pod: {delta}"


AGG_SERVER = textwrap.dedent("""
    import http.server, json, ssl
    GROUP = "e2e.hpa-kit.io"
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            parts = self.path.split("?")[0].strip("/").split("/")
            if len(parts) == 3 and parts[:2] == ["apis", GROUP]:
                body = {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{GROUP}/{parts[2]}",
                        "resources": []}
                code = 200
            elif self.path.startswith(("/healthz", "/readyz")):
                body, code = "ok", 200
            else:
                body, code = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
                              "reason": "NotFound", "message": self.path}, 404
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
    srv = http.server.ThreadingHTTPServer(("0.0.0.0", 8443), H)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain("/tls/tls.crt", "/tls/tls.key")
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.serve_forever()
""")


def _serving_secret(tmp: Path, service: str, ns: str) -> tuple[dict[str, Any], str]:
    from harness.certs import ca_bundle, serving_bundle, tls_secret_manifest

    bundle = serving_bundle(tmp, service, ns)
    secret = tls_secret_manifest(f"{service}-tls", ns, bundle["serving"], bundle["ca"])  # type: ignore[arg-type]
    return secret, ca_bundle(bundle["ca"])  # type: ignore[arg-type]


def _apiservice_available(kubectl: Kubectl, name: str) -> tuple[bool, str]:
    """A probe: whether APIService ``name`` is Available, and its condition's reason and message."""
    obj = kubectl.get("apiservice", name)
    for c in obj.get("status", {}).get("conditions", []):
        if c["type"] == "Available":
            return c["status"] == "True", f"{c.get('reason')}: {c.get('message')}"
    return False, "no Available condition yet"


@pytest.fixture(scope="module")
def tiny_apiservice(
    kubectl: Kubectl, ns: str, mockmetrics: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A minimal aggregated API server (python3 -c in the mockmetrics image) behind APIService
    ``v1alpha1.e2e.hpa-kit.io``, with a serving certificate from a CA made here (the caBundle)."""
    name = "v1alpha1.e2e.hpa-kit.io"
    secret, ca = _serving_secret(tmp_path_factory.mktemp("agg-certs"), "e2e-agg", ns)
    labels = {"app": "e2e-agg"}
    kubectl.apply(
        [
            secret,
            deployment(
                "e2e-agg",
                ns,
                labels,
                {
                    "name": "server",
                    "image": mockmetrics,
                    "command": ["python3", "-c", AGG_SERVER],
                    "ports": [{"containerPort": 8443}],
                    "readinessProbe": {
                        "httpGet": {"path": "/readyz", "port": 8443, "scheme": "HTTPS"},
                        "periodSeconds": 1,
                    },
                    "volumeMounts": [{"name": "tls", "mountPath": "/tls", "readOnly": True}],
                },
                volumes=[{"name": "tls", "secret": {"secretName": "e2e-agg-tls"}}],
            ),
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "e2e-agg", "namespace": ns},
                "spec": {"selector": labels, "ports": [{"port": 443, "targetPort": 8443}]},
            },
            {
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": name},
                "spec": {
                    "group": "e2e.hpa-kit.io",
                    "version": "v1alpha1",
                    "service": {"name": "e2e-agg", "namespace": ns, "port": 443},
                    "caBundle": ca,
                    "insecureSkipTLSVerify": False,
                    "groupPriorityMinimum": 100,
                    "versionPriority": 100,
                },
            },
        ]
    )
    yield name
    kubectl.run("delete", "apiservice", name, "--wait=false", check=False)


def test_apiservice_becomes_available_with_real_ca_bundle(
    kubectl: Kubectl, ns: str, tiny_apiservice: str
) -> None:
    rolled_out(kubectl, ns, "e2e-agg")
    wait_for(f"{tiny_apiservice} Available", lambda: _apiservice_available(kubectl, tiny_apiservice),
             timeout=120, progress=None, error=failed)  # fmt: skip
    # The aggregator really proxies to the pod (TLS verified against the caBundle):
    doc = routed_get(kubectl, "/apis/e2e.hpa-kit.io/v1alpha1")
    assert doc["groupVersion"] == "e2e.hpa-kit.io/v1alpha1"


def test_aggregator_verifies_the_ca_bundle(
    kubectl: Kubectl, ns: str, tiny_apiservice: str, tmp_path: Path
) -> None:
    """The same backend registered with an unrelated CA: proxied requests must fail TLS verification.

    (The aggregator's *availability* check dials backends without verification, so such an APIService
    still turns Available; only real requests through the proxy verify the caBundle.)
    """
    from harness.certs import ca_bundle, ensure_ca

    other = ca_bundle(ensure_ca(tmp_path / "other", common_name="unrelated-ca"))
    name = "v1alpha2.e2e.hpa-kit.io"
    kubectl.apply(
        [
            {
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": name},
                "spec": {
                    "group": "e2e.hpa-kit.io",
                    "version": "v1alpha2",
                    "service": {"name": "e2e-agg", "namespace": ns, "port": 443},
                    "caBundle": other,
                    "groupPriorityMinimum": 100,
                    "versionPriority": 90,
                },
            }
        ]
    )
    try:
        rolled_out(kubectl, ns, "e2e-agg")
        for svc in (tiny_apiservice, name):
            wait_for(f"{svc} Available", lambda svc=svc: _apiservice_available(kubectl, svc),
                     timeout=120, progress=None, error=failed)  # fmt: skip
        # The trusted version answers; a refusal raises KubeApiError with its status and reason.
        routed_get(kubectl, "/apis/e2e.hpa-kit.io/v1alpha1")
        # The aggregator answers a failed dial to the backend with 503 and the dial's error as a
        # plain-text body (the TLS verification failure), which KubeApiError carries in its message.
        try:
            doc = routed_get(kubectl, "/apis/e2e.hpa-kit.io/v1alpha2")
        except KubeApiError as exc:
            bad = exc
        else:
            pytest.fail(f"proxied through an unverifiable certificate: {json.dumps(doc)[:300]}")
        assert bad.status == 503, str(bad)
        assert "x509" in str(bad) or "failed to verify certificate" in str(bad), str(bad)
    finally:
        kubectl.run("delete", "apiservice", name, "--wait=false", check=False)


# ------------------------------------------------------------------ HPA through the real adapter


def _adapter_manifests(ns: str, image: str, secret: dict[str, Any], ca: str, metric: str) -> list[dict]:
    sa = "e2e-adapter"
    labels = {"app": "e2e-adapter"}
    return [
        secret,
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": ns}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"{ns}-adapter-auth-delegator"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:auth-delegator",
            },
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": f"{ns}-adapter-auth-reader", "namespace": "kube-system"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "extension-apiserver-authentication-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": f"{ns}-adapter-reader"},
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"{ns}-adapter-reader"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": f"{ns}-adapter-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
        },
        deployment(
            "e2e-adapter",
            ns,
            labels,
            {
                "name": "adapter",
                "image": image,
                "args": [
                    "serve",
                    "--provider",
                    "static",
                    "--static-metrics",
                    metric,
                    "--static-value",
                    "5",
                    "--secure-port",
                    "6443",
                    "--tls-cert-file",
                    "/tls/tls.crt",
                    "--tls-private-key-file",
                    "/tls/tls.key",
                ],
                "ports": [{"containerPort": 6443}],
                "readinessProbe": {"tcpSocket": {"port": 6443}, "periodSeconds": 1},
                "volumeMounts": [{"name": "tls", "mountPath": "/tls", "readOnly": True}],
            },
            serviceAccountName=sa,
            volumes=[{"name": "tls", "secret": {"secretName": "e2e-adapter-tls"}}],
        ),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "e2e-adapter", "namespace": ns},
            "spec": {"selector": labels, "ports": [{"port": 443, "targetPort": 6443}]},
        },
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": "v1beta2.custom.metrics.k8s.io", "labels": {"hpa-kit.io/e2e": ns}},
            "spec": {
                "group": "custom.metrics.k8s.io",
                "version": "v1beta2",
                "service": {"name": "e2e-adapter", "namespace": ns, "port": 443},
                "caBundle": ca,
                "groupPriorityMinimum": 100,
                "versionPriority": 200,
            },
        },
    ]


@pytest.fixture
def custom_metrics_v1beta2(kubectl: Kubectl) -> Iterator[str]:
    """The v1beta2 custom metrics APIService, free for this test whatever ran before it.

    Another adapter (the stack's) may own it: it is saved, replaced by the test, and put back after,
    so the test does not depend on running before or after the scenarios.
    """
    name = "v1beta2.custom.metrics.k8s.io"
    saved: dict[str, Any] | None
    try:
        saved = kubectl.get("apiservice", name)
    except KubeApiError as exc:
        if exc.status != 404:
            raise
        saved = None
    else:
        if "hpa-kit.io/e2e" in (saved["metadata"].get("labels") or {}):
            saved = None  # a leftover of this very test
        kubectl.run("delete", "apiservice", name)
    yield name
    kubectl.run("delete", "apiservice", name, "--ignore-not-found", check=False)
    if saved is not None:
        meta = saved["metadata"]
        saved["metadata"] = {k: meta[k] for k in ("name", "labels", "annotations") if k in meta}
        saved.pop("status", None)
        kubectl.apply([saved])


def test_hpa_scaling_active_through_adapter_static_provider(
    cluster: Any, kubectl: Kubectl, ns: str, mockmetrics: str, tmp_path: Path, custom_metrics_v1beta2: str
) -> None:
    name = custom_metrics_v1beta2
    load_images(cluster, "adapter")
    image = image_ref("adapter")
    metric = "e2e_static_metric"
    secret, ca = _serving_secret(tmp_path, "e2e-adapter", ns)
    try:
        manifests = _adapter_manifests(ns, image, secret, ca, metric)
        kubectl.apply(manifests)
        rolled_out(kubectl, ns, "e2e-adapter")
        wait_for(f"{name} Available", lambda: _apiservice_available(kubectl, name),
                 timeout=120, progress=None, error=failed)  # fmt: skip
        labels = {"app": "hpa-target"}
        kubectl.apply(
            [
                deployment(
                    "hpa-target",
                    ns,
                    labels,
                    {
                        "name": "mm",
                        "image": mockmetrics,
                        "readinessProbe": {
                            "httpGet": {"path": "/readyz", "port": 8080},
                            "periodSeconds": 1,
                        },
                    },
                ),
                {
                    "apiVersion": "autoscaling/v2",
                    "kind": "HorizontalPodAutoscaler",
                    "metadata": {"name": "hpa-target", "namespace": ns},
                    "spec": {
                        "scaleTargetRef": {
                            "apiVersion": "apps/v1",
                            "kind": "Deployment",
                            "name": "hpa-target",
                        },
                        "minReplicas": 1,
                        "maxReplicas": 3,
                        "metrics": [
                            {
                                "type": "Pods",
                                "pods": {
                                    "metric": {"name": metric},
                                    "target": {"type": "AverageValue", "averageValue": "5"},
                                },
                            }
                        ],
                    },
                },
            ]
        )
        seen: dict[str, Any] = {}

        def scaling_active() -> tuple[bool, str]:
            hpa = seen["hpa"] = kubectl.get("hpa", "hpa-target", namespace=ns)
            conds = {c["type"]: c for c in hpa.get("status", {}).get("conditions", [])}
            c = conds.get("ScalingActive")
            detail = f"ScalingActive={c and c['status']} {c and c.get('reason')}: {c and c.get('message')}"
            return bool(c and c["status"] == "True"), detail

        wait_for(
            "HPA ScalingActive=True", scaling_active, timeout=150, interval=2, progress=None, error=failed
        )
        hpa = seen["hpa"]
        current = hpa["status"].get("currentMetrics", [])
        assert current and current[0]["pods"]["current"]["averageValue"] == "5", current
    finally:
        kubectl.run(
            "delete",
            "clusterrolebinding",
            f"{ns}-adapter-auth-delegator",
            f"{ns}-adapter-reader",
            check=False,
        )
        kubectl.run("delete", "clusterrole", f"{ns}-adapter-reader", check=False)
        kubectl.run("delete", "rolebinding", "-n", "kube-system", f"{ns}-adapter-auth-reader", check=False)
