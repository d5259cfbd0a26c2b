"""The REAL adapter process against a REAL kube-apiserver and a REAL Prometheus: no fakes anywhere.

Set-up (once per module): the ``control_plane`` fixture (etcd + kube-apiserver v1.35 on loopback,
no node) gets namespace ``cp-it`` with Pods ``web-0``/``web-1`` (app=web), ``other-0`` (app=other)
and a Service ``web``; they stay Pending, which is all the adapter's watch cache needs. Three
mockmetrics processes play those pods: a local Prometheus scrapes them with static labels
``namespace``/``pod``/``service``, as Kubernetes service discovery would. The adapter runs as
``python -m adapter serve`` with the seed rules, the control plane's admin kubeconfig, delegated
authentication (the ``extension-apiserver-authentication`` configmap, TokenReview) and delegated
authorization (SubjectAccessReview), a cfssl serving certificate, and a short relist.

Every request goes over HTTPS with the adapter's CA verified, mostly the way the aggregator sends
them: the control plane's own front-proxy client certificate plus ``X-Remote-User``/``-Group``.
"""

from __future__ import annotations

import concurrent.futures
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

if not (shutil.which("cfssl") and shutil.which("cfssljson")):  # pragma: no cover
    pytest.skip("cfssl/cfssljson not installed", allow_module_level=True)
if not Path("/usr/bin/prometheus").exists() and not shutil.which("prometheus"):  # pragma: no cover
    pytest.skip("prometheus not installed", allow_module_level=True)

from harness.certs import CertPair, ensure_ca, issue_cert  # noqa: E402
from harness.localprom import LocalPrometheus, Target  # noqa: E402
from harness.mockproc import MockMetricsProcess  # noqa: E402
from tests.integration.adapter_cp_support import KubeAdmin, metric_sample, tls_context, until  # noqa: E402
from tests.integration.test_adapter_server import Adapter  # noqa: E402

NS = "cp-it"
C1 = "/apis/custom.metrics.k8s.io/v1beta1"
C2 = "/apis/custom.metrics.k8s.io/v1beta2"
E1 = "/apis/external.metrics.k8s.io/v1beta1"
SEED_RULES = Path(__file__).resolve().parents[1] / "fixtures" / "adapter" / "seed-rules.yaml"

#: pod name -> (app label, service label)
PODS = {"web-0": ("web", "web"), "web-1": ("web", "web"), "other-0": ("other", "other")}
READER_ROLE = "cp-it-metrics-reader"
AGG_USER, AGG_GROUP = "hpa-reader", "hpa-readers"
QUEUED = {"web-0": 40, "other-0": 2}  # jobs produced per pod; --consume-rate 0 keeps them queued


