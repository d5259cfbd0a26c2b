"""harness.manifests render()/detect_insecure() and scripts/operator-crds.sh, without a cluster."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from harness import manifests

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "operator-crds.sh"
needs_kubectl = pytest.mark.skipif(shutil.which("kubectl") is None, reason="needs kubectl (kustomize)")

APISERVICES = {
    "v1beta1.custom.metrics.k8s.io",
    "v1beta2.custom.metrics.k8s.io",
    "v1beta1.external.metrics.k8s.io",
}


def _ca_pem(common_name: str = "test-ca") -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def ca() -> tuple[bytes, bytes]:
    return _ca_pem()


def _secret(
    path: Path,
    ca_pem: bytes,
    *,
    name: str = manifests.SERVING_SECRET,
    namespace: str = manifests.ADAPTER_NAMESPACE,
    type_: str = "kubernetes.io/tls",
    ca_crt: bytes | None = None,
) -> Path:
    # The serving pair's content does not matter to render(); a CA cert stands in for tls.crt.
    doc = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": type_,
        "data": {"tls.crt": _b64(ca_pem), "tls.key": _b64(b"key"), "ca.crt": _b64(ca_crt or ca_pem)},
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def _objects(out: Path) -> list[dict[str, Any]]:
    return manifests.load_objects(manifests.kustomize(out))


# --------------------------------------------------------------------------------------------- render


@needs_kubectl
@pytest.mark.parametrize("overlay", ["default", "test", "anonymous-fallback"])
def test_render_injects_ca_bundle_into_all_apiservices(
    tmp_path: Path, ca: tuple[bytes, bytes], overlay: str
) -> None:
    secret = _secret(tmp_path / "secret.yaml", ca[0])
    out = manifests.render(
        overlay, ca_bundle=_b64(ca[0]) + "\n", serving_secret_yaml=secret, out_dir=tmp_path / "b"
    )
    objs = _objects(out)
    apiservices = {o["metadata"]["name"]: o for o in objs if o["kind"] == "APIService"}
    resource = {"v1beta1.metrics.k8s.io"} if overlay in ("resource-metrics", "test") else set()
    assert set(apiservices) == APISERVICES | resource
    for api in apiservices.values():
        assert api["spec"]["caBundle"] == _b64(ca[0])
        assert not api["spec"].get("insecureSkipTLSVerify")
    assert manifests.placeholder_apiservices(objs) == []
    secrets = [o for o in objs if o["kind"] == "Secret"]
    assert [(s["metadata"]["namespace"], s["metadata"]["name"]) for s in secrets] == [
        (manifests.ADAPTER_NAMESPACE, manifests.SERVING_SECRET)
    ]
    # The locustfile ConfigMap is generated from harness/locustfile.py, the single source.
    locust = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "locustfile"]
    assert len(locust) == 1 and locust[0]["metadata"]["namespace"] == "hpa-demo"
    assert locust[0]["data"]["locustfile.py"] == manifests.LOCUSTFILE.read_text()
    assert locust[0]["metadata"]["labels"]["app.kubernetes.io/part-of"] == "hpa-kit"
    # Everything else is the overlay unchanged.
    raw = manifests.build(overlay)
    assert len(objs) == len(raw) + 2
    assert stat.S_IMODE((out / "serving-secret.yaml").stat().st_mode) == 0o600


@needs_kubectl
def test_render_writes_a_relative_kustomization_and_no_repo_files(
    tmp_path: Path, ca: tuple[bytes, bytes]
) -> None:
    before = sorted(p for p in (REPO / "manifests").rglob("*"))
    out = manifests.render(
        "default", ca_bundle=ca[0].decode(), serving_secret_yaml=None, out_dir=tmp_path / "x"
    )
    assert sorted(p for p in (REPO / "manifests").rglob("*")) == before
    doc = yaml.safe_load((out / "kustomization.yaml").read_text())
    assert doc["resources"][0] == os.path.relpath(REPO / "manifests" / "overlays" / "default", out)
    assert not Path(doc["resources"][0]).is_absolute()
    assert len(doc["patches"]) == 3
    assert not (out / "serving-secret.yaml").exists()
    assert (out / "locustfile.py").read_text() == manifests.LOCUSTFILE.read_text()
    assert [g["files"] for g in doc["configMapGenerator"]] == [["locustfile.py"]]


@needs_kubectl
def test_render_pem_and_base64_inputs_agree_and_rerender_drops_stale_secret(
    tmp_path: Path, ca: tuple[bytes, bytes]
) -> None:
    secret = _secret(tmp_path / "secret.yaml", ca[0])
    out = tmp_path / "build"
    manifests.render("default", ca_bundle=_b64(ca[0]), serving_secret_yaml=secret, out_dir=out)
    first = _objects(out)
    manifests.render("default", ca_bundle=ca[0].decode(), serving_secret_yaml=None, out_dir=out)
    second = _objects(out)
    assert [o for o in first if o["kind"] != "Secret"] == second
    assert not (out / "serving-secret.yaml").exists()


@needs_kubectl
def test_render_insecure_overlay_adds_no_ca_bundle(tmp_path: Path) -> None:
    out = manifests.render("insecure", ca_bundle="", serving_secret_yaml=None, out_dir=tmp_path / "i")
    assert "patches" not in yaml.safe_load((out / "kustomization.yaml").read_text())
    for api in (o for o in _objects(out) if o["kind"] == "APIService"):
        assert "caBundle" not in api["spec"] and api["spec"]["insecureSkipTLSVerify"] is True


@needs_kubectl
def test_build_with_ca_bundle_returns_rendered_objects(tmp_path: Path, ca: tuple[bytes, bytes]) -> None:
    secret = _secret(tmp_path / "secret.yaml", ca[0])
    objs = manifests.build("test", ca_bundle=_b64(ca[0]), serving_secret_yaml=secret)
    assert manifests.placeholder_apiservices(objs) == []
    assert any(o["kind"] == "Secret" for o in objs)


MY_RULES = """
rules:
  - seriesQuery: 'my_app_jobs_total{namespace!="",pod!=""}'
    resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
    name: {matches: "^my_app_jobs_total$", as: "my_app_jobs_per_second"}
    metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[1m])) by (<<.GroupBy>>)'
