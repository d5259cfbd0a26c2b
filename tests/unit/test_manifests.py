"""Static checks of manifests/: every overlay builds, validates, and keeps the kit's contracts.

The contracts checked here are the ones that break silently on a real cluster: a ServiceMonitor the
Prometheus CR does not select, an HPA metric no adapter rule serves, a Deployment whose replicas fight
the HPA, a binding that a namespace transformer moved out of kube-system, an anonymous grant in the
default install. Server-side dry-runs against a real cluster belong to the e2e suite.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from harness import manifests
from harness.stack import RATE_WINDOW

pytestmark = pytest.mark.skipif(
    shutil.which(os.environ.get("KUBECTL", "kubectl")) is None, reason="needs kubectl"
)

REPO = Path(__file__).resolve().parents[2]
VERSIONS = dict(
    line.split("=", 1)
    for line in (REPO / "scripts" / "versions.env").read_text().splitlines()
    if "=" in line and not line.lstrip().startswith("#")
)
#: Validate against the Kubernetes minor the kit pins (versions.env K8S_VERSION), e.g. "1.35".
K8S_MINOR = ".".join(VERSIONS["K8S_VERSION"].lstrip("v").split(".")[:2])
OPERATOR_VERSION = VERSIONS["PROM_OPERATOR_VERSION"]

IMAGES = {
    "hpa-kit/adapter:0.1.0",
    "hpa-kit/mockmetrics:0.1.0",
    "hpa-kit/locust:0.1.0",
    f"quay.io/prometheus-operator/prometheus-operator:{OPERATOR_VERSION}",
    f"quay.io/prometheus-operator/prometheus-config-reloader:{OPERATOR_VERSION}",
    "quay.io/prometheus/prometheus:v3.5.0",
}
#: apiVersions that Kubernetes no longer serves (or never served for these kinds in 1.32+).
REMOVED_API_VERSIONS = re.compile(
    r"^(extensions/|apps/v1beta|autoscaling/v2beta|policy/v1beta1|batch/v1beta1|rbac\.authorization\.k8s\.io/v1"
    r"(alpha|beta)|apiregistration\.k8s\.io/v1beta1|networking\.k8s\.io/v1beta1|apiextensions\.k8s\.io/v1beta1"
    r"|admissionregistration\.k8s\.io/v1beta1|scheduling\.k8s\.io/v1(alpha|beta))"
)
CRD_GROUP = "monitoring.coreos.com"


@pytest.fixture(scope="module")
def built() -> dict[str, list[dict[str, Any]]]:
    """Every overlay, built once (raw: placeholders intact)."""
    return {name: manifests.build(name) for name in manifests.OVERLAYS}


def _all(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def _one(objs: list[dict[str, Any]], kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
    found = [
        o
        for o in objs
        if o["kind"] == kind
        and o["metadata"]["name"] == name
        and (namespace is None or o["metadata"].get("namespace") == namespace)
    ]
    assert len(found) == 1, f"expected exactly one {kind} {namespace}/{name}, found {len(found)}"
    return found[0]


def _pod_specs(objs: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for o in objs:
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield f"{o['kind']} {o['metadata']['name']}", o["spec"]["template"]["spec"]


def _adapter_config(objs: list[dict[str, Any]]) -> dict[str, Any]:
    cm = _one(objs, "ConfigMap", "adapter-config", manifests.ADAPTER_NAMESPACE)
    config = yaml.safe_load(cm["data"]["config.yaml"])
    assert isinstance(config, dict)
    return config


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector match (matchLabels + matchExpressions)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


# ------------------------------------------------------------------------------------------- builds


@pytest.mark.parametrize("overlay", manifests.OVERLAYS)
def test_overlay_builds(built: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    objs = built[overlay]
    kinds = {o["kind"] for o in objs}
    assert {"Deployment", "APIService", "HorizontalPodAutoscaler", "Prometheus", "ServiceMonitor"} <= kinds
    keys = [(o["apiVersion"], o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objs]
    assert len(keys) == len(set(keys)), "duplicate objects"


def test_overlays_list_matches_directories() -> None:
    on_disk = {p.parent.name for p in (REPO / "manifests" / "overlays").glob("*/kustomization.yaml")}
    assert on_disk == set(manifests.OVERLAYS)


def test_base_is_not_applied_with_a_namespace_transformer() -> None:
    # A `namespace:` transformer would move the kube-system RoleBinding and rewrite the HPA controller's
    # ServiceAccount subject; every object states its namespace instead.
    for kustomization in (REPO / "manifests").rglob("kustomization.yaml"):
        doc = yaml.safe_load(kustomization.read_text())
        assert "namespace" not in doc, f"{kustomization} sets namespace:"
        assert "commonLabels" not in doc, f"{kustomization}: commonLabels is deprecated and edits selectors"


# ------------------------------------------------------------------------------------------- schemas


def test_validator_is_strict() -> None:
    # Guard against a silently permissive validator: an unknown field must fail.
    bad = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"ports": [{"port": 80}], "selectr": {}},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_MINOR, strict=True)


@pytest.mark.parametrize("overlay", manifests.OVERLAYS)
def test_builtin_objects_validate_against_kubernetes_schema(
    built: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    checked = 0
    for obj in built[overlay]:
        if obj["apiVersion"].startswith((CRD_GROUP + "/", "cert-manager.io/")):
            continue  # CRD-typed: checked against the operator's (or cert-manager's) CRD schemas
        kubernetes_validate.validate(obj, K8S_MINOR, strict=True)
        checked += 1
    assert checked >= 35


@pytest.mark.parametrize("overlay", manifests.OVERLAYS)
def test_no_removed_api_versions(built: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    stale = [
        f"{o['apiVersion']} {o['kind']}"
        for o in built[overlay]
        if REMOVED_API_VERSIONS.match(o["apiVersion"])
    ]
    assert not stale
    crd_typed = {
        (o["apiVersion"], o["kind"]) for o in built[overlay] if o["apiVersion"].startswith(CRD_GROUP)
    }
    cert_manager = {
        (o["apiVersion"], o["kind"]) for o in built[overlay] if "cert-manager.io/" in o["apiVersion"]
    }
    assert cert_manager <= {("cert-manager.io/v1", "Issuer"), ("cert-manager.io/v1", "Certificate")}
    assert crd_typed == {(f"{CRD_GROUP}/v1", "Prometheus"), (f"{CRD_GROUP}/v1", "ServiceMonitor")}


class _CrdLoader(yaml.SafeLoader):
    """The operator's CRDs contain ``- =`` (a YAML 1.1 'value' tag PyYAML cannot construct)."""