@dataclass
class Stack:
    kube: KubeAdmin
    adapter: Adapter
    prom: LocalPrometheus
    mocks: dict[str, MockMetricsProcess]
    serving_ca: CertPair
    front_proxy_client: CertPair
    wrong_cn: CertPair
    workdir: Path
    extra_mocks: list[MockMetricsProcess] = field(default_factory=list)

    def get(
        self,
        path: str,
        *,
        client: CertPair | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        with httpx.Client(verify=tls_context(self.serving_ca.cert, client), timeout=15) as c:
            return c.get(self.adapter.url + path, headers=headers, params=params)

    def as_aggregator(
        self, path: str, *, user: str = AGG_USER, group: str = AGG_GROUP, **params: str
    ) -> httpx.Response:
        """What kube-apiserver's proxy sends: its front-proxy client cert plus the caller's identity."""
        return self.get(
            path,
            client=self.front_proxy_client,
            headers={"X-Remote-User": user, "X-Remote-Group": group},
            params=params or None,
        )

    def ok_json(self, path: str, **params: str) -> dict[str, Any]:
        r = self.as_aggregator(path, **params)
        assert r.status_code == 200, f"{path} {params} -> {r.status_code}: {r.text}\n{self.log_tail()}"
        return dict(r.json())

    def adapter_metrics(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.adapter.metrics_port}/metrics", timeout=5).text

    def log_tail(self, lines: int = 40) -> str:
        return "--- adapter log ---\n" + "\n".join(self.adapter.log_text().splitlines()[-lines:])


def _targets(mocks: dict[str, MockMetricsProcess]) -> list[Target]:
    return [
        Target(m.url.removeprefix("http://"), {"namespace": NS, "pod": pod, "service": PODS[pod][1]})
        for pod, m in mocks.items()
    ]


def _start_mocks(names: list[str], logdir: Path) -> dict[str, MockMetricsProcess]:
    """Start one mockmetrics per name in parallel; on any failure stop them all and re-raise."""
    mocks = {n: MockMetricsProcess(logdir / f"{n}.log", "--consume-rate", "0") for n in names}
    try:
        with concurrent.futures.ThreadPoolExecutor(len(mocks)) as pool:
            for fut in [pool.submit(m.start) for m in mocks.values()]:
                fut.result()
    except BaseException:
        for m in mocks.values():
            m.stop()
        raise
    return mocks


def _kube_objects(kube: KubeAdmin) -> None:
    kube.namespace(NS)
    # No kube-controller-manager: nobody creates the namespace's default ServiceAccount, and the
    # ServiceAccount admission plugin refuses Pods until it exists.
    kube.service_account(NS, "default")
    for pod, (app, _) in PODS.items():
        kube.pod(NS, pod, {"app": app})
    kube.service(NS, "web", {"app": "web"})
    kube.cluster_role(
        READER_ROLE,
        [
            {
                "apiGroups": ["custom.metrics.k8s.io", "external.metrics.k8s.io"],
                "resources": ["*"],
                "verbs": ["get", "list", "watch"],
            }
        ],
    )
    kube.bind_cluster_role(
        f"{READER_ROLE}-agg",
        READER_ROLE,
        {"kind": "Group", "name": AGG_GROUP, "apiGroup": "rbac.authorization.k8s.io"},
    )


@pytest.fixture(scope="module")
def stack(control_plane: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    cp = control_plane
    work = tmp_path_factory.mktemp("adapter-cp")
    kube = KubeAdmin(cp.server, cp.ca, cp.admin)
    mocks: dict[str, MockMetricsProcess] = {}
    prom: LocalPrometheus | None = None
    adapter: Adapter | None = None
    st: Stack | None = None
    try:
        _kube_objects(kube)
        mocks = _start_mocks(list(PODS), work / "mock")
        prom = LocalPrometheus(_targets(mocks), scrape_interval="1s", data_dir=work / "prom")
        prom.start()
        prom.wait_for_targets_up(30)

        pki = work / "pki"
        serving_ca = ensure_ca(pki, "serving-ca", "adapter-serving-ca")
        serving = issue_cert(pki, "serving", serving_ca, "adapter", hosts=["127.0.0.1", "localhost"])
        front_ca = cp.cluster.pki().front_proxy_ca  # the control plane's own requestheader CA
        wrong_cn = issue_cert(pki, "wrong-cn", front_ca, "not-the-aggregator", usage="client")

        adapter = Adapter(
            [
                "--tls-cert-file", str(serving.cert),
                "--tls-private-key-file", str(serving.key),
                "--kubeconfig", str(cp.kubeconfig),
                "--authn-mode", "delegated",
                "--authz-mode", "delegated",
                "--config", str(SEED_RULES),
                "--prometheus-url", prom.url,
                "--prometheus-timeout", "3s",
                "--metrics-relist-interval", "2s",
                "--cache-ttl", "0",
            ],
            work / "adapter.log",
        )  # fmt: skip

        # Traffic while the adapter starts: hits for total_hit_count (rate over [1m] needs a rise
        # between two scrapes, so after the first scrape), jobs for queue_depth.
        prom.wait_for_series(f'total_hit_count{{namespace="{NS}"}}', timeout=30, count=len(PODS))
        with httpx.Client(timeout=5) as c:
            for pod in ("web-0", "web-1"):
                for _ in range(10):
                    c.get(mocks[pod].url + "/").raise_for_status()
            for pod, n in QUEUED.items():
                c.post(mocks[pod].url + "/produce", params={"n": str(n)}).raise_for_status()

        adapter.wait_ready(serving_ca.cert, timeout=60)
        st = Stack(kube, adapter, prom, mocks, serving_ca, cp.front_proxy_client, wrong_cn, work)
        yield st
    finally:
        if adapter is not None:
            adapter.stop()
        if prom is not None:
            prom.stop()
        for m in [*mocks.values(), *(st.extra_mocks if st else [])]:
            m.stop()
        # Leave the shared control plane as we found it (the namespace stays Terminating: no
        # namespace controller runs without kube-controller-manager, which is harmless).
        try:
            for pod in PODS:
                kube.delete(f"/api/v1/namespaces/{NS}/pods/{pod}")
            kube.delete(f"/api/v1/namespaces/{NS}/services/web")
            kube.delete(f"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{READER_ROLE}-agg")
            kube.delete(f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{READER_ROLE}")
            kube.delete(f"/api/v1/namespaces/{NS}")
        except (AssertionError, httpx.HTTPError):
            pass
        kube.close()


def _names(doc: dict[str, Any]) -> list[str]:
    return sorted(i["describedObject"]["name"] for i in doc["items"])


def _star(stack: Stack, selector: str, version: str = C2, metric: str = "http_requests") -> dict[str, Any]:
    return stack.ok_json(f"{version}/namespaces/{NS}/pods/*/{metric}", labelSelector=selector)


def _wait_pods(stack: Stack, selector: str, want: list[str], timeout: float = 30) -> dict[str, Any]:
    """Poll ``pods/*`` until exactly ``want`` have values (rate over [2m] needs two scrapes)."""

    def check() -> dict[str, Any] | None:
        doc = _star(stack, selector)
        return doc if _names(doc) == want else None

    return until(check, timeout, f"pods/* {selector} == {want}")


# ------------------------------------------------------------------------------------------------
# Served as the aggregator would ask
# ------------------------------------------------------------------------------------------------


def test_discovery_maps_resources_through_real_api_discovery(stack: Stack) -> None:
    doc = stack.ok_json(C2)
    assert doc["kind"] == "APIResourceList" and doc["groupVersion"] == "custom.metrics.k8s.io/v1beta2"
    by_name = {r["name"]: r for r in doc["resources"]}
    for name in (
        "pods/http_requests",
        "services/total_hit_count",
        "pods/fpm_active_rate",
        "namespaces/http_requests",
    ):
        assert name in by_name, (name, sorted(by_name))
    assert by_name["pods/http_requests"] == {
        "name": "pods/http_requests", "singularName": "", "namespaced": True,
        "kind": "MetricValueList", "verbs": ["get"],
    }  # fmt: skip
    assert by_name["namespaces/http_requests"]["namespaced"] is False  # cluster-scoped, per discovery
    assert stack.ok_json(C1)["groupVersion"] == "custom.metrics.k8s.io/v1beta1"
    ext = stack.ok_json(E1)
    assert {"name": "queue_depth", "singularName": "", "namespaced": True,
            "kind": "ExternalMetricValueList", "verbs": ["get"]} in ext["resources"]  # fmt: skip


def test_pods_star_lists_real_pods_v1beta2(stack: Stack) -> None:
    doc = _wait_pods(stack, "app=web", ["web-0", "web-1"])
    assert doc["kind"] == "MetricValueList" and doc["apiVersion"] == "custom.metrics.k8s.io/v1beta2"
    for item in doc["items"]:
        assert item["describedObject"] == {
            "kind": "Pod",
            "namespace": NS,
            "name": item["describedObject"]["name"],
            "apiVersion": "v1",
        }
        assert item["metric"] == {"name": "http_requests", "selector": None}
        assert item["windowSeconds"] == 120
        assert set(item) == {"describedObject", "metric", "timestamp", "windowSeconds", "value"}
    # other-0 is in the watch cache but not selected; by its own label it is the only one.
    assert _names(_star(stack, "app=other")) == ["other-0"]
    assert _star(stack, "app=nothing")["items"] == []  # zero matches: an empty list, not 404
    # Short name and kind resolve only through the apiserver's discovery (po, Pod -> pods).
    for spelling in ("po", "Pod"):
        doc = stack.ok_json(f"{C2}/namespaces/{NS}/{spelling}/*/http_requests", labelSelector="app=web")
        assert _names(doc) == ["web-0", "web-1"], spelling


def test_pods_star_v1beta1_shape(stack: Stack) -> None:
    _wait_pods(stack, "app=web", ["web-0", "web-1"])
    doc = _star(stack, "app=web", version=C1)
    assert doc["apiVersion"] == "custom.metrics.k8s.io/v1beta1" and _names(doc) == ["web-0", "web-1"]
    for item in doc["items"]:
        assert item["metricName"] == "http_requests" and item["window"] == 120
        assert "metric" not in item and "windowSeconds" not in item
        assert item["describedObject"]["kind"] == "Pod"


def test_pod_by_name(stack: Stack) -> None:
    def check() -> dict[str, Any] | None:
        r = stack.as_aggregator(f"{C2}/namespaces/{NS}/pods/other-0/http_requests")
        return dict(r.json()) if r.status_code == 200 else None

    doc = until(check, 30, "pods/other-0/http_requests")
    assert _names(doc) == ["other-0"]
    # fpm_active_rate: active/total of an idle pool is 0 (the rule divides two real series).
    fpm = stack.ok_json(f"{C2}/namespaces/{NS}/pods/other-0/fpm_active_rate")
    assert fpm["items"][0]["value"] == "0" and fpm["items"][0]["windowSeconds"] == 120


def test_service_object_metric_after_hits(stack: Stack) -> None:
    with httpx.Client(timeout=5) as c:
        for pod in ("web-0", "web-1"):
            for _ in range(10):
                c.get(stack.mocks[pod].url + "/").raise_for_status()

    def check() -> dict[str, Any] | None:
        doc = stack.ok_json(f"{C2}/namespaces/{NS}/services/web/total_hit_count")
        return doc if doc["items"] and doc["items"][0]["value"] != "0" else None

    item = until(check, 30, "services/web/total_hit_count > 0")["items"][0]
    assert item["describedObject"] == {"kind": "Service", "namespace": NS, "name": "web", "apiVersion": "v1"}
    assert item["windowSeconds"] == 60 and item["metric"]["name"] == "total_hit_count"
    # The Service is a real object, and total_hit_count is not a pod metric in the seed rules.
    r = stack.as_aggregator(f"{C2}/namespaces/{NS}/pods/web-0/total_hit_count")
    assert r.status_code == 404 and r.json()["reason"] == "NotFound"
    # "svc" is the Service's short name in the apiserver's discovery; no plural guess gets there.
    by_short = stack.ok_json(f"{C2}/namespaces/{NS}/svc/web/total_hit_count")
    assert by_short["items"][0]["describedObject"]["name"] == "web"


def test_namespace_metric(stack: Stack) -> None:
    doc = until(
        lambda: (d := stack.ok_json(f"{C2}/namespaces/{NS}/metrics/http_requests"))["items"] and d,
        30,
        "namespaces/cp-it/metrics/http_requests",
    )
    assert [i["describedObject"] for i in doc["items"]] == [
        {"kind": "Namespace", "name": NS, "apiVersion": "v1"}
    ]


def test_external_queue_depth_with_label_selector(stack: Stack) -> None:
    path = f"{E1}/namespaces/{NS}/queue_depth"

    def values(selector: str | None) -> list[tuple[dict[str, str], str]]:
        doc = stack.ok_json(path, **({"labelSelector": selector} if selector else {}))
        assert doc["kind"] == "ExternalMetricValueList"
        return [(i["metricLabels"], i["value"]) for i in doc["items"]]

    until(lambda: values(None) == [({"namespace": NS}, "42")] or None, 30, "queue_depth == 42")
    assert values("service=web") == [({"namespace": NS}, "40")]
    assert values("service=other") == [({"namespace": NS}, "2")]
    assert values("service in (web,other),pod!=web-0") == [({"namespace": NS}, "2")]
    assert values("service=nobody") == []
    assert stack.ok_json(f"{E1}/namespaces/elsewhere/queue_depth")["items"] == []


def test_new_pod_seen_through_the_watch(stack: Stack) -> None:
    """web-2 created in the apiserver is matched at once (no data yet), then served once scraped."""
    _wait_pods(stack, "app=web", ["web-0", "web-1"])
    labels = {"resource": "pods", "metric": "http_requests"}
    counter = "hpakit_adapter_objects_without_data_total"
    before = metric_sample(stack.adapter_metrics(), counter, labels)
    stack.kube.pod(NS, "web-2", {"app": "web"})
    try:

        def matched_without_data() -> bool | None:
            doc = _star(stack, "app=web")
            assert _names(doc) == ["web-0", "web-1"]  # no series for web-2: reported, not invented
            return metric_sample(stack.adapter_metrics(), counter, labels) > before or None

        until(matched_without_data, 20, "web-2 counted as an object without data")

        # Now give web-2 a real exporter; the same '*' request serves it.
        mock = _start_mocks(["web-2"], stack.workdir / "mock")["web-2"]
        stack.extra_mocks.append(mock)
        stack.prom.reload(
            [*_targets(stack.mocks), Target(mock.url.removeprefix("http://"),
                                           {"namespace": NS, "pod": "web-2", "service": "web"})]
        )  # fmt: skip
        _wait_pods(stack, "app=web", ["web-0", "web-1", "web-2"], timeout=40)
    finally:
        stack.kube.delete(f"/api/v1/namespaces/{NS}/pods/web-2")
    # An unscheduled pod is deleted at once; the watch's DELETED event drops it (its series remain).
    _wait_pods(stack, "app=web", ["web-0", "web-1"], timeout=20)


# ------------------------------------------------------------------------------------------------
# Refusals, with the real TokenReview / SubjectAccessReview
# ------------------------------------------------------------------------------------------------


STAR = f"{C2}/namespaces/{NS}/pods/*/http_requests"


def _status(r: httpx.Response, code: int, reason: str) -> dict[str, Any]:
    assert r.status_code == code, r.text
    body = dict(r.json())
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["status"] == "Failure"
    assert body["code"] == code and body["reason"] == reason
    return body


def test_no_credentials_401(stack: Stack) -> None:
    body = _status(stack.get(STAR, params={"labelSelector": "app=web"}), 401, "Unauthorized")
    assert "no credentials" in body["message"]
    _status(stack.get(C2), 401, "Unauthorized")  # discovery too
    assert stack.get("/readyz").text == "ok"  # probes stay public


def test_front_proxy_headers_without_cert_ignored(stack: Stack) -> None:
    r = stack.get(STAR, headers={"X-Remote-User": AGG_USER, "X-Remote-Group": AGG_GROUP})
    _status(r, 401, "Unauthorized")


def test_front_proxy_cert_with_disallowed_cn_refused(stack: Stack) -> None:
    r = stack.get(
        STAR, client=stack.wrong_cn, headers={"X-Remote-User": AGG_USER, "X-Remote-Group": AGG_GROUP}
    )
    body = _status(r, 401, "Unauthorized")
    assert "'not-the-aggregator' is not in requestheader-allowed-names" in body["message"]


def test_aggregated_user_without_rbac_403(stack: Stack) -> None:
    r = stack.as_aggregator(STAR, user="mallory", group="strangers", labelSelector="app=web")
    body = _status(r, 403, "Forbidden")
    assert body["message"].startswith(
        'pods.custom.metrics.k8s.io "*" is forbidden: User "mallory" cannot get resource '
        f'"pods/http_requests" in API group "custom.metrics.k8s.io" in the namespace "{NS}"'
    ), body["message"]


def test_service_account_token_needs_rbac(stack: Stack) -> None:
    stack.kube.service_account(NS, "reader")
    token = stack.kube.token(NS, "reader")
    bearer = {"Authorization": f"Bearer {token}"}
    user = f"system:serviceaccount:{NS}:reader"
    path = f"{C2}/namespaces/{NS}/pods/web-0/http_requests"

    body = _status(stack.get(path, headers=bearer), 403, "Forbidden")
    assert f'User "{user}" cannot get resource "pods/http_requests"' in body["message"], body["message"]
    assert body["details"] == {"name": "web-0", "group": "custom.metrics.k8s.io", "kind": "pods"}
    _status(stack.get(path, headers={"Authorization": "Bearer not-a-token"}), 401, "Unauthorized")

    stack.kube.bind_role_in(NS, "reader-metrics", READER_ROLE,
                            {"kind": "ServiceAccount", "name": "reader", "namespace": NS})  # fmt: skip
    # The adapter caches a denial for a few seconds (as upstream's delegating authorizer does).
    r = until(
        lambda: ((x := stack.get(path, headers=bearer)).status_code == 200 and x) or None,
        30,
        "200 for the ServiceAccount once bound",
    )
    assert _names(r.json()) == ["web-0"]
    served_as = [ln for ln in stack.adapter.log_text().splitlines() if f" {path} 200 " in ln]
    assert served_as and f'user="{user}"' in served_as[-1]
    # The RoleBinding is namespaced: another namespace stays forbidden.
    _status(stack.get(f"{C2}/namespaces/default/pods/x/http_requests", headers=bearer), 403, "Forbidden")


# ------------------------------------------------------------------------------------------------
# Prometheus down and back (runs last: it kills the module's Prometheus)
# ------------------------------------------------------------------------------------------------


def test_prometheus_killed_then_restarted(stack: Stack) -> None:
    path = f"{C2}/namespaces/{NS}/pods/web-0/http_requests"
    assert stack.as_aggregator(path).status_code == 200
    failures = "hpakit_adapter_discovery_failures_total"
    before = metric_sample(stack.adapter_metrics(), failures)
    stack.prom.kill()
    body = _status(stack.as_aggregator(path), 503, "ServiceUnavailable")
    assert body["message"], body
    # The next relist fails too; the adapter keeps serving discovery from the last good index.
    until(lambda: metric_sample(stack.adapter_metrics(), failures) > before or None, 20, "a failed relist")
    assert stack.get("/readyz").text == "ok"
    assert "pods/http_requests" in {r["name"] for r in stack.ok_json(C2)["resources"]}
    _status(stack.as_aggregator(f"{E1}/namespaces/{NS}/queue_depth"), 503, "ServiceUnavailable")

    stack.prom.restart()
    doc = until(
        lambda: ((r := stack.as_aggregator(path)).status_code == 200 and r.json()) or None,
        40,
        "200 after Prometheus restarted",
    )
    assert _names(doc) == ["web-0"]
    assert stack.get("/readyz").text == "ok"