"""


def _adapter_objects(objects: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    configmap = next(o for o in objects if o["kind"] == "ConfigMap"
                     and o["metadata"]["name"] == manifests.ADAPTER_CONFIGMAP)
    config = yaml.safe_load(configmap["data"]["config.yaml"])
    deployment = next(o for o in objects if o["kind"] == "Deployment"
                      and o["metadata"]["name"] == manifests.ADAPTER_SERVICE)
    return config, deployment


@needs_kubectl
def test_render_adds_a_projects_adapter_rules_and_rolls_the_adapter_when_they_change(
    tmp_path: Path, ca: tuple[bytes, bytes]
) -> None:
    overlay = manifests.overlay_dir("test")
    base_config, _ = _adapter_objects(manifests.load_objects(manifests.kustomize(overlay)))
    rules = tmp_path / "rules.yaml"
    rules.write_text(MY_RULES)
    out = manifests.render("test", ca_bundle=_b64(ca[0]), serving_secret_yaml=None, out_dir=tmp_path / "b",
                           adapter_rules=rules)  # fmt: skip
    config, deployment = _adapter_objects(_objects(out))
    names = [r["name"]["as"] for r in config["rules"] if "as" in r.get("name", {})]
    assert names[-1] == "my_app_jobs_per_second"
    assert config["rules"][:-1] == base_config["rules"]  # the kit's own rules are all still there
    assert config["externalRules"] == base_config["externalRules"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    first = annotations[manifests.ADAPTER_CONFIG_ANNOTATION]
    rules.write_text(MY_RULES.replace("[1m]", "[2m]"))
    out = manifests.render("test", ca_bundle=_b64(ca[0]), serving_secret_yaml=None, out_dir=tmp_path / "b",
                           adapter_rules=rules)  # fmt: skip
    config, deployment = _adapter_objects(_objects(out))
    assert "[2m]" in config["rules"][-1]["metricsQuery"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations[manifests.ADAPTER_CONFIG_ANNOTATION] != first


@needs_kubectl
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- seriesQuery: x", "must be a mapping with rules and/or externalRules"),
        ("resourceRules: {}", "must be a mapping with rules and/or externalRules"),
        ("rules: {seriesQuery: x}", "rules must be a list of rules"),
        ("rules: [{seriesQuery: 'up', metricsQuery: 'sum(<<.Nope>>)'}]",
         r"rules\.yaml:1: rules\[0\]\.resources: missing"),
        ("rules: [", "is not valid YAML"),
    ],
)
def test_bad_adapter_rules_are_refused_before_anything_is_written(
    tmp_path: Path, ca: tuple[bytes, bytes], text: str, message: str
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(text)
    with pytest.raises(manifests.ManifestError, match=message):
        manifests.render("test", ca_bundle=_b64(ca[0]), serving_secret_yaml=None, out_dir=tmp_path / "b",
                         adapter_rules=rules)  # fmt: skip
    assert not (tmp_path / "b" / "kustomization.yaml").exists()


@needs_kubectl
@pytest.mark.parametrize(
    ("bundle", "message"),
    [
        ("", "needs a caBundle"),
        ("not base64 !!", "neither PEM nor base64"),
        (manifests.CA_BUNDLE_PLACEHOLDER, "does not contain a PEM certificate"),
    ],
)
def test_render_rejects_bad_ca_bundles(tmp_path: Path, bundle: str, message: str) -> None:
    with pytest.raises(manifests.ManifestError, match=message):
        manifests.render("default", ca_bundle=bundle, serving_secret_yaml=None, out_dir=tmp_path / "o")
    assert not (tmp_path / "o").exists(), "bad input changes nothing"


def test_ca_bundle_with_a_private_key_is_refused(ca: tuple[bytes, bytes]) -> None:
    with pytest.raises(manifests.ManifestError, match="PRIVATE KEY"):
        manifests.normalise_ca_bundle((ca[0] + ca[1]).decode())


@needs_kubectl
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "other-tls"}, "the adapter mounts custom-metrics/custom-metrics-apiserver-tls"),
        ({"namespace": "monitoring"}, "the adapter mounts"),
        ({"type_": "Opaque"}, "kubernetes.io/tls"),
        ({"ca_crt": _ca_pem("other-ca")[0]}, "different CAs"),
    ],
)
def test_render_rejects_wrong_secrets(
    tmp_path: Path, ca: tuple[bytes, bytes], kwargs: dict[str, Any], message: str
) -> None:
    secret = _secret(tmp_path / "secret.yaml", ca[0], **kwargs)
    with pytest.raises(manifests.ManifestError, match=message):
        manifests.render("default", ca_bundle=_b64(ca[0]), serving_secret_yaml=secret, out_dir=tmp_path / "o")


@needs_kubectl
def test_render_refuses_to_write_into_manifests(ca: tuple[bytes, bytes]) -> None:
    with pytest.raises(manifests.ManifestError, match="outside the repo"):
        manifests.render(
            "default", ca_bundle=_b64(ca[0]), serving_secret_yaml=None, out_dir=REPO / "manifests" / "build"
        )
    assert not (REPO / "manifests" / "build").exists()


def test_unknown_overlay_names_the_choices() -> None:
    with pytest.raises(manifests.ManifestError, match="anonymous-fallback, insecure, resource-metrics, test"):
        manifests.overlay_dir("nope")


@needs_kubectl
@pytest.mark.skipif(shutil.which("cfssl") is None, reason="needs cfssl for harness.certs")
def test_render_accepts_harness_certs_output(tmp_path: Path) -> None:
    certs = pytest.importorskip("harness.certs")
    result = certs.serving_bundle(tmp_path / "certs", manifests.ADAPTER_SERVICE, manifests.ADAPTER_NAMESPACE)
    out = manifests.render(
        "default",
        ca_bundle=(tmp_path / "certs" / "cabundle.txt").read_text(),
        serving_secret_yaml=Path(str(result["secret"])),
        out_dir=tmp_path / "build",
    )
    objs = _objects(out)
    assert {o["spec"]["caBundle"] for o in objs if o["kind"] == "APIService"} == {result["ca_bundle"]}


@needs_kubectl
def test_cli_render_and_audit(
    tmp_path: Path, ca: tuple[bytes, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "cabundle.txt").write_text(_b64(ca[0]) + "\n")
    _secret(certs / "secret.yaml", ca[0])
    assert manifests.main(["render", "default", "--certs", str(certs), "--out", str(tmp_path / "b")]) == 0
    out = capsys.readouterr()
    assert "kubectl apply --server-side -k" in out.out
    assert "WARNING: no --apiserver-cidr" in out.err  # the NetworkPolicies would admit no API server
    argv = ["render", "default", "--certs", str(certs), "--out", str(tmp_path / "n")]
    argv += ["--apiserver-cidr", "10.0.0.5,10.0.0.6", "--apiserver-cidr", "fd00::5"]
    assert manifests.main(argv) == 0
    assert "WARNING" not in capsys.readouterr().err
    adapter = next(o for o in _objects(tmp_path / "n") if o["metadata"]["name"] == "adapter-ingress")
    peers = [p["ipBlock"]["cidr"] for p in adapter["spec"]["ingress"][0]["from"]]
    assert peers == ["10.0.0.5/32", "10.0.0.6/32", "fd00::5/128"]
    assert manifests.main(["audit", "--overlay", "default"]) == 0
    assert manifests.main(["audit", "--overlay", "insecure"]) == 1
    assert "CRITICAL" in capsys.readouterr().out
    assert manifests.main(["render", "default", "--certs", str(tmp_path), "--out", str(tmp_path / "c")]) == 2
    assert "gen-certs.sh serving" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- audit


def _crb(name: str, role: str, *subjects: tuple[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": k, "name": n} for k, n in subjects],
    }


def _role(kind: str, name: str, rules: list[dict[str, Any]], namespace: str | None = None) -> dict[str, Any]:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "metadata": meta, "rules": rules}


def test_audit_flags_each_shortcut() -> None:
    wildcard = _role("ClusterRole", "god", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}])
    metrics_ns = _role(
        "Role", "m", [{"apiGroups": ["external.metrics.k8s.io"], "resources": ["*"], "verbs": ["list"]}], "ns"
    )
    rb = {
        "kind": "RoleBinding",
        "metadata": {"name": "anon-metrics", "namespace": "ns"},
        "roleRef": {"kind": "Role", "name": "m"},
        "subjects": [{"kind": "Group", "name": "system:unauthenticated"}],
    }
    objects = [
        wildcard,
        metrics_ns,
        rb,
        _crb("a", "god", ("Group", "system:unauthenticated")),
        _crb("b", "cluster-admin", ("Group", "system:authenticated")),
        {
            "kind": "APIService",
            "metadata": {"name": "v1beta1.metrics.k8s.io"},
            "spec": {"insecureSkipTLSVerify": True},
        },
    ]
    findings = {(f.kind, f.name): f for f in manifests.audit(objects)}
    assert findings[("ClusterRoleBinding", "a")].severity == "critical"
    assert findings[("ClusterRoleBinding", "b")].severity == "critical"
    assert findings[("RoleBinding", "anon-metrics")].severity == "warning"
    assert findings[("APIService", "v1beta1.metrics.k8s.io")].severity == "critical"
    assert len(findings) == 4


def test_audit_ignores_the_default_bootstrap_bindings() -> None:
    # Stock clusters bind system:unauthenticated to public-info-viewer (/healthz, /version) and kubeadm
    # lets system:anonymous read the cluster-info ConfigMap: neither is a finding.
    viewer = _role(
        "ClusterRole", "system:public-info-viewer", [{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]
    )
    info = _role(
        "Role",
        "cluster-info",
        [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
        "kube-public",
    )
    objects = [
        viewer,
        info,
        _crb("system:public-info-viewer", "system:public-info-viewer", ("Group", "system:unauthenticated")),
        {
            "kind": "RoleBinding",
            "metadata": {"name": "kubeadm:bootstrap-signer-clusterinfo", "namespace": "kube-public"},
            "roleRef": {"kind": "Role", "name": "cluster-info"},
            "subjects": [{"kind": "User", "name": "system:anonymous"}],
        },
        _crb("cluster-admin", "cluster-admin", ("Group", "system:masters")),
        {"kind": "APIService", "metadata": {"name": "v1.apps"}, "spec": {"group": "apps", "version": "v1"}},
    ]
    assert manifests.detect_insecure(objects) == []


def _rb(name: str, namespace: str, role_kind: str, role: str, subject: tuple[str, str]) -> dict[str, Any]:
    return {
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role},
        "subjects": [{"kind": subject[0], "name": subject[1]}],
    }


def test_audit_flags_takeover_grade_roles_for_anonymous_and_everyone() -> None:
    def rule(groups: list[str], resources: list[str], verbs: list[str]) -> dict[str, Any]:
        return {"apiGroups": groups, "resources": resources, "verbs": verbs}

    roles = [
        _role("ClusterRole", "secret-reader", [rule([""], ["secrets"], ["get", "list"])]),
        _role("ClusterRole", "core-wildcard", [rule([""], ["*"], ["*"])]),
        _role("ClusterRole", "impersonator", [rule([""], ["users", "groups"], ["impersonate"])]),
        _role("ClusterRole", "binder", [rule(["rbac.authorization.k8s.io"], ["clusterroles"], ["bind"])]),
        _role("ClusterRole", "escalator", [rule(["rbac.authorization.k8s.io"], ["roles"], ["escalate"])]),
        _role("Role", "exec", [rule([""], ["pods/exec"], ["create"])], "ns"),
        _role("ClusterRole", "node-proxy", [rule([""], ["nodes/proxy"], ["get"])]),
        _role("ClusterRole", "tokens", [rule([""], ["serviceaccounts/token"], ["create"])]),
        # Aggregated: the rules live in the ClusterRoles its selector picks.
        {**_role("ClusterRole", "agg", []),
         "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "true"}}]}},
        {**_role("ClusterRole", "agg-part", [rule([""], ["pods/*"], ["*"])]),
         "metadata": {"name": "agg-part", "labels": {"agg": "true"}}},
    ]
    anon, unauth = ("User", "system:anonymous"), ("Group", "system:unauthenticated")
    authn = ("Group", "system:authenticated")
    bindings = [
        # Built-in aggregated roles referenced by name, their rules absent from the objects.
        _crb("anon-admin", "admin", anon),
        _rb("unauth-edit", "ns", "ClusterRole", "edit", unauth),
        _crb("authn-admin", "admin", authn),
        _crb("anon-secrets", "secret-reader", anon),
        _crb("unauth-wildcard", "core-wildcard", unauth),
        _crb("authn-impersonate", "impersonator", authn),
        _crb("anon-bind", "binder", anon),
        _rb("anon-escalate", "ns", "ClusterRole", "escalator", anon),
        _rb("anon-exec", "ns", "Role", "exec", anon),
        _crb("unauth-node-proxy", "node-proxy", unauth),
        _crb("authn-tokens", "tokens", authn),
        _crb("anon-agg", "agg", anon),
    ]
    findings = {f.name: f for f in manifests.audit([*roles, *bindings])}
    names = [b["metadata"]["name"] for b in bindings]
    assert sorted(findings) == sorted(names), sorted(set(names) - set(findings))
    assert all(f.severity == "critical" for f in findings.values()), findings
    assert "reads secrets" in findings["anon-secrets"].message
    assert "wildcard" in findings["unauth-wildcard"].message
    assert "pods/exec" in findings["anon-agg"].message
    assert "nodes/proxy" in findings["unauth-node-proxy"].message
    assert "serviceaccounts/token" in findings["authn-tokens"].message
    # The same harmless roles bound to the same identities stay quiet.
    view = _role("ClusterRole", "pod-reader", [rule([""], ["pods", "configmaps"], ["get", "list"])])
    assert manifests.audit([view, _crb("anon-view", "pod-reader", anon), _crb("view", "view", authn)]) == []


def _fake_kubectl(tmp_path: Path, output: str, rc: int = 0) -> Path:
    log = tmp_path / "argv.log"
    script = tmp_path / "kubectl"
    script.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\ncat <<'EOF'\n{output}\nEOF\nexit {rc}\n")
    script.chmod(0o755)
    return script


def _fake_live_kubectl(tmp_path: Path, items: list[dict[str, Any]], allowed: tuple[str, ...] = ()) -> Path:
    """A kubectl for the live audit: ``get`` lists ``items``; ``create -f -`` answers a SubjectAccessReview
    (logged to reviews.log) with allowed=true when its ``verb resource[/subresource]`` is in ``allowed``."""
    log = tmp_path / "argv.log"
    script = tmp_path / "kubectl"
    script.write_text(f"""#!{sys.executable}