def _value_tag(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    assert isinstance(node, yaml.ScalarNode)
    return str(loader.construct_scalar(node))


_CrdLoader.add_constructor("tag:yaml.org,2002:value", _value_tag)


def _operator_crd_dir() -> Path | None:
    """The pinned operator's CRDs in the Go module cache, if present. Never downloads."""
    caches = [os.environ.get("GOMODCACHE", "")]
    go = shutil.which("go")
    if go:
        proc = subprocess.run([go, "env", "GOMODCACHE"], capture_output=True, text=True, check=False)
        caches.append(proc.stdout.strip())
    caches.append(str(Path.home() / "go" / "pkg" / "mod"))
    for cache in filter(None, caches):
        path = Path(cache) / f"github.com/prometheus-operator/prometheus-operator@{OPERATOR_VERSION}"
        path = path / "example" / "prometheus-operator-crd"
        if path.is_dir():
            return path
    return None


def _crd_schema(kind: str) -> dict[str, Any]:
    crd_dir = _operator_crd_dir()
    if crd_dir is None:
        pytest.skip(
            f"prometheus-operator {OPERATOR_VERSION} is not in the Go module cache (run "
            "scripts/operator-crds.sh once with Go); CRD-typed objects get the required-field checks only"
        )
    plural = {"Prometheus": "prometheuses", "ServiceMonitor": "servicemonitors"}[kind]
    crd = yaml.load((crd_dir / f"monitoring.coreos.com_{plural}.yaml").read_text(), Loader=_CrdLoader)
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return version["schema"]["openAPIV3Schema"]


def _unknown_fields(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields the CRD schema does not declare (the API server would prune or, strict, reject them)."""
    if isinstance(value, dict) and schema.get("type") == "object":
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return []
        props = schema.get("properties")
        if props is None:
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict):
                return [e for k, v in value.items() for e in _unknown_fields(v, extra, f"{path}.{k}")]
            return []
        problems = [f"{path}.{k}" for k in value if k not in props]
        for key, sub in value.items():
            if key in props:
                problems += _unknown_fields(sub, props[key], f"{path}.{key}")
        return problems
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [e for i, v in enumerate(value) for e in _unknown_fields(v, schema["items"], f"{path}[{i}]")]
    return []


@pytest.mark.parametrize("overlay", manifests.OVERLAYS)
@pytest.mark.parametrize("kind", ["Prometheus", "ServiceMonitor"])
def test_crd_objects_validate_against_operator_crds(
    built: dict[str, list[dict[str, Any]]], overlay: str, kind: str
) -> None:
    schema = _crd_schema(kind)
    for obj in _all(built[overlay], kind):
        body = {k: v for k, v in obj.items() if k != "metadata"}
        sub_schema = {
            **schema,
            "properties": {k: v for k, v in schema["properties"].items() if k != "metadata"},
        }
        jsonschema.validate(body, sub_schema)
        assert not _unknown_fields(body, sub_schema), f"{kind} {obj['metadata']['name']}: unknown fields"


@pytest.mark.parametrize("overlay", manifests.OVERLAYS)
def test_crd_objects_required_fields(built: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    objs = built[overlay]
    prom = _one(objs, "Prometheus", "hpa-kit", "monitoring")
    spec = prom["spec"]
    assert spec["version"] == "v3.5.0"
    assert spec["image"] == "quay.io/prometheus/prometheus:v3.5.0"
    assert spec["imagePullPolicy"] == "IfNotPresent"
    assert spec["serviceMonitorSelector"] == {"matchLabels": {"hpa-kit/scrape": "true"}}
    assert spec["serviceMonitorNamespaceSelector"] == {}, "unset would mean: only the monitoring namespace"
    assert re.fullmatch(r"\d+s", spec["scrapeInterval"])
    _one(objs, "ServiceAccount", spec["serviceAccountName"], "monitoring")
    for sm in _all(objs, "ServiceMonitor"):
        assert sm["spec"]["selector"], "a ServiceMonitor without selector selects nothing useful"
        assert sm["spec"]["endpoints"], "a ServiceMonitor needs at least one endpoint"
        for endpoint in sm["spec"]["endpoints"]:
            assert "port" in endpoint, "scrape the Service port by name"


# ----------------------------------------------------------------------------------- security posture


@pytest.mark.parametrize("overlay", ["default", "test"])
def test_secure_overlays_verify_tls_and_grant_nothing_to_anonymous(
    built: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    objs = built[overlay]
    apiservices = _all(objs, "APIService")
    assert {a["metadata"]["name"] for a in apiservices} == {
        "v1beta1.custom.metrics.k8s.io",
        "v1beta2.custom.metrics.k8s.io",
        "v1beta1.external.metrics.k8s.io",
        *RESOURCE_APISERVICES.get(overlay, ()),
    }
    for api in apiservices:
        assert not api["spec"].get("insecureSkipTLSVerify")
        assert api["spec"]["caBundle"] == manifests.CA_BUNDLE_PLACEHOLDER
    for binding in _all(objs, "ClusterRoleBinding") + _all(objs, "RoleBinding"):
        for subject in binding.get("subjects") or []:
            assert subject["name"] not in (
                "system:anonymous",
                "system:unauthenticated",
                "system:authenticated",
            )
        assert binding["roleRef"]["name"] != "cluster-admin"
    adapter = _one(objs, "Deployment", manifests.ADAPTER_SERVICE, manifests.ADAPTER_NAMESPACE)
    assert "--allow-anonymous" not in adapter["spec"]["template"]["spec"]["containers"][0]["args"]
    assert manifests.detect_insecure(objs) == []


@pytest.mark.parametrize("overlay", manifests.OVERLAYS)
def test_adapter_rbac_is_complete(built: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    objs = built[overlay]
    adapter_sa = {"kind": "ServiceAccount", "name": manifests.ADAPTER_SERVICE, "namespace": "custom-metrics"}
    reader = [
        b
        for b in _all(objs, "RoleBinding")
        if b["roleRef"]
        == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "extension-apiserver-authentication-reader",
        }
    ]
    assert len(reader) == 1
    assert reader[0]["metadata"]["namespace"] == "kube-system", "the Role only exists in kube-system"
    assert adapter_sa in reader[0]["subjects"]
    delegator = [
        b for b in _all(objs, "ClusterRoleBinding") if b["roleRef"]["name"] == "system:auth-delegator"
    ]
    assert len(delegator) == 1 and adapter_sa in delegator[0]["subjects"]

    # The adapter can watch every object kind the rules map series onto.
    config = _adapter_config(objs)
    mapped = {
        override["resource"]
        for rule in config.get("rules", []) + config.get("externalRules", [])
        for override in (rule.get("resources") or {}).get("overrides", {}).values()
    }
    readable = set()
    for binding in _all(objs, "ClusterRoleBinding"):
        if adapter_sa in binding.get("subjects", []):
            role = (
                _one(objs, "ClusterRole", binding["roleRef"]["name"])
                if binding["roleRef"]["name"].startswith("hpa-kit:")
                else None
            )
            for rule in (role or {}).get("rules", []):
                if {"get", "list", "watch"} <= set(rule["verbs"]):
                    readable |= set(rule["resources"])
    assert {f"{r}s" if not r.endswith("s") else r for r in mapped} <= readable

    # The HPA controller may read both metrics APIs; the binding still names kube-system.
    hpa_sa = {"kind": "ServiceAccount", "name": "horizontal-pod-autoscaler", "namespace": "kube-system"}
    hpa_bindings = [b for b in _all(objs, "ClusterRoleBinding") if hpa_sa in b.get("subjects", [])]
    assert len(hpa_bindings) == 1
    role = _one(objs, "ClusterRole", hpa_bindings[0]["roleRef"]["name"])
    groups = {g for rule in role["rules"] for g in rule["apiGroups"]}
    assert groups == set(manifests.METRICS_GROUPS)
    assert all(set(rule["verbs"]) == {"get", "list"} for rule in role["rules"])


def test_anonymous_fallback_grants_only_metrics_reads(built: dict[str, list[dict[str, Any]]]) -> None:
    objs = built["anonymous-fallback"]
    anonymous = [
        b
        for b in _all(objs, "ClusterRoleBinding") + _all(objs, "RoleBinding")
        if any(s["name"] in ("system:anonymous", "system:unauthenticated") for s in b.get("subjects", []))
    ]
    assert len(anonymous) == 1
    binding = anonymous[0]
    # Per namespace: a ClusterRoleBinding would let any anonymous client of the kube-apiserver read
    # every namespace's metrics through the aggregator. Only the namespace with the HPAs is granted.
    assert binding["kind"] == "RoleBinding" and binding["metadata"]["namespace"] == "hpa-demo"
    assert binding["roleRef"]["kind"] == "ClusterRole"
    assert binding["roleRef"]["name"] != "cluster-admin"
    role = _one(objs, "ClusterRole", binding["roleRef"]["name"])
    assert "aggregationRule" not in role
    for rule in role["rules"]:
        assert set(rule["verbs"]) <= {"get", "list"}
        assert set(rule["apiGroups"]) <= set(manifests.METRICS_GROUPS)
        assert "nonResourceURLs" not in rule
    assert {g for r in role["rules"] for g in r["apiGroups"]} == set(manifests.METRICS_GROUPS)

    adapter = _one(objs, "Deployment", manifests.ADAPTER_SERVICE, manifests.ADAPTER_NAMESPACE)
    assert "--allow-anonymous" in adapter["spec"]["template"]["spec"]["containers"][0]["args"]
    # TLS verification towards the adapter is unchanged.
    assert all(not a["spec"].get("insecureSkipTLSVerify") for a in _all(objs, "APIService"))
    findings = manifests.audit(objs)
    assert findings and all(f.severity == "warning" for f in findings)


def test_default_installs_nothing_extra_compared_to_fallback(built: dict[str, list[dict[str, Any]]]) -> None:
    def names(objs: list[dict[str, Any]]) -> set[tuple[str, str]]:
        return {(o["kind"], o["metadata"]["name"]) for o in objs}

    extra = names(built["anonymous-fallback"]) - names(built["default"])
    assert extra == {
        ("ClusterRole", "hpa-kit:anonymous-metrics-reader"),
        ("RoleBinding", "hpa-kit:anonymous-metrics-reader"),
    }


def test_insecure_overlay_is_the_tutorial_shortcut(built: dict[str, list[dict[str, Any]]]) -> None:
    objs = built["insecure"]
    for api in _all(objs, "APIService"):
        assert api["spec"]["insecureSkipTLSVerify"] is True
        assert "caBundle" not in api["spec"], (
            "the API server rejects caBundle together with insecureSkipTLSVerify"
        )
    warnings = manifests.detect_insecure(objs)
    assert sum("insecureSkipTLSVerify" in w for w in warnings) == 3
    assert any("cluster-admin" in w and w.startswith("CRITICAL") for w in warnings)


# ---------------------------------------------------------------------------------------- workloads


@pytest.mark.parametrize("overlay", manifests.OVERLAYS)
def test_images_are_pinned_and_never_pulled(built: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    for where, spec in _pod_specs(built[overlay]):
        for container in spec.get("initContainers", []) + spec["containers"]:
            assert container["image"] in IMAGES, f"{where}: unexpected image {container['image']}"
            assert container["imagePullPolicy"] == "IfNotPresent", where
            sc = container.get("securityContext") or {}
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert "memory" in (container.get("resources") or {}).get("limits", {}), where
        assert spec["securityContext"]["runAsNonRoot"] is True, where
    operator = _one(built[overlay], "Deployment", "prometheus-operator", "monitoring")
    args = operator["spec"]["template"]["spec"]["containers"][0]["args"]
    assert (
        f"--prometheus-config-reloader=quay.io/prometheus-operator/prometheus-config-reloader:{OPERATOR_VERSION}"
        in args
    )


@pytest.mark.parametrize(("overlay", "replicas"), [("default", 2), ("anonymous-fallback", 2), ("test", 1)])
def test_adapter_deployment(built: dict[str, list[dict[str, Any]]], overlay: str, replicas: int) -> None:
    objs = built[overlay]
    dep = _one(objs, "Deployment", manifests.ADAPTER_SERVICE, manifests.ADAPTER_NAMESPACE)
    assert dep["spec"]["replicas"] == replicas
    pod = dep["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "hpa-kit/adapter:0.1.0"
    args = container["args"]
    assert args[0] == "serve"
    for flag in (
        "--secure-port=6443",
        "--tls-cert-file=/var/run/serving-cert/tls.crt",
        "--tls-private-key-file=/var/run/serving-cert/tls.key",
        "--config=/etc/adapter/config.yaml",
        "--prometheus-url=http://prometheus-operated.monitoring.svc:9090",
    ):
        assert flag in args
    assert sum(a.startswith("--metrics-relist-interval=") for a in args) == 1
    # A cached answer must not outlive a scrape: the result cache's TTL is under every interval
    # the build's ServiceMonitors scrape at (or the HPA reads a value Prometheus has replaced).
    ttl = [a.removeprefix("--cache-ttl=") for a in args if a.startswith("--cache-ttl=")]
    intervals = [
        ep["interval"]
        for o in objs
        if o["kind"] == "ServiceMonitor"
        for ep in o["spec"]["endpoints"]
        if "interval" in ep
    ]
    assert len(ttl) == 1 and intervals and all(re.fullmatch(r"\d+s", d) for d in [*ttl, *intervals])
    assert int(ttl[0][:-1]) < min(int(d[:-1]) for d in intervals), (ttl, intervals)
    for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz")):
        get = container[probe]["httpGet"]
        assert (get["scheme"], get["path"], get["port"]) == ("HTTPS", path, "https")
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"https": 6443}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/var/run/serving-cert"]]["secret"]["secretName"] == manifests.SERVING_SECRET
    assert volumes[mounts["/etc/adapter"]]["configMap"]["name"] == "adapter-config"
    assert all("subPath" not in m for m in container["volumeMounts"]), "subPath mounts never see updates"
    assert pod["serviceAccountName"] == manifests.ADAPTER_SERVICE

    svc = _one(objs, "Service", manifests.ADAPTER_SERVICE, manifests.ADAPTER_NAMESPACE)
    assert svc["spec"]["ports"] == [{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}]
    assert _selects({"matchLabels": svc["spec"]["selector"]}, dep["spec"]["template"]["metadata"]["labels"])
    pdb = _one(objs, "PodDisruptionBudget", manifests.ADAPTER_SERVICE, manifests.ADAPTER_NAMESPACE)
    assert _selects(pdb["spec"]["selector"], dep["spec"]["template"]["metadata"]["labels"])
    for api in _all(objs, "APIService"):
        assert api["spec"]["service"] == {
            "name": svc["metadata"]["name"],
            "namespace": "custom-metrics",
            "port": 443,
        }
        assert api["spec"]["groupPriorityMinimum"] == 100
    priorities = {a["metadata"]["name"]: a["spec"]["versionPriority"] for a in _all(objs, "APIService")}
    assert priorities["v1beta2.custom.metrics.k8s.io"] > priorities["v1beta1.custom.metrics.k8s.io"]


#: Overlays that register the adapter for metrics.k8s.io (one owner per cluster: never by default).
RESOURCE_APISERVICES = {"resource-metrics": ("v1beta1.metrics.k8s.io",), "test": ("v1beta1.metrics.k8s.io",)}
#: What the resource-metrics component adds: the APIService and the two CPU demo workloads.
RESOURCE_COMPONENT = {("APIService", "v1beta1.metrics.k8s.io"), ("Deployment", "cpu"), ("Service", "cpu"),
                      ("HorizontalPodAutoscaler", "cpu"), ("Deployment", "cpu-sidecar"),
                      ("Service", "cpu-sidecar"), ("HorizontalPodAutoscaler", "cpu-sidecar")}


def test_test_overlay_only_turns_knobs(built: dict[str, list[dict[str, Any]]]) -> None:
    default, test = built["default"], built["test"]
    assert {(o["kind"], o["metadata"]["name"]) for o in default} | RESOURCE_COMPONENT == {
        (o["kind"], o["metadata"]["name"]) for o in test
    }
    assert {(o["kind"], o["metadata"]["name"]) for o in built["resource-metrics"]} == {
        (o["kind"], o["metadata"]["name"]) for o in test
    }
    args = _one(test, "Deployment", manifests.ADAPTER_SERVICE)["spec"]["template"]["spec"]["containers"][0][
        "args"
    ]
    base_args = _one(default, "Deployment", manifests.ADAPTER_SERVICE)["spec"]["template"]["spec"][
        "containers"
    ][0]["args"]
    changed = set(args) ^ set(base_args)
    assert changed == {"--metrics-relist-interval=10s", "--metrics-relist-interval=30s"}


@pytest.mark.parametrize("overlay", manifests.OVERLAYS)
def test_mockmetrics_deployments_leave_replicas_to_the_hpa(
    built: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    objs = built[overlay]
    demos = [d for d in _all(objs, "Deployment") if d["metadata"].get("namespace") == "hpa-demo"]
    cpu_demos = {"cpu", "cpu-sidecar"} if overlay in RESOURCE_APISERVICES else set()
    assert {d["metadata"]["name"] for d in demos} == {"hits", "fpm", "requests", "queue", *cpu_demos}
    for dep in demos:
        assert "replicas" not in dep["spec"], f"{dep['metadata']['name']}: spec.replicas fights the HPA"
        container = dep["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == "hpa-kit/mockmetrics:0.1.0"
        assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in container["ports"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        svc = _one(objs, "Service", dep["metadata"]["name"], "hpa-demo")
        assert [p["name"] for p in svc["spec"]["ports"]] == ["http"]
        selected = [
            d
            for d in demos
            if _selects({"matchLabels": svc["spec"]["selector"]}, d["spec"]["template"]["metadata"]["labels"])
        ]
        assert selected == [dep], "each scenario Service must select exactly its own Deployment"


# --------------------------------------------------------------------------------------- monitoring


def _operator_made_services(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The Service the operator writes for ``--kubelet-service=NS/NAME``, as v0.85 writes it (labels
    ``app.kubernetes.io/name``/``k8s-app`` = kubelet; ports https-metrics 10250, http-metrics 10255,
    cadvisor 4194): it is in no manifest, so a ServiceMonitor for it is checked against this."""
    dep = _one(objs, "Deployment", "prometheus-operator", "monitoring")
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    out = []
    for a in args:
        if a.startswith("--kubelet-service="):
            ns, _, name = a.split("=", 1)[1].partition("/")
            out.append({"metadata": {"name": name, "namespace": ns,
                                     "labels": {"app.kubernetes.io/name": "kubelet", "k8s-app": "kubelet"}},
                        "spec": {"ports": [{"name": "https-metrics"}, {"name": "http-metrics"},
                                           {"name": "cadvisor"}]}})
    return out


@pytest.mark.parametrize("overlay", manifests.OVERLAYS)
def test_every_servicemonitor_is_selected_and_finds_a_service(
    built: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    objs = built[overlay]
    prom = _one(objs, "Prometheus", "hpa-kit", "monitoring")["spec"]
    namespaces = {n["metadata"]["name"]: n["metadata"].get("labels", {}) for n in _all(objs, "Namespace")}
    monitors = _all(objs, "ServiceMonitor")
    assert monitors
    for sm in monitors:
        name = sm["metadata"]["name"]
        assert _selects(prom["serviceMonitorSelector"], sm["metadata"].get("labels", {})), (
            f"{name} not selected"
        )
        assert "release" not in prom["serviceMonitorSelector"].get("matchLabels", {})
        assert _selects(prom["serviceMonitorNamespaceSelector"], namespaces[sm["metadata"]["namespace"]])
        wanted_ns = sm["spec"].get("namespaceSelector", {}).get("matchNames") or [sm["metadata"]["namespace"]]
        services = [
            s
            for s in _all(objs, "Service")
            if s["metadata"]["namespace"] in wanted_ns
            and _selects(sm["spec"]["selector"], s["metadata"].get("labels", {}))
        ] + [s for s in _operator_made_services(objs) if s["metadata"]["namespace"] in wanted_ns
             and _selects(sm["spec"]["selector"], s["metadata"]["labels"])]
        assert services, f"ServiceMonitor {name} selects no Service"
        for endpoint in sm["spec"]["endpoints"]:
            for svc in services:
                assert endpoint["port"] in {p["name"] for p in svc["spec"]["ports"]}
        targets = {r.get("targetLabel") for e in sm["spec"]["endpoints"] for r in e.get("relabelings", [])}
        if all(e.get("honorLabels") for e in sm["spec"]["endpoints"]):
            # The kubelet: its series carry the measured pod's own namespace/pod/container labels.
            assert {"metrics_path", "node"} <= targets
            assert all(e["scheme"] == "https" and e["tlsConfig"].get("caFile")
                       and not e["tlsConfig"].get("insecureSkipVerify") for e in sm["spec"]["endpoints"])
        else:
            assert {"namespace", "pod", "service"} <= targets


def test_prometheus_can_discover_targets(built: dict[str, list[dict[str, Any]]]) -> None:
    objs = built["default"]
    prom = _one(objs, "Prometheus", "hpa-kit", "monitoring")
    sa = {"kind": "ServiceAccount", "name": prom["spec"]["serviceAccountName"], "namespace": "monitoring"}
    binding = next(b for b in _all(objs, "ClusterRoleBinding") if sa in b["subjects"])
    rules = _one(objs, "ClusterRole", binding["roleRef"]["name"])["rules"]
    role = prom["spec"].get("serviceDiscoveryRole", "Endpoints")
    needed = ("discovery.k8s.io", "endpointslices") if role == "EndpointSlice" else ("", "endpoints")
    assert any(
        needed[0] in r.get("apiGroups", [])
        and needed[1] in r.get("resources", [])
        and {"list", "watch"} <= set(r["verbs"])
        for r in rules
    )
    svc = _one(objs, "Service", "prometheus", "monitoring")
    # Labels the operator puts on the Prometheus pods (v0.85: makeSelectorLabels).
    operator_pod_labels = {
        "app.kubernetes.io/name": "prometheus",
        "operator.prometheus.io/name": "hpa-kit",
        "prometheus": "hpa-kit",
        "app.kubernetes.io/managed-by": "prometheus-operator",
    }
    assert _selects({"matchLabels": svc["spec"]["selector"]}, operator_pod_labels)
    assert svc["spec"]["ports"][0]["targetPort"] == "web"


# ------------------------------------------------------------------------------------ adapter rules


def _rule_metric_names(rules: list[dict[str, Any]]) -> set[str]:
    """The metric names a prometheus-adapter rule list exposes (series name through name.matches/as)."""
    names = set()
    for rule in rules:
        series = re.match(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", rule["seriesQuery"])
        assert series, f"cannot tell the series name of {rule['seriesQuery']!r}"
        name = rule.get("name") or {}
        matches, as_ = name.get("matches", "^(.*)$"), name.get("as", "")
        found = re.search(matches, series.group(1))
        assert found, f"name.matches {matches!r} does not match series {series.group(1)}"
        if not as_:
            as_ = "${1}" if found.groups() else "${0}"
        names.add(found.expand(re.sub(r"\$\{(\d+)\}", r"\\g<\1>", as_)))
    return names


@pytest.mark.parametrize("overlay", manifests.OVERLAYS)
def test_every_hpa_metric_is_served_by_an_adapter_rule(
    built: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    objs = built[overlay]
    config = _adapter_config(objs)
    assert set(config) <= {"rules", "externalRules", "resourceRules"}
    custom, external = _rule_metric_names(config["rules"]), _rule_metric_names(config["externalRules"])
    assert custom == {"total_hit_count", "fpm_active_rate", "http_requests"}
    assert external == {"queue_depth"}
    for rule in config["rules"] + config["externalRules"]:
        assert "<<.Series>>" in rule["metricsQuery"] and "<<.LabelMatchers>>" in rule["metricsQuery"]
        for label, target in rule["resources"]["overrides"].items():
            assert set(target) == {"resource"} and label in ("namespace", "pod", "service")
        if rule in config["rules"]:
            assert "<<.GroupBy>>" in rule["metricsQuery"], "per-object rules must group by the object label"
    resource = config.get("resourceRules") or {}
    for hpa in _all(objs, "HorizontalPodAutoscaler"):
        for metric in hpa["spec"]["metrics"]:
            kind = metric["type"]
            if kind in ("Resource", "ContainerResource"):
                name = metric["resource" if kind == "Resource" else "containerResource"]["name"]
                assert name in resource, f"HPA {hpa['metadata']['name']}: no resourceRules.{name}"
                assert overlay in RESOURCE_APISERVICES, "a Resource HPA needs metrics.k8s.io served"
                continue
            name = metric[kind.lower()]["metric"]["name"]
            served = external if kind == "External" else custom
            assert name in served, (
                f"HPA {hpa['metadata']['name']}: no adapter rule serves {kind} metric {name}"
            )


def test_fpm_rule_is_the_active_over_total_ratio(built: dict[str, list[dict[str, Any]]]) -> None:
    config = _adapter_config(built["default"])
    rule = next(r for r in config["rules"] if (r.get("name") or {}).get("as") == "fpm_active_rate")
    query = rule["metricsQuery"]
    assert 'state="active processes"' in query and 'state="total processes"' in query
    assert query.count("max_over_time(") == 2 and "[2m]" in query and "/" in query
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
    hits = next(r for r in config["rules"] if (r.get("name") or {}).get("as") == "total_hit_count")
    assert set(hits["resources"]["overrides"]) == {"namespace", "service"}
    assert "rate(" in hits["metricsQuery"] and f"[{RATE_WINDOW}]" in hits["metricsQuery"]
    requests = next(r for r in config["rules"] if "http_requests_total" in r["seriesQuery"])
    assert f"[{RATE_WINDOW}]" in requests["metricsQuery"]  # the e2e direct queries use the same window


# ---------------------------------------------------------------------------------------------- HPAs


@pytest.mark.parametrize("overlay", manifests.OVERLAYS)
def test_hpas(built: dict[str, list[dict[str, Any]]], overlay: str) -> None:
    objs = built[overlay]
    hpas = _all(objs, "HorizontalPodAutoscaler")
    resource = overlay in RESOURCE_APISERVICES
    assert {h["metadata"]["name"] for h in hpas} == {
        "hits", "fpm", "requests", "queue", *(("cpu", "cpu-sidecar") if resource else ())}
    assert {m["type"] for h in hpas for m in h["spec"]["metrics"]} == {
        "Object", "Pods", "External", *(("Resource", "ContainerResource") if resource else ())}
    targets = [h["spec"]["scaleTargetRef"]["name"] for h in hpas]
    assert len(targets) == len(set(targets)), "two HPAs on one Deployment fight each other"
    for hpa in hpas:
        assert hpa["apiVersion"] == "autoscaling/v2"
        spec = hpa["spec"]
        ref = spec["scaleTargetRef"]
        assert ref["apiVersion"] == "apps/v1" and ref["kind"] == "Deployment"
        _one(objs, "Deployment", ref["name"], hpa["metadata"]["namespace"])
        assert spec["minReplicas"] == 1 and spec["maxReplicas"] in (8, 10)
        behavior = spec["behavior"]
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 30
        assert behavior["scaleDown"]["policies"] and behavior["scaleUp"]["policies"]
        for metric in spec["metrics"]:
            if metric["type"] == "Pods":
                assert metric["pods"]["target"]["type"] == "AverageValue"
                assert "averageValue" in metric["pods"]["target"]
            if metric["type"] == "Object":
                described = metric["object"]["describedObject"]
                assert described["kind"] == "Service" and described["apiVersion"] == "v1"
                _one(objs, "Service", described["name"], hpa["metadata"]["namespace"])
            if metric["type"] == "External":
                assert metric["external"]["target"]["type"] == "AverageValue"
            if metric["type"] in ("Resource", "ContainerResource"):
                body = metric["resource" if metric["type"] == "Resource" else "containerResource"]
                assert body["target"]["type"] == "Utilization" and body["target"]["averageUtilization"] > 0
                dep = _one(objs, "Deployment", ref["name"], hpa["metadata"]["namespace"])
                containers = dep["spec"]["template"]["spec"]["containers"]
                # Utilization is usage / request: every counted container must request the resource.
                counted = [c for c in containers if c["name"] == body.get("container", c["name"])]
                assert counted and all(c["resources"]["requests"].get(body["name"]) for c in counted)


def test_queue_target_matches_consume_rate(built: dict[str, list[dict[str, Any]]]) -> None:
    objs = built["default"]
    env = _one(objs, "Deployment", "queue", "hpa-demo")["spec"]["template"]["spec"]["containers"][0]["env"]
    rate = float(next(e["value"] for e in env if e["name"] == "MOCKMETRICS_CONSUME_RATE"))
    hpa = _one(objs, "HorizontalPodAutoscaler", "queue", "hpa-demo")
    target = float(hpa["spec"]["metrics"][0]["external"]["target"]["averageValue"])
    assert target == rate * 10, "averageValue is 10 s of one replica's consumption"
    selector = hpa["spec"]["metrics"][0]["external"]["metric"]["selector"]["matchLabels"]
    assert selector == {"service": "queue"}


# ---------------------------------------------------------------------------------------------- load


def test_load_jobs_are_suspended_and_consistent(built: dict[str, list[dict[str, Any]]]) -> None:
    objs = built["default"]
    master = _one(objs, "Job", "locust-master", "hpa-demo")
    worker = _one(objs, "Job", "locust-worker", "hpa-demo")
    assert master["spec"]["suspend"] is True and worker["spec"]["suspend"] is True, (
        "install must start no load"
    )
    settings = _one(objs, "ConfigMap", "locust-settings", "hpa-demo")["data"]
    assert (
        int(settings["LOCUST_EXPECT_WORKERS"])
        == worker["spec"]["parallelism"]
        == worker["spec"]["completions"]
    )
    assert "--master" in master["spec"]["template"]["spec"]["containers"][0]["args"]
    worker_args = worker["spec"]["template"]["spec"]["containers"][0]["args"]
    svc = _one(objs, "Service", "locust-master", "hpa-demo")
    assert f"--master-host={svc['metadata']['name']}.hpa-demo.svc" in worker_args
    assert _selects(
        {"matchLabels": svc["spec"]["selector"]}, master["spec"]["template"]["metadata"]["labels"]
    )
    target = settings["LOCUST_HOST"]
    host = re.fullmatch(r"http://([a-z0-9-]+)\.hpa-demo\.svc:8080", target)
    assert host and _one(objs, "Service", host.group(1), "hpa-demo")
    assert settings["LOCUST_USER_CLASSES"] in ("HitUser", "WorkUser", "ProduceUser")
    stages = json.loads(settings["HPA_KIT_STAGES"])
    assert stages and all(len(s) == 3 for s in stages)
    # The locustfile is harness/locustfile.py, generated by render() (outside the kustomize root):
    # the repo overlay mounts it but must not carry a second, drifting copy.
    assert not (REPO / "manifests" / "base" / "load" / "locustfile.py").exists()
    assert not [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "locustfile"]
    assert manifests.locustfile_namespaces(objs) == ["hpa-demo"]
    for job in (master, worker):
        volumes = job["spec"]["template"]["spec"]["volumes"]
        assert {"name": "locustfile", "configMap": {"name": "locustfile"}} in volumes


# ------------------------------------------------------------------------------- operator RBAC scope

#: What the operator generates and may only write where it manages Prometheus (issue 12): a
#: cluster-wide write on these is read/write access to every Secret and workload in the cluster.
_SCOPED_WRITES = {("", "secrets"), ("", "configmaps"), ("apps", "statefulsets")}
_WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "*"}


def _operator(objs: list[dict[str, Any]]) -> tuple[dict[str, str], list[str]]:
    dep = _one(objs, "Deployment", "prometheus-operator", "monitoring")
    pod = dep["spec"]["template"]["spec"]
    sa = {"kind": "ServiceAccount", "name": pod["serviceAccountName"], "namespace": "monitoring"}
    return sa, pod["containers"][0]["args"]


def _grants(rule: dict[str, Any], group: str, resource: str, verbs: set[str]) -> bool:
    return (
        bool({group, "*"} & set(rule.get("apiGroups", [])))
        and bool({resource, "*"} & set(rule.get("resources", [])))
        and bool(verbs & set(rule.get("verbs", [])))
    )


@pytest.mark.parametrize("overlay", manifests.OVERLAYS)
def test_operator_writes_only_in_the_namespaces_it_manages(
    built: dict[str, list[dict[str, Any]]], overlay: str
) -> None:
    objs = built[overlay]
    sa, args = _operator(objs)
    for binding in _all(objs, "ClusterRoleBinding"):
        if sa not in binding.get("subjects", []):
            continue
        role = _one(objs, "ClusterRole", binding["roleRef"]["name"])
        for group, resource in _SCOPED_WRITES:
            wide = [r for r in role["rules"] if _grants(r, group, resource, _WRITE_VERBS)]
            assert not wide, f"ClusterRole {role['metadata']['name']} writes {resource} cluster-wide: {wide}"
        # Nor reads Secrets everywhere: listing them all is reading them all.
        reads = [r for r in role["rules"] if _grants(r, "", "secrets", {"get", "list", "watch"})]
        assert not reads, f"ClusterRole {role['metadata']['name']} reads secrets cluster-wide: {reads}"
    # The operator is told where it manages instances, so it never tries to write elsewhere ...
    managed = {"monitoring"}
    kinds = ("prometheus-instance", "alertmanager-instance", "alertmanager-config", "thanos-ruler-instance")
    for flag in kinds:
        assert f"--{flag}-namespaces={','.join(sorted(managed))}" in args, flag
    for prom in _all(objs, "Prometheus"):
        assert prom["metadata"]["namespace"] in managed
    # ... and may write what it generates there (and only there).
    bindings = [b for b in _all(objs, "RoleBinding") if sa in b.get("subjects", [])]
    # kube-system: only the kubelet controller's Service and EndpointSlices (--kubelet-service).
    kubelet_flag = next(a for a in args if a.startswith("--kubelet-service="))
    kubelet_ns, _, kubelet_svc = kubelet_flag.split("=")[1].partition("/")
    assert {b["metadata"]["namespace"] for b in bindings} == managed | {kubelet_ns}
    kubelet_rules = [r for b in bindings if b["metadata"]["namespace"] == kubelet_ns
                     for r in _one(objs, "Role", b["roleRef"]["name"], kubelet_ns)["rules"]]
    assert {(g, res) for r in kubelet_rules for g in r["apiGroups"] for res in r["resources"]} == {
        ("", "services"), ("discovery.k8s.io", "endpointslices")}, kubelet_svc
    for ns in managed:
        rules = [
            rule
            for b in bindings
            if b["metadata"]["namespace"] == ns
            for rule in _one(
                objs,
                b["roleRef"]["kind"],
                b["roleRef"]["name"],
                ns if b["roleRef"]["kind"] == "Role" else None,
            )["rules"]
        ]
        for group, resource in _SCOPED_WRITES:
            for verb in ("get", "list", "watch", "create", "update", "delete"):
                assert any(_grants(r, group, resource, {verb}) for r in rules), f"{ns}: {verb} {resource}"