import json, sys
open({str(log)!r}, "a").write(" ".join(sys.argv[1:]) + "\\n")
if "create" in sys.argv:
    review = json.load(sys.stdin)
    open({str(tmp_path / "reviews.log")!r}, "a").write(json.dumps(review) + "\\n")
    a = review["spec"]["resourceAttributes"]
    key = a["verb"] + " " + a["resource"] + ("/" + a["subresource"] if a.get("subresource") else "")
    review["status"] = {{"allowed": key in {list(allowed)!r}}}
    print(json.dumps(review))
else:
    print(json.dumps({{"kind": "List", "items": {items!r}}}))
""")
    script.chmod(0o755)
    return script


def test_detect_insecure_live_uses_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    items = [
        _crb("tutorial", "cluster-admin", ("User", "system:anonymous")),
        {
            "kind": "APIService",
            "metadata": {"name": "v1beta1.custom.metrics.k8s.io"},
            "spec": {
                "insecureSkipTLSVerify": True,
                "service": {"namespace": "monitoring", "name": "adapter"},
            },
        },
    ]
    monkeypatch.setenv("KUBECTL", str(_fake_live_kubectl(tmp_path, items)))
    warnings = manifests.detect_insecure(kubeconfig=tmp_path / "kc", context="kind-x")
    assert len(warnings) == 2
    assert any("monitoring/adapter" in w for w in warnings)
    argv = (tmp_path / "argv.log").read_text()
    assert "--context kind-x" in argv and f"--kubeconfig {tmp_path / 'kc'}" in argv
    assert "apiservices.apiregistration.k8s.io,clusterrolebindings,clusterroles" in argv and "-o json" in argv


def test_detect_insecure_live_reports_what_the_apiserver_allows_anonymous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No binding among the objects explains it (a webhook authorizer, an aggregated role, ...): the
    # apiserver's own answer is what counts.
    allowed = ("create pods/exec", "list secrets", "get nodes/proxy")
    monkeypatch.setenv("KUBECTL", str(_fake_live_kubectl(tmp_path, [], allowed)))
    warnings = manifests.detect_insecure(kubeconfig=tmp_path / "kc", context="kind-x")
    assert len(warnings) == 3, warnings
    assert all(w.startswith("CRITICAL: access system:anonymous") for w in warnings)
    assert any("exec into pods" in w for w in warnings) and any("read secrets" in w for w in warnings)
    assert any("nodes/proxy" in w for w in warnings)
    reviews = [json.loads(line) for line in (tmp_path / "reviews.log").read_text().splitlines()]
    assert len(reviews) == len(manifests.ANONYMOUS_PROBES)
    for review in reviews:
        assert review["kind"] == "SubjectAccessReview"
        assert review["spec"]["user"] == "system:anonymous"
        assert review["spec"]["groups"] == ["system:unauthenticated"]
    asked = {(r["spec"]["resourceAttributes"]["verb"], r["spec"]["resourceAttributes"]["resource"])
             for r in reviews}  # fmt: skip
    assert {("impersonate", "users"), ("bind", "clusterroles"), ("escalate", "clusterroles"), ("*", "*"),
            ("create", "serviceaccounts")} <= asked  # fmt: skip
    for line in (tmp_path / "argv.log").read_text().splitlines():
        assert "--context kind-x" in line and f"--kubeconfig {tmp_path / 'kc'}" in line


def test_anonymous_access_nothing_allowed_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECTL", str(_fake_live_kubectl(tmp_path, [])))
    assert manifests.anonymous_access() == []
    assert manifests.detect_insecure() == []
    # The review refused: an error that says what is needed, never a silent "nothing found".
    bad = tmp_path / "bad"
    bad.mkdir()
    script = bad / "kubectl"
    script.write_text("#!/bin/sh\n"
                      "echo 'Error from server (Forbidden): cannot create subjectaccessreviews' >&2\n"
                      "exit 1\n")
    script.chmod(0o755)
    monkeypatch.setenv("KUBECTL", str(script))
    with pytest.raises(manifests.ManifestError, match="needs create on subjectaccessreviews"):
        manifests.anonymous_access()


def test_detect_insecure_live_reports_kubectl_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECTL", str(_fake_kubectl(tmp_path, "error: forbidden", rc=1)))
    with pytest.raises(manifests.ManifestError, match="forbidden"):
        manifests.detect_insecure()
    monkeypatch.setenv("KUBECTL", str(tmp_path / "missing-kubectl"))
    with pytest.raises(manifests.ManifestError, match="install kubectl"):
        manifests.detect_insecure()


# -------------------------------------------------------------------------------- operator-crds.sh


def _run_script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_operator_crds_script_usage_and_bad_input() -> None:
    assert _run_script("--help").returncode == 0
    bad = _run_script("--version", "latest")
    assert bad.returncode == 2 and "not a tag" in bad.stderr
    assert _run_script("--source", "ftp").returncode == 2
    assert _run_script("--bogus").returncode == 2


def test_operator_crds_script_names_the_pinned_release_url() -> None:
    where = _run_script("--source", "url", "--where")
    assert where.returncode == 0
    assert where.stdout.strip().endswith("(CustomResourceDefinitions only)")
    version = next(
        line.split("=", 1)[1]
        for line in (REPO / "scripts" / "versions.env").read_text().splitlines()
        if line.startswith("PROM_OPERATOR_VERSION=")
    )
    assert f"/releases/download/{version}/bundle.yaml" in where.stdout


def _module_crd_dir() -> Path | None:
    if shutil.which("go") is None:
        return None
    where = _run_script("--source", "go", "--where", env={"GOPROXY": "off", "GOFLAGS": "-mod=mod"})
    if where.returncode != 0:
        return None
    return Path(where.stdout.strip().rsplit(": ", 1)[1])


@pytest.fixture(scope="module")
def module_crd_dir() -> Path:
    found = _module_crd_dir()
    if found is None:
        pytest.skip("prometheus-operator module not in the Go module cache (or Go missing); offline run")
    return found


class _CrdLoader(yaml.SafeLoader):
    """The operator's CRDs contain ``- =`` (a YAML 1.1 'value' tag PyYAML cannot construct)."""


def _value_tag(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    assert isinstance(node, yaml.ScalarNode)
    return str(loader.construct_scalar(node))


_CrdLoader.add_constructor("tag:yaml.org,2002:value", _value_tag)


def _kinds_and_names(text: str) -> list[tuple[str, str]]:
    return [(d["kind"], d["metadata"]["name"]) for d in yaml.load_all(text, Loader=_CrdLoader) if d]


def test_operator_crds_script_prints_crds_from_the_module(module_crd_dir: Path) -> None:
    proc = _run_script(env={"GOPROXY": "off"})
    assert proc.returncode == 0, proc.stderr
    docs = _kinds_and_names(proc.stdout)
    assert {k for k, _ in docs} == {"CustomResourceDefinition"}
    names = {n for _, n in docs}
    assert {"prometheuses.monitoring.coreos.com", "servicemonitors.monitoring.coreos.com"} <= names


def test_operator_crds_script_url_source_keeps_only_crds(tmp_path: Path, module_crd_dir: Path) -> None:
    bundle = module_crd_dir.parent.parent / "bundle.yaml"
    curl = tmp_path / "curl"
    curl.write_text(f"#!/bin/sh\ncat {bundle}\n")
    curl.chmod(0o755)
    proc = _run_script("--source", "url", env={"CURL": str(curl)})
    assert proc.returncode == 0, proc.stderr
    from_url = _kinds_and_names(proc.stdout)
    from_module = _kinds_and_names(_run_script("--source", "go", env={"GOPROXY": "off"}).stdout)
    assert {k for k, _ in from_url} == {"CustomResourceDefinition"}, (
        "bundle.yaml's Deployment/RBAC must be dropped"
    )
    assert sorted(from_url) == sorted(from_module)


def test_operator_crds_script_applies_server_side(tmp_path: Path, module_crd_dir: Path) -> None:
    kubectl = _fake_kubectl(tmp_path, "True")  # what the Established condition's status reads
    proc = _run_script("--apply", "--force-conflicts", env={"KUBECTL": str(kubectl), "GOPROXY": "off"})
    assert proc.returncode == 0, proc.stderr
    calls = (tmp_path / "argv.log").read_text().splitlines()
    assert calls[0].startswith("apply --server-side --field-manager=hpa-kit --force-conflicts -f ")
    assert calls[1].startswith("get crd prometheuses.monitoring.coreos.com -o jsonpath=")
    assert calls[2].startswith("get crd servicemonitors.monitoring.coreos.com -o jsonpath=")


def test_operator_crds_script_waits_for_established_and_names_the_crd(
    tmp_path: Path, module_crd_dir: Path
) -> None:
    # A CRD created a moment ago has no conditions yet: the script polls (kubectl wait errored out).
    kubectl = _fake_kubectl(tmp_path, "")
    env = {"KUBECTL": str(kubectl), "GOPROXY": "off", "HPA_KIT_CRD_TIMEOUT": "2"}
    proc = _run_script("--apply", env=env)
    assert proc.returncode != 0
    assert "CRD prometheuses.monitoring.coreos.com was applied but is not Established after 2s" in proc.stderr
    gets = [c for c in (tmp_path / "argv.log").read_text().splitlines() if c.startswith("get crd")]
    assert len(gets) >= 2, gets


def test_locustfile_is_generated_only_where_mounted_and_missing() -> None:
    def job(ns: str, cm: str) -> dict[str, Any]:
        volumes = [{"name": "f", "configMap": {"name": cm}}, {"name": "t", "emptyDir": {}}]
        return {
            "kind": "Job",
            "metadata": {"name": "j", "namespace": ns},
            "spec": {"template": {"spec": {"volumes": volumes}}},
        }

    defined = {"kind": "ConfigMap", "metadata": {"name": "locustfile", "namespace": "b"}}
    objs = [job("a", "locustfile"), job("b", "locustfile"), defined, job("c", "other")]
    assert manifests.locustfile_namespaces(objs) == ["a"]
    assert manifests.locustfile_namespaces([job("c", "other")]) == []


# ------------------------------------------------------------------------------------ registry override

REG = "127.0.0.1:5000/kit"


def _containers(objs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for o in objs:
        path = manifests._POD_SPEC_PATHS.get(o["kind"])
        if path is None:
            continue
        spec = manifests._dig(o, path)
        for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
            out.append((f"{o['kind']} {o['metadata']['name']}", c))
    return out


@needs_kubectl
@pytest.mark.parametrize("overlay", ["test", "default"])
def test_render_with_registry_runs_every_kit_image_from_it(
    tmp_path: Path, ca: tuple[bytes, bytes], overlay: str
) -> None:
    from harness import images

    secret = _secret(tmp_path / "secret.yaml", ca[0])
    plain = _objects(manifests.render(overlay, ca_bundle=_b64(ca[0]), serving_secret_yaml=secret,
                                      out_dir=tmp_path / "plain"))
    out = manifests.render(overlay, ca_bundle=_b64(ca[0]), serving_secret_yaml=secret,
                           out_dir=tmp_path / "reg", registry=REG)
    objs = _objects(out)
    before = manifests.required_images(plain)
    # Every image of the install is one the kit builds (upstream ones too: operator, config-reloader,
    # Prometheus from their Go modules), so every one moves, each to where `images push` puts it.
    assert images.unbuildable(before) == []
    assert len(before) >= 5
    after = manifests.required_images(objs)
    assert sorted(after) == sorted(images.registry_ref(i, REG) for i in before)
    assert all(i.startswith(REG + "/") for i in after)
    # Tags kept: hpa-kit/adapter:0.1.0 -> REG/hpa-kit/adapter:0.1.0, Prometheus' own tag, ...
    assert f"{REG}/hpa-kit/adapter:{images.kit_version()}" in after
    assert f"{REG}/prometheus/prometheus:{images.read_versions()['PROMETHEUS_VERSION']}" in after
    # Pull policy unchanged, and nothing but images changed (same objects, same containers).
    for where, c in _containers(objs):
        assert c["image"].startswith(REG + "/"), where
        assert c.get("imagePullPolicy") == "IfNotPresent", where
    prom = next(o for o in objs if o["kind"] == "Prometheus")
    assert prom["spec"]["imagePullPolicy"] == "IfNotPresent"
    assert len(objs) == len(plain)
    op = next(c for _, c in _containers(objs) if c["name"] == "prometheus-operator")
    op_plain = next(c for _, c in _containers(plain) if c["name"] == "prometheus-operator")
    assert len(op["args"]) == len(op_plain["args"])
    # Rendering again without a registry takes it all back.
    again = _objects(manifests.render(overlay, ca_bundle=_b64(ca[0]), serving_secret_yaml=secret,
                                      out_dir=out))
    assert manifests.required_images(again) == before
    assert not (out / "image-fields.yaml").exists()


@needs_kubectl
def test_render_refuses_a_bad_registry_in_one_line(tmp_path: Path, ca: tuple[bytes, bytes]) -> None:
    with pytest.raises(manifests.ManifestError, match="drop the scheme") as exc:
        manifests.render("default", ca_bundle=_b64(ca[0]), serving_secret_yaml=None, out_dir=tmp_path / "b",
                         registry="https://reg.example.com")
    assert "\n" not in str(exc.value)


@needs_kubectl
@pytest.mark.parametrize("overlay", ["default", "test"])
def test_the_documented_kubectl_apply_k_snippet_moves_every_image(tmp_path: Path, overlay: str) -> None:
    """manifests/README.md's `images:` + patch snippet, as a user's own overlay: every image the install
    runs (the Prometheus CR's spec.image through manifests/base's image-field config, the reloader
    through the patch) comes from the registry, the same references `images push` pushes to."""
    from harness import images

    text = (REPO / "manifests" / "README.md").read_text()
    block = text.split("Applying with `kubectl apply -k` yourself", 1)[1].split("```yaml\n", 1)[1]
    block = block.split("```", 1)[0].replace("REGISTRY", REG)
    doc = yaml.safe_load(block)
    user = tmp_path / "mine"
    user.mkdir()
    doc["resources"] = [os.path.relpath(manifests.overlay_dir(overlay), user)]
    (user / "kustomization.yaml").write_text(yaml.safe_dump(doc))
    before = manifests.required_images(manifests.build(overlay))
    after = manifests.required_images(_objects(user))
    assert sorted(after) == sorted(images.registry_ref(i, REG) for i in before)


def test_registry_overrides_add_what_images_cannot_reach() -> None:
    """No kubectl: an operator without the reloader flag gets one, a Prometheus CR naming only its
    version gets spec.image, an image the kit does not build is left alone."""
    from harness import images

    v = images.read_versions()
    po, prom = v["PROM_OPERATOR_VERSION"], v["PROMETHEUS_VERSION"]
    objs = [
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "op", "namespace": "m"},
         "spec": {"template": {"spec": {"containers": [
             {"name": "side", "image": "example.com/other/thing:1"},
             {"name": "o", "image": f"quay.io/prometheus-operator/prometheus-operator:{po}",
              "args": ["--log-level=info"]}]}}}},
        {"apiVersion": "monitoring.coreos.com/v1", "kind": "Prometheus",
         "metadata": {"name": "p", "namespace": "m"}, "spec": {"version": prom}},
    ]
    entries, patches = manifests.registry_overrides(objs, REG)
    # `images:` only for images in fields it rewrites; the other two are the patches below.
    assert entries == [{"name": "quay.io/prometheus-operator/prometheus-operator",
                        "newName": f"{REG}/prometheus-operator/prometheus-operator"}]
    by_kind = {p["target"]["kind"]: json.loads(p["patch"]) for p in patches}
    assert by_kind["Deployment"] == [{"op": "add", "path": "/spec/template/spec/containers/1/args/-",
                                      "value": f"--prometheus-config-reloader={REG}/prometheus-operator/"
                                               f"prometheus-config-reloader:{po}"}]
    assert by_kind["Prometheus"] == [{"op": "add", "path": "/spec/image",
                                      "value": f"{REG}/prometheus/prometheus:{prom}"}]
